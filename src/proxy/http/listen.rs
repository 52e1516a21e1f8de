//! The HTTP listeners: the accept loops of the plain and TLS routers, and one client
//! connection served by hyper: HTTP/1.1 behind the guard (`proxy::h1_guard`), or HTTP/2
//! when TLS negotiated it. Draining on shutdown finishes what is in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::accept::{Gate, Place, Slot};
use crate::access_log::TlsNote;
use crate::lazy_socket::{LazyListener, LazyStream};
use crate::proxy::h1_guard::{GuardSettings, GuardedIo};
use crate::proxy::h1_scan::Limits;
use crate::proxy::DataPlane;
use crate::shutdown::Shutdown;

use super::preface::{read_opening, Opening};
use super::respond::handle;
use super::{http_settings, Conn, RouteBy};

/// Accepts connections until shutdown; each connection is served on the worker `place`
/// picks (this one unless it is clearly ahead, `accept::Spread`) and tracked so the drain
/// waits for it. `gate` caps the listener's open connections (shared by every worker's
/// loop).
pub async fn serve(
    listener: LazyListener,
    gate: Arc<Gate>,
    place: Place,
    by: RouteBy,
    plane: Arc<DataPlane>,
    shutdown: Shutdown,
) {
    let port = local_port_value(&listener);
    while let Some((stream, client, slot)) = accept(&listener, &gate, &shutdown).await {
        let (plane, shutdown2, port) = (plane.clone(), shutdown.clone(), port.clone());
        place.dispatch(stream, slot, &shutdown, move |mut stream| async move {
            let settings = http_settings(&plane);
            // Behind a load balancer: the PROXY header names the client.
            let trusted = &settings.proxy_protocol;
            let Some(client) = crate::proxy::proxied_client(&mut stream, client, trusted).await
            else {
                return;
            };
            let conn = Conn::new(plane, by, client, port, settings, shutdown2.clone());
            let conn = Arc::new(conn);
            serve_plain(stream, conn, shutdown2).await;
        });
    }
}

/// A plain connection: HTTP/2 when it opens with the HTTP/2 preface (h2c with prior
/// knowledge, as gRPC clients do without TLS), else HTTP/1.1 behind the guard. Nothing sent
/// within `header_timeout` closes it, as a head that never ends would.
async fn serve_plain(stream: LazyStream, conn: Arc<Conn>, shutdown: Shutdown) {
    let within = conn.settings.header_timeout;
    match read_opening(stream, within).await {
        Some((Opening::Http2, stream)) => serve_h2(stream, conn, shutdown).await,
        Some((Opening::Http1, stream)) => serve_connection(stream, conn, shutdown).await,
        None => debug!(client = %conn.client, "nothing usable sent within {within:?}; closing"),
    }
}

/// HTTP/2 limits for a public edge: enough streams and window for browsers, bounded so one
/// client cannot hold much memory, and reset floods (CVE-2023-44487) cut short.
pub(super) const H2_MAX_STREAMS: u32 = 128;
pub(super) const H2_STREAM_WINDOW: u32 = 1 << 20;
pub(super) const H2_CONNECTION_WINDOW: u32 = 4 << 20;
pub(super) const H2_MAX_PENDING_RESETS: usize = 32;
pub(super) const H2_MAX_ERROR_RESETS: usize = 256;
pub(super) const H2_KEEPALIVE: Duration = Duration::from_secs(30);

/// The `[https]` listener: TLS (certificate by SNI from `tls`), then HTTP/1.1 or HTTP/2 as
/// ALPN says, routed by Host exactly as on the plain router.
pub async fn serve_tls(
    listener: LazyListener,
    gate: Arc<Gate>,
    place: Place,
    acceptor: tokio_rustls::TlsAcceptor,
    plane: Arc<DataPlane>,
    shutdown: Shutdown,
) {
    let port = local_port_value(&listener);
    while let Some((stream, client, slot)) = accept(&listener, &gate, &shutdown).await {
        let (acceptor, shutdown2, plane) = (acceptor.clone(), shutdown.clone(), plane.clone());
        let port = port.clone();
        place.dispatch(stream, slot, &shutdown, move |mut stream| async move {
            let settings = http_settings(&plane);
            // Behind a load balancer the PROXY header comes before the TLS handshake.
            let trusted = &settings.https_proxy_protocol;
            let Some(client) = crate::proxy::proxied_client(&mut stream, client, trusted).await
            else {
                return;
            };
            let handshake_timeout = settings.header_timeout;
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
            let session = tls.get_ref().1;
            let h2 = session.alpn_protocol() == Some(b"h2");
            let mut conn = Conn::new(
                plane,
                RouteBy::Host,
                client,
                port,
                settings,
                shutdown2.clone(),
            );
            conn.proto = HeaderValue::from_static("https");
            conn.tls = Some(TlsNote {
                version: match session.protocol_version() {
                    Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                    Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                    _ => "TLS",
                },
                sni: session.server_name().map(str::to_string),
            });
            let conn = Arc::new(conn);
            if h2 {
                serve_h2(tls, conn, shutdown2).await;
            } else {
                serve_connection(tls, conn, shutdown2).await;
            }
        });
    }
}

/// `X-Forwarded-Port` for every request on `listener`: made once, shared by its connections.
fn local_port_value(listener: &LazyListener) -> HeaderValue {
    HeaderValue::from(listener.local_addr().map_or(0, |a| a.port()))
}

/// The next client connection under the listener's cap, or `None` at shutdown.
pub(super) async fn accept(
    listener: &LazyListener,
    gate: &Gate,
    shutdown: &Shutdown,
) -> Option<(LazyStream, SocketAddr, Slot)> {
    tokio::select! {
        accepted = gate.accept(listener) => Some(accepted),
        _ = shutdown.triggered() => None,
    }
}

/// Serves one HTTP/2 client connection until it ends or the drain closes it.
pub(super) async fn serve_h2<S>(stream: S, conn: Arc<Conn>, shutdown: Shutdown)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max_header = conn.settings.max_header_bytes;
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

pub(super) async fn serve_connection<S>(stream: S, conn: Arc<Conn>, shutdown: Shutdown)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let settings = &conn.settings;
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
    let service = hyper::service::service_fn(move |req| {
        let conn = service_conn.clone();
        async move {
            let draining = conn.shutdown.clone();
            let mut resp = handle(req, conn).await?;
            // While draining, every answer says the connection closes after it, so the
            // client sends its next request on a new connection (after an upgrade, to the
            // new process) instead of racing our close of an idle one.
            if draining.is_triggered() && resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
                resp.headers_mut()
                    .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
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
            // A connection accepted just now may not have sent its request yet, and a
            // keep-alive client learns of the close from its next answer (above): both get
            // DRAIN_LINGER before what is idle closes. Then finish the request in
            // progress and close.
            let linger = tokio::time::sleep(DRAIN_LINGER);
            tokio::pin!(linger);
            tokio::select! {
                r = http.as_mut() => r,
                _ = linger => {
                    http.as_mut().graceful_shutdown();
                    http.await
                }
            }
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "client connection ended with an error");
    }
}

/// How long an HTTP/1 connection may stay open idle once the drain starts.
pub(super) const DRAIN_LINGER: Duration = Duration::from_millis(250);

/// Longest request line (nginx's and Go's limit too); longer gets 414.
pub(super) const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Most header fields in one request (hyper's default too); more gets 431.
pub(super) const MAX_HEADERS: usize = 100;
/// Room in hyper's read buffer beyond one head, for pipelined bytes read with it.
pub(super) const READ_AHEAD: usize = 16 * 1024;
