//! The Mesos source: the leading master's `/master/state`, decoded and converted into the
//! catalog's `Cluster`. Only this module knows Mesos's JSON and its string formats;
//! `dns::records` gives the cluster its Mesos-DNS names.
//!
//! - `state`: the serde types, `decode`, and the pid and port-range parsers.
//! - `cluster`: a decoded state as a `catalog::cluster::Cluster`, host names resolved.
//! - `poll`: reads the leader's state every `[mesos] poll` and publishes it.

pub mod cluster;
pub mod poll;
pub mod recordio;
pub mod state;
pub mod v1;

#[cfg(test)]
mod dns_tests;
