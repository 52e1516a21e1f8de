//! Watching one file with notify, debounced. The file's directory is watched rather than the
//! file itself, so an editor's write-to-temp-then-rename (a new inode) is still seen.
//!
//! The debounce has a maximum wait: a burst ends after `QUIET` without events or `MAX_WAIT`
//! after its first event, whichever comes first. A file rewritten without pause is thus
//! still re-read every `MAX_WAIT`, instead of never (a plain quiet-time debounce restarts at
//! every event and starves under steady writes).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

/// How long a file must stay quiet before a burst of events counts as one change.
pub const QUIET: Duration = Duration::from_millis(150);
/// The longest a burst may put off its read, counted from its first event.
pub const MAX_WAIT: Duration = Duration::from_millis(500);

/// A running watch on one file; `changed` resolves once per settled burst of changes.
pub struct FileWatch {
    _watcher: Option<RecommendedWatcher>,
    events: mpsc::UnboundedReceiver<()>,
}

// === impl FileWatch ===

impl FileWatch {
    /// Starts watching `path` (`what` names it in logs). When its directory cannot be
    /// watched that is logged and `changed` never fires: SIGHUP still re-reads.
    pub fn start(path: &Path, what: &str) -> FileWatch {
        FileWatch::new(path).unwrap_or_else(|e| {
            warn!(file = %path.display(), error = %e, "cannot watch the {what}; changes need SIGHUP");
            let (_closed, events) = mpsc::unbounded_channel();
            FileWatch {
                _watcher: None,
                events,
            }
        })
    }

    /// Starts watching every file in the directory `dir` (`what` names it in logs); as
    /// `start`, a directory that cannot be watched is logged and only SIGHUP re-reads.
    pub fn start_dir(dir: &Path, what: &str) -> FileWatch {
        FileWatch::new_dir(dir).unwrap_or_else(|e| {
            warn!(dir = %dir.display(), error = %e, "cannot watch the {what}; changes need SIGHUP");
            let (_closed, events) = mpsc::unbounded_channel();
            FileWatch {
                _watcher: None,
                events,
            }
        })
    }

    /// Starts watching every file in `dir`. Fails if it cannot be watched.
    pub fn new_dir(dir: &Path) -> notify::Result<FileWatch> {
        let (tx, events) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(event) = res {
                    if !event.kind.is_access() {
                        let _ = tx.send(());
                    }
                }
            })?;
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        Ok(FileWatch {
            _watcher: Some(watcher),
            events,
        })
    }

    /// Starts watching `path`. Fails if its directory cannot be watched.
    pub fn new(path: &Path) -> notify::Result<FileWatch> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name: Option<OsString> = path.file_name().map(|n| n.to_os_string());
        let (tx, events) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                let Ok(event) = res else { return };
                if event.kind.is_access() {
                    return;
                }
                let ours = event
                    .paths
                    .iter()
                    .any(|p| p.file_name().map(|n| n.to_os_string()) == name);
                if ours {
                    let _ = tx.send(());
                }
            })?;
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        Ok(FileWatch {
            _watcher: Some(watcher),
            events,
        })
    }

    /// Waits for the next change, then for `QUIET` without events, but never longer than
    /// `MAX_WAIT` after that first event.
    pub async fn changed(&mut self) {
        if self.events.recv().await.is_none() {
            // The watcher is gone; never report a change again.
            return std::future::pending().await;
        }
        let deadline = Instant::now() + MAX_WAIT;
        loop {
            let until = (Instant::now() + QUIET).min(deadline);
            match tokio::time::timeout_at(until, self.events.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) | Err(_) => break,
            }
        }
        // Events already queued happened before the read the caller is about to make, so
        // that read covers them; only later events start the next burst.
        while self.events.try_recv().is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A watch fed by the test instead of notify.
    fn fake() -> (mpsc::UnboundedSender<()>, FileWatch) {
        let (tx, events) = mpsc::unbounded_channel();
        let watch = FileWatch {
            _watcher: None,
            events,
        };
        (tx, watch)
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_event_is_reported_after_the_quiet_time() {
        let (tx, mut watch) = fake();
        let start = Instant::now();
        tx.send(()).unwrap();
        watch.changed().await;
        assert_eq!(start.elapsed(), QUIET);
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_burst_is_one_change_after_its_last_event() {
        let (tx, mut watch) = fake();
        let start = Instant::now();
        tokio::spawn(async move {
            for _ in 0..3 {
                tx.send(()).unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            std::future::pending::<()>().await;
        });
        watch.changed().await;
        assert_eq!(start.elapsed(), Duration::from_millis(100) + QUIET);
        let again = tokio::time::timeout(Duration::from_secs(5), watch.changed()).await;
        assert!(again.is_err(), "one burst is one change");
    }

    #[tokio::test(start_paused = true)]
    async fn steady_events_are_still_reported_within_max_wait() {
        let (tx, mut watch) = fake();
        let start = Instant::now();
        let every = Duration::from_millis(50);
        // An event every 50 ms for 5 s: the quiet time never passes while it goes on.
        tokio::spawn(async move {
            for _ in 0..100 {
                tx.send(()).unwrap();
                tokio::time::sleep(every).await;
            }
            std::future::pending::<()>().await;
        });
        let mut reported = vec![];
        while let Ok(()) = tokio::time::timeout(Duration::from_secs(1), watch.changed()).await {
            reported.push(start.elapsed());
        }
        for k in 0..100 {
            let sent = every * k;
            let seen = reported.iter().find(|at| **at >= sent);
            assert!(
                seen.is_some_and(|at| *at - sent <= MAX_WAIT),
                "event at {sent:?} reported late: {reported:?}"
            );
        }
        let mut last = Duration::ZERO;
        for at in &reported {
            assert!(*at - last <= MAX_WAIT + every, "{reported:?}");
            last = *at;
        }
        // The writes end at 4.95 s: the last burst ends with its quiet time.
        assert!(last <= every * 99 + QUIET, "{reported:?}");
        assert!(
            reported.len() <= 12,
            "a change per burst, not per event: {reported:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_watch_never_reports() {
        let (tx, mut watch) = fake();
        drop(tx);
        let r = tokio::time::timeout(Duration::from_secs(60), watch.changed()).await;
        assert!(r.is_err());
    }
}
