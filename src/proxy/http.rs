//! placeholder
use std::sync::Arc;
use crate::{shutdown::Shutdown, Shared};
pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>, shutdown: Shutdown) {
    let _ = (listener, shared, shutdown);
}
