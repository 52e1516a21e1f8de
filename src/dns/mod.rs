//! The Mesos-DNS-compatible zone: the names Mesos-DNS gives a cluster's tasks, frameworks,
//! agents and masters, compiled into an immutable `Zone` that answers lookups. Pure: no
//! sockets, no clocks, no name resolution (the caller passes in what it resolved).
//!
//! - `name`: the label sanitizer (RFC 1123 / RFC 952 rules) and `hash5`.
pub mod name;
