//! marathon-lb's admin endpoints, for the scripts and cloud health checks written for it.
//! marathon-lb serves them from HAProxy's stats port (Lua services); Drover serves the same
//! paths on the admin listener:
//!
//! - `/_haproxy_health_check`: 200 while serving, 503 once the drain has started (so a load
//!   balancer in front stops sending). Like HAProxy's `monitor-uri`, it does not wait for
//!   the first route table: `/readyz` does.
//! - `/_haproxy_getvhostmap`, `/_haproxy_getappmap`: marathon-lb's `domain2backend.map` and
//!   `app2backend.map`, one `key backend` line each, sorted by key.
//! - `/_haproxy_getconfig`: the effective configuration as TOML (`config::render`), where
//!   marathon-lb shows its `haproxy.cfg`.
//! - `/_mlb_signal/hup`, `/_mlb_signal/usr1`: re-read the config and every source now, as
//!   SIGHUP does. (marathon-lb's SIGUSR1 regenerates its config from what it already has;
//!   Drover has nothing to regenerate, so both mean the same.)
//!
//! Only reads the published snapshots, apart from the re-read request.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW};
use hyper::{Method, Response, StatusCode};
use tracing::info;

use super::{text, AdminView};
use crate::catalog::Mode;
use crate::config::render::render;
use crate::routing::{RouteKind, RouteTable};
use crate::shutdown::Shutdown;

/// The answer for `path` if it is one of marathon-lb's; `None` for every other path.
pub fn respond(
    view: &AdminView,
    shutdown: &Shutdown,
    method: &Method,
    path: &str,
) -> Option<Response<Full<Bytes>>> {
    let signal = match path {
        "/_mlb_signal/hup" => Some("hup"),
        "/_mlb_signal/usr1" => Some("usr1"),
        _ => None,
    };
    if let Some(signal) = signal {
        // marathon-lb's users `curl` these (a GET); POST is what changing state ought to be.
        if method != Method::GET && method != Method::POST {
            return Some(not_allowed("GET, POST"));
        }
        info!(
            signal,
            "re-read requested over admin: re-reading the config and every source"
        );
        view.reread.request();
        return Some(text(
            StatusCode::OK,
            "re-reading the config and every source now (as SIGHUP)\n".into(),
        ));
    }
    let reads = [
        "/_haproxy_health_check",
        "/_haproxy_getvhostmap",
        "/_haproxy_getappmap",
        "/_haproxy_getconfig",
    ];
    if !reads.contains(&path) {
        return None;
    }
    if method != Method::GET && method != Method::HEAD {
        return Some(not_allowed("GET, HEAD"));
    }
    Some(match path {
        "/_haproxy_health_check" if shutdown.is_triggered() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into())
        }
        "/_haproxy_health_check" => text(StatusCode::OK, "ok\n".into()),
        "/_haproxy_getconfig" => match view.config.load_full() {
            Some(in_use) => text(StatusCode::OK, render(&in_use.config)),
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no config loaded yet\n".into(),
            ),
        },
        map if !view.routes.is_ready() => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no route table yet, so no {map} (waiting for the first good catalog read)\n"),
        ),
        "/_haproxy_getvhostmap" => text(StatusCode::OK, vhost_map(&view.routes.load())),
        _ => text(StatusCode::OK, app_map(&view.routes.load())),
    })
}

fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut resp = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed: this endpoint answers {allow}\n"),
    );
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

/// marathon-lb's `domain2backend.map`: `host backend` for every vhost routed whole (no path
/// prefix), by host. marathon-lb maps a domain only; routes on a path prefix are ACLs in its
/// HAProxy config, not map lines, and so they are left out here too (`/debug/routes` lists
/// them). Master aliases are vhosts as well: their backend is `alias:HOST`.
pub fn vhost_map(table: &RouteTable) -> String {
    let mut out = String::new();
    for (host, paths) in table.vhosts() {
        if let Some(whole) = paths.iter().find(|p| p.prefix.is_empty()) {
            let _ = writeln!(out, "{host} {}", whole.route.name);
        }
    }
    out
}

/// marathon-lb's `app2backend.map`: `app_id backend` for every app with an http-mode
/// service port, by app id; the backend is the app's first http-mode port's, the one
/// `X-Marathon-App-Id` routes to.
pub fn app_map(table: &RouteTable) -> String {
    let mut first: BTreeMap<&str, &str> = BTreeMap::new();
    let http_services = table
        .routes
        .iter()
        .filter(|r| matches!(r.kind, RouteKind::Service { .. }) && r.mode == Mode::Http);
    for route in http_services {
        first.entry(&route.app_id).or_insert(&route.name);
    }
    let mut out = String::new();
    for (app, backend) in first {
        let _ = writeln!(out, "{app} {backend}");
    }
    out
}
