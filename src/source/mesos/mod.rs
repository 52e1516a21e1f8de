//! The Mesos source: the leading master's `/master/state` and operator API event stream,
//! decoded and converted into the catalog's `Cluster`. Only this module knows Mesos's JSON
//! and its string formats; `dns::records` gives the cluster its Mesos-DNS names.
//!
//! - `state`: the serde types, `decode`, and the pid and port-range parsers.
//! - `cluster`: a decoded state as a `catalog::cluster::Cluster`, host names resolved.
//! - `poll`: which master leads, its `/master/state` read every `[mesos] poll`, published.
//! - `stream`: the leader's operator API stream (`[mesos] stream`), polled as a fallback.
//! - `recordio`: the stream's framing; `v1`: its events, applied to a model in `state`'s terms.

pub mod cluster;
pub mod poll;
pub mod recordio;
pub mod state;
pub mod stream;
pub mod v1;

#[cfg(test)]
mod dns_tests;
