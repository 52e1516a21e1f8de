//! Accepting client connections without falling over. Each listener has a `Gate`:
//! - at most `limit` connections are open at once; beyond that Drover stops calling
//!   `accept`, so new connections wait in the kernel's backlog (and are refused by the
//!   kernel once it is full) instead of costing memory and descriptors;
//! - a failed accept (out of file descriptors, above all) is counted, waited out with a
//!   pause that doubles up to a second, and logged at most once per `LOG_EVERY` with the
//!   number of failures in between: never a busy loop, never a flood of lines, never an
//!   exit.
//!
//! One gate serves every worker thread's accept loop on the same listener.
//!
//! Every worker accepts on the same socket, so a burst of new connections lands mostly on
//! whichever worker wakes first, and keep-alive connections stay where they landed (with
//! 2 workers and 64 connections, one worker was seen doing 90 % of the work). A `Spread`
//! evens this out: a worker holding more than `SLACK` of the listener's open connections
//! beyond the least loaded worker hands the connection it accepts to that one
//! (`Place::dispatch`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// First pause after a failed accept, and the longest.
const PAUSE_FIRST: Duration = Duration::from_millis(10);
const PAUSE_MAX: Duration = Duration::from_secs(1);

/// Shortest time between two log lines about failed accepts on one listener.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The connection cap and accept-error handling of one listener.
pub struct Gate {
    name: String,
    slots: Arc<Semaphore>,
    open: IntGauge,
    waits: IntCounter,
    errors: IntCounter,
    /// Failed accepts are rare: a lock here costs nothing a connection waits on.
    log: Mutex<Throttle>,
}

/// A connection's place under its listener's cap, counted in the open gauge; dropping it
/// frees the place.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl Slot {
    pub fn new(permit: OwnedSemaphorePermit, open: IntGauge) -> Slot {
        open.inc();
        Slot {
            _permit: permit,
            open,
        }
    }
}

/// At most one log line per `every`, saying how many were held back since the last one.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    next: Option<Instant>,
    held: u64,
}

impl Throttle {
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            next: None,
            held: 0,
        }
    }

    /// `Some(held back since the last one)` when a line may be logged at `now`.
    pub fn pass(&mut self, now: Instant) -> Option<u64> {
        if self.next.is_some_and(|next| now < next) {
            self.held += 1;
            return None;
        }
        self.next = Some(now + self.every);
        Some(std::mem::take(&mut self.held))
    }
}

/// A listening socket the gate accepts from.
pub trait Listen {
    type Stream;
    /// The next connection, with `TCP_NODELAY` set. Cancel-safe.
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Stream, SocketAddr)>> + Send;
}

impl Listen for TcpListener {
    type Stream = TcpStream;

    async fn accept(&self) -> std::io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, peer))
    }
}

/// A connection that can move to another worker's reactor: out as a plain socket, in again.
pub trait Handoff: Sized + Send + 'static {
    fn detach(self) -> std::io::Result<std::net::TcpStream>;
    fn attach(std: std::net::TcpStream) -> std::io::Result<Self>;
}

impl Handoff for TcpStream {
    fn detach(self) -> std::io::Result<std::net::TcpStream> {
        self.into_std()
    }

    fn attach(std: std::net::TcpStream) -> std::io::Result<TcpStream> {
        TcpStream::from_std(std)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl Gate {
    /// A gate for the listener `name` (the metrics' `listener` label) with `limit` slots.
    pub fn new(name: &str, limit: usize, metrics: &Metrics) -> Arc<Gate> {
        Arc::new(Gate {
            name: name.to_string(),
            slots: Arc::new(Semaphore::new(limit.max(1))),
            open: metrics.connections_open.with_label_values(&[name]),
            waits: metrics.connection_limit_waits.with_label_values(&[name]),
            errors: metrics.accept_errors.with_label_values(&[name]),
            log: Mutex::new(Throttle::new(LOG_EVERY)),
        })
    }

    /// Waits for a free slot, then for the next connection (with `TCP_NODELAY` set).
    /// Failed accepts are handled here, so this only returns a connection. Cancel-safe.
    pub async fn accept<L: Listen>(&self, listener: &L) -> (L::Stream, SocketAddr, Slot) {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                self.waits.inc();
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed")
            }
        };
        let mut pause = PAUSE_FIRST;
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => return (stream, peer, Slot::new(permit, self.open.clone())),
                // The client gave up between its SYN and our accept: nothing is wrong here.
                Err(e) if is_peer_error(&e) => continue,
                Err(e) => {
                    self.errors.inc();
                    self.log_failure(&e);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(PAUSE_MAX);
                }
            }
        }
    }

    /// Logs a failed accept unless one was logged less than `LOG_EVERY` ago.
    fn log_failure(&self, e: &std::io::Error) {
        let passed = self
            .log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pass(Instant::now());
        if let Some(since) = passed {
            warn!(
                listener = %self.name,
                error = %e,
                "accept failed ({since} more since the last report; retrying with a pause, next report in {}s at the earliest)",
                LOG_EVERY.as_secs()
            );
        }
    }
}

/// How many more open connections the accepting worker may hold than the least loaded one
/// before it hands a new connection over. Handing over costs a few system calls (the socket
/// leaves one worker's epoll for the other's, and the other is woken), so small differences
/// stay where they are.
const SLACK: usize = 1;

/// The worker threads that accept on one listener, and how many of its connections each
/// serves now.
pub struct Spread {
    workers: Vec<Handle>,
    open: Box<[Count]>,
}

/// One worker's count, alone on its cache line: each worker writes its own per connection.
#[repr(align(64))]
struct Count(AtomicUsize);

/// A connection's place in its worker's count; dropping it takes it out.
pub struct Share {
    spread: Arc<Spread>,
    worker: usize,
}

impl Drop for Share {
    fn drop(&mut self) {
        self.spread.open[self.worker].0.fetch_sub(1, Relaxed);
    }
}

impl Spread {
    /// A spread over `workers` (index = the worker's number).
    pub fn new(workers: Vec<Handle>) -> Arc<Spread> {
        let open = workers.iter().map(|_| Count(AtomicUsize::new(0))).collect();
        Arc::new(Spread { workers, open })
    }

    /// Which worker serves a connection that worker `me` accepted, counted in its share.
    pub fn place(self: &Arc<Self>, me: usize) -> (usize, Share) {
        let worker = if self.open.len() < 2 {
            me
        } else {
            least_loaded(self.open.len(), |i| self.open[i].0.load(Relaxed), me)
        };
        self.open[worker].0.fetch_add(1, Relaxed);
        let share = Share {
            spread: self.clone(),
            worker,
        };
        (worker, share)
    }

    /// The runtime of worker `i`.
    pub fn worker(&self, i: usize) -> &Handle {
        &self.workers[i]
    }
}

/// `me`, unless it holds more than `SLACK` connections beyond the least loaded worker:
/// then that one (the first of equals).
/// Where an accept loop runs: its worker's number among the listener's `spread`.
#[derive(Clone)]
pub struct Place {
    pub spread: Arc<Spread>,
    pub me: usize,
}

impl Place {
    /// Runs `serve` on an accepted connection, as a task tracked by `shutdown`, on the worker
    /// the spread picks: this one, or another one the socket is handed to (a registered
    /// socket leaves this worker's epoll for that one's). `slot` is held until the
    /// connection ends.
    pub fn dispatch<S, F, Fut>(&self, stream: S, slot: Slot, shutdown: &Shutdown, serve: F)
    where
        S: Handoff,
        F: FnOnce(S) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (worker, share) = self.spread.place(self.me);
        if worker == self.me {
            // Boxed: the task holds a pointer instead of the connection's whole state, which
            // tokio would otherwise copy on spawn and again when the task ends.
            tokio::spawn(Box::pin(shutdown.track(async move {
                let _held = (slot, share);
                serve(stream).await
            })));
            return;
        }
        let std = match stream.detach() {
            Ok(std) => std,
            Err(e) => {
                debug!(error = %e, "cannot hand a connection to another worker; closing");
                return;
            }
        };
        self.spread
            .worker(worker)
            .spawn(Box::pin(shutdown.track(async move {
                let _held = (slot, share);
                match S::attach(std) {
                    Ok(stream) => serve(stream).await,
                    Err(e) => debug!(error = %e, "cannot take over a handed connection; closing"),
                }
            })));
    }
}

/// `count(i)` is worker `i`'s open connections, for `i` in `0..workers`.
fn least_loaded(workers: usize, count: impl Fn(usize) -> usize, me: usize) -> usize {
    let Some((least, fewest)) = (0..workers).map(|i| (i, count(i))).min_by_key(|&(_, n)| n) else {
        return me;
    };
    if me < workers && count(me) > fewest + SLACK {
        least
    } else {
        me
    }
}

/// Connections the kernel queues for a listener before Drover accepts them. std binds
/// with 128, too few for a burst at `max_connections`; the kernel caps it at
/// `net.core.somaxconn` (4096 on current kernels).
pub const BACKLOG: i32 = 1024;

/// Raises a bound listener's backlog to `BACKLOG` (listening again on a listening socket
/// only changes its backlog).
pub fn deepen_backlog(listener: &std::net::TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: listen(2) on a socket this process owns and keeps open.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// An accept error about the one connection (the peer left), not about Drover.
pub fn is_peer_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_keeps_its_connection_unless_clearly_ahead() {
        let pick = |counts: &[usize], me| least_loaded(counts.len(), |i| counts[i], me);
        assert_eq!(pick(&[0, 0], 0), 0);
        assert_eq!(pick(&[1, 0], 0), 0, "one ahead: within the slack");
        assert_eq!(pick(&[2, 0], 0), 1, "two ahead: to the least loaded");
        assert_eq!(pick(&[5, 9, 3], 1), 2);
        assert_eq!(pick(&[7], 0), 0);
    }

    #[tokio::test]
    async fn shares_count_until_dropped_and_even_out_a_burst() {
        let handle = Handle::current();
        let spread = Spread::new(vec![handle.clone(), handle]);
        // Worker 0 accepts a burst of 64 alone: the spread sends about half to worker 1.
        let shares: Vec<(usize, Share)> = (0..64).map(|_| spread.place(0)).collect();
        let on_1 = shares.iter().filter(|(w, _)| *w == 1).count();
        assert!((31..=33).contains(&on_1), "{on_1} of 64 on worker 1");
        drop(shares);
        assert!(spread.open.iter().all(|c| c.0.load(Relaxed) == 0));
    }

    /// Two worker threads with a current-thread runtime each, as `server.rs` starts them;
    /// they run until `stop`.
    fn two_workers(stop: &tokio_util::sync::CancellationToken) -> Vec<Handle> {
        (0..2)
            .map(|i| {
                let (tx, rx) = std::sync::mpsc::channel();
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(format!("test-worker-{i}"))
                    .spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .expect("runtime");
                        tx.send(rt.handle().clone()).expect("send handle");
                        rt.block_on(stop.cancelled());
                    })
                    .expect("thread");
                rx.recv().expect("worker handle")
            })
            .collect()
    }

    #[test]
    fn a_connection_handed_over_is_served_on_the_other_worker() {
        use std::io::Read;
        use tokio::io::AsyncWriteExt;

        let stop = tokio_util::sync::CancellationToken::new();
        let workers = two_workers(&stop);
        let spread = Spread::new(workers.clone());
        // Worker 0 serves two connections already: the next one it accepts goes to worker 1.
        let _busy = [spread.place(0).1, spread.place(0).1];
        let place = Place { spread, me: 0 };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let (served_on, on) = std::sync::mpsc::channel();
        let shutdown = Shutdown::new();
        workers[0].spawn(async move {
            let listener = TcpListener::from_std(listener).expect("register");
            let (stream, _) = listener.accept().await.expect("accept");
            let slots = Arc::new(Semaphore::new(1));
            let permit = slots.try_acquire_owned().expect("a free slot");
            let slot = Slot::new(permit, IntGauge::new("open", "open").expect("gauge"));
            place.dispatch(stream, slot, &shutdown, move |mut stream| async move {
                let name = std::thread::current().name().map(str::to_string);
                served_on.send(name).expect("report the thread");
                stream.write_all(b"served").await.expect("write");
            });
        });
        let mut client = std::net::TcpStream::connect(addr).expect("connect");
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut answer = String::new();
        client.read_to_string(&mut answer).expect("read to EOF");
        assert_eq!(answer, "served");
        let thread = on.recv_timeout(Duration::from_secs(10)).expect("served");
        assert_eq!(thread.as_deref(), Some("test-worker-1"));
        stop.cancel();
    }

    #[test]
    fn throttle_passes_one_line_per_period() {
        let start = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(10));
        // 314 failures 100 ms apart (31.3 s): lines at 0, 10, 20 and 30 s.
        let passed: Vec<(u64, u64)> = (0..314u64)
            .filter_map(|i| {
                let at = start + Duration::from_millis(100 * i);
                t.pass(at).map(|held| (i, held))
            })
            .collect();
        assert_eq!(passed, [(0, 0), (100, 99), (200, 99), (300, 99)]);
    }
}
