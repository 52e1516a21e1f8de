//! Upstream HTTP/1.1 connections: a pool of idle ones per backend on each worker thread
//! (no lock: each worker runs its own single-threaded runtime), new ones with a connect
//! timeout, and the response body that returns its connection to the pool when read to
//! the end.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Either;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::Response;
use hyper_util::rt::TokioIo;
use prometheus::Histogram;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use crate::routing::pool::{Backend, InFlight};

use super::grpc::GrpcCall;
use super::headers::strip_hop_by_hop;
use super::upstream_h2::StreamSlot;
use super::{ProxyBody, UpstreamRequestBody};

/// Idle upstream connections kept per backend per worker thread.
pub(super) const MAX_IDLE_PER_BACKEND: usize = 256;

pub(super) fn upstream_response(
    resp: Response<Incoming>,
    backend: SocketAddr,
    sender: SendRequest<UpstreamRequestBody>,
    in_flight: InFlight,
) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = UpstreamBody {
        inner: body,
        checkin: Some((backend, sender)),
        ended: false,
        _in_flight: in_flight,
        _stream: None,
        grpc: None,
    };
    Response::from_parts(parts, Either::Left(body))
}

/// The backend's response body, streamed to the client. When it has been read to the end
/// the upstream connection goes back to this thread's pool; the backend counts the request
/// as in flight until then.
pub struct UpstreamBody {
    inner: Incoming,
    checkin: Option<(SocketAddr, SendRequest<UpstreamRequestBody>)>,
    ended: bool,
    _in_flight: InFlight,
    /// An HTTP/2 backend's stream: its connection counts it until this body is done.
    _stream: Option<StreamSlot>,
    /// A gRPC call's deadline and status count (HTTP/2 backends).
    grpc: Option<GrpcCall>,
}

impl UpstreamBody {
    /// The body of an HTTP/2 backend's response: nothing to check in; the stream slot is
    /// given back when the body is dropped.
    pub(super) fn h2(
        inner: Incoming,
        stream: StreamSlot,
        in_flight: InFlight,
        grpc: Option<GrpcCall>,
    ) -> UpstreamBody {
        UpstreamBody {
            inner,
            checkin: None,
            ended: false,
            _in_flight: in_flight,
            _stream: Some(stream),
            grpc,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = match &mut this.grpc {
            Some(call) => call.poll_frame(Pin::new(&mut this.inner), cx),
            None => Pin::new(&mut this.inner).poll_frame(cx),
        };
        if let Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body dropped half-read leaves the connection mid-response: let it close.
        if self.ended || self.inner.is_end_stream() {
            if let Some((addr, sender)) = self.checkin.take() {
                checkin(addr, sender);
            }
        }
    }
}

/// An idle upstream connection and when it went idle.
pub(super) type Idle = (SendRequest<UpstreamRequestBody>, Instant);

thread_local! {
    /// Idle upstream connections of this worker thread, by backend address.
    static IDLE: RefCell<HashMap<SocketAddr, Vec<Idle>>> = RefCell::new(HashMap::new());
}

pub(super) fn checkin(addr: SocketAddr, sender: SendRequest<UpstreamRequestBody>) {
    if sender.is_closed() {
        return;
    }
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_BACKEND {
            list.push((sender, Instant::now()));
        }
    });
}

/// A connection idle this long may meet a backend's keep-alive timeout (Node.js closes
/// after 5 s, for one) just as a request is written.
pub(super) const IDLE_SHAKY: Duration = Duration::from_secs(1);

/// A connection ready for a request, and whether a drop before any answer is plausible
/// enough to keep a copy of a request that could go elsewhere: a new connection (the
/// backend may have just failed) or a long-idle one. A busy, pooled connection to a
/// healthy backend needs no copy, which keeps the copy off the hot path.
pub(super) struct Ready {
    pub(super) sender: SendRequest<UpstreamRequestBody>,
    pub(super) shaky: bool,
}

/// A ready connection to `backend`: a pooled one if any is still open, else a new one.
pub(super) async fn checkout(
    backend: &Arc<Backend>,
    timeout: Duration,
    connect_time: &Histogram,
) -> Option<Ready> {
    loop {
        let pooled = IDLE.with(|idle| idle.borrow_mut().get_mut(&backend.addr).and_then(Vec::pop));
        let Some((mut sender, since)) = pooled else {
            break;
        };
        if sender.is_closed() {
            continue;
        }
        // Checked in after its last response ended, so this is at most a brief wait for
        // the connection task to catch up; an error means it closed meanwhile.
        if sender.ready().await.is_ok() {
            let shaky = since.elapsed() >= IDLE_SHAKY;
            return Some(Ready { sender, shaky });
        }
    }
    let sender = connect(backend, timeout, connect_time).await?;
    Some(Ready {
        sender,
        shaky: true,
    })
}

/// Opens a new upstream connection; counts the outcome on the backend.
pub(super) async fn connect(
    backend: &Arc<Backend>,
    timeout: Duration,
    connect_time: &Histogram,
) -> Option<SendRequest<UpstreamRequestBody>> {
    connect_with(backend, timeout, false, connect_time).await
}

/// Opens a new upstream connection, able to be upgraded when `upgrades` is set.
pub(super) async fn connect_with(
    backend: &Arc<Backend>,
    timeout: Duration,
    upgrades: bool,
    connect_time: &Histogram,
) -> Option<SendRequest<UpstreamRequestBody>> {
    let started = Instant::now();
    let connected = tokio::time::timeout(timeout, TcpStream::connect(backend.addr)).await;
    connect_time.observe(started.elapsed().as_secs_f64());
    let stream = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!(backend = %backend.addr, error = %e, "connect failed");
            return None;
        }
        Err(_) => {
            debug!(backend = %backend.addr, "connect timed out");
            return None;
        }
    };
    let _ = stream.set_nodelay(true);
    let handshake = hyper::client::conn::http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await;
    match handshake {
        Ok((sender, connection)) => {
            let addr = backend.addr;
            tokio::spawn(async move {
                let ended = if upgrades {
                    connection.with_upgrades().await
                } else {
                    connection.await
                };
                if let Err(e) = ended {
                    debug!(backend = %addr, error = %e, "upstream connection ended with an error");
                }
            });
            Some(sender)
        }
        Err(e) => {
            debug!(backend = %backend.addr, error = %e, "handshake failed");
            None
        }
    }
}
