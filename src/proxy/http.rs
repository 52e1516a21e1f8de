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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tracing::debug;

use super::h1_guard::{ClientFault, GuardSettings, GuardedIo, Signals};
use super::h1_scan::{Limits, Rejection};
use super::note_failure;
use crate::accept::{Gate, Slot};
use crate::config::UnderscoreHeaders;
use crate::routing::pool::{Backend, InFlight};
use crate::routing::{HttpSettings, Route};
use crate::shutdown::Shutdown;
use crate::Shared;

/// What the router answers with: a streamed upstream body or a short one of our own.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

/// What a backend is sent: the client's body, or none (a request sent again elsewhere).
pub type UpstreamRequestBody = Either<Incoming, Empty<Bytes>>;

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
        self.conn.guard.response_done();
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
        body_timeout: Duration::from_secs(30),
        underscore_headers: UnderscoreHeaders::Pass,
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
/// and tracked so the drain waits for it. `gate` caps the listener's open connections
/// (shared by every worker's loop).
pub async fn serve(
    listener: TcpListener,
    gate: Arc<Gate>,
    by: RouteBy,
    shared: Arc<Shared>,
    shutdown: Shutdown,
) {
    let local_port = listener.local_addr().map_or(0, |a| a.port());
    while let Some((stream, client, slot)) = accept(&listener, &gate, &shutdown).await {
        let trusted = http_settings(&shared).proxy_protocol;
        if trusted.is_empty() {
            let conn = Arc::new(Conn::new(
                shared.clone(),
                by,
                client,
                local_port,
                shutdown.clone(),
            ));
            let served = serve_connection(stream, conn, shutdown.clone());
            tokio::spawn(shutdown.track(async move {
                let _slot = slot;
                served.await
            }));
            continue;
        }
        // Behind a load balancer: the PROXY header names the client.
        let (shared, shutdown2) = (shared.clone(), shutdown.clone());
        tokio::spawn(shutdown.track(async move {
            let _slot = slot;
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
    gate: Arc<Gate>,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    shutdown: Shutdown,
) {
    let local_port = listener.local_addr().map_or(0, |a| a.port());
    while let Some((stream, client, slot)) = accept(&listener, &gate, &shutdown).await {
        let trusted = http_settings(&shared).https_proxy_protocol;
        let (acceptor, shutdown2, shared) = (acceptor.clone(), shutdown.clone(), shared.clone());
        tokio::spawn(shutdown.track(async move {
            let _slot = slot;
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

/// The next client connection under the listener's cap, or `None` at shutdown.
async fn accept(
    listener: &TcpListener,
    gate: &Gate,
    shutdown: &Shutdown,
) -> Option<(TcpStream, SocketAddr, Slot)> {
    tokio::select! {
        accepted = gate.accept(listener) => Some(accepted),
        _ = shutdown.triggered() => None,
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
    /// What the HTTP/1 guard says of this connection; also its head clock.
    guard: Arc<Signals>,
    /// Requests received so far: the guard names a refused head by its number.
    requests: AtomicU64,
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
            guard: Arc::new(Signals::new()),
            requests: AtomicU64::new(0),
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
    let guard = GuardSettings {
        limits: Limits {
            max_head: settings.max_header_bytes,
            max_request_line: MAX_REQUEST_LINE.min(settings.max_header_bytes),
            max_headers: MAX_HEADERS,
            underscores: settings.underscore_headers,
        },
        header_timeout: settings.header_timeout,
        body_timeout: settings.body_timeout,
    };
    let io = GuardedIo::new(stream, guard, conn.guard.clone());
    let service_conn = conn.clone();
    let service = hyper::service::service_fn(move |req| handle(req, service_conn.clone()));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        // The guard holds the head limit; hyper's buffer also holds pipelined bytes.
        .max_buf_size(settings.max_header_bytes + READ_AHEAD)
        .max_headers(MAX_HEADERS)
        .keep_alive(true)
        // A client that shuts its side after a complete request still gets the answer.
        .half_close(true)
        // One write per response instead of a vectored one: cheaper for small responses.
        .writev(false);
    // Upgrades (WebSocket) hand the socket to a tunnel task once the 101 is written.
    let http = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(http);
    let result = tokio::select! {
        r = http.as_mut() => r,
        _ = shutdown.triggered() => {
            // Finish the request in progress, then close; idle connections close now.
            http.as_mut().graceful_shutdown();
            http.await
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "client connection ended with an error");
    }
}

/// Longest request line (nginx's and Go's limit too); longer gets 414.
const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Most header fields in one request (hyper's default too); more gets 431.
const MAX_HEADERS: usize = 100;
/// Room in hyper's read buffer beyond one head, for pipelined bytes read with it.
const READ_AHEAD: usize = 16 * 1024;

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
    #[error("{}", .0.reason())]
    Refused(Rejection),
    #[error("{}", client_fault_text(*.0))]
    Client(ClientFault),
}

fn client_fault_text(fault: ClientFault) -> &'static str {
    match fault {
        ClientFault::BodyTimeout => "the request body stalled",
        ClientFault::BadBody => "bad request: the chunked body is malformed",
        ClientFault::ClosedMidBody => "the client closed the connection mid-body",
    }
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
            ProxyError::Refused(why) => {
                StatusCode::from_u16(why.status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ProxyError::Client(ClientFault::BodyTimeout) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Client(_) => StatusCode::BAD_REQUEST,
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
        if matches!(
            self,
            ProxyError::BadRequest(_) | ProxyError::Refused(_) | ProxyError::Client(_)
        ) {
            // After a refused request the framing of what follows is unknowable.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

async fn handle(req: Request<Incoming>, conn: Arc<Conn>) -> Result<Response<ConnBody>, Infallible> {
    conn.guard.request_started();
    let resp = respond(req, &conn).await;
    Ok(resp.map(|inner| ConnBody { inner, conn }))
}

/// Routes one request and answers it, counting it under its route.
async fn respond(req: Request<Incoming>, conn: &Arc<Conn>) -> Response<ProxyBody> {
    let start = Instant::now();
    let routed = {
        let table = conn.shared.table.load();
        let number = conn.requests.fetch_add(1, Ordering::Relaxed) + 1;
        match conn.guard.rejection_for(number) {
            Some(why) => Err(ProxyError::Refused(why)),
            None => check_framing(req.headers()),
        }
        .and_then(|()| {
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

/// Refuses requests whose body framing two parties could read differently. HTTP/1 heads
/// are checked in full by the guard before hyper reads them; this is the same rule for
/// HTTP/2 requests, whose fields hyper has already taken apart.
fn check_framing(headers: &HeaderMap) -> Result<(), ProxyError> {
    let te = headers.contains_key(header::TRANSFER_ENCODING);
    if te && headers.contains_key(header::CONTENT_LENGTH) {
        return Err(ProxyError::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    if let (Some(_), Some(_)) = (lengths.next(), lengths.next()) {
        return Err(ProxyError::BadRequest("more than one Content-Length"));
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

/// Picks a backend, connects, sends, and wraps the response body. An idempotent request
/// moves on to the next backend when a connect fails, and, when it has no body, also when
/// a backend drops it before answering.
async fn forward(
    req: Request<Incoming>,
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
    let mut req = req.map(Either::Left);
    prepare_upstream_request(&mut req, conn, settings.underscore_headers)?;
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
        let Ready { mut sender, shaky } = match checkout(backend, settings.connect_timeout).await {
            Some(ready) => ready,
            None => {
                note_failure(&conn.shared, route, backend);
                continue;
            }
        };
        // Kept to send again should this backend drop the request unanswered.
        let retryable = attempt + 1 < attempts && req.body().is_end_stream();
        let spare = (retryable && shaky).then(|| head_copy(&req));
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
                Some(unsent) => match connect(backend, settings.connect_timeout).await {
                    None => Err(ProxyError::Connect),
                    Some(mut fresh) => match tokio::time::timeout(
                        settings.response_timeout,
                        fresh.send_request(unsent),
                    )
                    .await
                    {
                        Err(_elapsed) => Err(ProxyError::Timeout),
                        Ok(Ok(resp)) => Ok(upstream_response(resp, backend.addr, fresh, in_flight)),
                        Ok(Err(e)) => Err(ProxyError::Upstream(e)),
                    },
                },
                None => Err(ProxyError::Upstream(e.into_error())),
            },
        };
        if result.is_err() {
            // The client stalled, broke its body or left: not the backend's failure.
            if let Some(fault) = conn.guard.client_fault() {
                return Err(ProxyError::Client(fault));
            }
        }
        // The exchange's outcome feeds passive ejection: 5xx answers count like failures.
        match &result {
            Ok(resp) if !resp.status().is_server_error() => backend.succeeded(),
            _ => note_failure(&conn.shared, route, backend),
        }
        if let Some(at) = sent_at {
            backend.observe_latency(at.elapsed());
        }
        if let (Err(ProxyError::Upstream(_) | ProxyError::Connect), Some(spare)) = (&result, spare)
        {
            req = spare;
            continue;
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

/// A body-less copy of a request's head, to send again elsewhere.
fn head_copy(req: &Request<UpstreamRequestBody>) -> Request<UpstreamRequestBody> {
    let mut copy = Request::new(Either::Right(Empty::new()));
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
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
    let mut req = req.map(Either::Left);
    prepare_upstream_request(&mut req, conn, settings.underscore_headers)?;
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
        let mut resp = upstream_response(resp, backend.addr, sender, in_flight);
        // The guard reads what follows an upgrade request as a tunnel's bytes, not HTTP:
        // with the switch refused, the connection ends after this answer.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(resp);
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
fn prepare_upstream_request<B>(
    req: &mut Request<B>,
    conn: &Conn,
    underscores: UnderscoreHeaders,
) -> Result<(), ProxyError> {
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
    if underscores != UnderscoreHeaders::Pass {
        underscore_names(headers, underscores)?;
    }
    const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    const XFPORT: HeaderName = HeaderName::from_static("x-forwarded-port");
    // Every X-Forwarded-For line the client sent, in order, then the client itself.
    let xff = if headers.contains_key(&XFF) {
        let mut chain = String::new();
        for prior in headers.get_all(&XFF) {
            if let Ok(prior) = prior.to_str() {
                chain.push_str(prior);
                chain.push_str(", ");
            }
        }
        chain.push_str(&conn.client.ip().to_string());
        HeaderValue::from_str(&chain).unwrap_or(conn.xff.clone())
    } else {
        conn.xff.clone()
    };
    headers.insert(XFF, xff);
    headers.insert(XFP, conn.proto.clone());
    headers.insert(XFPORT, conn.port.clone());
    Ok(())
}

/// `[http] underscore_headers`: drops the fields whose names hold `_`, or refuses the
/// request. HTTP/1 heads were refused by the guard already; this covers HTTP/2.
fn underscore_names(headers: &mut HeaderMap, policy: UnderscoreHeaders) -> Result<(), ProxyError> {
    let named: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().contains('_'))
        .cloned()
        .collect();
    if !named.is_empty() && policy == UnderscoreHeaders::Reject {
        return Err(ProxyError::BadRequest("a header name with an underscore"));
    }
    for name in named {
        headers.remove(name);
    }
    Ok(())
}

fn upstream_response(
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

/// An idle upstream connection and when it went idle.
type Idle = (SendRequest<UpstreamRequestBody>, Instant);

thread_local! {
    /// Idle upstream connections of this worker thread, by backend address.
    static IDLE: RefCell<HashMap<SocketAddr, Vec<Idle>>> = RefCell::new(HashMap::new());
}

fn checkin(addr: SocketAddr, sender: SendRequest<UpstreamRequestBody>) {
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
const IDLE_SHAKY: Duration = Duration::from_secs(1);

/// A connection ready for a request, and whether a drop before any answer is plausible
/// enough to keep a copy of a request that could go elsewhere: a new connection (the
/// backend may have just failed) or a long-idle one. A busy, pooled connection to a
/// healthy backend needs no copy, which keeps the copy off the hot path.
struct Ready {
    sender: SendRequest<UpstreamRequestBody>,
    shaky: bool,
}

/// A ready connection to `backend`: a pooled one if any is still open, else a new one.
async fn checkout(backend: &Arc<Backend>, timeout: Duration) -> Option<Ready> {
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
    let sender = connect(backend, timeout).await?;
    Some(Ready {
        sender,
        shaky: true,
    })
}

/// Opens a new upstream connection; counts the outcome on the backend.
async fn connect(
    backend: &Arc<Backend>,
    timeout: Duration,
) -> Option<SendRequest<UpstreamRequestBody>> {
    connect_with(backend, timeout, false).await
}

/// Opens a new upstream connection, able to be upgraded when `upgrades` is set.
async fn connect_with(
    backend: &Arc<Backend>,
    timeout: Duration,
    upgrades: bool,
) -> Option<SendRequest<UpstreamRequestBody>> {
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
        assert!(check_framing(&h).is_ok());
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert!(check_framing(&h).is_err());
        h.remove(header::CONTENT_LENGTH);
        assert!(check_framing(&h).is_ok());
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        assert!(check_framing(&h).is_err());
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
