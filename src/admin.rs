//! The admin listener: `/healthz` (the process answers), `/readyz` (the first route table is
//! stored), `/metrics` (Prometheus text) and `/debug/routes` (the route table in use, as
//! JSON). It runs on the control thread and only reads what the control plane published:
//! the route table snapshot, the metrics registry and the TCP listener states. It never
//! changes anything, so a busy or hostile admin client cannot affect routing.

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
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::accept::Gate;
use crate::catalog::{ActiveCheck, Balance, CheckKind, Mode};
use crate::config::LeaderCheck;
use crate::health::monitor::{HealthStatus, TargetStatus};
use crate::routing::pool::Backend;
use crate::routing::{Claim, Route, RouteKind, RouteTable};
use crate::shutdown::Shutdown;
use crate::Shared;

/// Longest an admin client may take to send a request head; an idle or slow client must not
/// hold a connection (and a task) forever.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Admin connections open at once: plenty for scrapers, health checks and operators.
const MAX_CONNECTIONS: usize = 512;

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const JSON: &str = "application/json";

const ENDPOINTS: &str =
    "endpoints: /healthz /readyz /metrics /debug/routes /v1/version /v1/config /v1/hosts/NAME /v1/services/NAME\n";

/// Accepts admin connections until shutdown; one task per connection. Connections are not
/// tracked by the drain: an admin client (a scraper with keep-alive) must not hold up the
/// exit. Open connections finish their current request and close when shutdown starts.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: Shutdown) {
    // Its own cap, so the admin port answers while the data plane is at its limits.
    let gate = Gate::new("admin", MAX_CONNECTIONS, &shared.metrics);
    loop {
        let (stream, peer, slot) = tokio::select! {
            accepted = gate.accept(&listener) => accepted,
            _ = shutdown.triggered() => return,
        };
        let served = connection(stream, peer, shared.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _slot = slot;
            served.await
        });
    }
}

/// Serves one connection; on shutdown it finishes the request in progress, then closes.
async fn connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, shutdown: Shutdown) {
    let service = {
        let shutdown = shutdown.clone();
        service_fn(move |req: Request<Incoming>| {
            std::future::ready(Ok::<_, Infallible>(respond(&shared, &shutdown, &req)))
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.triggered() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // The client's doing (reset, garbage, timeout); nothing to act on but worth a trace.
        debug!(%peer, error = %e, "admin connection ended with an error");
    }
}

/// Answers one admin request. Pure apart from reading the shared snapshots.
pub fn respond<B>(shared: &Shared, shutdown: &Shutdown, req: &Request<B>) -> Response<Full<Bytes>> {
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
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => readiness(shared, shutdown),
        "/metrics" => {
            refresh_backend_gauges(shared);
            body(
                StatusCode::OK,
                PROMETHEUS_TEXT,
                shared.metrics.render().into(),
            )
        }
        "/debug/routes" => {
            let dump = routes_dump(shared);
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
        "/v1/config" => match shared.config.load_full() {
            Some(config) => json(StatusCode::OK, &mesos_dns::config(&config)),
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no config loaded yet\n".into(),
            ),
        },
        path if path.starts_with("/v1/hosts/") || path.starts_with("/v1/services/") => {
            let Some(zone) = shared.zone.load_full() else {
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
    use crate::config::Config;
    use crate::control::zone_options;
    use crate::dns::{api, Zone};

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
    pub fn config(config: &Config) -> Value {
        let Some(dns) = &config.dns else {
            return json!({ "DnsOn": false, "HttpOn": true });
        };
        let options = zone_options(config, dns);
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
            "Masters": options.records.masters,
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

fn readiness(shared: &Shared, shutdown: &Shutdown) -> Response<Full<Bytes>> {
    // A draining process says "not ready" so load balancers in front stop sending to it.
    if shutdown.is_triggered() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n".into(),
        );
    }
    if !shared.is_ready() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no route table yet (waiting for the first good catalog read)\n".into(),
        );
    }
    text(StatusCode::OK, "ready\n".into())
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

/// The whole dump; field order is the order in the JSON.
#[derive(Debug, Serialize)]
pub struct RoutesDump {
    pub version: u64,
    pub ready: bool,
    /// Every vhost by name, with its path routes (longest prefix first).
    pub vhosts: Vec<VhostDump>,
    /// Every listening service port, by port.
    pub ports: Vec<PortDump>,
    /// Every service's route, in catalog order (listening or not).
    pub routes: Vec<RouteDump>,
    pub conflicts: Vec<ConflictDump>,
    pub problems: Vec<ProblemDump>,
    /// Service-port listeners by address: "open", or why the bind failed.
    pub tcp_listeners: Vec<ListenerDump>,
    /// The last error of each discovery source that is failing now, by source.
    pub source_errors: std::collections::BTreeMap<String, String>,
    /// Every master alias with its leader and each master's last leader probe.
    pub aliases: Vec<AliasDump>,
}

#[derive(Debug, Serialize)]
pub struct AliasDump {
    pub host: String,
    pub route: String,
    /// The alias's TCP listener, if it has a port.
    pub listen: Option<String>,
    pub check: String,
    pub interval_ms: u64,
    /// The master requests go to; null = none proven (the alias answers 503).
    pub leader: Option<String>,
    /// Unix time of the last leader change (or of the start of watching).
    pub leader_since: Option<f64>,
    /// Masters all claiming leadership at once, when more than one does.
    pub conflict: Option<Vec<String>>,
    pub masters: Vec<ProbeDump>,
}

/// One target's state from its active probes.
#[derive(Debug, Serialize)]
pub struct ProbeDump {
    pub addr: String,
    /// "unknown" (not probed enough yet), "up" or "down"; for an alias's masters "leader"
    /// or "standby", as under `routes`.
    pub state: &'static str,
    /// The last probe's verdict, e.g. "master/elected = 1", "HTTP 307", "connect refused".
    pub last_probe: Option<String>,
    pub last_probe_ok: Option<bool>,
    pub last_probe_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct VhostDump {
    pub host: String,
    pub paths: Vec<PathDump>,
}

#[derive(Debug, Serialize)]
pub struct PathDump {
    /// The path prefix; null for "every path".
    pub path: Option<String>,
    pub route: String,
    pub app_id: String,
    pub mode: &'static str,
    pub backends: Vec<BackendDump>,
}

#[derive(Debug, Serialize)]
pub struct PortDump {
    pub port: u16,
    pub listen: Option<String>,
    pub route: String,
    pub app_id: String,
    pub mode: &'static str,
    pub backends: Vec<BackendDump>,
}

#[derive(Debug, Serialize)]
pub struct RouteDump {
    pub name: String,
    pub app_id: String,
    pub index: usize,
    pub port: u16,
    pub mode: &'static str,
    pub vhosts: Vec<String>,
    pub path: Option<String>,
    pub balance: &'static str,
    /// The TCP listener address; null when this service port is not listened on (outside
    /// `[tcp] ports`, no `[tcp]` section, or refused in a port conflict).
    pub listen: Option<String>,
    pub backends: Vec<BackendDump>,
    /// The route's active health check, e.g. "http GET /health every 10s", if any.
    pub check: Option<String>,
    /// More than half of the pool fails its check, so it routes to all of it.
    pub routing_to_all: bool,
    /// Each checked backend's probe state.
    pub probes: Vec<ProbeDump>,
}

#[derive(Debug, Serialize)]
pub struct BackendDump {
    pub addr: String,
    pub in_flight: usize,
    /// Consecutive failed exchanges (connect errors, timeouts, 5xx answers).
    pub failures: u32,
    /// "up"; "failing" after failed exchanges not yet followed by a good one; "ejected"
    /// (passive ejection); "down" (fails its active check); for an alias's masters
    /// "leader" or "standby".
    pub state: &'static str,
    /// How much longer an ejected backend stays out.
    pub ejected_for_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct ConflictDump {
    /// What was claimed, e.g. "vhost shop.example.com" or "service port 10001".
    pub claim: String,
    /// "port" or "vhost".
    pub kind: &'static str,
    pub kept: String,
    pub refused: Vec<String>,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct ProblemDump {
    pub app_id: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct ListenerDump {
    pub addr: String,
    pub state: String,
}

/// Builds the dump from the table in use (one `load()`) and the listener states.
pub fn routes_dump(shared: &Shared) -> RoutesDump {
    let table = shared.table.load_full();
    let tcp_listeners = {
        // A poisoned lock only means a writer panicked mid-update; the map is still a
        // readable snapshot, and a debug dump should show it rather than fail.
        let listeners = shared
            .tcp_listeners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        listeners
            .iter()
            .map(|(addr, state)| ListenerDump {
                addr: addr.to_string(),
                state: state.clone(),
            })
            .collect()
    };
    let mut dump = table_dump(&table);
    {
        let status = shared.health.lock().unwrap_or_else(|p| p.into_inner());
        add_health(&mut dump, &table, &status);
    }
    dump.ready = shared.is_ready();
    dump.tcp_listeners = tcp_listeners;
    dump.source_errors = shared
        .source_errors
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .map(|(source, error)| (source.to_string(), error.clone()))
        .collect();
    dump
}

/// The part of the dump that comes from the route table alone.
pub fn table_dump(table: &RouteTable) -> RoutesDump {
    let vhosts = table
        .vhosts()
        .into_iter()
        .map(|(host, paths)| VhostDump {
            host: host.to_string(),
            paths: paths
                .iter()
                .map(|p| PathDump {
                    path: (!p.prefix.is_empty()).then(|| p.prefix.clone()),
                    route: p.route.name.clone(),
                    app_id: p.route.app_id.clone(),
                    mode: mode_str(p.route.mode),
                    backends: backends(&p.route),
                })
                .collect(),
        })
        .collect();
    let ports = table
        .tcp_routes()
        .map(|r| PortDump {
            port: r.port,
            listen: r.listen.map(|a| a.to_string()),
            route: r.name.clone(),
            app_id: r.app_id.clone(),
            mode: mode_str(r.mode),
            backends: backends(r),
        })
        .collect();
    let routes = table
        .routes
        .iter()
        .map(|r| RouteDump {
            name: r.name.clone(),
            app_id: r.app_id.clone(),
            index: r.index,
            port: r.port,
            mode: mode_str(r.mode),
            vhosts: r.vhosts.iter().map(|h| h.to_string()).collect(),
            path: r.path.clone(),
            balance: r.pool.balance().map_or("leader", balance_str),
            listen: r.listen.map(|a| a.to_string()),
            backends: backends(r),
            check: match &r.kind {
                RouteKind::Service { check: Some(c) } => Some(check_str(c)),
                _ => None,
            },
            routing_to_all: false,
            probes: Vec::new(),
        })
        .collect();
    let conflicts = table
        .conflicts
        .iter()
        .map(|c| ConflictDump {
            claim: c.claim.to_string(),
            kind: match c.claim {
                Claim::Port(_) => "port",
                Claim::Vhost { .. } => "vhost",
            },
            kept: c.kept.clone(),
            refused: c.refused.clone(),
            message: c.to_string(),
        })
        .collect();
    let problems = table
        .problems
        .iter()
        .map(|p| ProblemDump {
            app_id: p.app_id.clone(),
            message: p.message.clone(),
        })
        .collect();
    RoutesDump {
        version: table.version,
        ready: false,
        vhosts,
        ports,
        routes,
        conflicts,
        problems,
        tcp_listeners: Vec::new(),
        source_errors: Default::default(),
        aliases: Vec::new(),
    }
}

/// Adds what the health monitor knows: alias leaders and probe states.
fn add_health(dump: &mut RoutesDump, table: &RouteTable, status: &HealthStatus) {
    for r in table.aliases() {
        let RouteKind::Alias { check, interval } = &r.kind else {
            continue;
        };
        let s = status.aliases.get(&r.name);
        dump.aliases.push(AliasDump {
            host: r.vhosts.first().map(|h| h.to_string()).unwrap_or_default(),
            route: r.name.clone(),
            listen: r.listen.map(|a| a.to_string()),
            check: leader_check_str(check),
            interval_ms: interval.as_millis() as u64,
            leader: r.pool.current_leader().map(|b| b.addr.to_string()),
            leader_since: s.and_then(|s| {
                s.since
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs_f64())
            }),
            conflict: s
                .and_then(|s| s.conflict.as_ref())
                .map(|c| c.iter().map(|a| a.to_string()).collect()),
            masters: r
                .pool
                .backends()
                .iter()
                .map(|b| {
                    let probed = s.and_then(|s| s.backends.iter().find(|t| t.addr == b.addr));
                    ProbeDump {
                        // The word `routes` uses for this master too: one state, one word.
                        state: backend_state(r, b),
                        ..probed.map_or_else(|| unprobed(b.addr), probe_dump)
                    }
                })
                .collect(),
        });
    }
    for route in &mut dump.routes {
        if let Some(c) = status.checks.get(&route.name) {
            route.routing_to_all = c.routing_to_all;
            route.probes = c.backends.iter().map(probe_dump).collect();
        }
    }
}

/// A target no probe has answered for yet.
fn unprobed(addr: std::net::SocketAddr) -> ProbeDump {
    ProbeDump {
        addr: addr.to_string(),
        state: "unknown",
        last_probe: None,
        last_probe_ok: None,
        last_probe_ms: None,
    }
}

fn probe_dump(t: &TargetStatus) -> ProbeDump {
    ProbeDump {
        addr: t.addr.to_string(),
        state: t.state.as_str(),
        last_probe: t.last.as_ref().map(|l| l.detail.clone()),
        last_probe_ok: t.last.as_ref().map(|l| l.ok),
        last_probe_ms: t.last.as_ref().map(|l| l.took.as_secs_f64() * 1000.0),
    }
}

fn check_str(c: &ActiveCheck) -> String {
    let what = match &c.kind {
        CheckKind::Http { path } => format!("http GET {path}"),
        CheckKind::Tcp => "tcp connect".to_string(),
    };
    format!(
        "{what} every {}, timeout {}, fall {}, rise {}",
        humantime::format_duration(c.interval),
        humantime::format_duration(c.timeout),
        c.fall,
        c.rise
    )
}

fn leader_check_str(c: &LeaderCheck) -> String {
    match c {
        LeaderCheck::Mesos => "mesos (GET /metrics/snapshot, master/elected = 1)".to_string(),
        LeaderCheck::Marathon => "marathon (GET /ping, 200 without X-Marathon-Via)".to_string(),
        LeaderCheck::Http {
            path,
            expect_status,
            expect_body,
        } => match expect_body {
            Some(body) => format!("GET {path} answers {expect_status} with {body:?}"),
            None => format!("GET {path} answers {expect_status}"),
        },
    }
}

fn backends(route: &Route) -> Vec<BackendDump> {
    route
        .pool
        .backends()
        .iter()
        .map(|b| backend(route, b))
        .collect()
}

fn backend(route: &Route, b: &Backend) -> BackendDump {
    let ejected_for = b.ejected_for();
    BackendDump {
        addr: b.addr.to_string(),
        in_flight: b.in_flight(),
        failures: b.failures(),
        state: backend_state(route, b),
        ejected_for_ms: ejected_for.map(|d| d.as_millis() as u64),
    }
}

/// The states a service route's backends can be in, and an alias route's masters.
const SERVICE_STATES: [&str; 4] = ["up", "failing", "ejected", "down"];
const LEADER_STATES: [&str; 2] = ["leader", "standby"];

/// What `/debug/routes` and `drover_backends{state}` call a backend right now: one of
/// `SERVICE_STATES`, or of `LEADER_STATES` in an alias's pool.
fn backend_state(route: &Route, b: &Backend) -> &'static str {
    if route.pool.is_leader_pool() {
        if b.is_leader() {
            "leader"
        } else {
            "standby"
        }
    } else if b.ejected_for().is_some() {
        "ejected"
    } else if b.is_check_down() {
        "down"
    } else if b.failures() > 0 {
        "failing"
    } else {
        "up"
    }
}

/// Sets `drover_backends{route,state}` from the table in use, just before a scrape: the
/// states live in atomics the data plane and the health monitor flip, so a gauge set at
/// table build would go stale. Every state of a route's kind is written, zero included,
/// and routes that are gone disappear.
fn refresh_backend_gauges(shared: &Shared) {
    let table = shared.table.load();
    let gauge = &shared.metrics.backends;
    gauge.reset();
    for route in &table.routes {
        let states: &[&str] = if route.pool.is_leader_pool() {
            &LEADER_STATES
        } else {
            &SERVICE_STATES
        };
        let mut counts = [0i64; SERVICE_STATES.len()];
        for b in route.pool.backends() {
            let state = backend_state(route, b);
            if let Some(i) = states.iter().position(|s| *s == state) {
                counts[i] += 1;
            }
        }
        for (state, count) in states.iter().zip(counts) {
            gauge
                .with_label_values(&[route.name.as_str(), state])
                .set(count);
        }
    }
}

/// The lowercase word used in labels and config for a mode.
pub fn mode_str(mode: Mode) -> &'static str {
    match mode {
        Mode::Http => "http",
        Mode::Tcp => "tcp",
    }
}

/// The `HAPROXY_{n}_BALANCE` word for a balance algorithm.
pub fn balance_str(balance: Balance) -> &'static str {
    match balance {
        Balance::RoundRobin => "roundrobin",
        Balance::LeastConn => "leastconn",
        Balance::Random => "random",
        Balance::Source => "source",
        Balance::P2c => "p2c",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn shared() -> Shared {
        Shared::new(Metrics::new(prometheus::Registry::new()))
    }

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).expect("request")
    }

    #[test]
    fn readyz_follows_the_first_table_and_the_shutdown() {
        let (s, shutdown) = (shared(), Shutdown::new());
        assert_eq!(
            respond(&s, &shutdown, &get("/readyz")).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        s.set_ready();
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
        let (s, shutdown) = (shared(), Shutdown::new());
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
    fn an_empty_table_dumps_empty_lists() {
        let json = serde_json::to_value(routes_dump(&shared())).expect("json");
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
