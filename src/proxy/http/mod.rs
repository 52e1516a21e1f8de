//! The HTTP router: hyper's HTTP/1.1 server on the `[http]` listener (HTTP/2 too, for
//! clients that open with its preface, and on `[https]` by ALPN), routing each request by
//! Host (any case, any `:port`) and longest path prefix to a route's pool, and forwarding it
//! over a pooled keep-alive upstream connection: HTTP/1.1, or HTTP/2 for routes that ask
//! for it (`DROVER_{n}_BACKEND_PROTO`, gRPC). Bodies stream both ways.
//!
//! Per request: one `load()` of the route table, a map lookup and a pick; the route is
//! cloned out (one atomic increment) and the table guard dropped before any `.await`.
//! Upstream connections live in a per-worker-thread pool (each worker runs its own
//! single-threaded runtime), so checkout and checkin take no lock.
//!
//! Every failure becomes a response through `ProxyError::status`: 400 for requests we refuse
//! to forward (smuggling shapes, no Host), 404 for an unknown Host, 503 for a route with no
//! backends, 502 when no backend could be reached or one broke the exchange, 504 when a
//! backend did not answer within `response_timeout`, 408 when the client stalled.
//!
//! The rooms: `listen` (accept loops, one connection), `respond` (one request), `rules`
//! (label rules before a backend), `forward` (backends and retries), `upgrade` (tunnels),
//! `headers` (what the backend is sent), `upstream` (the connection pool), `h1_client`
//! and `h1_chunked` (the exchange with an HTTP/1.1 backend), `error` (the
//! answers to failures), `record` (what a request leaves: the in-flight gauge and its
//! access-log entry); for HTTP/2 clients and backends: `preface` (h2c on the plain
//! listener), `forward_h2` (an exchange with an HTTP/2 backend), `upstream_h2` (its
//! multiplexed connections), `h2_sniff` (what the backend announced: stream limit,
//! GOAWAY), `grpc` (deadlines, gRPC statuses). Here: what one connection's requests share
//! (`Conn`).

mod error;
mod forward;
mod forward_h2;
mod grpc;
mod h1_chunked;
mod h1_client;
mod h2_sniff;
mod headers;
mod listen;
mod preface;
mod record;
mod respond;
mod rules;
mod upgrade;
mod upstream;
mod upstream_h2;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::HeaderValue;

use crate::access_log::TlsNote;
use crate::config::UnderscoreHeaders;
use crate::proxy::h1_guard::Signals;
use crate::proxy::DataPlane;
use crate::routing::HttpSettings;
use crate::shutdown::Shutdown;

pub use listen::{serve, serve_tls};
pub use upstream::UpstreamBody;

/// What the router answers with: a streamed upstream body or a short one of our own.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

/// Why a body stopped short: hyper's errors and Drover's own HTTP/1.1 client's.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The client's request body on its way to the backend (what hyper's HTTP/2 and upgrade
/// clients send, and what `h1_client` uploads), its bytes counted for the access log while
/// that is on (`None`: nothing counted).
pub struct CountedBody {
    inner: Incoming,
    count: Option<Arc<AtomicU64>>,
}

impl CountedBody {
    fn new(inner: Incoming, count: Option<Arc<AtomicU64>>) -> CountedBody {
        CountedBody { inner, count }
    }
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Some(count), Some(len)) = (&self.count, data_len(&polled)) {
            count.fetch_add(len as u64, Ordering::Relaxed);
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

/// The bytes of a data frame just polled; `None` for anything else.
fn data_len<E>(polled: &Poll<Option<Result<Frame<Bytes>, E>>>) -> Option<usize> {
    match polled {
        Poll::Ready(Some(Ok(frame))) => frame.data_ref().map(Bytes::len),
        _ => None,
    }
}

/// A response body that tells its connection's `HeadClock` when the response is over, so
/// the wait for the next request head is timed from then, and carries the request's
/// record until its last byte is sent.
pub struct ConnBody {
    inner: ProxyBody,
    conn: Arc<Conn>,
    record: record::Record,
}

impl Body for ConnBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = match &mut self.inner {
            Either::Left(upstream) => Pin::new(upstream).poll_frame(cx),
            Either::Right(ours) => Pin::new(ours)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        };
        if let Some(len) = data_len(&polled) {
            self.record.sent(len);
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

impl Drop for ConnBody {
    fn drop(&mut self) {
        self.conn.guard.response_done();
    }
}

/// The router settings of the table in use.
fn http_settings(plane: &DataPlane) -> HttpSettings {
    plane
        .table
        .load()
        .http
        .clone()
        .unwrap_or_else(default_settings)
}

/// Settings used when the table has no `[http]` settings (never in practice: the router
/// only runs when `[http]` is configured).
fn default_settings() -> HttpSettings {
    HttpSettings {
        header_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(60),
        max_header_bytes: 64 * 1024,
        body_timeout: Duration::from_secs(30),
        underscore_headers: UnderscoreHeaders::Pass,
        proxy_protocol: Vec::new(),
        https_proxy_protocol: Vec::new(),
    }
}

/// What a listener routes requests by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteBy {
    /// The `Host` header and path (the `[http] listen` router).
    Host,
    /// The `X-Marathon-App-Id` header (`[http] appid_listen`, like marathon-lb's :9091).
    AppId,
}

/// What every request on one client connection shares.
struct Conn {
    plane: Arc<DataPlane>,
    by: RouteBy,
    client: SocketAddr,
    /// `X-Forwarded-For` value for requests that arrive without one.
    xff: HeaderValue,
    /// `X-Forwarded-Port`: the port the client connected to.
    port: HeaderValue,
    /// The router settings when the connection was accepted (timeouts, head limits).
    settings: HttpSettings,
    /// What the HTTP/1 guard says of this connection; also its head clock.
    guard: Arc<Signals>,
    /// Requests received so far: the guard names a refused head by its number.
    requests: AtomicU64,
    /// For tunnels after an `Upgrade` (WebSocket), which outlive the request.
    shutdown: Shutdown,
    /// `X-Forwarded-Proto`: `https` on the TLS listener.
    proto: HeaderValue,
    /// The TLS version and SNI on the TLS listener, for the access log.
    tls: Option<TlsNote>,
}

impl Conn {
    /// What the `X-Forwarded-*` fields say of this connection.
    fn forwarding(&self) -> headers::Forwarding<'_> {
        headers::Forwarding {
            client: &self.xff,
            proto: &self.proto,
            port: &self.port,
        }
    }

    fn new(
        plane: Arc<DataPlane>,
        by: RouteBy,
        client: SocketAddr,
        port: HeaderValue,
        settings: HttpSettings,
        shutdown: Shutdown,
    ) -> Conn {
        let ip = client.ip().to_canonical();
        Conn {
            plane,
            by,
            client: SocketAddr::new(ip, client.port()),
            xff: HeaderValue::from_str(&ip.to_string()).expect("an IP is a valid header value"),
            port,
            settings,
            guard: Arc::new(Signals::new()),
            requests: AtomicU64::new(0),
            shutdown,
            proto: HeaderValue::from_static("http"),
            tls: None,
        }
    }
}
