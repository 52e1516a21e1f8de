//! The access log (`[access_log]`): one line per HTTP request and per TCP connection.
//!
//! The data plane never waits on it: the request's own thread formats its line (`format`,
//! straight from what the request kept, into one buffer) and puts it into a bounded queue
//! with `try_send`; when the queue is full the line is dropped and counted
//! (`drover_access_log_dropped_total`). One writer thread writes the lines in batches. A file is reopened on `reopen` (SIGUSR1) and when it has
//! been moved away or deleted (logrotate without `copytruncate`), checked once a second.
//! The file is opened by the writer thread too, so a path that blocks on open (a FIFO
//! nobody reads, a hung network file system) stalls only the writer.

pub mod format;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use prometheus::IntCounter;
use tracing::{info, warn};

use crate::config::Config;
use crate::shutdown::Shutdown;

pub use format::{FaultNote, Format, HttpLine, TcpLine, TlsNote};

/// Lines waiting for the writer; more are dropped. About 8 MiB of lines at most.
const QUEUE: usize = 16 * 1024;

/// Room for a usual line, so formatting one seldom grows its buffer.
const LINE_CAPACITY: usize = 512;

thread_local! {
    /// Each thread's time texts of the current second.
    static STAMPS: std::cell::RefCell<format::Stamps> = Default::default();
}

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
    queue: SyncSender<Vec<u8>>,
    reopen: Arc<AtomicBool>,
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

    /// Formats a line with `format_line` on this thread and queues it, or drops and counts
    /// it when the writer is behind.
    fn write(&self, format_line: impl FnOnce(&mut Vec<u8>, Format, &mut format::Stamps)) {
        let sink = self.sink.load();
        let Some(sink) = sink.as_ref() else { return };
        let mut line = Vec::with_capacity(LINE_CAPACITY);
        STAMPS.with_borrow_mut(|stamps| format_line(&mut line, sink.config.format, stamps));
        match sink.queue.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.inc();
            }
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
        let (queue, rx) = mpsc::sync_channel(QUEUE);
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            target: config.target.clone(),
            reopen: reopen.clone(),
            warned: None,
        };
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run(rx))?;
        self.sink.store(Some(Arc::new(Sink {
            config: config.clone(),
            queue,
            reopen,
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
    fn run(mut self, rx: Receiver<Vec<u8>>) {
        let mut out = self.open();
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut checked = std::time::Instant::now();
        loop {
            match rx.recv_timeout(MOVED_CHECK) {
                Ok(line) => {
                    buf.extend_from_slice(&line);
                    // Everything already queued goes in the same write.
                    while buf.len() < 60 * 1024 {
                        let Ok(line) = rx.try_recv() else { break };
                        buf.extend_from_slice(&line);
                    }
                    self.write(&mut out, &buf);
                    buf.clear();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
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
