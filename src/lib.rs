//! Drover fronts the services of a Mesos/Marathon-style cluster from one binary: an HTTP
//! and HTTPS router by Host (and path), a TCP proxy on every service port, master aliases
//! that reach only the elected leader, a Mesos-DNS compatible DNS server, and an admin port
//! with Prometheus metrics, health, readiness and a route dump.
//!
//! # Layout
//!
//! ```text
//! catalog file -> source::file ------+ raw apps         config file -> config::reload
//! Marathon     -> source::marathon --+                            | Arc<Config> (watch)
//! Mesos master -> source::mesos -----|--------------+             |
//!                                    v              |             v
//!            control: the one writer; recompiles when any input changes
//!              |-- catalog::build -> routing::compile -> ArcSwap<RouteTable>
//!              |        -> proxy::http (by Host; TLS by SNI on [https]; HTTP/2)
//!              |        -> proxy::tcp (one per service port) / proxy::listeners
//!              '-- dns::records -> dns::zone -> ArcSwap<Zone> -> dns::server (UDP + TCP)
//!  health::monitor: probes alias masters and checked backends, sets the pools' flags
//!  metrics: every stage counts into Metrics; admin shows the same snapshots at /debug/routes
//! ```
//!
//! No task holds all of this: each gets the [`handles`] of what it reads or writes (a
//! route-table reader for the proxies, a zone reader for DNS, a status handle for each
//! source, the writers for `control`, a read-only view for admin), wired in `server`.
//!
//! - Upstream of `control`, values travel on `tokio::sync::watch`: the latest wins.
//! - `catalog`, `routing`, `dns::records` and `dns::zone` are pure: data in, data out.
//! - The data plane does one lock-free `load()` of the route table per request or
//!   connection and never waits on the control plane.
//! - A bad config, catalog file or scheduler answer never empties the table or the zone:
//!   the last good one stays.
//!
//! # Threads
//!
//! The data plane runs on `runtime.workers` threads, each with its own single-threaded tokio
//! runtime (no work stealing, per-thread upstream connection pools). The control plane
//! (watchers, sources, control, health probes, admin, listener reconciliation) runs on one
//! more such thread; the DNS server on one of its own; zone compiles on a blocking thread.

pub mod accept;
pub mod access_log;
pub mod admin;
pub mod catalog;
pub mod cidr;
pub mod config;
pub mod control;
pub mod dns;
#[doc(hidden)]
pub mod fuzzing;
pub mod handles;
pub mod health;
pub mod host;
pub mod logfmt;
pub mod metrics;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod shutdown;
#[cfg(feature = "sim")]
pub mod sim;
pub mod source;
pub mod watch;

pub use server::Server;
