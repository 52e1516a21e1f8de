//! `Upgrade` requests (WebSocket and the like): forwarded on a connection of their own and,
//! once the backend answers 101, joined to the client in a tunnel that outlives the route
//! table it was picked from.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::Histogram;
use tracing::debug;

use crate::proxy::note_failure;
use crate::routing::pool::Backend;
use crate::routing::{HttpSettings, Route};

use super::error::ProxyError;
use super::forward::pick;
use super::headers::{prepare_upstream_request, strip_hop_by_hop};
use super::record::Exchange;
use super::rules::strip_proxypass;
use super::upstream::{connect_tcp, UpstreamBody};
use super::{Conn, CountedBody, ProxyBody};

/// The `Upgrade` value of a request that asks to switch protocols (`Connection: upgrade`).
pub(super) fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = headers.get(header::UPGRADE)?;
    let asks = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    });
    asks.then(|| upgrade.clone())
}

/// Opens a connection to `backend` driven by hyper's client, which can hand the socket
/// over to a tunnel after a 101.
async fn connect_upgradable(
    backend: &Arc<Backend>,
    timeout: Duration,
    connect_time: &Histogram,
) -> Option<SendRequest<CountedBody>> {
    let stream = connect_tcp(backend, timeout, connect_time).await?;
    let handshake = hyper::client::conn::http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await;
    match handshake {
        Ok((sender, connection)) => {
            let addr = backend.addr;
            tokio::spawn(async move {
                if let Err(e) = connection.with_upgrades().await {
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

/// Forwards an `Upgrade` request (WebSocket and the like) on a fresh upstream connection.
/// When the backend answers 101 the client gets the 101 and a tunnel task joins the two
/// sockets: it holds no route table, so later table swaps never cut it; the drain waits
/// for it. Any other answer is passed on as usual.
pub(super) async fn forward_upgrade(
    mut req: Request<Incoming>,
    conn: &Conn,
    route: &Arc<Route>,
    settings: &HttpSettings,
    protocol: HeaderValue,
    exchange: &mut Exchange,
) -> Result<Response<ProxyBody>, ProxyError> {
    let pool = &route.pool;
    let first = pick(conn, route)?;
    let client_side = hyper::upgrade::on(&mut req);
    // An upgrade request has no body to count: what follows it is the tunnel's.
    let mut req = req.map(|body| CountedBody::new(body, None));
    prepare_upstream_request(&mut req, &conn.forwarding(), settings.underscore_headers)?;
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
        exchange.upstream = Some(backend.addr);
        exchange.retries = attempt as u32;
        match connect_upgradable(
            backend,
            settings.connect_timeout,
            &conn.plane.metrics.upstream_connect_duration,
        )
        .await
        {
            Some(sender) => {
                picked = Some((backend, sender));
                break;
            }
            None => note_failure(&conn.plane, route, backend),
        }
    }
    let (backend, mut sender) = picked.ok_or(ProxyError::Connect)?;
    let in_flight = backend.start();
    let sent = tokio::time::timeout(settings.response_timeout, sender.send_request(req)).await;
    let mut resp = match sent {
        Err(_elapsed) => {
            note_failure(&conn.plane, route, backend);
            return Err(ProxyError::Timeout);
        }
        Ok(Err(e)) => {
            note_failure(&conn.plane, route, backend);
            return Err(ProxyError::Upstream(e.into()));
        }
        Ok(Ok(resp)) => resp,
    };
    exchange.upstream_status = Some(resp.status().as_u16());
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        if resp.status().is_server_error() {
            note_failure(&conn.plane, route, backend);
        } else {
            backend.succeeded();
        }
        // The connection is not pooled: it was opened for a switch, which was refused.
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = UpstreamBody::unpooled(body, in_flight);
        let mut resp = Response::from_parts(parts, Either::Left(body));
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

    let metrics = conn.plane.metrics.clone();
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
