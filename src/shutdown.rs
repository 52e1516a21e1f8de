//! One shutdown signal for the whole process, and the drain that follows it: listeners stop
//! accepting when the signal fires, tracked requests and connections get until a deadline to
//! finish.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Cheap to clone; every clone sees the same signal and tracks into the same set.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

// === impl Shutdown ===

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Starts the shutdown: accept loops stop, connections are asked to finish.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once the shutdown has started.
    pub async fn triggered(&self) {
        self.token.cancelled().await
    }

    /// A token cancelled by the shutdown (or earlier, by whoever holds the child).
    pub fn child_token(&self) -> CancellationToken {
        self.token.child_token()
    }

    /// Wraps a connection or request future so the drain waits for it.
    pub fn track<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> {
        self.tracker.track_future(fut)
    }

    /// How many tracked futures are still running.
    pub fn in_flight(&self) -> usize {
        self.tracker.len()
    }

    /// Waits until every tracked future is done or `deadline` passes; true if all finished.
    pub async fn drain(&self, deadline: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
    }
}
