//! The admin listener: `/` (the status page) and `/status.json` (what it shows),
//! `/healthz` (the process answers), `/readyz` (the first route table is stored), `/metrics`
//! (Prometheus text), `/debug/routes` (the route table in use, as JSON), and marathon-lb's
//! `/_haproxy_*` and `/_mlb_signal/*` (`mlb`). It runs on the control thread and only reads
//! what the other tasks published, through an [`AdminView`]: it holds no writer, so a busy
//! or hostile admin client cannot affect routing (it can ask for a re-read, as SIGHUP does).

pub mod mlb;
mod routes;
pub mod status;
pub mod zk;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tracing::{debug, warn};

use crate::accept::Gate;
use crate::handles::{
    ConfigReader, HealthStatusReader, ListenerStatusReader, Reread, RouteTableReader,
    SourceErrorsReader, UpstreamErrorsReader, ZoneReader,
};
use crate::lazy_socket::{LazyListener, LazyStream};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use routes::{refresh_backend_gauges, routes_dump};

/// Everything admin shows, each through a reader. Also how tests and benches look at a
/// running Drover (`Server::view`).
#[derive(Clone)]
pub struct AdminView {
    pub routes: RouteTableReader,
    pub zone: ZoneReader,
    pub config: ConfigReader,
    pub health: HealthStatusReader,
    pub listeners: ListenerStatusReader,
    pub sources: SourceErrorsReader,
    /// Rendered at `/metrics`; the `drover_backends` gauges are set just before.
    pub metrics: Metrics,
    /// What `/_mlb_signal/hup` and `/_mlb_signal/usr1` pull: SIGHUP's re-read.
    pub reread: Reread,
    /// The last upstream errors, for the status page.
    pub upstream_errors: UpstreamErrorsReader,
    /// Each route's rates and latency over the last 10 s, from the `status::Sampler`.
    pub traffic: status::TrafficReader,
    /// When this Drover started (the status page's uptime).
    pub started: tokio::time::Instant,
    /// The ZooKeeper elections followed (`[mesos] zk`, `[[alias]] zk`).
    pub zk: crate::zk::Zk,
}

/// Longest an admin client may take to send a request head; an idle or slow client must not
/// hold a connection (and a task) forever.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Admin connections open at once: plenty for scrapers, health checks and operators.
const MAX_CONNECTIONS: usize = 512;

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const JSON: &str = "application/json";

const ENDPOINTS: &str = concat!(
    "endpoints: / (status page) /status.json /healthz /readyz /metrics /debug/routes /v1/version /v1/config /v1/hosts/NAME /v1/services/NAME\n",
    "marathon-lb compatibility: /_haproxy_health_check /_haproxy_getvhostmap /_haproxy_getappmap /_haproxy_getconfig /_mlb_signal/hup /_mlb_signal/usr1\n",
);

/// Accepts admin connections for as long as Drover runs, the drain included, so that load
/// balancers in front read the drain in `/readyz` and `/_haproxy_health_check` (a 503)
/// rather than guess it from a refused connection. One task per connection. Connections
/// are not tracked by the drain: an admin client (a scraper with keep-alive) must not hold
/// up the exit. When shutdown starts, open connections finish their current request and
/// close; later ones answer one request each.
pub async fn serve(listener: LazyListener, view: Arc<AdminView>, shutdown: Shutdown) {
    // Its own cap, so the admin port answers while the data plane is at its limits.
    let gate = Gate::new("admin", MAX_CONNECTIONS, &view.metrics);
    loop {
        let (stream, peer, slot) = gate.accept(&listener).await;
        let served = connection(stream, peer, view.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _slot = slot;
            served.await
        });
    }
}

/// Serves one connection; on shutdown it finishes the request in progress, then closes.
/// While draining it serves one request, then closes.
async fn connection(
    stream: LazyStream,
    peer: SocketAddr,
    view: Arc<AdminView>,
    shutdown: Shutdown,
) {
    let draining = shutdown.is_triggered();
    let service = {
        let shutdown = shutdown.clone();
        service_fn(move |req: Request<Incoming>| {
            std::future::ready(Ok::<_, Infallible>(respond(&view, &shutdown, &req)))
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(!draining)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    // hyper's graceful shutdown closes a connection that has not sent a byte yet: one
    // accepted while draining is left to finish its one request instead.
    let result = if draining {
        conn.await
    } else {
        tokio::select! {
            r = conn.as_mut() => r,
            _ = shutdown.triggered() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    if let Err(e) = result {
        // The client's doing (reset, garbage, timeout); nothing to act on but worth a trace.
        debug!(%peer, error = %e, "admin connection ended with an error");
    }
}

/// Answers one admin request. Pure apart from reading the published snapshots and, on
/// `/_mlb_signal/*`, asking for a re-read.
pub fn respond<B>(
    view: &AdminView,
    shutdown: &Shutdown,
    req: &Request<B>,
) -> Response<Full<Bytes>> {
    // Before the method check: the signals take POST too.
    if let Some(resp) = mlb::respond(view, shutdown, req.method(), req.uri().path()) {
        return resp;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: the admin endpoints answer GET and HEAD only\n".into(),
        );
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match req.uri().path() {
        "/" => status::page(),
        "/status.json" => status::answer(view),
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => readiness(view, shutdown),
        "/metrics" => {
            refresh_backend_gauges(view);
            body(
                StatusCode::OK,
                PROMETHEUS_TEXT,
                view.metrics.render().into(),
            )
        }
        "/debug/routes" => {
            let dump = routes_dump(view);
            match serde_json::to_vec_pretty(&dump) {
                Ok(mut json) => {
                    json.push(b'\n');
                    body(StatusCode::OK, JSON, json.into())
                }
                Err(e) => {
                    warn!(error = %e, "cannot encode /debug/routes");
                    text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot encode the route table: {e}\n"),
                    )
                }
            }
        }
        "/v1/version" => json(StatusCode::OK, &mesos_dns::version()),
        "/v1/config" => match view.config.load_full() {
            Some(in_use) => json(StatusCode::OK, &mesos_dns::config(&in_use)),
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no config loaded yet\n".into(),
            ),
        },
        path if path.starts_with("/v1/hosts/") || path.starts_with("/v1/services/") => {
            let Some(zone) = view.zone.load_full() else {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no DNS zone yet: [dns] is off, or its sources have not been read\n".into(),
                );
            };
            match mesos_dns::lookup(&zone, path) {
                Some(answer) => answer,
                None => text(
                    StatusCode::NOT_IMPLEMENTED,
                    "not implemented: /v1/hosts/{host} and /v1/services/{service} only\n".into(),
                ),
            }
        }
        other => text(
            StatusCode::NOT_FOUND,
            format!("not found: {}\n{ENDPOINTS}", other.escape_debug()),
        ),
    }
}

/// Encodes `value` as a JSON answer.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            self::body(status, JSON, body.into())
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the answer: {e}\n"),
        ),
    }
}

/// The Mesos-DNS HTTP API (`/v1/...`), same paths and JSON shapes, so its users' tools work.
mod mesos_dns {
    use hyper::{Response, StatusCode};
    use serde::Serialize;
    use serde_json::{json, Value};

    use super::{json, Bytes, Full};
    use crate::dns::{api, Zone};
    use crate::handles::ConfigInUse;
    use crate::source::mesos::cluster::master_addresses;

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    pub struct Version {
        service: &'static str,
        #[serde(rename = "URL")]
        url: &'static str,
        version: &'static str,
        implementation: &'static str,
    }

    /// The API it answers is Mesos-DNS's; the version and implementation are Drover's.
    pub fn version() -> Version {
        Version {
            service: "Mesos-DNS",
            url: "https://github.com/mesosphere/mesos-dns",
            version: env!("CARGO_PKG_VERSION"),
            implementation: "drover",
        }
    }

    /// The running DNS configuration under Mesos-DNS's field names. Nothing secret is in it:
    /// the Mesos secret (Mesos-DNS shows it here) and the Marathon password are files Drover
    /// reads, and neither their contents nor their paths are shown.
    pub fn config(in_use: &ConfigInUse) -> Value {
        let config = &in_use.config;
        let (Some(dns), Some(options)) = (&config.dns, &in_use.zone) else {
            return json!({ "DnsOn": false, "HttpOn": true });
        };
        let forward: Vec<String> = dns.forward.iter().map(|a| a.ip().to_string()).collect();
        let mesos = config.mesos.as_ref();
        let principal = mesos.and_then(|m| m.principal.clone());
        let secret = if principal.is_some() {
            "<redacted>"
        } else {
            ""
        };
        json!({
            "RefreshSeconds": config.mesos.as_ref().map_or(0, |m| m.poll.as_secs()),
            "TTL": options.ttl,
            "Port": dns.listen.port(),
            "Listener": dns.listen.ip().to_string(),
            "Domain": options.records.domain,
            "Masters": mesos.map_or_else(Vec::new, |m| master_addresses(&m.masters)),
            "Resolvers": forward,
            "RecurseOn": !dns.forward.is_empty(),
            "ExternalOn": !dns.forward.is_empty(),
            "DnsOn": true,
            "HttpOn": true,
            "HttpPort": config.admin.as_ref().map_or(0, |a| a.listen.port()),
            "SOAMname": options.soa.mname,
            "SOARname": options.soa.rname,
            "SOARefresh": options.soa.refresh,
            "SOARetry": options.soa.retry,
            "SOAExpire": options.soa.expire,
            "SOAMinttl": options.soa.minimum,
            "IPSources": dns.ip_sources,
            "EnforceRFC952": dns.labels == "rfc952",
            "SRVRecordDefaultWeight": options.srv_weight,
            "MesosHTTPSOn": mesos.is_some_and(|m| m.masters.iter().any(|u| u.starts_with("https://"))),
            "CACertFile": mesos
                .and_then(|m| m.ca_file.as_ref())
                .map_or_else(String::new, |p| p.display().to_string()),
            "MesosAuthentication": if principal.is_some() { "basic" } else { "" },
            "MesosCredentials": { "principal": principal.unwrap_or_default(), "secret": secret },
        })
    }

    /// `/v1/hosts/{host}` and `/v1/services/{service}`; `None` for other `/v1/` paths.
    pub fn lookup(zone: &Zone, path: &str) -> Option<Response<Full<Bytes>>> {
        if let Some(host) = path.strip_prefix("/v1/hosts/") {
            if host.contains('/') {
                return None;
            }
            return Some(json(StatusCode::OK, &api::hosts(zone, host)));
        }
        let service = path.strip_prefix("/v1/services/")?;
        if service.contains('/') {
            return None;
        }
        Some(json(StatusCode::OK, &api::services(zone, service)))
    }
}

fn readiness(view: &AdminView, shutdown: &Shutdown) -> Response<Full<Bytes>> {
    // A draining process says "not ready" so load balancers in front stop sending to it.
    if shutdown.is_triggered() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n".into(),
        );
    }
    if !view.routes.is_ready() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no route table yet (waiting for the first good catalog read)\n".into(),
        );
    }
    // ZooKeeper down is said, not failed: the last leader is kept and served.
    text(
        StatusCode::OK,
        format!("ready\n{}", zk::readiness_detail(&view.zk)),
    )
}

fn text(status: StatusCode, s: String) -> Response<Full<Bytes>> {
    body(status, TEXT, s.into())
}

fn body(status: StatusCode, content_type: &'static str, b: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(b));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

// === /debug/routes ===

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handles::{
        upstream_errors, ConfigWriter, HealthStatusWriter, ListenerStatusWriter, RouteTableWriter,
        SourceErrors, ZoneWriter,
    };
    use crate::routing::RouteTable;

    /// A view of nothing published yet, and the table writer to publish with.
    fn view() -> (AdminView, RouteTableWriter) {
        let table = RouteTableWriter::new();
        let view = AdminView {
            routes: table.reader(),
            zone: ZoneWriter::new().reader(),
            config: ConfigWriter::new().reader(),
            health: HealthStatusWriter::new().reader(),
            listeners: ListenerStatusWriter::new().reader(),
            sources: SourceErrors::new().reader(),
            metrics: Metrics::new(prometheus::Registry::new()),
            reread: crate::handles::Reread::new(),
            upstream_errors: upstream_errors().2,
            traffic: Default::default(),
            started: tokio::time::Instant::now(),
            zk: crate::zk::Zk::new(Metrics::new(prometheus::Registry::new())),
        };
        (view, table)
    }

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).expect("request")
    }

    #[test]
    fn readyz_follows_the_first_table_and_the_shutdown() {
        let ((s, table), shutdown) = (view(), Shutdown::new());
        assert_eq!(
            respond(&s, &shutdown, &get("/readyz")).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        table.store(Arc::new(RouteTable::default()));
        assert_eq!(
            respond(&s, &shutdown, &get("/readyz")).status(),
            StatusCode::OK
        );
        shutdown.trigger();
        assert_eq!(
            respond(&s, &shutdown, &get("/readyz")).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        // Alive all along.
        assert_eq!(
            respond(&s, &shutdown, &get("/healthz")).status(),
            StatusCode::OK
        );
    }

    #[test]
    fn unknown_paths_and_methods_are_refused() {
        let ((s, _), shutdown) = (view(), Shutdown::new());
        assert_eq!(
            respond(&s, &shutdown, &get("/nope")).status(),
            StatusCode::NOT_FOUND
        );
        let post = Request::post("/metrics").body(()).expect("request");
        let resp = respond(&s, &shutdown, &post);
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[ALLOW], "GET, HEAD");
    }

    #[test]
    fn the_status_page_and_its_json() {
        let ((s, _), shutdown) = (view(), Shutdown::new());
        let page = respond(&s, &shutdown, &get("/"));
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        let policy = page.headers()["content-security-policy"]
            .to_str()
            .expect("ascii");
        assert!(policy.starts_with("default-src 'none'"), "{policy}");
        // Data goes in as text only: no markup parsing anywhere in the script.
        for unsafe_sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!status::PAGE.contains(unsafe_sink), "{unsafe_sink}");
        }
        assert!(status::PAGE.contains("/status.json"));

        let resp = respond(&s, &shutdown, &get("/status.json"));
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[hyper::header::CACHE_CONTROL], "no-store");
        let json = serde_json::to_value(status::status(&s)).expect("json");
        assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(json["ready"], false);
        assert_eq!(json["dns"], serde_json::Value::Null);
        for key in ["routes", "aliases", "sources", "upstream_errors"] {
            assert_eq!(json[key], serde_json::json!([]), "{key}");
        }
    }

    #[test]
    fn an_empty_table_dumps_empty_lists() {
        let json = serde_json::to_value(routes_dump(&view().0)).expect("json");
        assert_eq!(json["version"], 0);
        assert_eq!(json["ready"], false);
        for key in [
            "vhosts",
            "ports",
            "routes",
            "conflicts",
            "problems",
            "tcp_listeners",
        ] {
            assert_eq!(json[key], serde_json::json!([]), "{key}");
        }
    }
}
