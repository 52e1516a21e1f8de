//! [`Zk`]: starts one follower per election URL and shares its view between every user
//! (the Mesos source and any number of aliases may name the same path); lists the views
//! for `/debug/routes`, `/readyz` and the status page. A follower stops once nobody holds
//! its view, so a URL removed from the config stops being watched.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::Instrument;

use super::follow::{self, ZkView};
use super::ZkUrl;
use crate::metrics::Metrics;

/// Where one follower publishes its view.
type ViewSender = Arc<watch::Sender<Arc<ZkView>>>;

/// The followers, by URL. Cheap to clone; every clone shares them.
#[derive(Clone)]
pub struct Zk {
    metrics: Metrics,
    followers: Arc<Mutex<BTreeMap<String, ViewSender>>>,
}

// === impl Zk ===

impl Zk {
    pub fn new(metrics: Metrics) -> Zk {
        Zk {
            metrics,
            followers: Arc::default(),
        }
    }

    /// The view of `url`, starting its follower (on the current runtime) when nobody
    /// follows it yet.
    pub fn follow(&self, url: &ZkUrl) -> watch::Receiver<Arc<ZkView>> {
        let key = url.to_string();
        let mut followers = lock(&self.followers);
        // A follower with no receivers is stopping (or stopped): never join it.
        if let Some(tx) = followers.get(&key).filter(|tx| tx.receiver_count() > 0) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(Arc::new(ZkView::default()));
        let tx = Arc::new(tx);
        followers.insert(key.clone(), tx.clone());
        tokio::spawn(
            follow::run(url.clone(), tx, self.metrics.clone())
                .instrument(tracing::info_span!("zk", url = %key)),
        );
        rx
    }

    /// Every followed URL with its view, by URL.
    pub fn views(&self) -> Vec<(String, Arc<ZkView>)> {
        let mut followers = lock(&self.followers);
        followers.retain(|_, tx| tx.receiver_count() > 0);
        followers
            .iter()
            .map(|(url, tx)| (url.clone(), tx.borrow().clone()))
            .collect()
    }
}

/// A poisoned lock only means a holder panicked mid-insert; the map is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
