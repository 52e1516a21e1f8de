//! What background tasks report for operators, shown by admin at `/debug/routes`: each
//! discovery source's last error, the health monitor's view, the service-port listeners.
//! None of it is read by the data plane.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::health::monitor::HealthStatus;

/// The last error of each discovery source that is failing now, by source name, so an
/// operator sees why a source is not updating. Held by whoever starts the sources, to hand
/// each one its [`SourceStatus`]. Not `Clone`.
#[derive(Default)]
pub struct SourceErrors {
    // A lock, not a swap: sources set their own entries, independently.
    by_source: Arc<Mutex<BTreeMap<&'static str, String>>>,
}

/// One source's write-only handle: its entry and nobody else's. Cheap to clone.
#[derive(Clone)]
pub struct SourceStatus {
    source: &'static str,
    by_source: Arc<Mutex<BTreeMap<&'static str, String>>>,
}

/// Reads every source's last error. Cheap to clone.
#[derive(Clone)]
pub struct SourceErrorsReader {
    by_source: Arc<Mutex<BTreeMap<&'static str, String>>>,
}

/// What the health monitor knows (each alias's leader, each checked backend's state and
/// last probe), published whole by the monitor. Not `Clone`.
pub struct HealthStatusWriter {
    status: Arc<ArcSwap<HealthStatus>>,
}

#[derive(Clone)]
pub struct HealthStatusReader {
    status: Arc<ArcSwap<HealthStatus>>,
}

/// Service-port listeners by address: "open", or why the bind failed. Published whole by
/// `proxy::listeners`. Not `Clone`.
pub struct ListenerStatusWriter {
    states: Arc<ArcSwap<BTreeMap<SocketAddr, String>>>,
}

#[derive(Clone)]
pub struct ListenerStatusReader {
    states: Arc<ArcSwap<BTreeMap<SocketAddr, String>>>,
}

// === impl SourceErrors ===

impl SourceErrors {
    pub fn new() -> SourceErrors {
        SourceErrors::default()
    }

    /// The handle `source` reports through.
    pub fn status(&self, source: &'static str) -> SourceStatus {
        SourceStatus {
            source,
            by_source: self.by_source.clone(),
        }
    }

    pub fn reader(&self) -> SourceErrorsReader {
        SourceErrorsReader {
            by_source: self.by_source.clone(),
        }
    }
}

// === impl SourceStatus ===

impl SourceStatus {
    /// Records why the source's last read failed.
    pub fn failed(&self, error: impl Into<String>) {
        lock(&self.by_source).insert(self.source, error.into());
    }

    /// Clears the error: the last read was good (or the source is off).
    pub fn ok(&self) {
        lock(&self.by_source).remove(self.source);
    }
}

// === impl SourceErrorsReader ===

impl SourceErrorsReader {
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        lock(&self.by_source)
            .iter()
            .map(|(source, error)| (source.to_string(), error.clone()))
            .collect()
    }
}

/// A poisoned lock only means a holder panicked mid-update; the map is still usable, and a
/// status report should show it rather than fail.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// === impl HealthStatusWriter ===

impl HealthStatusWriter {
    /// Nothing known yet.
    pub fn new() -> HealthStatusWriter {
        HealthStatusWriter {
            status: Arc::default(),
        }
    }

    pub fn reader(&self) -> HealthStatusReader {
        HealthStatusReader {
            status: self.status.clone(),
        }
    }

    pub fn publish(&self, status: HealthStatus) {
        self.status.store(Arc::new(status));
    }
}

impl Default for HealthStatusWriter {
    fn default() -> HealthStatusWriter {
        HealthStatusWriter::new()
    }
}

// === impl HealthStatusReader ===

impl HealthStatusReader {
    pub fn load_full(&self) -> Arc<HealthStatus> {
        self.status.load_full()
    }
}

// === impl ListenerStatusWriter ===

impl ListenerStatusWriter {
    /// No listeners yet.
    pub fn new() -> ListenerStatusWriter {
        ListenerStatusWriter {
            states: Arc::default(),
        }
    }

    pub fn reader(&self) -> ListenerStatusReader {
        ListenerStatusReader {
            states: self.states.clone(),
        }
    }

    pub fn publish(&self, states: BTreeMap<SocketAddr, String>) {
        self.states.store(Arc::new(states));
    }
}

impl Default for ListenerStatusWriter {
    fn default() -> ListenerStatusWriter {
        ListenerStatusWriter::new()
    }
}

// === impl ListenerStatusReader ===

impl ListenerStatusReader {
    pub fn load_full(&self) -> Arc<BTreeMap<SocketAddr, String>> {
        self.states.load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_writes_only_its_own_entry() {
        let errors = SourceErrors::new();
        let (marathon, mesos) = (errors.status("marathon"), errors.status("mesos"));
        let reader = errors.reader();
        marathon.failed("connection refused");
        mesos.failed(String::from("no leader"));
        mesos.ok();
        let shown = reader.snapshot();
        assert_eq!(shown.len(), 1);
        assert_eq!(shown["marathon"], "connection refused");
    }
}
