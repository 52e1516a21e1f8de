//! One request from head to answer: the guard's refusals, routing by Host (or app id),
//! the route's gates, forwarding, and the per-route counts.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response};
use tokio::time::Instant;
use tracing::debug;

use super::error::ProxyError;
use super::forward::forward;
use super::grpc;
use super::record::Record;
use super::rules::admit;
use super::{default_settings, Conn, ConnBody, ProxyBody, RouteBy};
use crate::catalog::BackendProto;
use crate::proxy::Fault;

pub(super) async fn handle(
    req: Request<Incoming>,
    conn: Arc<Conn>,
) -> Result<Response<ConnBody>, Infallible> {
    conn.guard.request_started();
    let mut record = Record::start(&conn, &req);
    let resp = respond(req, &conn, &mut record).await;
    Ok(resp.map(|inner| ConnBody {
        inner,
        conn,
        record,
    }))
}

/// Routes one request and answers it, counting it under its route.
pub(super) async fn respond(
    req: Request<Incoming>,
    conn: &Arc<Conn>,
    record: &mut Record,
) -> Response<ProxyBody> {
    let start = Instant::now();
    // A gRPC client reads failures from `grpc-status`, not from an HTTP error page.
    let is_grpc = grpc::is_grpc(req.headers());
    if is_grpc && record.exchange.timed {
        // The access log is on: it gets the call's grpc-status.
        record.exchange.grpc_status = Some(grpc::StatusCell::new());
    }
    let routed = {
        let table = conn.plane.table.load();
        let number = conn.requests.fetch_add(1, Ordering::Relaxed) + 1;
        match conn.guard.rejection_for(number) {
            Some(why) => Err(ProxyError::Refused(why)),
            // HTTP/1 heads were checked for exactly this by the guard: skip the lookups.
            None if req.version() <= hyper::Version::HTTP_11 => Ok(()),
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
            // An `h2` route's TLS setup comes from the same snapshot as the route.
            let backend_tls = match &route.rules.backend {
                BackendProto::H2 { ca } => table.backend_tls.get(ca).cloned(),
                _ => None,
            };
            Ok((route.clone(), settings, backend_tls))
        })
    };
    let (route, settings, backend_tls) = match routed {
        Ok(r) => r,
        Err(e) => {
            let resp = answer(&e, is_grpc);
            if is_grpc {
                grpc::record(
                    &conn.plane.metrics.grpc_responses,
                    crate::metrics::UNROUTED,
                    record.exchange.grpc_status.as_ref(),
                    &grpc::status_for(&e).to_string(),
                );
            }
            record.answered(resp.status().as_u16(), None, e.fault_note());
            conn.plane.unrouted.count(resp.status().as_u16());
            conn.plane
                .unrouted
                .duration
                .observe(start.elapsed().as_secs_f64());
            return resp;
        }
    };
    let resp = match admit(&req, conn, &route) {
        Err(e) => Err(e),
        Ok(()) => {
            let body_in = record.body_counter();
            forward(
                req,
                conn,
                &route,
                &settings,
                &mut record.exchange,
                body_in,
                backend_tls,
            )
            .await
        }
    };
    let mut fault = None;
    let mut resp = match resp {
        Ok(resp) => resp,
        Err(e) => {
            fault = e.fault_note();
            if let Some(kind) = e.upstream_kind() {
                conn.plane
                    .metrics
                    .upstream_errors
                    .with_label_values(&[&route.name, kind])
                    .inc();
            }
            // For the status page: what went wrong past the client (a backend that failed,
            // none to pick, no leader), with the backend last tried.
            if let Some(fault @ (Fault::Upstream | Fault::Drover)) = e.fault() {
                conn.plane
                    .upstream_errors
                    .report(&route.name, record.exchange.upstream, fault, &e);
            }
            if let Some(fault) = e.fault() {
                debug!(route = %route.name, client = %conn.client, fault = fault.as_str(),
                    error = %e, "request failed");
            }
            if is_grpc {
                grpc::record(
                    &conn.plane.metrics.grpc_responses,
                    &route.name,
                    record.exchange.grpc_status.as_ref(),
                    &grpc::status_for(&e).to_string(),
                );
            }
            answer(&e, is_grpc)
        }
    };
    if route.rules.hsts && conn.proto == "https" {
        resp.headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, HSTS.clone());
    }
    route.stats.count(resp.status().as_u16());
    route.stats.duration.observe(start.elapsed().as_secs_f64());
    record.answered(resp.status().as_u16(), Some(&route), fault);
    resp
}

/// The answer to a failure: a trailers-only gRPC response for a gRPC call, else the
/// HTTP error page.
fn answer(e: &ProxyError, is_grpc: bool) -> Response<ProxyBody> {
    if is_grpc {
        grpc::error_response(e)
    } else {
        e.response()
    }
}

/// marathon-lb's `Strict-Transport-Security` value: 180 days.
pub(super) const HSTS: HeaderValue = HeaderValue::from_static("max-age=15552000");

/// Refuses requests whose body framing two parties could read differently. HTTP/1 heads
/// are checked in full by the guard before hyper reads them; this is the same rule for
/// HTTP/2 requests, whose fields hyper has already taken apart.
pub(super) fn check_framing(headers: &HeaderMap) -> Result<(), ProxyError> {
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
pub(super) fn request_host<B>(req: &Request<B>) -> Option<&str> {
    match req.headers().get(header::HOST) {
        Some(h) => h.to_str().ok().filter(|h| !h.is_empty()),
        None => req.uri().authority().map(|a| a.as_str()),
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
}
