//! The access log (`[access_log]`): one line per HTTP request and per TCP connection.
//!
//! The data plane never waits on it: the request's own thread formats its line (`format`,
//! straight from what the request kept) at the end of its thread's buffer (a shard; one
//! lock that only that thread and, every 100 ms, the writer take). One writer thread takes
//! each shard's lines whole and writes them; a shard over 64 KiB wakes it early. A shard
//! that has reached 2 MiB means the writer is stuck (a disk that stalls): further lines are
//! dropped and counted (`drover_access_log_dropped_total`) until it catches up. A file is reopened on `reopen` (SIGUSR1) and when it has
//! been moved away or deleted (logrotate without `copytruncate`), checked once a second.
//! The file is opened by the writer thread too, so a path that blocks on open (a FIFO
//! nobody reads, a hung network file system) stalls only the writer.

pub mod format;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use prometheus::IntCounter;
use tracing::{info, warn};

use crate::config::Config;
use crate::shutdown::Shutdown;

pub use format::{FaultNote, Format, HttpLine, TcpLine, TlsNote};

/// Buffers lines are appended to, one per thread (threads beyond this share).
const SHARDS: usize = 8;

/// How long a line may wait in its shard before the writer takes it.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// A shard this full wakes the writer at once.
const WAKE_AT: usize = 64 * 1024;

/// A shard this full means the writer is stuck: further lines are dropped (and counted).
const SHARD_MAX: usize = 2 * 1024 * 1024;

/// How long `close` waits for the writer's last write.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

thread_local! {
    /// Each thread's time texts of the current second.
    static STAMPS: std::cell::RefCell<format::Stamps> = Default::default();
    /// Each thread's shard, handed out in turn.
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

/// The buffers lines wait in, shared by the data plane and the writer.
type Shards = [Mutex<Vec<u8>>; SHARDS];

/// How often the writer looks whether its file was moved away.
const MOVED_CHECK: Duration = Duration::from_secs(1);

/// Least time between two warnings about failed writes.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

/// `[access_log]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub target: Target,
    pub format: Format,
}

/// The data plane's handle: cheap to clone, one atomic load per entry.
#[derive(Clone)]
pub struct AccessLog {
    sink: Arc<ArcSwapOption<Sink>>,
    dropped: IntCounter,
}

/// One running writer. Dropping the last `Sink` ends its thread after it wrote the rest.
struct Sink {
    config: AccessLogConfig,
    shards: Arc<Shards>,
    /// Wakes the writer before its next tick; dropped, it tells the writer to finish.
    wake: SyncSender<()>,
    reopen: Arc<AtomicBool>,
    /// Said by the writer once it wrote its last lines and ended.
    done: Mutex<Receiver<()>>,
}

impl AccessLog {
    /// A log that is off until `configure` turns it on; `dropped` counts lost entries.
    pub fn new(dropped: IntCounter) -> AccessLog {
        AccessLog {
            sink: Arc::new(ArcSwapOption::empty()),
            dropped,
        }
    }

    /// Whether entries are wanted: the data plane builds none while the log is off.
    pub fn enabled(&self) -> bool {
        self.sink.load().is_some()
    }

    /// Formats and queues the line of one HTTP request.
    pub fn http(&self, line: &HttpLine) {
        self.write(|out, format, stamps| format::http_line(out, line, format, stamps));
    }

    /// Formats and queues the line of one TCP connection.
    pub fn tcp(&self, line: &TcpLine) {
        self.write(|out, format, stamps| format::tcp_line(out, line, format, stamps));
    }

    /// Formats a line with `format_line` at the end of this thread's shard, or drops and
    /// counts it when the writer is stuck.
    fn write(&self, format_line: impl FnOnce(&mut Vec<u8>, Format, &mut format::Stamps)) {
        let sink = self.sink.load();
        let Some(sink) = sink.as_ref() else { return };
        let shard = &sink.shards[SHARD.with(|s| *s)];
        let mut buf = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = buf.len();
        if before >= SHARD_MAX {
            drop(buf);
            self.dropped.inc();
            return;
        }
        STAMPS.with_borrow_mut(|stamps| format_line(&mut buf, sink.config.format, stamps));
        let wake = before < WAKE_AT && buf.len() >= WAKE_AT;
        drop(buf);
        if wake {
            // Full means a wake is already pending.
            let _ = sink.wake.try_send(());
        }
    }

    /// Turns the log off and waits (up to 2 s) for the writer to write what it has: at
    /// exit, so the last lines are not lost.
    pub fn close(&self) {
        let Some(sink) = self.sink.swap(None) else {
            return;
        };
        let done = std::mem::replace(
            &mut *sink.done.lock().unwrap_or_else(|p| p.into_inner()),
            mpsc::channel().1,
        );
        // The writer finishes once the last reference to its sink is gone.
        drop(sink);
        if done.recv_timeout(CLOSE_WAIT) == Err(RecvTimeoutError::Timeout) {
            warn!("the access log writer did not finish in time; its last lines may be lost");
        }
    }

    /// Reopens the file (SIGUSR1, after a rotation).
    pub fn reopen(&self) {
        if let Some(sink) = self.sink.load().as_ref() {
            sink.reopen.store(true, Ordering::Release);
        }
    }

    /// Applies `[access_log]` (`None`: off). The same settings keep the running writer; new
    /// ones start a writer of their own, and the old one ends once it wrote what it had.
    pub fn configure(&self, config: Option<&AccessLogConfig>) -> std::io::Result<()> {
        let current = self.sink.load();
        if current.as_ref().map(|s| &s.config) == config {
            return Ok(());
        }
        let Some(config) = config else {
            self.sink.store(None);
            info!("access log off");
            return Ok(());
        };
        let (wake, wakes) = mpsc::sync_channel(1);
        let (done_tx, done) = mpsc::channel();
        let reopen = Arc::new(AtomicBool::new(false));
        let shards: Arc<Shards> = Arc::new(std::array::from_fn(|_| Mutex::new(Vec::new())));
        let writer = Writer {
            target: config.target.clone(),
            reopen: reopen.clone(),
            warned: None,
        };
        let taken = shards.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                writer.run(&taken, wakes);
                let _ = done_tx.send(());
            })?;
        self.sink.store(Some(Arc::new(Sink {
            config: config.clone(),
            shards,
            wake,
            reopen,
            done: Mutex::new(done),
        })));
        match &config.target {
            Target::Stdout => info!(format = %config.format, "access log to stdout"),
            Target::File(path) => {
                info!(path = %path.display(), format = %config.format, "access log to a file")
            }
        }
        Ok(())
    }
}

/// Applies `[access_log]` from every config the reloader publishes, until shutdown. A
/// writer that cannot start leaves the log as it was (logged).
pub async fn follow_config(
    log: AccessLog,
    mut config: tokio::sync::watch::Receiver<Arc<Config>>,
    shutdown: Shutdown,
) {
    loop {
        let wanted = config.borrow_and_update().access_log.clone();
        if let Err(e) = log.configure(wanted.as_ref()) {
            warn!(error = %e, "cannot start the access log writer; keeping the log as it was");
        }
        tokio::select! {
            changed = config.changed() => if changed.is_err() { return },
            _ = shutdown.triggered() => return,
        }
    }
}

/// The writer thread's state.
struct Writer {
    target: Target,
    reopen: Arc<AtomicBool>,
    /// When a failed write was last logged.
    warned: Option<std::time::Instant>,
}

/// An open output.
enum Output {
    Stdout,
    File(File),
    /// The file could not be opened; retried at the next check.
    Closed,
}

impl Writer {
    // A plain thread, outside any runtime: its own clock and blocking waits.
    #[allow(clippy::disallowed_methods)]
    fn run(mut self, shards: &Shards, wakes: Receiver<()>) {
        let mut out = self.open();
        let mut spare: Vec<u8> = Vec::new();
        let mut checked = std::time::Instant::now();
        loop {
            let last = matches!(
                wakes.recv_timeout(FLUSH_EVERY),
                Err(RecvTimeoutError::Disconnected)
            );
            for shard in shards {
                // Only a swap under the lock: the data plane is never kept waiting on I/O.
                std::mem::swap(
                    &mut *shard.lock().unwrap_or_else(|p| p.into_inner()),
                    &mut spare,
                );
                if !spare.is_empty() {
                    self.write(&mut out, &spare);
                    spare.clear();
                }
                // A burst's big buffer is not kept for ever.
                if spare.capacity() > 4 * WAKE_AT {
                    spare = Vec::new();
                }
            }
            if last {
                return;
            }
            let asked = self.reopen.swap(false, Ordering::AcqRel);
            if asked || checked.elapsed() >= MOVED_CHECK {
                checked = std::time::Instant::now();
                if asked || self.moved(&out) {
                    out = self.open();
                }
            }
        }
    }

    fn open(&self) -> Output {
        match &self.target {
            Target::Stdout => Output::Stdout,
            Target::File(path) => match open_append(path) {
                Ok(file) => Output::File(file),
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "cannot open the access log; lines are lost until it opens");
                    Output::Closed
                }
            },
        }
    }

    /// Whether the path no longer names the open file (moved, deleted, or never opened).
    fn moved(&self, out: &Output) -> bool {
        let (Target::File(path), Output::File(file)) = (&self.target, out) else {
            return matches!(out, Output::Closed);
        };
        match (std::fs::metadata(path), file.metadata()) {
            (Ok(at_path), Ok(open)) => (at_path.dev(), at_path.ino()) != (open.dev(), open.ino()),
            _ => true,
        }
    }

    // The warning's clock, on this plain thread.
    #[allow(clippy::disallowed_methods)]
    fn write(&mut self, out: &mut Output, bytes: &[u8]) {
        let result = match out {
            Output::Stdout => std::io::stdout().lock().write_all(bytes),
            Output::File(file) => file.write_all(bytes),
            Output::Closed => return,
        };
        if let Err(e) = result {
            // A full disk fails every write: say so once in a while, not per batch.
            if self.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                self.warned = Some(std::time::Instant::now());
                warn!(error = %e, "access log write failed; lines lost");
            }
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests;
