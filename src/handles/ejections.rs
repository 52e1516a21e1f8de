//! Backends the data plane ejected, sent to the health monitor, which watches them come back
//! (logs and `drover_backend_up`). A send takes no lock, so no request waits on the monitor.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::routing::pool::Backend;

/// A backend the data plane ejected, with its route's name.
pub type Ejection = (String, Arc<Backend>);

/// The data plane's end. Cheap to clone.
#[derive(Clone)]
pub struct EjectionSender {
    tx: mpsc::UnboundedSender<Ejection>,
}

/// The health monitor's end.
pub type EjectionReceiver = mpsc::UnboundedReceiver<Ejection>;

/// A new channel for ejections.
pub fn ejections() -> (EjectionSender, EjectionReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (EjectionSender { tx }, rx)
}

// === impl EjectionSender ===

impl EjectionSender {
    /// Tells the health monitor that `backend` of `route` was ejected.
    pub fn send(&self, route: &str, backend: &Arc<Backend>) {
        // Without a monitor (some tests) nobody listens; the ejection still ends on time.
        let _ = self.tx.send((route.to_string(), backend.clone()));
    }
}
