//! Drover fronts the services of a Mesos/Marathon-style cluster from one binary: an HTTP
//! and HTTPS router by Host (and path), a TCP proxy on every service port, master aliases
//! that reach only the elected leader, a Mesos-DNS compatible DNS server, and an admin port
//! with Prometheus metrics, health, readiness and a route dump.
//!
//! # Layout
//!
//! ```text
//!  sources decode once, into catalog types           config file -> config::reload
//!  catalog file -> source::file -----> RawApp ---+                 | Arc<Config> (watch)
//!  Marathon     -> source::marathon -> RawApp ---+                 |
//!  Mesos master -> source::mesos ----> Cluster --+ (pids, port ranges, IPs, names resolved;
//!   (state, operator API stream)                 |  the stream's events applied as they come)
//!                                                v                 v
//!    control: the one writer; orchestrates on every input change, decides nothing itself
//!      |-- catalog::merge -> Catalog -> routing::compile -> RouteTableWriter
//!      |       RouteTableReader -> proxy::http (by Host; TLS by SNI; HTTP/2; h2c and gRPC
//!      |                           to backends), proxy::tcp,
//!      |                           proxy::listeners (one listener per service port),
//!      |                           proxy::udp + proxy::udp_listeners (UDP ports: a flow
//!      |                           per client address, one backend each)
//!      '-- catalog::cluster (Cluster + Marathon-only apps) -> dns::records -> dns::zone
//!              -> ZoneWriter;  ZoneReader -> dns::server (UDP fast path, hickory, TCP)
//!  health::monitor: probes alias masters and checked backends, sets the pools' flags;
//!                   the proxies send it their ejections (EjectionSender)
//!  admin: a read-only AdminView of all of the above (status page, /debug/routes,
//!         marathon-lb's endpoints); its one write is a Reread request, as SIGHUP's
//!  metrics: one registry, every stage; access_log: each proxy thread formats one line per
//!         request or connection into its own buffer, one writer thread writes them
//!  accept + lazy_socket: every listener's connection cap and accept errors; HTTP and admin
//!         client sockets join the reactor only when they first have to wait
//!  upgrade: on SIGUSR2, a new process of the binary gets every listening socket and the
//!         old one drains once it is ready; config::env: DROVER_<SECTION>__<KEY> over the file
//!  zk: one watching follower per ZooKeeper election path ([mesos] zk, [[alias]] zk); the
//!         Mesos source polls the leader it names at once, the health monitor flips aliases
//! ```
//!
//! Nothing under `dns` or `routing` imports a source: they read the catalog only.
//!
//! No task holds all of this: each gets the [`handles`] of what it reads or writes (a
//! route-table reader for the proxies, a zone reader for DNS, a status handle for each
//! source, the writers for `control`, a read-only view for admin), wired in `server`.
//!
//! - Upstream of `control`, values travel on `tokio::sync::watch`: the latest wins.
//! - `catalog`, `routing`, `dns::records` and `dns::zone` are pure: data in, data out.
//!   Parsing Mesos's strings and resolving host names happen once, in the source.
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
pub mod lazy_socket;
pub mod logfmt;
pub mod metrics;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod shutdown;
#[cfg(feature = "sim")]
pub mod sim;
pub mod source;
pub mod upgrade;
pub mod watch;
pub mod zk;

pub use server::Server;
