//! The client socket of an HTTP/1.1 connection, as hyper's server reads it: every byte
//! the client sends passes an `h1_scan::Scanner` first, so hyper only ever parses heads
//! that are complete, within the limits and unambiguous (see `h1_scan` for the rules).
//!
//! - A head is handed to hyper only once all of it has arrived and passed; most arrive in
//!   one read and are checked in hyper's own buffer, without a copy. A head that is still
//!   coming waits here, so the size limit holds however the bytes are split.
//! - A refused head is replaced by a fixed stand-in request, and the stream ends after
//!   it. The router knows the stand-in by its number on the connection (`Signals`) and
//!   answers it with the refusal's status and `Connection: close`; hyper writes that
//!   answer in order, after any responses to earlier pipelined requests.
//! - The head timer (`header_timeout`, from when the connection was ready for a request)
//!   lives here: an idle connection is closed without a word, a half-sent head is answered
//!   408. A request body that stalls for `body_timeout` ends with an error the router
//!   turns into 408, and a client that leaves mid-body is told apart from a failing
//!   backend (`ClientFault`).
//! - After a refusal the connection closes gracefully: the write side first, then what
//!   the client still sends is read and dropped for a moment, so the answer is not lost
//!   to a reset (a "lingering close").

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::h1_scan::{Limits, Rejection, Scanner};

/// What the router asks in place of a refused head. Never routed: `Signals` marks it.
const STAND_IN: &[u8] = b"GET / HTTP/1.1\r\nhost: refused.invalid\r\nconnection: close\r\n\r\n";

/// Bytes read at once while a head is being collected.
const READ_CHUNK: usize = 8 * 1024;

/// Longest the client's leftovers are read and dropped after a refusal.
const LINGER: Duration = Duration::from_secs(2);

/// Why a request failed on the client's side rather than the backend's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// The body stalled for `body_timeout`.
    BodyTimeout,
    /// The chunked body broke its framing.
    BadBody,
    /// The client closed the connection mid-body.
    ClosedMidBody,
}

/// What the guard tells the router about its connection.
#[derive(Debug)]
pub struct Signals {
    /// The number (from 1) of the request that stands in for a refused head; 0: none.
    stand_in: AtomicU64,
    rejection: OnceLock<Rejection>,
    fault: AtomicU8,
    /// Set by the router while a request is being served: the head timer stops.
    in_request: AtomicBool,
    /// Milliseconds after `start` when the connection last became ready for a head.
    ready_since_ms: AtomicU64,
    start: Instant,
}

impl Default for Signals {
    fn default() -> Signals {
        Signals::new()
    }
}

impl Signals {
    pub fn new() -> Signals {
        Signals {
            stand_in: AtomicU64::new(0),
            rejection: OnceLock::new(),
            fault: AtomicU8::new(0),
            in_request: AtomicBool::new(false),
            ready_since_ms: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    /// The refusal request number `n` stands in for, if it is the stand-in.
    pub fn rejection_for(&self, n: u64) -> Option<Rejection> {
        if self.stand_in.load(Ordering::Relaxed) != n {
            return None;
        }
        self.rejection.get().copied()
    }

    pub fn client_fault(&self) -> Option<ClientFault> {
        match self.fault.load(Ordering::Relaxed) {
            1 => Some(ClientFault::BodyTimeout),
            2 => Some(ClientFault::BadBody),
            3 => Some(ClientFault::ClosedMidBody),
            _ => None,
        }
    }

    fn set_fault(&self, fault: ClientFault) {
        let code = match fault {
            ClientFault::BodyTimeout => 1,
            ClientFault::BadBody => 2,
            ClientFault::ClosedMidBody => 3,
        };
        self.fault.store(code, Ordering::Relaxed);
    }

    pub fn request_started(&self) {
        self.in_request.store(true, Ordering::Relaxed);
    }

    /// The response is over: the wait for the next head starts now.
    pub fn response_done(&self) {
        let since = self.start.elapsed().as_millis() as u64;
        self.ready_since_ms.store(since, Ordering::Relaxed);
        self.in_request.store(false, Ordering::Relaxed);
    }

    /// When the head being waited for is overdue; `None` while a request is in progress.
    fn head_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_request.load(Ordering::Relaxed) {
            return None;
        }
        let since = Duration::from_millis(self.ready_since_ms.load(Ordering::Relaxed));
        Some(self.start + since + timeout)
    }
}

/// The guard's settings.
#[derive(Debug, Clone, Copy)]
pub struct GuardSettings {
    pub limits: Limits,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
}

/// A client stream with the guard between it and hyper.
pub struct GuardedIo<S> {
    inner: S,
    scan: Scanner,
    /// Read but not yet passed: the start of a head still arriving.
    pending: Vec<u8>,
    /// Passed but not yet handed to hyper (a head completed in `pending`, the stand-in).
    out: Vec<u8>,
    out_at: usize,
    signals: std::sync::Arc<Signals>,
    settings: GuardSettings,
    /// The one timer of the connection: the head deadline or the body stall deadline.
    timer: Option<Pin<Box<Sleep>>>,
    /// Since when a body read has been waiting.
    body_wait: Option<Instant>,
    /// The inner stream's write side is shut.
    shut: bool,
    /// Until when a lingering close reads and drops what the client sends.
    linger: Option<Pin<Box<Sleep>>>,
}

impl<S> GuardedIo<S> {
    pub fn new(inner: S, settings: GuardSettings, signals: std::sync::Arc<Signals>) -> Self {
        GuardedIo {
            inner,
            scan: Scanner::new(settings.limits),
            pending: Vec::new(),
            out: Vec::new(),
            out_at: 0,
            signals,
            settings,
            timer: None,
            body_wait: None,
            shut: false,
            linger: None,
        }
    }

    /// After a refused head: the stand-in goes to hyper next, then the stream ends.
    fn queue_stand_in(&mut self) {
        if let Some(why) = self.scan.rejection() {
            if self.signals.rejection.set(why).is_ok() {
                self.signals
                    .stand_in
                    .store(self.scan.heads() + 1, Ordering::Relaxed);
                self.out.extend_from_slice(STAND_IN);
            }
            self.pending = Vec::new();
        }
    }

    /// Polls the connection's timer set for `due`; `Ready` once `due` has passed. The
    /// timer is re-armed only when it fires early, so a request costs no timer update.
    fn poll_due(&mut self, cx: &mut Context<'_>, due: Instant) -> Poll<()> {
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if timer.deadline() > due {
            timer.as_mut().reset(due);
        }
        loop {
            ready!(timer.as_mut().poll(cx));
            if Instant::now() >= due {
                return Poll::Ready(());
            }
            timer.as_mut().reset(due);
        }
    }

    /// The inner read is pending: runs the head or body timer.
    fn on_wait(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<bool>> {
        if self.scan.in_head() {
            let Some(due) = self.signals.head_deadline(self.settings.header_timeout) else {
                return Poll::Pending;
            };
            ready!(self.poll_due(cx, due));
            if self.pending.is_empty() {
                // Idle between requests: close without a word.
                return Poll::Ready(Ok(false));
            }
            self.scan.reject(Rejection::Timeout);
            self.queue_stand_in();
            return Poll::Ready(Ok(true));
        }
        if self.scan.in_body() {
            let since = *self.body_wait.get_or_insert_with(Instant::now);
            ready!(self.poll_due(cx, since + self.settings.body_timeout));
            self.signals.set_fault(ClientFault::BodyTimeout);
            self.scan.break_body();
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body stalled",
            )));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> GuardedIo<S> {
    /// Reads more of a head into `pending`. `Ok(false)`: the client closed.
    fn read_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<bool>> {
        let len = self.pending.len();
        self.pending.resize(len + READ_CHUNK, 0);
        let mut buf = ReadBuf::new(&mut self.pending[len..]);
        let polled = Pin::new(&mut self.inner).poll_read(cx, &mut buf);
        let n = buf.filled().len();
        self.pending.truncate(len + n);
        match polled {
            Poll::Pending => self.on_wait(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => Poll::Ready(Ok(n > 0)),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_at < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_at);
                buf.put_slice(&this.out[this.out_at..this.out_at + n]);
                this.out_at += n;
                if this.out_at == this.out.len() {
                    this.out.clear();
                    this.out_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.scan.rejection().is_some() {
                return Poll::Ready(Ok(())); // the end, after the stand-in
            }
            if this.scan.is_broken() {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the request body broke its framing",
                )));
            }
            if !this.pending.is_empty() {
                // A head arrived in pieces: check what has come, then wait for more.
                let passed = this.scan.process(&this.pending);
                if passed > 0 || this.scan.is_tunnel() {
                    let passed = if this.scan.is_tunnel() {
                        this.pending.len()
                    } else {
                        passed
                    };
                    this.out.extend_from_slice(&this.pending[..passed]);
                    this.pending.drain(..passed);
                    continue;
                }
                if this.scan.rejection().is_some() {
                    this.queue_stand_in();
                    continue;
                }
                if this.scan.is_broken() {
                    this.signals.set_fault(ClientFault::BadBody);
                    continue;
                }
                match ready!(this.read_pending(cx)) {
                    Ok(true) => continue,
                    // The client left with a head half-sent: nothing to answer.
                    Ok(false) => return Poll::Ready(Ok(())),
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            if this.scan.is_tunnel() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            // The usual case: read straight into hyper's buffer and check it there.
            let before = buf.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Pending => match ready!(this.on_wait(cx)) {
                    Ok(true) => continue,
                    Ok(false) => return Poll::Ready(Ok(())),
                    Err(e) => return Poll::Ready(Err(e)),
                },
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let read = &buf.filled()[before..];
            if read.is_empty() {
                if this.scan.in_body() {
                    this.signals.set_fault(ClientFault::ClosedMidBody);
                }
                return Poll::Ready(Ok(()));
            }
            this.body_wait = None;
            let passed = this.scan.process(read);
            if passed < read.len() {
                if this.scan.in_head() {
                    this.pending.extend_from_slice(&read[passed..]);
                } else if this.scan.is_broken() {
                    this.signals.set_fault(ClientFault::BadBody);
                }
                buf.set_filled(before + passed);
                this.queue_stand_in();
            }
            if passed > 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for GuardedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.shut {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.shut = true;
            if this.scan.rejection().is_some() || this.scan.is_broken() {
                this.linger = Some(Box::pin(tokio::time::sleep(LINGER)));
            }
        }
        // Lingering close: drop what the client still sends until it closes or time is up.
        let Some(timer) = this.linger.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut scratch = [0u8; 4096];
        loop {
            if timer.as_mut().poll(cx).is_ready() {
                this.linger = None;
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                Poll::Ready(_) => {
                    this.linger = None;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}
