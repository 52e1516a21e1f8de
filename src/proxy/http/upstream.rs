//! Upstream HTTP/1.1 connections: a pool of idle ones per backend on each worker thread
//! (no lock: each worker runs its own single-threaded runtime) with a sweeper for the ones
//! backends close, new ones with a connect timeout, and the response body handed to the
//! client (`h1_client` returns its connection to the pool at its end).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Either;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::Response;
use prometheus::Histogram;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use crate::routing::pool::{Backend, InFlight};

use super::grpc::GrpcCall;
use super::h1_client::{Answer, H1Body, H1Conn};
use super::upstream_h2::StreamSlot;
use super::{BodyError, ProxyBody};

/// Idle upstream connections kept per backend per worker thread: enough for a burst of
/// HTTP/2 streams (each takes a connection of its own) to find its connections again rather
/// than close and reopen the excess every time (the sweeper closes them once idle 90 s).
pub(super) const MAX_IDLE_PER_BACKEND: usize = 1024;

/// A backend's HTTP/1.1 response (`parse_head` left out its hop-by-hop fields), its body
/// read from `conn` as the client takes it.
pub(super) fn upstream_response(
    (head, upload): Answer,
    conn: H1Conn,
    backend: SocketAddr,
    in_flight: InFlight,
) -> Response<ProxyBody> {
    let body = H1Body::new(conn, &head, upload, backend);
    let parts = head.parts;
    let body = UpstreamBody {
        inner: Inner::H1(body),
        _in_flight: in_flight,
        _stream: None,
        grpc: None,
    };
    Response::from_parts(parts, Either::Left(body))
}

/// The backend's response body, streamed to the client; the backend counts the request as
/// in flight until it is done.
pub struct UpstreamBody {
    inner: Inner,
    _in_flight: InFlight,
    /// An HTTP/2 backend's stream: its connection counts it until this body is done.
    _stream: Option<StreamSlot>,
    /// A gRPC call's deadline and status count (HTTP/2 backends).
    grpc: Option<Box<GrpcCall>>,
}

enum Inner {
    /// Read by Drover's own HTTP/1.1 client, which pools the connection at the end.
    H1(H1Body),
    /// Read by hyper: HTTP/2 backends, and an upgrade the backend refused.
    Hyper(Incoming),
}

impl UpstreamBody {
    /// The body of an HTTP/2 backend's response: the stream slot is given back when the
    /// body is dropped.
    pub(super) fn h2(
        inner: Incoming,
        stream: StreamSlot,
        in_flight: InFlight,
        grpc: Option<GrpcCall>,
    ) -> UpstreamBody {
        UpstreamBody {
            inner: Inner::Hyper(inner),
            _in_flight: in_flight,
            _stream: Some(stream),
            grpc: grpc.map(Box::new),
        }
    }

    /// A body hyper's client read, on a connection that is not pooled.
    pub(super) fn unpooled(inner: Incoming, in_flight: InFlight) -> UpstreamBody {
        UpstreamBody {
            inner: Inner::Hyper(inner),
            _in_flight: in_flight,
            _stream: None,
            grpc: None,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let hyper_frame = match (&mut this.inner, &mut this.grpc) {
            (Inner::H1(body), _) => return Pin::new(body).poll_frame(cx),
            (Inner::Hyper(body), Some(call)) => call.poll_frame(Pin::new(body), cx),
            (Inner::Hyper(body), None) => Pin::new(body).poll_frame(cx),
        };
        hyper_frame.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::H1(body) => body.is_end_stream(),
            Inner::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::H1(body) => body.size_hint(),
            Inner::Hyper(body) => body.size_hint(),
        }
    }
}

/// An idle upstream connection and when it went idle.
type Idle = (H1Conn, Instant);

/// A cheap hasher for the pool's keys, two lookups per request: backend addresses come from
/// the scheduler, not from clients, so SipHash's resistance to chosen keys buys nothing.
#[derive(Default)]
struct AddrHasher(u64);

impl AddrHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.mix(u64::from(b));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.mix(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type IdleMap = HashMap<SocketAddr, Vec<Idle>, BuildHasherDefault<AddrHasher>>;

thread_local! {
    /// Idle upstream connections of this worker thread, by backend address.
    static IDLE: RefCell<IdleMap> = RefCell::new(IdleMap::default());
    /// Whether this thread runs a sweeper for `IDLE`.
    static SWEEPING: Cell<bool> = const { Cell::new(false) };
}

/// Puts a connection whose last response has ended into this thread's pool.
pub(super) fn checkin(addr: SocketAddr, conn: H1Conn) {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_BACKEND {
            list.push((conn, Instant::now()));
        }
    });
    if !SWEEPING.get() {
        start_sweeper();
    }
}

/// How often idle connections are looked over.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// An idle connection is closed after this long unused.
pub(super) const IDLE_MAX: Duration = Duration::from_secs(90);

/// Closes, every `SWEEP_EVERY`, the idle connections the backend closed (a pooled socket
/// has no task reading it, so nothing else would) and those unused for `IDLE_MAX`; ends
/// itself once the pool is empty, and is started again by the next check-in.
fn start_sweeper() {
    // Outside a runtime (never on the proxy's threads) the next check-in tries again.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    SWEEPING.set(true);
    runtime.spawn(async {
        struct Stopped;
        impl Drop for Stopped {
            fn drop(&mut self) {
                SWEEPING.set(false);
            }
        }
        let _stopped = Stopped;
        loop {
            tokio::time::sleep(SWEEP_EVERY).await;
            if sweep_idle(IDLE_MAX) == 0 {
                return;
            }
        }
    });
}

/// Drops the idle connections that are closed or older than `max_idle`; how many are left.
pub(super) fn sweep_idle(max_idle: Duration) -> usize {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        idle.retain(|_, list| {
            list.retain(|(conn, since)| since.elapsed() < max_idle && conn.is_usable());
            !list.is_empty()
        });
        idle.values().map(Vec::len).sum()
    })
}

/// A ready connection to `backend`: a pooled one the backend has not closed, else a new one.
pub(super) async fn checkout(
    backend: &Arc<Backend>,
    timeout: Duration,
    connect_time: &Histogram,
) -> Option<H1Conn> {
    match take_idle(backend.addr) {
        Some(conn) => Some(conn),
        None => connect(backend, timeout, connect_time).await,
    }
}

/// The most recently pooled connection to `addr` that is still usable; the unusable ones
/// met on the way are closed.
pub(super) fn take_idle(addr: SocketAddr) -> Option<H1Conn> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        while let Some((conn, _since)) = list.pop() {
            if conn.is_usable() {
                return Some(conn);
            }
        }
        None
    })
}

/// Opens a new upstream connection; counts the outcome on the backend.
pub(super) async fn connect(
    backend: &Arc<Backend>,
    timeout: Duration,
    connect_time: &Histogram,
) -> Option<H1Conn> {
    connect_tcp(backend, timeout, connect_time)
        .await
        .map(H1Conn::new)
}

/// Opens a TCP connection to `backend` within `timeout`, with Nagle off.
pub(super) async fn connect_tcp(
    backend: &Arc<Backend>,
    timeout: Duration,
    connect_time: &Histogram,
) -> Option<TcpStream> {
    let started = Instant::now();
    let connected = tokio::time::timeout(timeout, TcpStream::connect(backend.addr)).await;
    connect_time.observe(started.elapsed().as_secs_f64());
    match connected {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Some(stream)
        }
        Ok(Err(e)) => {
            debug!(backend = %backend.addr, error = %e, "connect failed");
            None
        }
        Err(_) => {
            debug!(backend = %backend.addr, "connect timed out");
            None
        }
    }
}
