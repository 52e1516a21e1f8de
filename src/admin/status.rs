//! The status page: one self-contained HTML page at `/` (inline CSS and script, nothing
//! fetched from elsewhere) that re-reads `/status.json` every 2 s, and that JSON: version,
//! uptime, the sources, every route with its backends and its traffic over the last 10 s,
//! the aliases with their leaders, the DNS zone, and the last upstream errors, trouble first.
//!
//! Rates and latency quantiles come from the [`Sampler`], a task that snapshots the
//! per-route counters and latency histograms of the metrics registry once a second into a
//! ring of [`SAMPLES`]; the page's numbers are the difference between the newest and the
//! oldest sample. Everything else is read from the published snapshots when asked.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::{Response, StatusCode};
use prometheus::core::Collector;
use serde::Serialize;
use tokio::time::{Instant, MissedTickBehavior};

use super::routes::{self, AliasDump, BackendDump, RoutesDump};
use super::AdminView;
use crate::metrics::Metrics;
use crate::routing::{Route, RouteTable};
use crate::shutdown::Shutdown;

/// The page. Its script builds every element with `textContent` (never `innerHTML` from
/// data), so an app id or a vhost cannot inject markup.
pub const PAGE: &str = include_str!("status.html");

/// The page may run its own inline script and style and read `/status.json`, and nothing
/// else: no external asset, and injected markup could neither load nor send anything.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// What the rates and quantiles cover once the sampler has run that long.
pub const WINDOW: Duration = Duration::from_secs(10);

/// One sample a second, and the ring holds the window's both ends: 11 samples span 10 s.
const EVERY: Duration = Duration::from_secs(1);
pub const SAMPLES: usize = 11;

/// Most conflicts and app problems listed (their counts are always given).
const MAX_PROBLEMS: usize = 50;

/// `/`: the page.
pub(super) fn page() -> Response<Full<Bytes>> {
    let html = Bytes::from_static(PAGE.as_bytes());
    let mut resp = super::body(StatusCode::OK, "text/html; charset=utf-8", html);
    let headers = resp.headers_mut();
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(PAGE_POLICY),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// `/status.json`: what the page shows, as of now.
pub(super) fn answer(view: &AdminView) -> Response<Full<Bytes>> {
    let mut resp = super::json(StatusCode::OK, &status(view));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

// === the JSON ===

/// `/status.json`; field order is the order in the JSON.
#[derive(Debug, Serialize)]
pub struct StatusDump {
    pub version: &'static str,
    pub uptime_s: f64,
    /// The route table's version and whether one is stored yet (`/readyz`).
    pub table_version: u64,
    pub ready: bool,
    /// What the rates and quantiles cover: 10 s once the sampler has run that long.
    pub window_s: f64,
    pub sources: Vec<SourceStatus>,
    /// Routes with trouble (a backend failing, ejected or down; no backend; no leader)
    /// first, then services before aliases, then by name.
    pub routes: Vec<RouteStatus>,
    /// Aliases without a leader first, then by host.
    pub aliases: Vec<AliasStatus>,
    /// `null` without `[dns]` or before the first zone.
    pub dns: Option<DnsStatus>,
    /// Newest first.
    pub upstream_errors: Vec<UpstreamErrorStatus>,
    /// Upstream errors not recorded because too many came at once.
    pub upstream_errors_dropped: u64,
    pub conflicts: Vec<String>,
    pub problems: Vec<String>,
    /// Conflicts and problems in all (the lists stop at 50).
    pub conflict_count: usize,
    pub problem_count: usize,
    /// Service-port listeners that are not open, with why.
    pub failed_listeners: Vec<routes::ListenerDump>,
}

#[derive(Debug, Serialize)]
pub struct SourceStatus {
    /// "file", "marathon" or "mesos".
    pub name: String,
    /// Unix time of the last good read; null before the first.
    pub last_sync: Option<f64>,
    /// Seconds since then.
    pub last_sync_age_s: Option<f64>,
    /// Why the last read failed, while it is failing (the catalog file's errors are logged
    /// and counted only).
    pub last_error: Option<String>,
    pub syncs_ok: u64,
    pub syncs_failed: u64,
}

#[derive(Debug, Serialize)]
pub struct RouteStatus {
    pub name: String,
    pub app_id: String,
    pub mode: &'static str,
    /// The balance algorithm; "leader" for an alias.
    pub balance: &'static str,
    /// "host" or "host/path" for each vhost it answers.
    pub vhosts: Vec<String>,
    pub port: u16,
    /// The TCP listener, when the service port (or alias port) is listened on.
    pub listen: Option<String>,
    /// The UDP socket, when the service port's protocol includes udp.
    pub udp_listen: Option<String>,
    pub trouble: bool,
    /// HTTP requests answered, and those with a 5xx status, per second over the window.
    pub requests_per_s: f64,
    pub errors_5xx_per_s: f64,
    /// TCP connections accepted on its listener per second; null when not listened on.
    pub connections_per_s: Option<f64>,
    /// Request latency (head to response head) over the window, from the histogram's
    /// buckets; null without requests.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The active health check, if any, and whether most of the pool fails it.
    pub check: Option<String>,
    pub routing_to_all: bool,
    /// Trouble first (ejected, down, failing), then the rest; an alias's leader first.
    pub backends: Vec<BackendDump>,
}

#[derive(Debug, Serialize)]
pub struct AliasStatus {
    #[serde(flatten)]
    pub alias: AliasDump,
    /// Seconds since the leader last changed.
    pub leader_for_s: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct DnsStatus {
    pub domain: String,
    pub records: usize,
    pub serial: u32,
    /// Unix time the zone in use was compiled, and seconds since.
    pub compiled_at: f64,
    pub compiled_age_s: f64,
    pub compile_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct UpstreamErrorStatus {
    /// Unix time, and seconds since.
    pub at: f64,
    pub age_s: f64,
    pub route: String,
    /// Null when the proxy did not know which backend (HTTP answers for now).
    pub backend: Option<String>,
    /// "upstream" or "drover".
    pub fault: &'static str,
    pub reason: String,
}

/// Builds `/status.json` from what is published now and the sampler's latest numbers.
pub fn status(view: &AdminView) -> StatusDump {
    let now = SystemTime::now();
    let table = view.routes.load_full();
    let health = view.health.load_full();
    let traffic = view.traffic.load();

    // The aliases, as /debug/routes shows them: a dump with only them filled in.
    let mut dump = empty_dump();
    routes::add_health(&mut dump, &table, &health);
    let mut aliases: Vec<AliasStatus> = dump
        .aliases
        .into_iter()
        .map(|alias| AliasStatus {
            leader_for_s: alias.leader_since.map(|t| (unix(now) - t).max(0.0)),
            alias,
        })
        .collect();
    aliases.sort_by(|a, b| {
        (a.alias.leader.is_some(), &a.alias.host).cmp(&(b.alias.leader.is_some(), &b.alias.host))
    });

    let mut routes: Vec<RouteStatus> = table
        .routes
        .iter()
        .map(|r| route_status(r, &traffic, &health))
        .collect();
    // Aliases after services: they have a section of their own too.
    let key = |r: &RouteStatus| (!r.trouble, r.balance == "leader");
    routes.sort_by(|a, b| (key(a), &a.name).cmp(&(key(b), &b.name)));

    let dns = view.zone.info().map(|info| DnsStatus {
        domain: view
            .zone
            .load_full()
            .map_or_else(String::new, |z| z.apex().to_string()),
        records: info.records,
        serial: info.serial,
        compiled_at: unix(info.compiled_at),
        compiled_age_s: age(now, info.compiled_at),
        compile_ms: info.took.as_secs_f64() * 1000.0,
    });

    let upstream_errors = view
        .upstream_errors
        .newest_first()
        .into_iter()
        .map(|e| UpstreamErrorStatus {
            at: unix(e.at),
            age_s: age(now, e.at),
            route: e.route,
            backend: e.backend.map(|b| b.to_string()),
            fault: e.fault.as_str(),
            reason: e.reason,
        })
        .collect();

    StatusDump {
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: view.started.elapsed().as_secs_f64(),
        table_version: table.version,
        ready: view.routes.is_ready(),
        window_s: traffic.window.as_secs_f64(),
        sources: sources(view, now),
        routes,
        aliases,
        dns,
        upstream_errors,
        upstream_errors_dropped: view.upstream_errors.dropped(),
        conflicts: table
            .conflicts
            .iter()
            .take(MAX_PROBLEMS)
            .map(|c| c.to_string())
            .collect(),
        problems: table
            .problems
            .iter()
            .take(MAX_PROBLEMS)
            .map(|p| p.to_string())
            .collect(),
        conflict_count: table.conflicts.len(),
        problem_count: table.problems.len(),
        failed_listeners: view
            .listeners
            .load_full()
            .iter()
            .filter(|(_, state)| state.as_str() != "open")
            .map(|(addr, state)| routes::ListenerDump {
                addr: addr.to_string(),
                state: state.clone(),
            })
            .collect(),
    }
}

/// A route dump with nothing in it, for `routes::add_health` to add the aliases to.
fn empty_dump() -> RoutesDump {
    routes::table_dump(&RouteTable::default())
}

fn route_status(
    r: &Route,
    traffic: &Traffic,
    health: &crate::health::monitor::HealthStatus,
) -> RouteStatus {
    let mut backends = routes::backends(r);
    backends.sort_by(|a, b| (state_rank(a.state), &a.addr).cmp(&(state_rank(b.state), &b.addr)));
    let trouble = backends.is_empty()
        || (r.pool.is_leader_pool() && r.pool.current_leader().is_none())
        || backends.iter().any(|b| state_rank(b.state) < UP_RANK);
    let vhosts = r
        .vhosts
        .iter()
        .map(|h| match &r.path {
            Some(path) if !path.is_empty() => format!("{h}{path}"),
            _ => h.to_string(),
        })
        .collect();
    let t = traffic.routes.get(&r.name).copied().unwrap_or_default();
    let check = match &r.kind {
        crate::routing::RouteKind::Service { check: Some(c) } => Some(routes::check_str(c)),
        _ => None,
    };
    RouteStatus {
        name: r.name.clone(),
        app_id: r.app_id.clone(),
        mode: routes::mode_str(r.mode),
        balance: r.pool.balance().map_or("leader", routes::balance_str),
        vhosts,
        port: r.port,
        listen: r.listen.map(|a| a.to_string()),
        udp_listen: r.udp_listen.map(|a| a.to_string()),
        trouble,
        requests_per_s: t.requests_per_s,
        errors_5xx_per_s: t.errors_5xx_per_s,
        connections_per_s: r
            .listen
            .map(|_| traffic.ports.get(&r.port).copied().unwrap_or(0.0)),
        p50_ms: t.p50.map(|s| s * 1000.0),
        p99_ms: t.p99.map(|s| s * 1000.0),
        check,
        routing_to_all: health.checks.get(&r.name).is_some_and(|c| c.routing_to_all),
        backends,
    }
}

/// Where `up` sorts: the states before it are trouble.
const UP_RANK: u8 = 3;

/// The order backends are listed in: trouble first, an alias's leader before its standbys.
fn state_rank(state: &str) -> u8 {
    match state {
        "ejected" => 0,
        "down" => 1,
        "failing" => 2,
        "up" => UP_RANK,
        "leader" => 4,
        _ => 5,
    }
}

/// Every configured source, and any other that reported: its last good read (the
/// `drover_discovery_last_sync_timestamp_seconds` gauge, which every source sets), its
/// read counts, and its current error.
fn sources(view: &AdminView, now: SystemTime) -> Vec<SourceStatus> {
    let mut names: BTreeSet<String> = BTreeSet::new();
    if let Some(in_use) = view.config.load_full() {
        let c = &in_use.config;
        for (on, name) in [
            (c.catalog.is_some(), "file"),
            (c.marathon.is_some(), "marathon"),
            (c.mesos.is_some(), "mesos"),
        ] {
            if on {
                names.insert(name.to_string());
            }
        }
    }
    let last_sync = by_label(&view.metrics.discovery_last_sync.collect(), "source", |m| {
        m.get_gauge().get_value()
    });
    let ok = by_two_labels(
        &view.metrics.discovery_syncs.collect(),
        ("source", "result"),
    );
    let errors = view.sources.snapshot();
    names.extend(last_sync.keys().cloned());
    names.extend(errors.keys().cloned());
    let now_unix = unix(now);
    names
        .into_iter()
        .map(|name| {
            let last = last_sync.get(&name).copied().filter(|t| *t > 0.0);
            SourceStatus {
                last_sync: last,
                last_sync_age_s: last.map(|t| (now_unix - t).max(0.0)),
                last_error: errors.get(&name).cloned(),
                syncs_ok: ok.get(&(name.clone(), "ok".into())).copied().unwrap_or(0),
                syncs_failed: ok
                    .get(&(name.clone(), "error".into()))
                    .copied()
                    .unwrap_or(0),
                name,
            }
        })
        .collect()
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Seconds from `then` to `now`; 0 if the clock went back.
fn age(now: SystemTime, then: SystemTime) -> f64 {
    now.duration_since(then).map_or(0.0, |d| d.as_secs_f64())
}

// === reading the registry ===

type Family = prometheus::proto::MetricFamily;
type Metric = prometheus::proto::Metric;

fn label<'a>(m: &'a Metric, name: &str) -> Option<&'a str> {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value())
}

/// Each child's value by the value of `key`.
fn by_label(
    families: &[Family],
    key: &str,
    value: impl Fn(&Metric) -> f64,
) -> HashMap<String, f64> {
    families
        .iter()
        .flat_map(|f| f.get_metric())
        .filter_map(|m| Some((label(m, key)?.to_string(), value(m))))
        .collect()
}

/// A counter vec's values by two labels.
fn by_two_labels(families: &[Family], (a, b): (&str, &str)) -> HashMap<(String, String), u64> {
    families
        .iter()
        .flat_map(|f| f.get_metric())
        .filter_map(|m| {
            let key = (label(m, a)?.to_string(), label(m, b)?.to_string());
            Some((key, m.get_counter().get_value() as u64))
        })
        .collect()
}

// === the sampler ===

/// One route's traffic over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RouteTraffic {
    pub requests_per_s: f64,
    pub errors_5xx_per_s: f64,
    /// Seconds; `None` without requests in the window.
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

/// Every route's traffic over the window, as of the latest sample.
#[derive(Debug, Default)]
pub struct Traffic {
    /// What the numbers cover (less than [`WINDOW`] in the first seconds; zero before two
    /// samples).
    pub window: Duration,
    /// By route name.
    pub routes: HashMap<String, RouteTraffic>,
    /// TCP connections accepted per second, by service port.
    pub ports: HashMap<u16, f64>,
}

/// Reads the sampler's latest numbers. Cheap to clone; without a sampler running (tests
/// that answer requests without `serve`) it reads empty numbers.
#[derive(Clone, Default)]
pub struct TrafficReader {
    latest: Arc<ArcSwap<Traffic>>,
}

impl TrafficReader {
    pub fn load(&self) -> Arc<Traffic> {
        self.latest.load_full()
    }
}

/// The counters of one route at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
struct RouteCounts {
    requests: u64,
    errors_5xx: u64,
    /// Cumulative count of each latency bucket, by upper bound (seconds), as Prometheus
    /// keeps them; the `+Inf` bucket is the total.
    buckets: Vec<(f64, u64)>,
    total: u64,
}

/// Every counter the page needs, at one moment.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    routes: HashMap<String, RouteCounts>,
    ports: HashMap<u16, u64>,
}

/// Snapshots the registry's per-route counters every second. Started beside admin's
/// `serve` (`server`); publishes to its [`TrafficReader`]s.
pub struct Sampler {
    metrics: Metrics,
    ring: VecDeque<Sample>,
    latest: Arc<ArcSwap<Traffic>>,
}

// === impl Sampler ===

impl Sampler {
    pub fn new(metrics: Metrics) -> Sampler {
        Sampler {
            metrics,
            ring: VecDeque::with_capacity(SAMPLES),
            latest: Arc::default(),
        }
    }

    pub fn reader(&self) -> TrafficReader {
        TrafficReader {
            latest: self.latest.clone(),
        }
    }

    /// Samples every second until shutdown.
    pub async fn run(mut self, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.triggered() => return,
            }
            self.step(Instant::now());
        }
    }

    /// Takes one sample (as of `at`) and publishes the numbers between the oldest kept
    /// and it.
    fn step(&mut self, at: Instant) {
        let sample = take_sample(&self.metrics, at);
        if self.ring.len() == SAMPLES {
            self.ring.pop_front();
        }
        self.ring.push_back(sample);
        if let (Some(oldest), Some(newest)) = (self.ring.front(), self.ring.back()) {
            self.latest.store(Arc::new(traffic_between(oldest, newest)));
        }
    }
}

/// Reads the HTTP request counters, the latency histograms and the TCP connection counters.
fn take_sample(m: &Metrics, at: Instant) -> Sample {
    let mut routes: HashMap<String, RouteCounts> = HashMap::new();
    for metric in m
        .http_requests
        .collect()
        .iter()
        .flat_map(|f| f.get_metric())
    {
        let (Some(route), Some(code)) = (label(metric, "route"), label(metric, "code")) else {
            continue;
        };
        let n = metric.get_counter().get_value() as u64;
        let counts = routes.entry(route.to_string()).or_default();
        counts.requests += n;
        if code.starts_with('5') {
            counts.errors_5xx += n;
        }
    }
    for metric in m
        .http_duration
        .collect()
        .iter()
        .flat_map(|f| f.get_metric())
    {
        let Some(route) = label(metric, "route") else {
            continue;
        };
        let h = metric.get_histogram();
        let counts = routes.entry(route.to_string()).or_default();
        counts.total = h.get_sample_count();
        counts.buckets = h
            .get_bucket()
            .iter()
            .map(|b| (b.upper_bound(), b.cumulative_count()))
            .collect();
    }
    let ports = m
        .tcp_connections
        .collect()
        .iter()
        .flat_map(|f| f.get_metric())
        .filter_map(|metric| {
            let port = label(metric, "port")?.parse().ok()?;
            Some((port, metric.get_counter().get_value() as u64))
        })
        .collect();
    Sample { at, routes, ports }
}

/// Rates and quantiles between two samples (per second of the time between them).
fn traffic_between(old: &Sample, new: &Sample) -> Traffic {
    let window = new.at.saturating_duration_since(old.at);
    let secs = window.as_secs_f64();
    let per_s = |d: u64| if secs > 0.0 { d as f64 / secs } else { 0.0 };
    let empty = RouteCounts::default();
    let routes = new
        .routes
        .iter()
        .map(|(name, now)| {
            // A route that appeared since the old sample counted from zero.
            let then = old.routes.get(name).unwrap_or(&empty);
            let deltas: Vec<(f64, u64)> = now
                .buckets
                .iter()
                .map(|&(bound, n)| {
                    let before = then
                        .buckets
                        .iter()
                        .find(|(b, _)| *b == bound)
                        .map_or(0, |(_, c)| *c);
                    (bound, n.saturating_sub(before))
                })
                .collect();
            let total = now.total.saturating_sub(then.total);
            let t = RouteTraffic {
                requests_per_s: per_s(now.requests.saturating_sub(then.requests)),
                errors_5xx_per_s: per_s(now.errors_5xx.saturating_sub(then.errors_5xx)),
                p50: quantile(&deltas, total, 0.5),
                p99: quantile(&deltas, total, 0.99),
            };
            (name.clone(), t)
        })
        .collect();
    let ports = new
        .ports
        .iter()
        .map(|(port, n)| {
            let before = old.ports.get(port).copied().unwrap_or(0);
            (*port, per_s(n.saturating_sub(before)))
        })
        .collect();
    Traffic {
        window,
        routes,
        ports,
    }
}

/// The `q` quantile of `total` observations from cumulative bucket counts (by upper
/// bound, ascending, without the `+Inf` bucket, as the registry gives them), interpolated
/// linearly inside the bucket it falls in, as Prometheus's `histogram_quantile` does. Past
/// the last bound it is that bound: the histogram knows no more.
fn quantile(buckets: &[(f64, u64)], total: u64, q: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for &(bound, cumulative) in buckets {
        if cumulative as f64 >= rank {
            let inside = cumulative.saturating_sub(below);
            if inside == 0 {
                return Some(bound);
            }
            return Some(lower + (bound - lower) * (rank - below as f64) / inside as f64);
        }
        (lower, below) = (bound, cumulative);
    }
    buckets.last().map(|&(bound, _)| bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: [f64; 4] = [0.01, 0.1, 1.0, 10.0];

    fn cumulative(counts: [u64; 4]) -> Vec<(f64, u64)> {
        let mut sum = 0;
        BOUNDS
            .iter()
            .zip(counts)
            .map(|(b, n)| {
                sum += n;
                (*b, sum)
            })
            .collect()
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        // 100 observations: 50 under 10 ms, 40 in (10 ms, 100 ms], 10 in (100 ms, 1 s].
        let b = cumulative([50, 40, 10, 0]);
        assert_eq!(quantile(&b, 100, 0.5), Some(0.01));
        let p99 = quantile(&b, 100, 0.99).expect("some");
        // Rank 99 is the 9th of the 10 in (0.1, 1]: 0.1 + 0.9 * 9/10.
        assert!((p99 - 0.91).abs() < 1e-9, "{p99}");
        let p75 = quantile(&b, 100, 0.75).expect("some");
        assert!((p75 - (0.01 + 0.09 * 25.0 / 40.0)).abs() < 1e-9, "{p75}");
        assert_eq!(quantile(&b, 0, 0.5), None);
        // Past the last bound (in +Inf): the last bound.
        assert_eq!(quantile(&cumulative([0, 0, 0, 1]), 3, 0.99), Some(10.0));
    }

    #[test]
    fn rates_are_the_difference_over_the_time_between_samples() {
        let m = Metrics::new(prometheus::Registry::new());
        let stats = m.route_stats("web_10001");
        let mut sampler = Sampler::new(m.clone());
        let reader = sampler.reader();
        let t0 = Instant::now();
        // Before the window: 5 requests that must not count.
        for _ in 0..5 {
            stats.count(200);
            stats.duration.observe(0.5);
        }
        sampler.step(t0);
        for _ in 0..18 {
            stats.count(200);
            stats.duration.observe(0.003);
        }
        for _ in 0..2 {
            stats.count(503);
            stats.duration.observe(0.003);
        }
        m.tcp_connections.with_label_values(&["10001"]).inc_by(30);
        sampler.step(t0 + Duration::from_secs(10));
        let t = reader.load();
        assert_eq!(t.window, Duration::from_secs(10));
        let web = t.routes["web_10001"];
        assert_eq!(web.requests_per_s, 2.0);
        assert_eq!(web.errors_5xx_per_s, 0.2);
        // All 20 fell in (2.5 ms, 5 ms]; the 0.5 s ones are out of the window.
        let p99 = web.p99.expect("p99");
        assert!(p99 > 0.0025 && p99 <= 0.005, "{p99}");
        assert_eq!(t.ports[&10001], 3.0);
    }

    #[test]
    fn the_ring_keeps_eleven_samples() {
        let m = Metrics::new(prometheus::Registry::new());
        let stats = m.route_stats("r");
        let mut sampler = Sampler::new(m);
        let reader = sampler.reader();
        let t0 = Instant::now();
        for s in 0..30u64 {
            stats.count(200);
            sampler.step(t0 + Duration::from_secs(s));
        }
        let t = reader.load();
        assert_eq!(t.window, WINDOW);
        assert_eq!(t.routes["r"].requests_per_s, 1.0);
    }

    #[test]
    fn backends_sort_trouble_first() {
        let mut states = ["up", "leader", "down", "failing", "standby", "ejected"];
        states.sort_by_key(|s| state_rank(s));
        assert_eq!(
            states,
            ["ejected", "down", "failing", "up", "leader", "standby"]
        );
    }
}
