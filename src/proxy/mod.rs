//! The data plane: the HTTP router, the TCP and UDP proxies and the reconcilers that open
//! and close service-port listeners. Everything here reads the route table; nothing writes it.

pub mod h1_guard;
pub mod h1_scan;
pub mod http;
pub mod listeners;
pub mod proxy_protocol;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod udp_listeners;

use std::sync::Arc;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncRead;
use tracing::{debug, warn};

use crate::access_log::AccessLog;
use crate::cidr::{is_trusted, Cidr};

use crate::handles::{EjectionSender, RouteTableReader, UpstreamErrorSender};
use crate::metrics::{self, Metrics, RouteStats};
use crate::routing::pool::{Backend, Failure};
use crate::routing::Route;

/// What every proxy task (HTTP, HTTPS, TCP, the listener reconciler) reads and writes: the
/// table it routes by, the metrics it counts into, and where ejections go. Shared behind
/// one `Arc`, so a connection costs one reference count.
pub struct DataPlane {
    pub table: RouteTableReader,
    pub metrics: Metrics,
    /// Metric handles for requests that match no route (unknown Host, refused requests).
    pub unrouted: RouteStats,
    /// Tells the health monitor of each ejection, to watch the backend come back.
    pub ejections: EjectionSender,
    /// One entry per request and per TCP connection, while `[access_log]` is on.
    pub access_log: AccessLog,
    /// Where failed exchanges with backends go for the status page (never waits).
    pub upstream_errors: UpstreamErrorSender,
}

// === impl DataPlane ===

impl DataPlane {
    pub fn new(
        table: RouteTableReader,
        metrics: Metrics,
        ejections: EjectionSender,
        upstream_errors: UpstreamErrorSender,
    ) -> DataPlane {
        DataPlane {
            table,
            unrouted: metrics.route_stats(metrics::UNROUTED),
            access_log: AccessLog::new(metrics.access_log_dropped.clone()),
            metrics,
            ejections,
            upstream_errors,
        }
    }

    /// The same, writing to `log` (which `[access_log]` turns on and off).
    pub fn with_access_log(mut self, log: AccessLog) -> DataPlane {
        self.access_log = log;
        self
    }
}

/// Whose fault a failed request or connection was, for logs (and the access log): the
/// client's (a refused or broken request, a stall, an unknown host), the upstream side's (a
/// backend that failed, or a service with none to offer), or Drover's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Client,
    Upstream,
    Drover,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Client => "client",
            Fault::Upstream => "upstream",
            Fault::Drover => "drover",
        }
    }
}

/// Counts a failed exchange (connect error, timeout, 5xx) against `backend` and, when that
/// ejects it, logs and counts the ejection and hands it to the health monitor, which brings
/// the metrics back when the ejection ends.
pub fn note_failure(plane: &DataPlane, route: &Route, backend: &Arc<Backend>) {
    match route.pool.failed(backend) {
        Failure::Counted => {}
        Failure::Ejected(length) => {
            warn!(route = %route.name, backend = %backend.addr,
                ejected_for = %humantime::format_duration(length), "backend ejected");
            let m = &plane.metrics;
            m.backend_ejections.with_label_values(&[&route.name]).inc();
            m.backend_up
                .with_label_values(&[&route.name, &backend.addr.to_string()])
                .set(0);
            plane.ejections.send(&route.name, backend);
        }
        Failure::Capped => {
            warn!(route = %route.name, backend = %backend.addr,
                "backend keeps failing but half of the pool is ejected already; it stays in rotation");
        }
    }
}

/// How long a load balancer may take to send its PROXY header (the spec suggests >= 3 s).
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The client of a new connection. On a listener behind load balancers that speak the PROXY
/// protocol (`trusted` not empty): the address the header names, or `None` to close the
/// connection (a peer not in `trusted`, or a missing or malformed header); a header without
/// addresses (`LOCAL`, `UNKNOWN`: health checks) leaves the peer's own address. Elsewhere
/// nothing is read and the peer is the client.
pub async fn proxied_client<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    trusted: &[Cidr],
) -> Option<SocketAddr> {
    if trusted.is_empty() {
        return Some(peer);
    }
    if !is_trusted(trusted, peer.ip()) {
        debug!(%peer, "PROXY protocol listener: peer not trusted; closing");
        return None;
    }
    match proxy_protocol::read_header(stream, PROXY_HEADER_TIMEOUT).await {
        Ok(header) => Some(header.source.unwrap_or(peer)),
        Err(e) => {
            debug!(%peer, error = %e, "no valid PROXY header; closing");
            None
        }
    }
}
