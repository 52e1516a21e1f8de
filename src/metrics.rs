//! Every Prometheus metric Drover exports, named in one place and registered on a registry
//! passed in (no globals, so tests can run several instances in one process). Labels are per
//! route, port or source, never per client; per backend only where the issue asks for it
//! (`drover_alias_leader`, `drover_backend_up`), and then only for aliases' masters and for
//! backends that are health-checked or were ejected.

use std::sync::OnceLock;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

pub const HTTP_REQUESTS: &str = "drover_http_requests_total";
pub const HTTP_DURATION: &str = "drover_http_request_duration_seconds";
pub const TCP_CONNECTIONS: &str = "drover_tcp_connections_total";
pub const BACKENDS: &str = "drover_backends";
pub const UPSTREAM_ERRORS: &str = "drover_upstream_errors_total";
pub const DISCOVERY_SYNCS: &str = "drover_discovery_syncs_total";
pub const DISCOVERY_LAST_SYNC: &str = "drover_discovery_last_sync_timestamp_seconds";
pub const DISCOVERY_EVENTS: &str = "drover_discovery_events_total";
pub const DISCOVERY_STREAM_UP: &str = "drover_discovery_event_stream_up";
pub const DISCOVERY_STREAM_RECONNECTS: &str = "drover_discovery_stream_reconnects_total";
pub const CONFIG_RELOADS: &str = "drover_config_reloads_total";
pub const ROUTE_TABLE_VERSION: &str = "drover_route_table_version";
pub const ROUTE_CONFLICTS: &str = "drover_route_conflicts";
pub const APP_PROBLEMS: &str = "drover_app_problems";
pub const TCP_LISTENERS: &str = "drover_tcp_listeners";
pub const BUILD_INFO: &str = "drover_build_info";
pub const ALIAS_LEADER: &str = "drover_alias_leader";
pub const LEADER_CHANGES: &str = "drover_leader_changes_total";
pub const LEADER_CONFLICTS: &str = "drover_leader_conflicts_total";
pub const BACKEND_UP: &str = "drover_backend_up";
pub const BACKEND_EJECTIONS: &str = "drover_backend_ejections_total";
pub const HEALTH_PROBES: &str = "drover_health_probes_total";
pub const DNS_QUERIES: &str = "drover_dns_queries_total";
pub const HTTP_UPGRADES: &str = "drover_http_upgrades_total";
pub const TLS_CERT_NOT_AFTER: &str = "drover_tls_cert_not_after_timestamp_seconds";
pub const TLS_RELOADS: &str = "drover_tls_reloads_total";
pub const HTTP_TUNNELS_OPEN: &str = "drover_http_tunnels_open";
pub const DNS_ZONE_RECORDS: &str = "drover_dns_zone_records";
pub const DNS_ALL_FAILING_NAMES: &str = "drover_dns_names_all_unhealthy";
pub const CONNECTION_LIMIT_WAITS: &str = "drover_connection_limit_waits_total";
pub const CONNECTIONS_OPEN: &str = "drover_connections_open";
pub const CONNECTIONS_REJECTED: &str = "drover_connections_rejected_total";
pub const ACCEPT_ERRORS: &str = "drover_accept_errors_total";
pub const HTTP_IN_FLIGHT: &str = "drover_http_requests_in_flight";
pub const TCP_BYTES: &str = "drover_tcp_bytes_total";
pub const UPSTREAM_CONNECT_DURATION: &str = "drover_upstream_connect_duration_seconds";
pub const ACCESS_LOG_DROPPED: &str = "drover_access_log_dropped_total";
pub const UDP_DATAGRAMS: &str = "drover_udp_datagrams_total";
pub const UDP_FLOWS: &str = "drover_udp_flows";
pub const UDP_DROPPED: &str = "drover_udp_dropped_total";
pub const UDP_LISTENERS: &str = "drover_udp_listeners";
pub const UPSTREAM_H2_CONNECTIONS: &str = "drover_upstream_h2_connections_total";
pub const GRPC_RESPONSES: &str = "drover_grpc_responses_total";
pub const ZK_CONNECTED: &str = "drover_zk_connected";
pub const ZK_LEADER_CHANGES: &str = "drover_zk_leader_changes_total";
/// Route tables stored, by how they were made (issue 17).
pub const ROUTE_TABLE_BUILDS: &str = "drover_route_table_builds_total";
/// DNS zones stored, by how they were made (issue 17).
pub const DNS_ZONE_BUILDS: &str = "drover_dns_zone_builds_total";
/// The namespace of the process collector's metrics: `drover_process_cpu_seconds_total`,
/// `drover_process_resident_memory_bytes`, `drover_process_open_fds`, ...
pub const PROCESS_NAMESPACE: &str = "drover";

/// The `listener` label of the DNS TCP listener.
pub const LISTENER_DNS: &str = "dns";

/// The route label for requests that matched no route (unknown Host).
pub const UNROUTED: &str = "unrouted";

/// All metric handles. Cheap to clone (every handle is an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub tcp_connections: IntCounterVec,
    pub backends: IntGaugeVec,
    pub upstream_errors: IntCounterVec,
    pub discovery_syncs: IntCounterVec,
    pub discovery_last_sync: prometheus::GaugeVec,
    pub discovery_events: IntCounterVec,
    pub discovery_stream_up: IntGaugeVec,
    pub discovery_stream_reconnects: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub route_table_version: IntGauge,
    pub route_conflicts: IntGauge,
    pub app_problems: IntGauge,
    pub tcp_listeners: IntGaugeVec,
    pub build_info: IntGaugeVec,
    pub alias_leader: IntGaugeVec,
    pub leader_changes: IntCounterVec,
    pub leader_conflicts: IntCounterVec,
    pub backend_up: IntGaugeVec,
    pub backend_ejections: IntCounterVec,
    pub health_probes: IntCounterVec,
    pub dns_queries: IntCounterVec,
    pub http_upgrades: IntCounterVec,
    pub tls_cert_not_after: prometheus::GaugeVec,
    pub tls_reloads: IntCounterVec,
    pub http_tunnels_open: IntGauge,
    pub dns_zone_records: IntGauge,
    /// With `[dns] healthy_only`: names answered with all their tasks, every one failing.
    pub dns_all_failing_names: IntGauge,
    pub connections_open: IntGaugeVec,
    pub connections_rejected: IntCounterVec,
    pub connection_limit_waits: IntCounterVec,
    pub accept_errors: IntCounterVec,
    pub http_in_flight: IntGauge,
    pub tcp_bytes: IntCounterVec,
    pub upstream_connect_duration: Histogram,
    pub access_log_dropped: IntCounter,
    pub udp_datagrams: IntCounterVec,
    pub udp_flows: IntGaugeVec,
    pub udp_dropped: IntCounterVec,
    pub udp_listeners: IntGaugeVec,
    /// HTTP/2 connections opened to `h2c`/`h2` backends.
    pub upstream_h2_connections: IntCounter,
    /// gRPC calls answered, by route and `grpc-status`.
    pub grpc_responses: IntCounterVec,
    pub zk_connected: IntGaugeVec,
    pub zk_leader_changes: IntCounterVec,
    /// Route tables stored: `kind` = `full` (compiled from the whole catalog) or `patch`
    /// (only changed Marathon apps rebuilt).
    pub route_table_builds: IntCounterVec,
    pub dns_zone_builds: IntCounterVec,
}

// === impl Metrics ===

impl Metrics {
    /// Creates every metric and registers it on `registry`.
    pub fn new(registry: Registry) -> Metrics {
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
            r.register(Box::new(m.clone()))
                .expect("metric names are unique");
            m
        }
        let counter = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &registry,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let metrics = Metrics {
            http_requests: counter(
                HTTP_REQUESTS,
                "HTTP requests answered, by route and status code.",
                &["route", "code"],
            ),
            http_duration: reg(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        HTTP_DURATION,
                        "Time from request head to response head, by route.",
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0, 30.0,
                    ]),
                    &["route"],
                )
                .expect("valid metric"),
            ),
            tcp_connections: counter(
                TCP_CONNECTIONS,
                "TCP connections accepted on service ports, by port.",
                &["port"],
            ),
            backends: gauge(
                BACKENDS,
                "Backends in each route's pool, by state as of the scrape: up, failing, ejected, down; leader, standby for an alias's masters.",
                &["route", "state"],
            ),
            upstream_errors: counter(
                UPSTREAM_ERRORS,
                "Failures talking to backends, by route and kind (connect, timeout, protocol).",
                &["route", "kind"],
            ),
            discovery_syncs: counter(
                DISCOVERY_SYNCS,
                "Reads of a discovery source, by source and result (ok, error).",
                &["source", "result"],
            ),
            discovery_last_sync: reg(
                &registry,
                prometheus::GaugeVec::new(
                    Opts::new(
                        DISCOVERY_LAST_SYNC,
                        "Unix time of the last successful read of each source.",
                    ),
                    &["source"],
                )
                .expect("valid metric"),
            ),
            discovery_events: counter(
                DISCOVERY_EVENTS,
                "Events read from a source's event stream, by source and event type.",
                &["source", "type"],
            ),
            discovery_stream_up: gauge(
                DISCOVERY_STREAM_UP,
                "1 while a source's event stream is connected, else 0.",
                &["source"],
            ),
            discovery_stream_reconnects: counter(
                DISCOVERY_STREAM_RECONNECTS,
                "Event streams given up and opened again, by source and reason (silent: no event or heartbeat in time; closed: the master ended it; error: a read or framing error; leader_moved).",
                &["source", "reason"],
            ),
            config_reloads: counter(
                CONFIG_RELOADS,
                "Config file reloads, by result (ok, error).",
                &["result"],
            ),
            route_table_version: reg(
                &registry,
                IntGauge::new(ROUTE_TABLE_VERSION, "Version of the route table in use.")
                    .expect("valid metric"),
            ),
            route_conflicts: reg(
                &registry,
                IntGauge::new(
                    ROUTE_CONFLICTS,
                    "Ports and vhost+path pairs claimed by more than one app.",
                )
                .expect("valid metric"),
            ),
            app_problems: reg(
                &registry,
                IntGauge::new(
                    APP_PROBLEMS,
                    "Apps or tasks left out of the catalog for a bad value.",
                )
                .expect("valid metric"),
            ),
            tcp_listeners: gauge(
                TCP_LISTENERS,
                "Service-port listeners, by state (open, failed).",
                &["state"],
            ),
            build_info: gauge(
                BUILD_INFO,
                "Always 1; the version as a label.",
                &["version"],
            ),
            alias_leader: gauge(
                ALIAS_LEADER,
                "1 for the master an alias routes to (its proven leader), 0 for the others.",
                &["alias", "backend"],
            ),
            leader_changes: counter(
                LEADER_CHANGES,
                "Changes of an alias's leader, including to and from having none.",
                &["alias"],
            ),
            leader_conflicts: counter(
                LEADER_CONFLICTS,
                "Times two or more masters of an alias claimed leadership at once.",
                &["alias"],
            ),
            backend_up: gauge(
                BACKEND_UP,
                "1 while a checked, alias or once-ejected backend may get traffic, else 0.",
                &["route", "backend"],
            ),
            backend_ejections: counter(
                BACKEND_EJECTIONS,
                "Backends taken out of a pool after failures in a row, by route.",
                &["route"],
            ),
            health_probes: counter(
                HEALTH_PROBES,
                "Active health probes run, by kind (leader, app) and result (pass, fail).",
                &["kind", "result"],
            ),
            tls_cert_not_after: reg(
                &registry,
                prometheus::GaugeVec::new(
                    Opts::new(
                        TLS_CERT_NOT_AFTER,
                        "Unix time each loaded certificate expires, by file name.",
                    ),
                    &["cert"],
                )
                .expect("valid metric"),
            ),
            tls_reloads: counter(
                TLS_RELOADS,
                "Certificate directory loads (ok), and certificate files that failed (error).",
                &["result"],
            ),
            http_upgrades: counter(
                HTTP_UPGRADES,
                "Requests switched to another protocol (WebSocket), by route.",
                &["route"],
            ),
            connection_limit_waits: counter(
                CONNECTION_LIMIT_WAITS,
                "Times a listener stopped accepting because it had max_connections open (new ones wait in the backlog), by listener.",
                &["listener"],
            ),
            http_tunnels_open: reg(
                &registry,
                IntGauge::new(
                    HTTP_TUNNELS_OPEN,
                    "Upgraded connections (WebSocket tunnels) open now.",
                )
                .expect("valid metric"),
            ),
            dns_queries: counter(
                DNS_QUERIES,
                "DNS queries answered, by query type, response code and transport (udp, tcp).",
                &["qtype", "rcode", "transport"],
            ),
            dns_zone_records: reg(
                &registry,
                IntGauge::new(DNS_ZONE_RECORDS, "Records in the DNS zone in use.")
                    .expect("valid metric"),
            ),
            dns_all_failing_names: reg(
                &registry,
                IntGauge::new(
                    DNS_ALL_FAILING_NAMES,
                    "With healthy_only: DNS names answered with all their tasks because every one fails its health checks.",
                )
                .expect("valid metric"),
            ),
            connections_open: gauge(
                CONNECTIONS_OPEN,
                "Client connections open now, by listener (http, https, appid, admin, tcp:PORT, dns).",
                &["listener"],
            ),
            connections_rejected: counter(
                CONNECTIONS_REJECTED,
                "Connections closed unanswered because the listener's cap was reached (DNS over TCP), by listener.",
                &["listener"],
            ),
            accept_errors: counter(
                ACCEPT_ERRORS,
                "Failed accepts (out of file descriptors and the like), by listener; each one pauses accepting briefly.",
                &["listener"],
            ),
            http_in_flight: reg(
                &registry,
                IntGauge::new(
                    HTTP_IN_FLIGHT,
                    "HTTP requests between their head and the last byte of their answer, now.",
                )
                .expect("valid metric"),
            ),
            tcp_bytes: counter(
                TCP_BYTES,
                "Bytes proxied on service ports, by port and direction (in: client to backend, out: backend to client).",
                &["port", "direction"],
            ),
            upstream_connect_duration: reg(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        UPSTREAM_CONNECT_DURATION,
                        "Time to open a new connection to a backend (HTTP and TCP), failures included.",
                    )
                    .buckets(vec![
                        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                        0.25, 0.5, 1.0, 2.5, 5.0,
                    ]),
                )
                .expect("valid metric"),
            ),
            access_log_dropped: reg(
                &registry,
                IntCounter::new(
                    ACCESS_LOG_DROPPED,
                    "Access-log lines dropped because the writer was behind (a full queue).",
                )
                .expect("valid metric"),
            ),
            udp_datagrams: counter(
                UDP_DATAGRAMS,
                "Datagrams proxied on UDP service ports, by port and direction (in: client to backend, out: backend to client).",
                &["port", "direction"],
            ),
            udp_flows: gauge(
                UDP_FLOWS,
                "UDP flows (client addresses, each with its backend) open now, by port.",
                &["port"],
            ),
            udp_dropped: counter(
                UDP_DROPPED,
                "Datagrams dropped on UDP service ports, by port and reason (max_flows, no_backend, not_allowed, socket, send).",
                &["port", "reason"],
            ),
            udp_listeners: gauge(
                UDP_LISTENERS,
                "UDP service-port sockets, by state (open, failed).",
                &["state"],
            ),
            upstream_h2_connections: reg(
                &registry,
                IntCounter::new(
                    UPSTREAM_H2_CONNECTIONS,
                    "HTTP/2 connections opened to backends (DROVER_{n}_BACKEND_PROTO h2c or h2); each carries many requests.",
                )
                .expect("valid metric"),
            ),
            grpc_responses: counter(
                GRPC_RESPONSES,
                "gRPC calls answered, by route and grpc-status (0 OK, 4 DEADLINE_EXCEEDED, 14 UNAVAILABLE, ...), the backend's or Drover's own.",
                &["route", "grpc_status"],
            ),
            zk_connected: gauge(
                ZK_CONNECTED,
                "1 while the ZooKeeper session of an election path is up, else 0 (the last leader is kept).",
                &["path"],
            ),
            zk_leader_changes: counter(
                ZK_LEADER_CHANGES,
                "Leader changes seen in ZooKeeper, by election path (to and from none included).",
                &["path"],
            ),
            route_table_builds: counter(
                ROUTE_TABLE_BUILDS,
                "Route tables stored, by kind: full (compiled from the whole catalog) or patch (only the changed Marathon apps' routes rebuilt).",
                &["kind"],
            ),
            dns_zone_builds: counter(
                DNS_ZONE_BUILDS,
                "DNS zones stored, by kind: full (compiled from the whole cluster) or patch (only the changed Marathon apps' records replaced).",
                &["kind"],
            ),
            registry,
        };
        // CPU, memory, file descriptors and start time of this process, read at each scrape.
        let process = prometheus::process_collector::ProcessCollector::new(
            std::process::id() as i32,
            PROCESS_NAMESPACE,
        );
        // A second collector for the same process in one registry cannot happen (tests
        // make one registry per instance), so a failure here is not worth a panic.
        let _ = metrics.registry.register(Box::new(process));
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        metrics
    }

    /// Counts a good read of a discovery source and stamps its time.
    pub fn discovery_ok(&self, source: &str) {
        self.discovery_syncs
            .with_label_values(&[source, "ok"])
            .inc();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.discovery_last_sync
            .with_label_values(&[source])
            .set(now);
    }

    /// Counts a failed read of a discovery source.
    pub fn discovery_error(&self, source: &str) {
        self.discovery_syncs
            .with_label_values(&[source, "error"])
            .inc();
    }

    /// The handles one route needs on the request path, fetched once per table build.
    pub fn route_stats(&self, route: &str) -> RouteStats {
        RouteStats {
            route: route.to_string(),
            duration: self.http_duration.with_label_values(&[route]),
            codes: Default::default(),
            requests: self.http_requests.clone(),
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }
}

/// Status codes that get a cached counter handle; others take the (locking) label lookup.
const COMMON_CODES: [u16; 16] = [
    200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 500, 502, 503, 504,
];

/// Per-route metric handles, so the request path does no label hashing or locking for the
/// usual status codes.
pub struct RouteStats {
    route: String,
    pub duration: Histogram,
    codes: [OnceLock<IntCounter>; COMMON_CODES.len()],
    requests: IntCounterVec,
}

impl RouteStats {
    /// Counts one answered request with `status`.
    pub fn count(&self, status: u16) {
        match COMMON_CODES.iter().position(|&c| c == status) {
            Some(i) => self.codes[i]
                .get_or_init(|| {
                    self.requests
                        .with_label_values(&[&self.route, code_str(status)])
                })
                .inc(),
            None => self
                .requests
                .with_label_values(&[&self.route, &status.to_string()])
                .inc(),
        }
    }
}

fn code_str(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        206 => "206",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => "other",
    }
}

impl std::fmt::Debug for RouteStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteStats")
            .field("route", &self.route)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_stats_count_into_the_shared_counter() {
        let m = Metrics::new(Registry::new());
        let s = m.route_stats("web_10001");
        s.count(200);
        s.count(200);
        s.count(418);
        assert_eq!(
            m.http_requests
                .with_label_values(&["web_10001", "200"])
                .get(),
            2
        );
        assert_eq!(
            m.http_requests
                .with_label_values(&["web_10001", "418"])
                .get(),
            1
        );
        let text = m.render();
        assert!(text.contains("drover_build_info{version=\""), "{text}");
    }
}
