//! Forwarding to HTTP/2 backends (`DROVER_{n}_BACKEND_PROTO` `h2c` or `h2`): the request
//! made an HTTP/2 one (its authority from Host, `te: trailers` kept for gRPC), a stream from
//! `upstream_h2`, the wait for the answer bounded by `response_timeout` and by the call's
//! gRPC deadline, and the answer's body watched for gRPC (`grpc::GrpcCall`). Bodies and
//! trailers stream both ways, never buffered.
//!
//! Nothing has been sent when no connection could be had, so any request, whatever its
//! method, moves on to the next backend then; once sent, it is not sent again.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use http_body_util::Either;
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::{Request, Response, Uri, Version};
use rustls_pki_types::ServerName;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::proxy::note_failure;
use crate::routing::pool::Backend;
use crate::routing::{HttpSettings, Route};

use super::error::ProxyError;
use super::forward::{give_sticky_cookie, pick};
use super::grpc::{self, GrpcCall};
use super::headers::{prepare_upstream_request, strip_hop_by_hop};
use super::record::Exchange;
use super::rules::{sticky_backend, strip_proxypass};
use super::upstream::UpstreamBody;
use super::upstream_h2::{checkout, purge_closed, Stream, Target};
use super::{Conn, CountedBody, ProxyBody};

/// Sends a request to one of the route's HTTP/2 backends and wraps the answer. `tls` is
/// the route's TLS setup for `h2` (`None` for `h2c`).
pub(super) async fn forward_h2(
    req: Request<Incoming>,
    conn: &Conn,
    route: &Arc<Route>,
    settings: &HttpSettings,
    exchange: &mut Exchange,
    body_in: Option<Arc<AtomicU64>>,
    tls: Option<TlsConnector>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let started = Instant::now();
    let is_grpc = grpc::is_grpc(req.headers());
    let deadline = grpc::timeout(req.headers()).and_then(|t| started.checked_add(t));
    // The wait for the answer's head ends at the response timeout or the call's deadline.
    let answer_by = deadline.map_or(started + settings.response_timeout, |d| {
        d.min(started + settings.response_timeout)
    });
    // Running out of time is the backend's failure only when it was our timeout.
    let deadline_first = deadline.is_some_and(|d| d <= started + settings.response_timeout);
    let late = || {
        if deadline_first {
            ProxyError::Deadline
        } else {
            ProxyError::Timeout
        }
    };
    let pool = &route.pool;
    let sticky = route.rules.sticky.then(|| sticky_backend(&req, route));
    let first = match sticky.flatten() {
        Some(i) => i,
        None => pick(conn, route)?,
    };
    let trailers = wants_trailers(req.headers());
    let mut req = req.map(|body| CountedBody::new(body, body_in));
    prepare_upstream_request(&mut req, &conn.forwarding(), settings.underscore_headers)?;
    if let Some(prefix) = &route.rules.proxypass_path {
        strip_proxypass(&mut req, prefix);
    }
    let fallback = pool.backends()[first].addr.to_string();
    make_h2(&mut req, tls.is_some(), trailers, &fallback);
    let metrics = &conn.plane.metrics;
    for attempt in 0..pool.max_attempts() {
        let Some(backend) = pool.attempt(first, attempt) else {
            continue;
        };
        exchange.upstream = Some(backend.addr);
        exchange.retries = attempt as u32;
        let in_flight = backend.start();
        let target = Target {
            addr: backend.addr,
            tls: tls.clone().map(|c| (c, server_name(route, backend))),
        };
        let checked = tokio::time::timeout_at(
            answer_by,
            checkout(&target, backend, settings.connect_timeout, metrics),
        )
        .await;
        let stream = match checked {
            Err(_elapsed) => return Err(late()),
            Ok(None) => {
                note_failure(&conn.plane, route, backend);
                continue;
            }
            Ok(Some(stream)) => stream,
        };
        let sent_at = (pool.tracks_latency() || exchange.timed).then(Instant::now);
        let result = send(req, stream, &target, backend, settings, metrics, answer_by)
            .await
            .map_err(|e| match e {
                ProxyError::Timeout => late(),
                other => other,
            });
        match &result {
            Ok((resp, _)) if !resp.status().is_server_error() => backend.succeeded(),
            // The client's deadline says nothing of the backend.
            Err(ProxyError::Deadline) => {}
            _ => note_failure(&conn.plane, route, backend),
        }
        if let Some(at) = sent_at {
            let took = at.elapsed();
            if pool.tracks_latency() {
                backend.observe_latency(took);
            }
            if result.is_ok() {
                exchange.upstream_time = Some(took);
            }
        }
        let (resp, slot) = result?;
        exchange.upstream_status = Some(resp.status().as_u16());
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let call = is_grpc
            .then(|| {
                GrpcCall::watch(
                    deadline,
                    &metrics.grpc_responses,
                    &route.name,
                    &parts.headers,
                    body.is_end_stream(),
                    exchange.grpc_status.clone(),
                )
            })
            .flatten();
        let body = UpstreamBody::h2(body, slot, in_flight, call);
        let mut resp = Response::from_parts(parts, Either::Left(body));
        if let Some(named) = sticky {
            give_sticky_cookie(
                &mut resp,
                named,
                (first + attempt) % pool.backends().len(),
                backend,
            );
        }
        return Ok(resp);
    }
    Err(ProxyError::Connect)
}

type Sent = (Response<Incoming>, super::upstream_h2::StreamSlot);

/// Sends on `stream` and waits for the head until `answer_by`. A request the connection
/// refused unsent (it had just closed) goes once more on another connection.
async fn send(
    req: Request<CountedBody>,
    stream: Stream,
    target: &Target,
    backend: &Arc<Backend>,
    settings: &HttpSettings,
    metrics: &crate::metrics::Metrics,
    answer_by: Instant,
) -> Result<Sent, ProxyError> {
    let Stream { mut sender, slot } = stream;
    let sent = tokio::time::timeout_at(answer_by, sender.try_send_request(req)).await;
    match sent {
        Err(_elapsed) => Err(ProxyError::Timeout),
        Ok(Ok(resp)) => Ok((resp, slot)),
        Ok(Err(mut e)) => {
            let Some(unsent) = e.take_message() else {
                return Err(ProxyError::Upstream(e.into_error().into()));
            };
            drop(slot);
            purge_closed(target);
            let again = tokio::time::timeout_at(answer_by, async {
                let Stream { mut sender, slot } =
                    checkout(target, backend, settings.connect_timeout, metrics)
                        .await
                        .ok_or(ProxyError::Connect)?;
                sender
                    .send_request(unsent)
                    .await
                    .map(|resp| (resp, slot))
                    .map_err(|e| ProxyError::Upstream(e.into()))
            })
            .await;
            again.unwrap_or(Err(ProxyError::Timeout))
        }
    }
}

/// Whether the client said it takes trailers (`TE: trailers`, which gRPC requires; the
/// one `TE` value HTTP/2 allows, so it is kept when the other hop-by-hop fields go).
fn wants_trailers(headers: &HeaderMap) -> bool {
    headers.get_all(header::TE).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
    })
}

/// Turns a request prepared for a backend into an HTTP/2 one: the target in absolute form
/// (`:scheme` and `:authority` from the Host, which HTTP/2 carries as a pseudo-header), and
/// `te: trailers` when the client sent it.
fn make_h2<B>(req: &mut Request<B>, tls: bool, trailers: bool, fallback: &str) {
    *req.version_mut() = Version::HTTP_2;
    let host = req.headers_mut().remove(header::HOST);
    let authority = host
        .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        .or_else(|| Authority::try_from(fallback).ok());
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut uri = Uri::builder()
        .scheme(if tls { Scheme::HTTPS } else { Scheme::HTTP })
        .path_and_query(path);
    if let Some(authority) = authority {
        uri = uri.authority(authority);
    }
    if let Ok(uri) = uri.build() {
        *req.uri_mut() = uri;
    }
    if trailers {
        req.headers_mut()
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// The name an `h2` backend's certificate must hold: the route's first vhost (the service's
/// name), or the backend's IP address for a route without one.
fn server_name(route: &Route, backend: &Backend) -> ServerName<'static> {
    route
        .vhosts
        .first()
        .and_then(|h| ServerName::try_from(h.to_string()).ok())
        .unwrap_or_else(|| ServerName::IpAddress(backend.addr.ip().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_become_http2_with_their_authority() {
        let mut req = Request::builder()
            .uri("/echo.Echo/Unary?x=1")
            .header(header::HOST, "grpc.example.com:8080")
            .body(())
            .unwrap();
        make_h2(&mut req, false, true, "10.0.0.1:9000");
        assert_eq!(req.version(), Version::HTTP_2);
        assert_eq!(
            req.uri(),
            "http://grpc.example.com:8080/echo.Echo/Unary?x=1"
        );
        assert!(!req.headers().contains_key(header::HOST));
        assert_eq!(req.headers()[header::TE], "trailers");

        let mut req = Request::builder().uri("/").body(()).unwrap();
        make_h2(&mut req, true, false, "10.0.0.1:9000");
        assert_eq!(req.uri(), "https://10.0.0.1:9000/");
        assert!(!req.headers().contains_key(header::TE));
    }

    #[test]
    fn te_trailers_is_found_among_other_codings() {
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("gzip, Trailers"));
        assert!(wants_trailers(&h));
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        assert!(!wants_trailers(&h));
    }
}
