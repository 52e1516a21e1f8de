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

use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;

pub use server::Server;

/// What the control plane publishes and the data plane reads.
/// A backend the data plane ejected, with its route's name.
pub type Ejection = (String, std::sync::Arc<routing::pool::Backend>);

pub struct Shared {
    /// The current route table; replaced whole by `control`, the only writer.
    pub table: ArcSwap<routing::RouteTable>,
    /// The current DNS zone (`None` until the first one is compiled); replaced whole by
    /// `control`, read by `dns::server` once per query.
    pub zone: arc_swap::ArcSwapOption<dns::zone::Zone>,
    /// The config in use, for admin answers that show it (`/v1/config`); set by `control`.
    pub config: arc_swap::ArcSwapOption<config::Config>,
    pub metrics: metrics::Metrics,
    /// Metric handles for requests that match no route (unknown Host, refused requests).
    pub unrouted: metrics::RouteStats,
    /// Service-port listeners by address: "open", or why the bind failed. Written by
    /// `proxy::listeners`, shown by `admin`.
    pub tcp_listeners: std::sync::Mutex<std::collections::BTreeMap<std::net::SocketAddr, String>>,
    /// The last error of each discovery source, by source name; cleared by a good read.
    /// Shown by `admin` so an operator sees why a source is not updating.
    pub source_errors: std::sync::Mutex<std::collections::BTreeMap<&'static str, String>>,
    /// What the health monitor knows: each alias's leader, each checked backend's state and
    /// last probe. Written by `health::monitor`, shown by `admin`.
    pub health: std::sync::Mutex<health::monitor::HealthStatus>,
    /// Backends the data plane ejected, by route name, sent to the health monitor to watch
    /// come back: a send takes no lock, so no request waits on the monitor.
    ejections: tokio::sync::mpsc::UnboundedSender<Ejection>,
    /// The receiving end, taken once by the monitor when it starts.
    ejections_rx: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Ejection>>>,
    /// Set once the first route table has been stored.
    ready: AtomicBool,
}

// === impl Shared ===

impl Shared {
    /// Tells the health monitor of an ejection (no lock: the data plane calls this).
    pub fn note_ejected(&self, route: &str, backend: &std::sync::Arc<routing::pool::Backend>) {
        // Without a monitor (some tests) nobody listens; the ejection still ends on time.
        let _ = self.ejections.send((route.to_string(), backend.clone()));
    }

    /// The ejections' receiving end, for the health monitor; `None` after the first call.
    pub fn take_ejections(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Ejection>> {
        self.ejections_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    pub fn new(metrics: metrics::Metrics) -> Shared {
        let (ejections, ejections_rx) = tokio::sync::mpsc::unbounded_channel();
        Shared {
            table: ArcSwap::from_pointee(routing::RouteTable::default()),
            zone: arc_swap::ArcSwapOption::empty(),
            config: arc_swap::ArcSwapOption::empty(),
            unrouted: metrics.route_stats(metrics::UNROUTED),
            metrics,
            tcp_listeners: Default::default(),
            source_errors: Default::default(),
            health: Default::default(),
            ejections,
            ejections_rx: std::sync::Mutex::new(Some(ejections_rx)),
            ready: AtomicBool::new(false),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Records (`Some`) or clears (`None`) the last error of a discovery source.
    pub fn set_source_error(&self, source: &'static str, error: Option<String>) {
        let mut errors = self
            .source_errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match error {
            Some(e) => errors.insert(source, e),
            None => errors.remove(source),
        };
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}
