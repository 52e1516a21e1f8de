//! The Mesos-DNS-compatible zone: the names Mesos-DNS gives a cluster's tasks, frameworks,
//! agents and masters, compiled into an immutable `Zone` that answers lookups. It reads
//! only the catalog (`catalog::cluster`), never a source. The compile is pure: no sockets,
//! no clocks, no name resolution (the Mesos source resolved host names when it read the
//! state). Encoding answers and the UDP/TCP server are left to the DNS handler.
//!
//! - `intern`: names stored once and known by id after that.
//! - `name`: the label sanitizer (RFC 1123 / RFC 952 rules) and `hash5`.
//! - `records`: the cluster + Marathon-only apps + options -> the records of every name.
//! - `zone`: record sets -> `Zone` (apex, additional records, empty non-terminals) and
//!   `Zone::lookup`; `ZoneState` patches one Marathon-only app's change into a new zone
//!   without a full compile.
//! - `api`: the bodies of the Mesos-DNS HTTP lookups (`/v1/hosts`, `/v1/services`).
//! - `server`: the DNS server (settings, UDP loop, the answers it gives); `handler`: one
//!   packet in, one reply out; `fast`: the UDP fast path; `tcp`: TCP connections;
//!   `wire`: zone records as wire records; `labels`: the query metric's labels;
//!   `forward`: forwarding outside the domain.

pub mod api;
mod fast;
mod forward;
pub mod handler;
pub mod intern;
mod labels;
pub mod name;
pub mod records;
pub mod server;
mod tcp;
mod udp_batch;
mod wire;
pub mod zone;

pub use fast::{FastPath, FastQuery};
pub use labels::Transport;
pub use records::{IpSource, RecordOptions};
pub use zone::{
    Lookup, NameId, QueryType, Record, RecordData, RecordType, Zone, ZoneInput, ZoneOptions,
    ZoneState,
};
