//! The Mesos source: the leading master's `/master/state`, decoded into raw types. Only
//! this module knows Mesos's JSON; `dns::records` gives the decoded state its Mesos-DNS
//! meaning.
//!
//! - `state`: the serde types, `decode`, and the pid and port-range parsers.
//! - `poll`: reads the leader's state every `[mesos] poll` and publishes it.

pub mod poll;
pub mod state;
