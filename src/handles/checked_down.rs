//! The backends Drover's active health checks prove down, for DNS's `healthy_only`: the
//! health monitor publishes the whole set whenever a check changes it; `control` recompiles
//! the zone from it.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

/// The set, as one value replaced whole.
pub type CheckedDown = Arc<BTreeSet<SocketAddr>>;

/// Held by the health monitor. Not `Clone`.
pub struct CheckedDownWriter {
    tx: watch::Sender<CheckedDown>,
}

/// What `control` follows.
pub type CheckedDownReceiver = watch::Receiver<CheckedDown>;

// === impl CheckedDownWriter ===

impl CheckedDownWriter {
    /// Nothing down.
    pub fn new() -> CheckedDownWriter {
        CheckedDownWriter {
            tx: watch::Sender::new(Arc::default()),
        }
    }

    pub fn subscribe(&self) -> CheckedDownReceiver {
        self.tx.subscribe()
    }

    /// Publishes `down`; followers wake only when it differs from what they have.
    pub fn publish(&self, down: BTreeSet<SocketAddr>) {
        self.tx.send_if_modified(|current| {
            if **current == down {
                return false;
            }
            *current = Arc::new(down);
            true
        });
    }
}

impl Default for CheckedDownWriter {
    fn default() -> CheckedDownWriter {
        CheckedDownWriter::new()
    }
}
