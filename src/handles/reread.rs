//! Asking every source and the config to be read again now: what SIGHUP does, and admin's
//! `/_mlb_signal/hup`. The config reload, the catalog file, the certificates, Marathon (a
//! full re-read) and Mesos (a poll) each hold a receiver and act on every request.

use std::sync::Arc;

use tokio::sync::watch;

/// Requests re-reads; cheap to clone, every clone asks the same readers. A request made
/// while the readers are busy is not lost: each reader sees at least one change after it.
#[derive(Clone, Debug)]
pub struct Reread {
    tx: Arc<watch::Sender<()>>,
}

// === impl Reread ===

impl Reread {
    pub fn new() -> Reread {
        let (tx, _) = watch::channel(());
        Reread { tx: Arc::new(tx) }
    }

    /// Asks every reader to re-read now.
    pub fn request(&self) {
        self.tx.send_replace(());
    }

    /// A receiver for one re-reading task: `changed()` resolves on each request made after
    /// this call (and errs once every `Reread` is dropped).
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.tx.subscribe()
    }
}

impl Default for Reread {
    fn default() -> Reread {
        Reread::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_reader_sees_a_request() {
        let reread = Reread::new();
        let (mut a, mut b) = (reread.subscribe(), reread.subscribe());
        assert!(!a.has_changed().expect("open"), "nothing asked yet");
        reread.clone().request();
        a.changed().await.expect("open");
        b.changed().await.expect("open");
        drop(reread);
        assert!(
            a.changed().await.is_err(),
            "closed once every Reread is gone"
        );
    }
}
