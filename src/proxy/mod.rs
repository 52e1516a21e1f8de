//! The data plane: the HTTP router, the TCP proxy and the reconciler that opens and closes
//! service-port listeners. Everything here reads the route table; nothing writes it.

pub mod http;
pub mod listeners;
pub mod tcp;
