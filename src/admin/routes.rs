//! `/debug/routes` and the `drover_backends` gauges: the route table, the aliases with their
//! masters' last probes, conflicts and problems, each backend with the one word for its
//! state that the metrics use too.

use crate::catalog::{ActiveCheck, Balance, CheckKind, Mode};
use crate::config::LeaderCheck;
use crate::health::monitor::{HealthStatus, TargetStatus};
use crate::routing::pool::Backend;
use crate::routing::{Claim, Route, RouteKind, RouteTable};
use serde::Serialize;

use super::AdminView;

/// The whole dump; field order is the order in the JSON.
#[derive(Debug, Serialize)]
pub struct RoutesDump {
    pub version: u64,
    pub ready: bool,
    /// Every vhost by name, with its path routes (longest prefix first).
    pub vhosts: Vec<VhostDump>,
    /// Every listening service port, by port.
    pub ports: Vec<PortDump>,
    /// Every UDP service port (protocol udp or udp,tcp), by port; `listen` is its UDP
    /// socket's address.
    pub udp_ports: Vec<PortDump>,
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
    /// Every ZooKeeper election followed, with its session state and leader.
    pub zookeeper: Vec<super::zk::ZkDump>,
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
    /// The election the leader comes from (`[[alias]] zk`); its state is under `zookeeper`.
    pub zk: Option<String>,
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
    /// The UDP socket's address; null unless the port's protocol includes udp and the
    /// port is served.
    pub udp_listen: Option<String>,
    pub backends: Vec<BackendDump>,
    /// The route's active health check, e.g. "http GET /health every 10s", if any.
    pub check: Option<String>,
    /// More than half of the pool fails its check, so it routes to all of it.
    pub routing_to_all: bool,
    /// Each checked backend's probe state.
    pub probes: Vec<ProbeDump>,
    /// How the HTTP router speaks to the backends: "http1", "h2c" or "h2"
    /// (`DROVER_{n}_BACKEND_PROTO`).
    pub backend_proto: &'static str,
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
    /// "port", "udp port" or "vhost".
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
pub fn routes_dump(view: &AdminView) -> RoutesDump {
    let table = view.routes.load_full();
    let mut dump = table_dump(&table);
    add_health(&mut dump, &table, &view.health.load_full());
    dump.ready = view.routes.is_ready();
    dump.tcp_listeners = view
        .listeners
        .load_full()
        .iter()
        .map(|(addr, state)| ListenerDump {
            addr: addr.to_string(),
            state: state.clone(),
        })
        .collect();
    dump.source_errors = view.sources.snapshot();
    dump.zookeeper = super::zk::zk_dump(&view.zk);
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
    let udp_ports = table
        .udp_routes()
        .map(|r| PortDump {
            port: r.port,
            listen: r.udp_listen.map(|a| a.to_string()),
            route: r.name.clone(),
            app_id: r.app_id.clone(),
            mode: "udp",
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
            udp_listen: r.udp_listen.map(|a| a.to_string()),
            backends: backends(r),
            check: match &r.kind {
                RouteKind::Service { check: Some(c) } => Some(check_str(c)),
                _ => None,
            },
            routing_to_all: false,
            probes: Vec::new(),
            backend_proto: r.rules.backend.as_str(),
        })
        .collect();
    let conflicts = table
        .conflicts
        .iter()
        .map(|c| ConflictDump {
            claim: c.claim.to_string(),
            kind: match c.claim {
                Claim::Port(_) => "port",
                Claim::UdpPort(_) => "udp port",
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
        udp_ports,
        routes,
        conflicts,
        problems,
        tcp_listeners: Vec::new(),
        source_errors: Default::default(),
        aliases: Vec::new(),
        zookeeper: Vec::new(),
    }
}

/// Adds what the health monitor knows: alias leaders and probe states.
pub(super) fn add_health(dump: &mut RoutesDump, table: &RouteTable, status: &HealthStatus) {
    for r in table.aliases() {
        let RouteKind::Alias {
            check,
            interval,
            zk,
        } = &r.kind
        else {
            continue;
        };
        let s = status.aliases.get(&r.name);
        dump.aliases.push(AliasDump {
            host: r.vhosts.first().map(|h| h.to_string()).unwrap_or_default(),
            route: r.name.clone(),
            listen: r.listen.map(|a| a.to_string()),
            check: leader_check_str(check),
            interval_ms: interval.as_millis() as u64,
            zk: zk.as_ref().map(|z| z.url.to_string()),
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
pub(super) fn unprobed(addr: std::net::SocketAddr) -> ProbeDump {
    ProbeDump {
        addr: addr.to_string(),
        state: "unknown",
        last_probe: None,
        last_probe_ok: None,
        last_probe_ms: None,
    }
}

pub(super) fn probe_dump(t: &TargetStatus) -> ProbeDump {
    ProbeDump {
        addr: t.addr.to_string(),
        state: t.state.as_str(),
        last_probe: t.last.as_ref().map(|l| l.detail.clone()),
        last_probe_ok: t.last.as_ref().map(|l| l.ok),
        last_probe_ms: t.last.as_ref().map(|l| l.took.as_secs_f64() * 1000.0),
    }
}

pub(super) fn check_str(c: &ActiveCheck) -> String {
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

pub(super) fn leader_check_str(c: &LeaderCheck) -> String {
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

pub(super) fn backends(route: &Route) -> Vec<BackendDump> {
    route
        .pool
        .backends()
        .iter()
        .map(|b| backend(route, b))
        .collect()
}

pub(super) fn backend(route: &Route, b: &Backend) -> BackendDump {
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
pub(super) const SERVICE_STATES: [&str; 4] = ["up", "failing", "ejected", "down"];
pub(super) const LEADER_STATES: [&str; 2] = ["leader", "standby"];

/// What `/debug/routes` and `drover_backends{state}` call a backend right now: one of
/// `SERVICE_STATES`, or of `LEADER_STATES` in an alias's pool.
pub(super) fn backend_state(route: &Route, b: &Backend) -> &'static str {
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
pub(super) fn refresh_backend_gauges(view: &AdminView) {
    let table = view.routes.load();
    let gauge = &view.metrics.backends;
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
