//! The last upstream errors, for the status page: the proxies report each failed exchange
//! with a backend (connect refused, timeout, broken answer), a collector task keeps the
//! newest [`KEPT`], admin reads a copy.
//!
//! The data plane's side never waits and never locks: a report is a `try_send` into a
//! bounded channel, and when the collector is behind the report is dropped and only counted
//! (an atomic add), so an error storm costs the proxies nothing more than the storm itself.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::proxy::Fault;
use crate::shutdown::Shutdown;

/// How many errors the status page shows.
pub const KEPT: usize = 50;

/// Reports queued for the collector at most; more in one burst are dropped and counted.
const QUEUE: usize = 256;

/// One failed exchange with a backend.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamError {
    /// Wall-clock time of the failure (shown to people, so not a monotonic instant).
    pub at: SystemTime,
    pub route: String,
    /// The backend it failed on, when the reporter knows which one.
    pub backend: Option<SocketAddr>,
    pub fault: Fault,
    /// A short reason, e.g. "could not connect to any backend".
    pub reason: String,
}

/// The data plane's end. Cheap to clone.
#[derive(Clone)]
pub struct UpstreamErrorSender {
    tx: mpsc::Sender<UpstreamError>,
    dropped: Arc<AtomicU64>,
}

/// The collector: receives the reports and keeps the newest [`KEPT`]. Run it with
/// [`UpstreamErrorLog::run`]; hand out readers first.
pub struct UpstreamErrorLog {
    rx: mpsc::Receiver<UpstreamError>,
    kept: Arc<Mutex<VecDeque<UpstreamError>>>,
}

/// Reads the newest errors. Cheap to clone.
#[derive(Clone)]
pub struct UpstreamErrorsReader {
    // A lock, not a swap: only the collector and admin take it, never the data plane, and
    // the collector appends one record at a time.
    kept: Arc<Mutex<VecDeque<UpstreamError>>>,
    dropped: Arc<AtomicU64>,
}

/// A new sender, collector and reader.
pub fn upstream_errors() -> (UpstreamErrorSender, UpstreamErrorLog, UpstreamErrorsReader) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let kept = Arc::new(Mutex::new(VecDeque::with_capacity(KEPT)));
    let dropped = Arc::new(AtomicU64::new(0));
    (
        UpstreamErrorSender {
            tx,
            dropped: dropped.clone(),
        },
        UpstreamErrorLog {
            rx,
            kept: kept.clone(),
        },
        UpstreamErrorsReader { kept, dropped },
    )
}

// === impl UpstreamErrorSender ===

impl UpstreamErrorSender {
    /// Reports one failed exchange; never waits.
    pub fn report(
        &self,
        route: &str,
        backend: Option<SocketAddr>,
        fault: Fault,
        reason: impl std::fmt::Display,
    ) {
        let error = UpstreamError {
            at: SystemTime::now(),
            route: route.to_string(),
            backend,
            fault,
            reason: reason.to_string(),
        };
        // Full (a burst the collector has not caught up with) or closed (no collector, as
        // in some tests): the status page says how many it missed.
        if self.tx.try_send(error).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// === impl UpstreamErrorLog ===

impl UpstreamErrorLog {
    /// Collects until shutdown (or until every sender is gone).
    pub async fn run(mut self, shutdown: Shutdown) {
        loop {
            let error = tokio::select! {
                e = self.rx.recv() => e,
                _ = shutdown.triggered() => return,
            };
            let Some(error) = error else { return };
            let mut kept = lock(&self.kept);
            if kept.len() == KEPT {
                kept.pop_front();
            }
            kept.push_back(error);
        }
    }
}

// === impl UpstreamErrorsReader ===

impl UpstreamErrorsReader {
    /// The kept errors, newest first.
    pub fn newest_first(&self) -> Vec<UpstreamError> {
        lock(&self.kept).iter().rev().cloned().collect()
    }

    /// Reports dropped because the collector was behind (or absent), since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A poisoned lock only means a holder panicked mid-push; the ring is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lets the collector run until it has taken the report for `route`.
    async fn settle(reader: &UpstreamErrorsReader, route: &str) {
        for _ in 0..1000 {
            if reader
                .newest_first()
                .first()
                .is_some_and(|e| e.route == route)
            {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the collector did not take the report for {route}");
    }

    #[tokio::test]
    async fn keeps_the_newest_and_shows_them_first() {
        let (tx, log, reader) = upstream_errors();
        let shutdown = Shutdown::new();
        tokio::spawn(log.run(shutdown.clone()));
        let backend: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        for i in 0..(KEPT + 5) {
            let route = format!("r{i}");
            tx.report(&route, Some(backend), Fault::Upstream, "refused");
            // One at a time, so the bounded queue never fills in this test.
            settle(&reader, &route).await;
        }
        let shown = reader.newest_first();
        assert_eq!(shown.len(), KEPT);
        assert_eq!(shown[0].route, format!("r{}", KEPT + 4));
        assert_eq!(shown[KEPT - 1].route, "r5");
        assert_eq!(shown[0].backend, Some(backend));
        assert_eq!(reader.dropped(), 0);
        shutdown.trigger();
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        // No collector running: the queue fills and every report after it is counted.
        let (tx, _log, reader) = upstream_errors();
        for _ in 0..(QUEUE + 7) {
            tx.report("web", None, Fault::Upstream, "timeout");
        }
        assert_eq!(reader.dropped(), 7);
        assert!(reader.newest_first().is_empty());
    }
}
