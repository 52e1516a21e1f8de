//! Forwarding a request to a route's backends: the pick, the retries (the next backend on a
//! connect failure for idempotent methods, and on a drop before any answer for body-less
//! ones), passive ejection's bookkeeping and the sticky cookie.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use http_body_util::{Either, Empty};
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::proxy::note_failure;
use crate::routing::pool::Backend;
use crate::routing::{HttpSettings, Route};

use super::error::ProxyError;
use super::forward_h2::forward_h2;
use super::headers::prepare_upstream_request;
use super::record::Exchange;
use super::rules::{sticky_backend, sticky_token, strip_proxypass, STICKY_COOKIE};
use super::upgrade::{forward_upgrade, upgrade_protocol};
use super::upstream::{checkout, connect, upstream_response, Ready};
use super::{Conn, CountedBody, ProxyBody, UpstreamRequestBody};

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
        return forward_upgrade(req, conn, route, settings, protocol, exchange).await;
    }
    if route.rules.backend.is_h2() {
        return forward_h2(req, conn, route, settings, exchange, body_in, backend_tls).await;
    }
    let pool = &route.pool;
    let sticky = route.rules.sticky.then(|| sticky_backend(&req, route));
    let first = match sticky.flatten() {
        Some(i) => i,
        None => pick(conn, route)?,
    };
    let mut req = req.map(|body| Either::Left(CountedBody::new(body, body_in)));
    prepare_upstream_request(&mut req, conn, settings.underscore_headers)?;
    if let Some(prefix) = &route.rules.proxypass_path {
        strip_proxypass(&mut req, prefix);
    }
    let connect_time = &conn.plane.metrics.upstream_connect_duration;
    let attempts = if is_idempotent(req.method()) {
        pool.max_attempts()
    } else {
        1
    };
    for attempt in 0..attempts {
        let Some(backend) = pool.attempt(first, attempt) else {
            continue;
        };
        exchange.upstream = Some(backend.addr);
        exchange.retries = attempt as u32;
        let in_flight = backend.start();
        let Ready { mut sender, shaky } =
            match checkout(backend, settings.connect_timeout, connect_time).await {
                Some(ready) => ready,
                None => {
                    note_failure(&conn.plane, route, backend);
                    continue;
                }
            };
        // Kept to send again should this backend drop the request unanswered.
        let retryable = attempt + 1 < attempts && req.body().is_end_stream();
        let spare = (retryable && shaky).then(|| head_copy(&req));
        // Latency feeds p2c and the access log only; otherwise no clock read.
        let sent_at = (pool.tracks_latency() || exchange.timed).then(Instant::now);
        let sent =
            tokio::time::timeout(settings.response_timeout, sender.try_send_request(req)).await;
        let result = match sent {
            Err(_elapsed) => Err(ProxyError::Timeout),
            Ok(Ok(resp)) => Ok(upstream_response(resp, backend.addr, sender, in_flight)),
            Ok(Err(mut e)) => match e.take_message() {
                // Never written: the pooled connection had just closed. Safe to resend
                // on a fresh connection whatever the method.
                Some(unsent) => {
                    match connect(backend, settings.connect_timeout, connect_time).await {
                        None => Err(ProxyError::Connect),
                        Some(mut fresh) => match tokio::time::timeout(
                            settings.response_timeout,
                            fresh.send_request(unsent),
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
        if let (Err(ProxyError::Upstream(_) | ProxyError::Connect), Some(spare)) = (&result, spare)
        {
            req = spare;
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

/// A body-less copy of a request's head, to send again elsewhere.
pub(super) fn head_copy(req: &Request<UpstreamRequestBody>) -> Request<UpstreamRequestBody> {
    let mut copy = Request::new(Either::Right(Empty::new()));
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
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
