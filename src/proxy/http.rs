//! The HTTP router: hyper's HTTP/1.1 server on the `[http]` listener, routing each request
//! by Host (any case, any `:port`) and longest path prefix to a route's pool, and forwarding
//! it over a pooled keep-alive upstream connection. Bodies stream both ways.
//!
//! Per request: one `load()` of the route table, a map lookup and a pick; the route is
//! cloned out (one atomic increment) and the table guard dropped before any `.await`.
//! Upstream connections live in a per-worker-thread pool (each worker runs its own
//! single-threaded runtime), so checkout and checkin take no lock.
//!
//! Every failure becomes a response through `ProxyError::status`: 400 for requests we refuse
//! to forward (smuggling shapes, no Host), 404 for an unknown Host, 503 for a route with no
//! backends, 502 when no backend could be reached or one broke the exchange, 504 when a
//! backend did not answer within `response_timeout`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::note_failure;
use crate::routing::pool::{Backend, InFlight};
use crate::routing::{HttpSettings, Route};
use crate::shutdown::Shutdown;
use crate::Shared;

/// What the router answers with: a streamed upstream body or a short one of our own.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

/// A response body that tells its connection's `HeadClock` when the response is over, so
/// the wait for the next request head is timed from then.
pub struct ConnBody {
    inner: ProxyBody,
    conn: Arc<Conn>,
}

impl Body for ConnBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.inner {
            Either::Left(upstream) => Pin::new(upstream).poll_frame(cx),
            Either::Right(ours) => Pin::new(ours)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        }
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
        self.conn.clock.response_done();
    }
}

/// The slowloris guard of one client connection: from the moment the connection is ready
/// for a request (accepted, or the previous response over) until hyper hands us the parsed
/// head, at most `header_timeout` may pass. hyper's own `header_read_timeout` arms a timer
/// per request (and wakes the runtime to do it); this needs one store per request and one
/// timer per connection, re-armed once per `header_timeout` at most.
struct HeadClock {
    start: Instant,
    in_request: AtomicBool,
    /// Milliseconds after `start` when the connection last became ready for a head.
    ready_since_ms: AtomicU64,
}

impl HeadClock {
    fn new() -> HeadClock {
        HeadClock {
            start: Instant::now(),
            in_request: AtomicBool::new(false),
            ready_since_ms: AtomicU64::new(0),
        }
    }

    fn request_started(&self) {
        self.in_request.store(true, Ordering::Relaxed);
    }

    fn response_done(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.ready_since_ms.store(now, Ordering::Relaxed);
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

/// The router settings of the table in use.
fn http_settings(shared: &Shared) -> HttpSettings {
    shared
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
        proxy_protocol: Vec::new(),
        https_proxy_protocol: Vec::new(),
    }
}

/// Idle upstream connections kept per backend per worker thread.
const MAX_IDLE_PER_BACKEND: usize = 256;

/// What a listener routes requests by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteBy {
    /// The `Host` header and path (the `[http] listen` router).
    Host,
    /// The `X-Marathon-App-Id` header (`[http] appid_listen`, like marathon-lb's :9091).
    AppId,
}

/// Accepts connections until shutdown; each connection is served on this thread's runtime
/// and tracked so the drain waits for it.
pub async fn serve(listener: TcpListener, by: RouteBy, shared: Arc<Shared>, shutdown: Shutdown) {
    let local_port = listener.local_addr().map_or(0, |a| a.port());
    while let Some((stream, client)) = accept(&listener, &shutdown).await {
        let trusted = http_settings(&shared).proxy_protocol;
        if trusted.is_empty() {
            let conn = Arc::new(Conn::new(
                shared.clone(),
                by,
                client,
                local_port,
                shutdown.clone(),
            ));
            let shutdown2 = shutdown.clone();
            tokio::spawn(shutdown.track(serve_connection(stream, conn, shutdown2)));
            continue;
        }
        // Behind a load balancer: the PROXY header names the client.
        let (shared, shutdown2) = (shared.clone(), shutdown.clone());
        tokio::spawn(shutdown.track(async move {
            let mut stream = stream;
            let Some(client) = super::proxied_client(&mut stream, client, &trusted).await else {
                return;
            };
            let conn = Arc::new(Conn::new(shared, by, client, local_port, shutdown2.clone()));
            serve_connection(stream, conn, shutdown2).await;
        }));
    }
}

/// HTTP/2 limits for a public edge: enough streams and window for browsers, bounded so one
/// client cannot hold much memory, and reset floods (CVE-2023-44487) cut short.
const H2_MAX_STREAMS: u32 = 128;
const H2_STREAM_WINDOW: u32 = 1 << 20;
const H2_CONNECTION_WINDOW: u32 = 4 << 20;
const H2_MAX_PENDING_RESETS: usize = 32;
const H2_MAX_ERROR_RESETS: usize = 256;
const H2_KEEPALIVE: Duration = Duration::from_secs(30);

/// The `[https]` listener: TLS (certificate by SNI from `tls`), then HTTP/1.1 or HTTP/2 as
/// ALPN says, routed by Host exactly as on the plain router.
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    shutdown: Shutdown,
) {
    let local_port = listener.local_addr().map_or(0, |a| a.port());
    while let Some((stream, client)) = accept(&listener, &shutdown).await {
        let trusted = http_settings(&shared).https_proxy_protocol;
        let (acceptor, shutdown2, shared) = (acceptor.clone(), shutdown.clone(), shared.clone());
        tokio::spawn(shutdown.track(async move {
            let mut stream = stream;
            let client = if trusted.is_empty() {
                client
            } else {
                // Behind a load balancer the PROXY header comes before the TLS handshake.
                match super::proxied_client(&mut stream, client, &trusted).await {
                    Some(c) => c,
                    None => return,
                }
            };
            let mut conn = Conn::new(shared, RouteBy::Host, client, local_port, shutdown2.clone());
            conn.proto = HeaderValue::from_static("https");
            let conn = Arc::new(conn);
            let handshake_timeout = http_settings(&conn.shared).header_timeout;
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    debug!(%client, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%client, "no TLS handshake within {handshake_timeout:?}; closing");
                    return;
                }
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            if h2 {
                serve_h2(tls, conn, shutdown2).await;
            } else {
                serve_connection(tls, conn, shutdown2).await;
            }
        }));
    }
}

/// The next client connection (with `TCP_NODELAY` set), or `None` at shutdown. A failed
/// accept (usually out of file descriptors) is logged and retried after a pause instead of
/// spinning.
async fn accept(listener: &TcpListener, shutdown: &Shutdown) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, client)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, client));
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.triggered() => return None,
        }
    }
}

/// Serves one HTTP/2 client connection until it ends or the drain closes it.
async fn serve_h2<S>(stream: S, conn: Arc<Conn>, shutdown: Shutdown)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max_header = http_settings(&conn.shared).max_header_bytes;
    let service_conn = conn.clone();
    // Boxed: hyper spawns a task per stream, and moving the request future (several KiB)
    // into it by value was a large part of the CPU an HTTP/2 request cost.
    let service =
        hyper::service::service_fn(move |req| Box::pin(handle(req, service_conn.clone())));
    let mut builder =
        hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_header_list_size(max_header as u32)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_ERROR_RESETS)
        .keep_alive_interval(H2_KEEPALIVE)
        .keep_alive_timeout(H2_KEEPALIVE);
    let http = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(http);
    let result = tokio::select! {
        r = http.as_mut() => r,
        _ = shutdown.triggered() => {
            // GOAWAY: streams in progress finish, no new ones start.
            http.as_mut().graceful_shutdown();
            http.await
        }
    };
    if let Err(e) = result {
        debug!(client = %conn.client, error = %e, "HTTP/2 client connection ended with an error");
    }
}

/// What every request on one client connection shares.
struct Conn {
    shared: Arc<Shared>,
    by: RouteBy,
    client: SocketAddr,
    /// `X-Forwarded-For` value for requests that arrive without one.
    xff: HeaderValue,
    /// `X-Forwarded-Port`: the port the client connected to.
    port: HeaderValue,
    /// Set by `FramingWatch` when a read held both `Content-Length` and
    /// `Transfer-Encoding` lines (hyper drops the former before we see the request).
    framing_conflict: Arc<AtomicBool>,
    clock: HeadClock,
    /// For tunnels after an `Upgrade` (WebSocket), which outlive the request.
    shutdown: Shutdown,
    /// `X-Forwarded-Proto`: `https` on the TLS listener.
    proto: HeaderValue,
}

impl Conn {
    fn new(
        shared: Arc<Shared>,
        by: RouteBy,
        client: SocketAddr,
        local_port: u16,
        shutdown: Shutdown,
    ) -> Conn {
        let ip = client.ip().to_canonical();
        Conn {
            shared,
            by,
            client: SocketAddr::new(ip, client.port()),
            xff: HeaderValue::from_str(&ip.to_string()).expect("an IP is a valid header value"),
            port: HeaderValue::from(local_port),
            framing_conflict: Arc::new(AtomicBool::new(false)),
            clock: HeadClock::new(),
            shutdown,
            proto: HeaderValue::from_static("http"),
        }
    }
}

async fn serve_connection<S>(stream: S, conn: Arc<Conn>, shutdown: Shutdown)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let settings = http_settings(&conn.shared);
    let io = FramingWatch {
        inner: stream,
        conflict: conn.framing_conflict.clone(),
    };
    let service_conn = conn.clone();
    let service = hyper::service::service_fn(move |req| handle(req, service_conn.clone()));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_buf_size(settings.max_header_bytes.max(8192))
        .keep_alive(true)
        // One write per response instead of a vectored one: cheaper for small responses.
        .writev(false);
    // Upgrades (WebSocket) hand the socket to a tunnel task once the 101 is written.
    let http = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(http);
    let header_timeout = settings.header_timeout;
    let watchdog = tokio::time::sleep(header_timeout);
    tokio::pin!(watchdog);
    let mut draining = false;
    let result = loop {
        tokio::select! {
            r = http.as_mut() => break r,
            _ = shutdown.triggered(), if !draining => {
                // Finish the request in progress, then close; idle connections close now.
                draining = true;
                http.as_mut().graceful_shutdown();
            }
            _ = watchdog.as_mut() => {
                let now = Instant::now();
                match conn.clock.head_deadline(header_timeout) {
                    Some(due) if due <= now => {
                        debug!(client = %conn.client, "no request head within {header_timeout:?}; closing");
                        // Dropping the connection closes the socket.
                        break Ok(());
                    }
                    Some(due) => watchdog.as_mut().reset(due),
                    None => watchdog.as_mut().reset(now + header_timeout),
                }
            }
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "client connection ended with an error");
    }
}

/// The client socket, with a look at what is read: hyper resolves a head carrying both
/// `Content-Length` and `Transfer-Encoding` by dropping the length (RFC 9112 §6.3), but we
/// refuse such requests outright, so the raw lines must be seen before hyper parses them.
struct FramingWatch<S> {
    inner: S,
    conflict: Arc<AtomicBool>,
}

/// Bytes of each read that are looked at; request heads arrive at the start of a read,
/// and bulk body reads are not scanned whole.
const FRAMING_SCAN_BYTES: usize = 16 * 1024;

impl<S: AsyncRead + Unpin> AsyncRead for FramingWatch<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = &buf.filled()[before..];
        if both_framings(&read[..read.len().min(FRAMING_SCAN_BYTES)]) {
            self.conflict.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FramingWatch<S> {
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

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// True when `bytes` hold both a `Content-Length:` and a `Transfer-Encoding:` header line.
fn both_framings(bytes: &[u8]) -> bool {
    let (mut length, mut chunked) = (false, false);
    for (i, _) in bytes.iter().enumerate().filter(|(_, &b)| b == b'\n') {
        let line = &bytes[i + 1..];
        let starts =
            |name: &[u8]| line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name);
        if starts(b"content-length:") {
            length = true;
        } else if starts(b"transfer-encoding:") {
            chunked = true;
        }
    }
    length && chunked
}

/// Why a request got no upstream response.
#[derive(Debug, thiserror::Error)]
enum ProxyError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("no route for this host")]
    NoRoute,
    #[error("no backend is available for this route")]
    NoBackends,
    #[error("no elected leader for {0}: none of its masters proves leadership right now")]
    NoLeader(String),
    #[error("forbidden: this service does not take requests from your address")]
    Forbidden,
    #[error("authentication required")]
    Unauthorized(HeaderValue),
    #[error("moved to https")]
    ToHttps(HeaderValue),
    #[error("could not connect to any backend")]
    Connect,
    #[error("the backend did not answer in time")]
    Timeout,
    #[error("the backend broke the exchange: {0}")]
    Upstream(hyper::Error),
}

impl ProxyError {
    fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoBackends | ProxyError::NoLeader(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Forbidden => StatusCode::FORBIDDEN,
            ProxyError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ProxyError::ToHttps(_) => StatusCode::MOVED_PERMANENTLY,
            ProxyError::Connect | ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The `kind` label of `drover_upstream_errors_total`, for the backend's failures.
    fn upstream_kind(&self) -> Option<&'static str> {
        match self {
            ProxyError::Connect => Some("connect"),
            ProxyError::Timeout => Some("timeout"),
            ProxyError::Upstream(_) => Some("protocol"),
            _ => None,
        }
    }

    fn response(&self) -> Response<ProxyBody> {
        let mut resp = Response::new(Either::Right(Full::new(Bytes::from(format!("{self}\n")))));
        *resp.status_mut() = self.status();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match self {
            ProxyError::Unauthorized(challenge) => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, challenge.clone());
            }
            ProxyError::ToHttps(location) => {
                resp.headers_mut()
                    .insert(header::LOCATION, location.clone());
            }
            _ => {}
        }
        if matches!(self, ProxyError::BadRequest(_)) {
            // After a refused request the framing of what follows is unknowable.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

async fn handle(req: Request<Incoming>, conn: Arc<Conn>) -> Result<Response<ConnBody>, Infallible> {
    conn.clock.request_started();
    let resp = respond(req, &conn).await;
    Ok(resp.map(|inner| ConnBody { inner, conn }))
}

/// Routes one request and answers it, counting it under its route.
async fn respond(req: Request<Incoming>, conn: &Arc<Conn>) -> Response<ProxyBody> {
    let start = Instant::now();
    let routed = {
        let table = conn.shared.table.load();
        let conflict = conn.framing_conflict.swap(false, Ordering::Relaxed);
        check_framing(req.headers(), conflict).and_then(|()| {
            let route = match conn.by {
                RouteBy::Host => {
                    let host =
                        request_host(&req).ok_or(ProxyError::BadRequest("no Host header"))?;
                    table.lookup_http(host, req.uri().path())
                }
                RouteBy::AppId => req
                    .headers()
                    .get("x-marathon-app-id")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|id| table.lookup_app_id(id)),
            }
            .ok_or(ProxyError::NoRoute)?;
            let settings = table.http.clone().unwrap_or_else(default_settings);
            Ok((route.clone(), settings))
        })
    };
    let (route, settings) = match routed {
        Ok(r) => r,
        Err(e) => {
            let resp = e.response();
            conn.shared.unrouted.count(resp.status().as_u16());
            conn.shared
                .unrouted
                .duration
                .observe(start.elapsed().as_secs_f64());
            return resp;
        }
    };
    let resp = match admit(&req, conn, &route) {
        Err(e) => Err(e),
        Ok(()) => forward(req, conn, &route, &settings).await,
    };
    let mut resp = match resp {
        Ok(resp) => resp,
        Err(e) => {
            if let Some(kind) = e.upstream_kind() {
                conn.shared
                    .metrics
                    .upstream_errors
                    .with_label_values(&[&route.name, kind])
                    .inc();
                debug!(route = %route.name, error = %e, "upstream failure");
            }
            e.response()
        }
    };
    if route.rules.hsts && conn.proto == "https" {
        resp.headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, HSTS.clone());
    }
    route.stats.count(resp.status().as_u16());
    route.stats.duration.observe(start.elapsed().as_secs_f64());
    resp
}

/// marathon-lb's `Strict-Transport-Security` value: 180 days.
const HSTS: HeaderValue = HeaderValue::from_static("max-age=15552000");

/// The route's gates before any backend is tried: the source ACL (403), the redirect of
/// plain HTTP to https (301), basic auth (401).
fn admit<B>(req: &Request<B>, conn: &Conn, route: &Route) -> Result<(), ProxyError> {
    let rules = &route.rules;
    if !rules.admits(conn.client.ip()) {
        return Err(ProxyError::Forbidden);
    }
    if rules.redirect_to_https && conn.proto == "http" {
        // The https URL names the host without the plain listener's port.
        let host = without_port(request_host(req).unwrap_or(""));
        let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let location = HeaderValue::from_str(&format!("https://{host}{target}"))
            .map_err(|_| ProxyError::BadRequest("a Host that cannot be redirected"))?;
        return Err(ProxyError::ToHttps(location));
    }
    if let Some(auth) = &rules.auth {
        if !auth.allows(req.headers().get(header::AUTHORIZATION)) {
            return Err(ProxyError::Unauthorized(auth.challenge().clone()));
        }
    }
    Ok(())
}

/// `host` without a `:port` (`[v6]:port` keeps its brackets).
fn without_port(host: &str) -> &str {
    if let Some(end) = host.find(']') {
        return &host[..=end];
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The sticky cookie's name, as marathon-lb's HAProxy config names it.
const STICKY_COOKIE: &str = "mesosphere_server_id";

/// A backend's cookie value: a stable hash of its address, so clients never see it.
fn sticky_token(addr: SocketAddr) -> String {
    // FNV-1a: stable across runs and versions (unlike the std hasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in addr.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The backend a sticky cookie names, when it is still in the pool and available.
fn sticky_backend<B>(req: &Request<B>, route: &Route) -> Option<usize> {
    let token = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == STICKY_COOKIE).then(|| value.trim().to_string())
        })?;
    route
        .pool
        .backends()
        .iter()
        .position(|b| b.is_available() && sticky_token(b.addr) == token)
}

/// `HAPROXY_{n}_HTTP_BACKEND_PROXYPASS_PATH`: `/prefix/rest?q` goes to the backend as `/rest?q`.
fn strip_proxypass<B>(req: &mut Request<B>, prefix: &str) {
    let Some(pq) = req.uri().path_and_query() else {
        return;
    };
    let Some(rest) = pq.as_str().strip_prefix(prefix) else {
        return;
    };
    if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
        return; // `/apples` does not start with the prefix `/app`.
    }
    let rewritten = if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    };
    if let Ok(uri) = rewritten.parse::<Uri>() {
        *req.uri_mut() = uri;
    }
}

/// Refuses requests whose body framing two parties could read differently. `raw_conflict`
/// says the raw head carried both `Content-Length` and `Transfer-Encoding`.
fn check_framing(headers: &HeaderMap, raw_conflict: bool) -> Result<(), ProxyError> {
    let te = headers.contains_key(header::TRANSFER_ENCODING);
    if te && (raw_conflict || headers.contains_key(header::CONTENT_LENGTH)) {
        return Err(ProxyError::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    if let (Some(first), Some(_)) = (lengths.next(), lengths.next()) {
        if headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v != first)
        {
            return Err(ProxyError::BadRequest("conflicting Content-Length values"));
        }
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    if let (Some(_), Some(_)) = (hosts.next(), hosts.next()) {
        return Err(ProxyError::BadRequest("more than one Host header"));
    }
    Ok(())
}

/// The Host a request is for: the `Host` header, or the authority of an absolute-form URI.
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    match req.headers().get(header::HOST) {
        Some(h) => h.to_str().ok().filter(|h| !h.is_empty()),
        None => req.uri().authority().map(|a| a.as_str()),
    }
}

/// Picks a backend, connects (trying the next backend on a connect failure when the
/// method allows a retry), sends, and wraps the response body.
async fn forward(
    mut req: Request<Incoming>,
    conn: &Conn,
    route: &Arc<Route>,
    settings: &HttpSettings,
) -> Result<Response<ProxyBody>, ProxyError> {
    if let Some(protocol) = upgrade_protocol(req.headers()) {
        return forward_upgrade(req, conn, route, settings, protocol).await;
    }
    let pool = &route.pool;
    let sticky = route.rules.sticky.then(|| sticky_backend(&req, route));
    let first = match sticky.flatten() {
        Some(i) => i,
        None => pick(conn, route)?,
    };
    prepare_upstream_request(&mut req, conn);
    if let Some(prefix) = &route.rules.proxypass_path {
        strip_proxypass(&mut req, prefix);
    }
    let attempts = if is_idempotent(req.method()) {
        pool.max_attempts()
    } else {
        1
    };
    for attempt in 0..attempts {
        let Some(backend) = pool.attempt(first, attempt) else {
            continue;
        };
        let in_flight = backend.start();
        let mut sender = match checkout(backend, settings.connect_timeout).await {
            Some(s) => s,
            None => {
                note_failure(&conn.shared, route, backend);
                continue;
            }
        };
        // Latency feeds p2c only; other pools skip the clock read.
        let sent_at = pool.tracks_latency().then(Instant::now);
        let sent =
            tokio::time::timeout(settings.response_timeout, sender.try_send_request(req)).await;
        let result = match sent {
            Err(_elapsed) => Err(ProxyError::Timeout),
            Ok(Ok(resp)) => Ok(upstream_response(resp, backend.addr, sender, in_flight)),
            Ok(Err(mut e)) => match e.take_message() {
                // Never written: the pooled connection had just closed. Safe to resend
                // on a fresh connection whatever the method.
                Some(unsent) => {
                    req = unsent;
                    match connect(backend, settings.connect_timeout).await {
                        None => Err(ProxyError::Connect),
                        Some(mut fresh) => match tokio::time::timeout(
                            settings.response_timeout,
                            fresh.send_request(req),
                        )
                        .await
                        {
                            Err(_elapsed) => Err(ProxyError::Timeout),
                            Ok(Ok(resp)) => {
                                Ok(upstream_response(resp, backend.addr, fresh, in_flight))
                            }
                            Ok(Err(e)) => Err(ProxyError::Upstream(e)),
                        },
                    }
                }
                None => Err(ProxyError::Upstream(e.into_error())),
            },
        };
        // The exchange's outcome feeds passive ejection: 5xx answers count like failures.
        match &result {
            Ok(resp) if !resp.status().is_server_error() => backend.succeeded(),
            _ => note_failure(&conn.shared, route, backend),
        }
        if let Some(at) = sent_at {
            backend.observe_latency(at.elapsed());
        }
        // A client without a cookie for this backend (none, or one naming a backend that
        // left) is given one.
        let mut result = result;
        if let (Some(named), Ok(resp)) = (sticky, result.as_mut()) {
            let index = (first + attempt) % pool.backends().len();
            if named != Some(index) {
                let cookie = format!(
                    "{STICKY_COOKIE}={}; Path=/; HttpOnly",
                    sticky_token(backend.addr)
                );
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    resp.headers_mut().append(header::SET_COOKIE, value);
                }
            }
        }
        return result;
    }
    Err(ProxyError::Connect)
}

/// The first backend for a request: 503 when the pool is empty or an alias has no leader.
fn pick(conn: &Conn, route: &Route) -> Result<usize, ProxyError> {
    let pool = &route.pool;
    pool.pick(conn.client.ip()).ok_or_else(|| {
        if pool.is_leader_pool() {
            ProxyError::NoLeader(route.vhosts.iter().map(|h| h.to_string()).collect())
        } else {
            ProxyError::NoBackends
        }
    })
}

/// The `Upgrade` value of a request that asks to switch protocols (`Connection: upgrade`).
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = headers.get(header::UPGRADE)?;
    let asks = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    });
    asks.then(|| upgrade.clone())
}

/// Forwards an `Upgrade` request (WebSocket and the like) on a fresh upstream connection.
/// When the backend answers 101 the client gets the 101 and a tunnel task joins the two
/// sockets: it holds no route table, so later table swaps never cut it; the drain waits
/// for it. Any other answer is passed on as usual.
async fn forward_upgrade(
    mut req: Request<Incoming>,
    conn: &Conn,
    route: &Arc<Route>,
    settings: &HttpSettings,
    protocol: HeaderValue,
) -> Result<Response<ProxyBody>, ProxyError> {
    let pool = &route.pool;
    let first = pick(conn, route)?;
    let client_side = hyper::upgrade::on(&mut req);
    prepare_upstream_request(&mut req, conn);
    if let Some(prefix) = &route.rules.proxypass_path {
        strip_proxypass(&mut req, prefix);
    }
    req.headers_mut().insert(header::UPGRADE, protocol);
    req.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    // Only the connect is retried: the request itself is sent once.
    let mut picked = None;
    for attempt in 0..pool.max_attempts() {
        let Some(backend) = pool.attempt(first, attempt) else {
            continue;
        };
        match connect_with(backend, settings.connect_timeout, true).await {
            Some(sender) => {
                picked = Some((backend, sender));
                break;
            }
            None => note_failure(&conn.shared, route, backend),
        }
    }
    let (backend, mut sender) = picked.ok_or(ProxyError::Connect)?;
    let in_flight = backend.start();
    let sent = tokio::time::timeout(settings.response_timeout, sender.send_request(req)).await;
    let mut resp = match sent {
        Err(_elapsed) => {
            note_failure(&conn.shared, route, backend);
            return Err(ProxyError::Timeout);
        }
        Ok(Err(e)) => {
            note_failure(&conn.shared, route, backend);
            return Err(ProxyError::Upstream(e));
        }
        Ok(Ok(resp)) => resp,
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        if resp.status().is_server_error() {
            note_failure(&conn.shared, route, backend);
        } else {
            backend.succeeded();
        }
        return Ok(upstream_response(resp, backend.addr, sender, in_flight));
    }
    backend.succeeded();
    let upstream_side = hyper::upgrade::on(&mut resp);
    let (mut parts, _) = resp.into_parts();
    let protocol = parts.headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(p) = protocol {
        parts.headers.insert(header::UPGRADE, p);
    }
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));

    let metrics = conn.shared.metrics.clone();
    metrics
        .http_upgrades
        .with_label_values(&[&route.name])
        .inc();
    let (route_name, client) = (route.name.clone(), conn.client);
    let tunnel = async move {
        let _in_flight = in_flight;
        let (client_io, upstream_io) = match tokio::join!(client_side, upstream_side) {
            (Ok(c), Ok(u)) => (c, u),
            (c, u) => {
                debug!(route = %route_name, %client, client_ok = c.is_ok(), backend_ok = u.is_ok(),
                    "upgrade did not complete");
                return;
            }
        };
        metrics.http_tunnels_open.inc();
        let copied = tokio::io::copy_bidirectional(
            &mut TokioIo::new(client_io),
            &mut TokioIo::new(upstream_io),
        )
        .await;
        metrics.http_tunnels_open.dec();
        match copied {
            Ok((up, down)) => {
                debug!(route = %route_name, %client, up, down, "tunnel closed")
            }
            Err(e) => debug!(route = %route_name, %client, error = %e, "tunnel ended"),
        }
    };
    tokio::spawn(conn.shutdown.track(tunnel));
    let empty: ProxyBody = Either::Right(Full::new(Bytes::new()));
    Ok(Response::from_parts(parts, empty))
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Headers that describe one hop's connection and must not be forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    if let Some(conn) = headers.get(header::CONNECTION) {
        let named: Vec<HeaderName> = conn
            .to_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Edits the client's request in place into the one the backend gets.
fn prepare_upstream_request(req: &mut Request<Incoming>, conn: &Conn) {
    // Upstreams speak HTTP/1.1 whatever the client spoke (an HTTP/2 request included).
    *req.version_mut() = hyper::Version::HTTP_11;
    // Absolute-form targets become origin-form; the Host header says where it was going.
    if req.uri().authority().is_some() {
        if !req.headers().contains_key(header::HOST) {
            if let Some(value) = req
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                req.headers_mut().insert(header::HOST, value);
            }
        }
        let origin = req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .parse::<Uri>()
            .unwrap_or_else(|_| Uri::from_static("/"));
        *req.uri_mut() = origin;
    }
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    const XFPORT: HeaderName = HeaderName::from_static("x-forwarded-port");
    let xff = match headers.get(&XFF).and_then(|v| v.to_str().ok()) {
        Some(prior) => HeaderValue::from_str(&format!("{prior}, {}", conn.client.ip()))
            .unwrap_or(conn.xff.clone()),
        None => conn.xff.clone(),
    };
    headers.insert(XFF, xff);
    headers.insert(XFP, conn.proto.clone());
    headers.insert(XFPORT, conn.port.clone());
}

fn upstream_response(
    resp: Response<Incoming>,
    backend: SocketAddr,
    sender: SendRequest<Incoming>,
    in_flight: InFlight,
) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = UpstreamBody {
        inner: body,
        checkin: Some((backend, sender)),
        ended: false,
        _in_flight: in_flight,
    };
    Response::from_parts(parts, Either::Left(body))
}

/// The backend's response body, streamed to the client. When it has been read to the end
/// the upstream connection goes back to this thread's pool; the backend counts the request
/// as in flight until then.
pub struct UpstreamBody {
    inner: Incoming,
    checkin: Option<(SocketAddr, SendRequest<Incoming>)>,
    ended: bool,
    _in_flight: InFlight,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
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

thread_local! {
    /// Idle upstream connections of this worker thread, by backend address.
    static IDLE: RefCell<HashMap<SocketAddr, Vec<SendRequest<Incoming>>>> =
        RefCell::new(HashMap::new());
}

fn checkin(addr: SocketAddr, sender: SendRequest<Incoming>) {
    if sender.is_closed() {
        return;
    }
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_BACKEND {
            list.push(sender);
        }
    });
}

/// A ready connection to `backend`: a pooled one if any is still open, else a new one.
async fn checkout(backend: &Arc<Backend>, timeout: Duration) -> Option<SendRequest<Incoming>> {
    loop {
        let pooled = IDLE.with(|idle| idle.borrow_mut().get_mut(&backend.addr).and_then(Vec::pop));
        let Some(mut sender) = pooled else { break };
        if sender.is_closed() {
            continue;
        }
        // Checked in after its last response ended, so this is at most a brief wait for
        // the connection task to catch up; an error means it closed meanwhile.
        if sender.ready().await.is_ok() {
            return Some(sender);
        }
    }
    connect(backend, timeout).await
}

/// Opens a new upstream connection; counts the outcome on the backend.
async fn connect(backend: &Arc<Backend>, timeout: Duration) -> Option<SendRequest<Incoming>> {
    connect_with(backend, timeout, false).await
}

/// Opens a new upstream connection, able to be upgraded when `upgrades` is set.
async fn connect_with(
    backend: &Arc<Backend>,
    timeout: Duration,
    upgrades: bool,
) -> Option<SendRequest<Incoming>> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(backend.addr)).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_conflicts_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        assert!(check_framing(&h, false).is_ok());
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert!(check_framing(&h, false).is_err());
        h.remove(header::CONTENT_LENGTH);
        assert!(check_framing(&h, false).is_ok());
        assert!(check_framing(&h, true).is_err());
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("6"));
        assert!(check_framing(&h, false).is_err());
    }

    #[test]
    fn raw_heads_with_both_framings_are_spotted() {
        assert!(both_framings(
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\ntransfer-encoding: chunked\r\n\r\n"
        ));
        assert!(!both_framings(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(!both_framings(
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"
        ));
    }

    #[test]
    fn hop_by_hop_headers_go_including_connection_tokens() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn proxypass_strips_a_whole_prefix_only() {
        let rewrite = |path: &str| {
            let mut req = Request::get(path).body(()).unwrap();
            strip_proxypass(&mut req, "/api");
            req.uri().to_string()
        };
        assert_eq!(rewrite("/api/users?x=1"), "/users?x=1");
        assert_eq!(rewrite("/api"), "/");
        assert_eq!(rewrite("/api?x"), "/?x");
        assert_eq!(rewrite("/apiary"), "/apiary");
        assert_eq!(rewrite("/other"), "/other");
    }

    #[test]
    fn redirects_drop_the_port_but_keep_ipv6_brackets() {
        assert_eq!(without_port("web.test:8080"), "web.test");
        assert_eq!(without_port("web.test"), "web.test");
        assert_eq!(without_port("[::1]:8080"), "[::1]");
        assert_eq!(without_port("[::1]"), "[::1]");
    }

    #[test]
    fn sticky_tokens_are_stable_and_distinct() {
        let a: SocketAddr = "10.0.0.1:31000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:31000".parse().unwrap();
        assert_eq!(sticky_token(a), sticky_token(a));
        assert_ne!(sticky_token(a), sticky_token(b));
        assert_eq!(sticky_token(a).len(), 16);
        assert!(!sticky_token(a).contains("10.0.0.1"));
    }

    #[test]
    fn error_statuses() {
        assert_eq!(ProxyError::NoRoute.status(), 404);
        assert_eq!(ProxyError::NoBackends.status(), 503);
        assert_eq!(ProxyError::Connect.status(), 502);
        assert_eq!(ProxyError::Timeout.status(), 504);
    }
}
