//! Watching one file with notify, debounced. The file's directory is watched rather than the
//! file itself, so an editor's write-to-temp-then-rename (a new inode) is still seen.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::warn;

/// How long a file must stay quiet before a burst of events counts as one change.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

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

    /// Waits for the next change, then for `DEBOUNCE` of quiet.
    pub async fn changed(&mut self) {
        if self.events.recv().await.is_none() {
            // The watcher is gone; never report a change again.
            return std::future::pending().await;
        }
        while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, self.events.recv()).await {}
    }
}
