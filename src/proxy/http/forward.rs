//! Forwarding a request to a route's backends: the pick, the retries (the next backend on a
//! connect failure for idempotent methods, and on a drop before any answer for idempotent
//! body-less ones), passive ejection's bookkeeping and the sticky cookie.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::config::UnderscoreHeaders;
use crate::proxy::note_failure;
use crate::routing::pool::Backend;
use crate::routing::{HttpSettings, Route};

use super::error::ProxyError;
use super::forward_h2::forward_h2;
use super::h1_client::{self, encode_request, H1Error, RequestFraming};
use super::headers::{to_origin_form, underscore_names};
use super::record::Exchange;
use super::rules::{sticky_backend, sticky_token, strip_proxypass, STICKY_COOKIE};
use super::upgrade::{forward_upgrade, upgrade_protocol};
use super::upstream::{checkout, connect, upstream_response};
use super::{Conn, CountedBody, ProxyBody};

/// Picks a backend, connects, sends, and wraps the response body. An idempotent request
/// moves on to the next backend when a connect fails, and, when it has no body, also when
/// a backend drops it before answering.
pub(super) async fn forward(
    req: Request<Incoming>,
    conn: &Conn,
    route: &Arc<Route>,
    settings: &HttpSettings,
    exchange: &mut Exchange,
    body_in: Option<Arc<AtomicU64>>,
    backend_tls: Option<TlsConnector>,
) -> Result<Response<ProxyBody>, ProxyError> {
    if let Some(protocol) = upgrade_protocol(req.headers()) {
        // Boxed, as is the HTTP/2 path: their futures are large (hyper's client handshake)
        // and would otherwise size every request's future, which hyper allocates and
        // copies once per client connection.
        return Box::pin(forward_upgrade(
            req, conn, route, settings, protocol, exchange,
        ))
        .await;
    }
    if route.rules.backend.is_h2() {
        return Box::pin(forward_h2(
            req,
            conn,
            route,
            settings,
            exchange,
            body_in,
            backend_tls,
        ))
        .await;
    }
    let pool = &route.pool;
    let sticky = route.rules.sticky.then(|| sticky_backend(&req, route));
    let first = match sticky.flatten() {
        Some(i) => i,
        None => pick(conn, route)?,
    };
    let mut req = req.map(|body| CountedBody::new(body, body_in));
    to_origin_form(&mut req);
    if settings.underscore_headers != UnderscoreHeaders::Pass {
        underscore_names(req.headers_mut(), settings.underscore_headers)?;
    }
    if let Some(prefix) = &route.rules.proxypass_path {
        strip_proxypass(&mut req, prefix);
    }
    let (parts, body) = req.into_parts();
    // Encoded once (with the rest of what the backend is sent: `encode_request`): the
    // same bytes go to whichever backend takes the request.
    let mut head = Vec::with_capacity(REQUEST_HEAD_CAPACITY);
    let framing = encode_request(&parts, &body, &conn.forwarding(), &mut head)
        .map_err(ProxyError::BadRequest)?;
    let mut body = (framing != RequestFraming::Empty).then_some(body);
    let head_request = parts.method == Method::HEAD;
    let connect_time = &conn.plane.metrics.upstream_connect_duration;
    let idempotent = is_idempotent(&parts.method);
    let attempts = if idempotent { pool.max_attempts() } else { 1 };
    for attempt in 0..attempts {
        let Some(backend) = pool.attempt(first, attempt) else {
            continue;
        };
        exchange.upstream = Some(backend.addr);
        exchange.retries = attempt as u32;
        let in_flight = backend.start();
        let mut upstream = match checkout(backend, settings.connect_timeout, connect_time).await {
            Some(upstream) => upstream,
            None => {
                note_failure(&conn.plane, route, backend);
                continue;
            }
        };
        // A body-less request dropped unanswered can go to the next backend: its bytes
        // are all in `head`.
        let retryable = attempt + 1 < attempts && body.is_none();
        // Latency feeds p2c and the access log only; otherwise no clock read.
        let sent_at = (pool.tracks_latency() || exchange.timed).then(Instant::now);
        let sent = tokio::time::timeout(
            settings.response_timeout,
            h1_client::exchange(&mut upstream, &head, &mut body, framing, head_request),
        )
        .await;
        let result = match sent {
            Err(_elapsed) => Err(ProxyError::Timeout),
            Ok(Ok(resp)) => Ok(upstream_response(resp, upstream, backend.addr, in_flight)),
            // Never written: the pooled connection had just closed. Safe to send on a
            // fresh connection whatever the method.
            Ok(Err(H1Error::Unsent(_))) => {
                match connect(backend, settings.connect_timeout, connect_time).await {
                    None => Err(ProxyError::Connect),
                    Some(mut fresh) => match tokio::time::timeout(
                        settings.response_timeout,
                        h1_client::exchange(&mut fresh, &head, &mut body, framing, head_request),
                    )
                    .await
                    {
                        Err(_elapsed) => Err(ProxyError::Timeout),
                        Ok(Ok(resp)) => Ok(upstream_response(resp, fresh, backend.addr, in_flight)),
                        Ok(Err(e)) => Err(ProxyError::Upstream(e.into())),
                    },
                }
            }
            Ok(Err(e)) => Err(ProxyError::Upstream(e.into())),
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
            _ => note_failure(&conn.plane, route, backend),
        }
        if let Some(at) = sent_at {
            let took = at.elapsed();
            if pool.tracks_latency() {
                backend.observe_latency(took);
            }
            if let Ok(resp) = &result {
                exchange.upstream_time = Some(took);
                exchange.upstream_status = Some(resp.status().as_u16());
            }
        } else if let Ok(resp) = &result {
            exchange.upstream_status = Some(resp.status().as_u16());
        }
        if retryable && matches!(result, Err(ProxyError::Upstream(_) | ProxyError::Connect)) {
            continue;
        }
        let mut result = result;
        if let (Some(named), Ok(resp)) = (sticky, result.as_mut()) {
            give_sticky_cookie(
                resp,
                named,
                (first + attempt) % pool.backends().len(),
                backend,
            );
        }
        return result;
    }
    Err(ProxyError::Connect)
}

/// What a request head usually fits in, so that encoding it rarely grows the buffer.
const REQUEST_HEAD_CAPACITY: usize = 1024;

/// `HAPROXY_{n}_STICKY`: a client without a cookie for the backend that answered (none,
/// or one naming `named`, another backend, perhaps one that left) is given one.
pub(super) fn give_sticky_cookie<B>(
    resp: &mut Response<B>,
    named: Option<usize>,
    index: usize,
    backend: &Backend,
) {
    if named == Some(index) {
        return;
    }
    let cookie = format!(
        "{STICKY_COOKIE}={}; Path=/; HttpOnly",
        sticky_token(backend.addr)
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// The first backend for a request: 503 when the pool is empty or an alias has no leader.
pub(super) fn pick(conn: &Conn, route: &Route) -> Result<usize, ProxyError> {
    let pool = &route.pool;
    pool.pick(conn.client.ip()).ok_or_else(|| {
        if pool.is_leader_pool() {
            ProxyError::NoLeader(route.vhosts.iter().map(|h| h.to_string()).collect())
        } else {
            ProxyError::NoBackends
        }
    })
}

pub(super) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}
