//! The data plane: the HTTP router, the TCP proxy and the reconciler that opens and closes
//! service-port listeners. Everything here reads the route table; nothing writes it.

pub mod http;
pub mod listeners;
pub mod tcp;
pub mod tls;

use std::sync::Arc;

use tracing::warn;

use crate::routing::pool::{Backend, Failure};
use crate::routing::Route;
use crate::Shared;

/// Counts a failed exchange (connect error, timeout, 5xx) against `backend` and, when that
/// ejects it, logs and counts the ejection and hands it to the health monitor, which brings
/// the metrics back when the ejection ends.
pub fn note_failure(shared: &Shared, route: &Route, backend: &Arc<Backend>) {
    match route.pool.failed(backend) {
        Failure::Counted => {}
        Failure::Ejected(length) => {
            warn!(route = %route.name, backend = %backend.addr,
                ejected_for = %humantime::format_duration(length), "backend ejected");
            let m = &shared.metrics;
            m.backend_ejections.with_label_values(&[&route.name]).inc();
            m.backend_up
                .with_label_values(&[&route.name, &backend.addr.to_string()])
                .set(0);
            shared.note_ejected(&route.name, backend);
        }
        Failure::Capped => {
            warn!(route = %route.name, backend = %backend.addr,
                "backend keeps failing but half of the pool is ejected already; it stays in rotation");
        }
    }
}
