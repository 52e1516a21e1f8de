//! The health monitor: runs every active probe the route table asks for and turns results
//! into the flags the data plane reads (`Backend::set_leader`, `Backend::set_check_down`),
//! into metrics, logs and the status `/debug/routes` shows.
//!
//! - Each target (one backend of one alias or checked route) has its own probe task, so a
//!   target that hangs delays nobody else; results come back on one channel to this task,
//!   which owns every [`LeaderTracker`] and [`Health`].
//! - An alias's leader flag moves old-off-then-new-on, so no instant has two leaders. A
//!   changed master list or check starts from "no leader" (fail closed).
//! - A checked route never loses more than half of its pool to its check: when more than
//!   half fail, the check flags are cleared and the pool routes to all, logged as such.
//! - Backends the data plane ejected are watched here too, to log and meter their return.

mod alias;
mod zk;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::leader::{LeaderTracker, LEADER_FALL, LEADER_RISE};
use super::probe::{self, Probe, ProbeResult};
use super::{Health, State};
use crate::catalog::{ActiveCheck, CheckKind};
use crate::handles::{
    CheckedDownWriter, Ejection, EjectionReceiver, HealthStatusWriter, RouteTableReader,
};
use crate::logfmt;
use crate::metrics::Metrics;
use crate::routing::pool::Backend;
use crate::routing::{Route, RouteKind, RouteTable};
use crate::shutdown::Shutdown;

/// How often ejected backends are looked at to see whether they are back.
const EJECTION_SWEEP: Duration = Duration::from_secs(1);

/// How often the status for `/debug/routes` is refreshed when something changed.
const STATUS_REFRESH: Duration = Duration::from_millis(200);

/// The shortest probe interval honoured (a typo of "1ms" must not flood a master).
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// What the monitor knows, for `/debug/routes`.
#[derive(Debug, Clone, Default)]
pub struct HealthStatus {
    /// By alias route name.
    pub aliases: BTreeMap<String, AliasStatus>,
    /// By route name: the state of each checked backend.
    pub checks: BTreeMap<String, CheckStatus>,
}

#[derive(Debug, Clone)]
pub struct AliasStatus {
    pub leader: Option<SocketAddr>,
    /// When the leader last changed (or the alias started being watched).
    pub since: std::time::SystemTime,
    /// Masters all claiming leadership right now, when more than one does.
    pub conflict: Option<Vec<SocketAddr>>,
    pub backends: Vec<TargetStatus>,
}

#[derive(Debug, Clone)]
pub struct CheckStatus {
    /// More than half of the pool fails its check, so the check is ignored.
    pub routing_to_all: bool,
    pub backends: Vec<TargetStatus>,
}

#[derive(Debug, Clone)]
pub struct TargetStatus {
    pub addr: SocketAddr,
    pub state: State,
    pub last: Option<ProbeResult>,
}

/// One target's identity: route name and backend address.
type Key = (String, SocketAddr);

/// A probe result, tagged with the generation of the watch that asked for it and the
/// round (tick count) it belongs to.
struct Outcome {
    key: Key,
    generation: u64,
    round: u64,
    result: ProbeResult,
}

/// What a route's probes check; a change restarts them.
#[derive(Debug, Clone, PartialEq)]
struct Spec {
    probe: Probe,
    interval: Duration,
    timeout: Duration,
}

/// A watched alias. Its masters are probed in rounds (every master at the same tick); a
/// round is decided once, when every master has answered or [`settle`] after the first
/// answer, so a handover within one round is one clean change (no brief "no leader", no
/// false conflict) and a hanging master delays the decision by at most the settle time.
struct AliasWatch {
    spec: Spec,
    generation: u64,
    route: Arc<Route>,
    tracker: LeaderTracker,
    since: std::time::SystemTime,
    probes: CancellationToken,
    /// The round being collected, its results so far, and when it is decided regardless.
    round: u64,
    pending: Vec<(SocketAddr, ProbeResult)>,
    decide_at: Option<Instant>,
    /// The election it follows (`[[alias]] zk`).
    zk: Option<zk::ZkFollow>,
}

/// A watched health-checked service route.
struct CheckWatch {
    spec: Spec,
    check: ActiveCheck,
    generation: u64,
    route: Arc<Route>,
    health: HashMap<SocketAddr, Health>,
    /// A probe task per backend address.
    probes: HashMap<SocketAddr, CancellationToken>,
    routing_to_all: bool,
}

/// What the monitor reads and writes besides the tables it follows.
pub struct Handles {
    /// Where its view goes, for `/debug/routes`.
    pub status: HealthStatusWriter,
    /// The table in use, to tell a returned backend from a removed one.
    pub routes: RouteTableReader,
    /// Backends the data plane ejected.
    pub ejections: EjectionReceiver,
    /// Where the backends the checks prove down go, for DNS.
    pub checked_down: CheckedDownWriter,
    pub metrics: Metrics,
    /// For aliases that follow an election in ZooKeeper.
    pub zk: crate::zk::Zk,
}

/// Runs until shutdown, following every table published on `tables`.
pub async fn run(
    handles: Handles,
    mut tables: watch::Receiver<Arc<RouteTable>>,
    shutdown: Shutdown,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (zk_tx, mut zk_rx) = mpsc::unbounded_channel();
    let mut monitor = Monitor {
        zk: handles.zk,
        zk_tx,
        status: handles.status,
        routes: handles.routes,
        ejections: handles.ejections,
        checked_down: handles.checked_down,
        metrics: handles.metrics,
        ejected: Vec::new(),
        tx,
        stop: shutdown.child_token(),
        next_generation: 0,
        dirty: true,
        aliases: HashMap::new(),
        checks: HashMap::new(),
    };
    let mut sweep = tokio::time::interval(EJECTION_SWEEP);
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut refresh = tokio::time::interval(STATUS_REFRESH);
    refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let table = tables.borrow_and_update().clone();
        monitor.follow(&table);
        loop {
            tokio::select! {
                changed = tables.changed() => {
                    if changed.is_err() {
                        monitor.stop.cancel();
                        return;
                    }
                    break;
                }
                Some(outcome) = rx.recv() => monitor.observe(outcome),
                Some(event) = zk_rx.recv() => monitor.observe_zk(event),
                _ = sweep.tick() => monitor.sweep_ejected(),
                _ = refresh.tick(), if monitor.dirty => monitor.publish_status(),
                _ = sleep_until_opt(monitor.next_decision()) => monitor.decide_due(),
                _ = shutdown.triggered() => {
                    monitor.stop.cancel();
                    return;
                }
            }
        }
    }
}

struct Monitor {
    status: HealthStatusWriter,
    routes: RouteTableReader,
    /// Ejections reported by the data plane.
    ejections: EjectionReceiver,
    checked_down: CheckedDownWriter,
    metrics: Metrics,
    /// Ejected backends being watched until they are back.
    ejected: Vec<Ejection>,
    tx: mpsc::UnboundedSender<Outcome>,
    /// Parent of every probe task's token.
    stop: CancellationToken,
    next_generation: u64,
    /// The status changed since it was last published.
    dirty: bool,
    aliases: HashMap<String, AliasWatch>,
    checks: HashMap<String, CheckWatch>,
    zk: crate::zk::Zk,
    /// Where the aliases' election forwarders send their views.
    zk_tx: mpsc::UnboundedSender<zk::ZkEvent>,
}

impl Monitor {
    /// Brings the watched set in line with `table`: new routes get probes, changed ones start
    /// over, removed ones stop; kept ones re-apply their flags to the table's backends.
    fn follow(&mut self, table: &RouteTable) {
        let mut seen_aliases = Vec::new();
        let mut seen_checks = Vec::new();
        for route in &table.routes {
            match &route.kind {
                RouteKind::Alias {
                    check, interval, ..
                } => {
                    let interval = (*interval).max(MIN_INTERVAL);
                    let spec = Spec {
                        probe: probe::leader_probe(check),
                        interval,
                        timeout: interval,
                    };
                    self.follow_alias(route, spec);
                    seen_aliases.push(route.name.clone());
                }
                RouteKind::Service { check: Some(check) } => {
                    let interval = check.interval.max(MIN_INTERVAL);
                    let spec = Spec {
                        probe: match &check.kind {
                            CheckKind::Http { path } => Probe::HttpAlive { path: path.clone() },
                            CheckKind::Tcp => Probe::Tcp,
                        },
                        interval,
                        timeout: check.timeout.min(interval).max(MIN_INTERVAL),
                    };
                    self.follow_check(route, check, spec);
                    seen_checks.push(route.name.clone());
                }
                RouteKind::Service { check: None } => {}
            }
        }
        let gone: Vec<String> = self
            .aliases
            .keys()
            .filter(|n| !seen_aliases.contains(n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(w) = self.aliases.remove(&name) {
                w.probes.cancel();
                if let Some(z) = &w.zk {
                    z.forwarder.cancel();
                }
                self.forget_metrics(&w.route);
                info!(alias = %name, "alias removed; its probes stop");
            }
        }
        let gone: Vec<String> = self
            .checks
            .keys()
            .filter(|n| !seen_checks.contains(n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(w) = self.checks.remove(&name) {
                for token in w.probes.values() {
                    token.cancel();
                }
                self.forget_metrics(&w.route);
            }
        }
        self.publish_status();
        self.publish_checked_down();
    }

    fn follow_alias(&mut self, route: &Arc<Route>, spec: Spec) {
        let masters: Vec<SocketAddr> = route.pool.backends().iter().map(|b| b.addr).collect();
        let start = Instant::now();
        let probed = zk::probed(route);
        // The election carries over a change of its members: ZooKeeper, not a probe,
        // proves the leader.
        let mut kept_zk = None;
        if let Some(mut w) = self.aliases.remove(&route.name) {
            let same_masters = w
                .route
                .pool
                .backends()
                .iter()
                .map(|b| b.addr)
                .eq(masters.iter().copied());
            let same_zk = zk::alias_zk(&w.route) == zk::alias_zk(route);
            if same_masters && same_zk && w.spec.probe == spec.probe {
                w.route = route.clone();
                apply_leader(&w.route, w.tracker.leader());
                if w.spec != spec {
                    // Only the timing changed: the leader stays, the probes restart.
                    w.probes.cancel();
                    w.generation = self.generation();
                    w.probes = self.stop.child_token();
                    w.round = 0;
                    w.pending.clear();
                    w.decide_at = None;
                    for backend in route.pool.backends().iter().filter(|_| probed) {
                        let key = (route.name.clone(), backend.addr);
                        self.spawn_probe(key, w.generation, &spec, &w.probes, start);
                    }
                    w.spec = spec;
                }
                self.aliases.insert(route.name.clone(), w);
                return;
            }
            w.probes.cancel();
            match w.zk.take() {
                Some(z) if Some(&z.alias) == zk::alias_zk(route) => {
                    kept_zk = Some((z, w.tracker.leader()));
                }
                Some(z) => z.forwarder.cancel(),
                None => {}
            }
            if kept_zk.is_none() {
                info!(alias = %route.name, "alias changed; its leader must be proven again");
            }
        }
        let generation = self.generation();
        let probes = self.stop.child_token();
        for backend in route.pool.backends().iter().filter(|_| probed) {
            let key = (route.name.clone(), backend.addr);
            self.spawn_probe(key, generation, &spec, &probes, start);
        }
        apply_leader(route, None);
        self.forget_metrics(route);
        for backend in route.pool.backends() {
            self.set_alias_gauge(route, backend, false);
        }
        self.aliases.insert(
            route.name.clone(),
            AliasWatch {
                spec,
                generation,
                route: route.clone(),
                tracker: LeaderTracker::new(&masters, LEADER_RISE, LEADER_FALL, Instant::now()),
                since: std::time::SystemTime::now(),
                probes,
                round: 0,
                pending: Vec::new(),
                decide_at: None,
                zk: None,
            },
        );
        self.resume_zk(route, kept_zk);
    }

    fn follow_check(&mut self, route: &Arc<Route>, check: &ActiveCheck, spec: Spec) {
        let restart = self
            .checks
            .get(&route.name)
            .is_none_or(|w| w.spec != spec || w.check != *check);
        if restart {
            if let Some(old) = self.checks.remove(&route.name) {
                for token in old.probes.values() {
                    token.cancel();
                }
            }
            let generation = self.generation();
            self.checks.insert(
                route.name.clone(),
                CheckWatch {
                    spec: spec.clone(),
                    check: check.clone(),
                    generation,
                    route: route.clone(),
                    health: HashMap::new(),
                    probes: HashMap::new(),
                    routing_to_all: false,
                },
            );
        }
        let Some(mut w) = self.checks.remove(&route.name) else {
            return;
        };
        w.route = route.clone();
        let now = Instant::now();
        let addrs: Vec<SocketAddr> = route.pool.backends().iter().map(|b| b.addr).collect();
        for addr in &addrs {
            if !w.probes.contains_key(addr) {
                let token = self.stop.child_token();
                let key = (route.name.clone(), *addr);
                self.spawn_probe(key, w.generation, &spec, &token, now);
                w.probes.insert(*addr, token);
                w.health
                    .insert(*addr, Health::new(check.rise, check.fall, now));
            }
        }
        let backend_up = &self.metrics.backend_up;
        w.probes.retain(|addr, token| {
            let keep = addrs.contains(addr);
            if !keep {
                token.cancel();
                let _ = backend_up.remove_label_values(&[&route.name, &addr.to_string()]);
            }
            keep
        });
        w.health.retain(|addr, _| addrs.contains(addr));
        self.apply_checks(&mut w);
        self.checks.insert(route.name.clone(), w);
    }

    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// Starts the probe task of one target: a probe at `start` and every interval after.
    fn spawn_probe(
        &self,
        key: Key,
        generation: u64,
        spec: &Spec,
        token: &CancellationToken,
        start: Instant,
    ) {
        let tx = self.tx.clone();
        let spec = spec.clone();
        let token = token.clone();
        let metrics = self.metrics.clone();
        let kind = if matches!(spec.probe, Probe::HttpAlive { .. } | Probe::Tcp) {
            "app"
        } else {
            "leader"
        };
        tokio::spawn(async move {
            let host = key.1.to_string();
            // Every master of an alias shares `start`, so their rounds line up.
            let mut tick = tokio::time::interval_at(start, spec.interval);
            tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
            loop {
                let round = tokio::select! {
                    _ = token.cancelled() => return,
                    at = tick.tick() => {
                        ((at - start).as_nanos() / spec.interval.as_nanos().max(1)) as u64
                    }
                };
                let result = tokio::select! {
                    _ = token.cancelled() => return,
                    r = probe::run(key.1, &spec.probe, &host, spec.timeout) => r,
                };
                let verdict = if result.ok { "pass" } else { "fail" };
                metrics
                    .health_probes
                    .with_label_values(&[kind, verdict])
                    .inc();
                let outcome = Outcome {
                    key: key.clone(),
                    generation,
                    round,
                    result,
                };
                if tx.send(outcome).is_err() {
                    return;
                }
            }
        });
    }

    /// Counts one probe result.
    fn observe(&mut self, outcome: Outcome) {
        let (route_name, addr) = &outcome.key;
        let now = Instant::now();
        if self.aliases.contains_key(route_name) {
            self.observe_alias(outcome, now);
            return;
        }
        let Some(mut w) = self.checks.remove(route_name) else {
            return;
        };
        if w.generation == outcome.generation {
            if let Some(h) = w.health.get_mut(addr) {
                if let Some(t) = h.record(&outcome.result, now) {
                    let level_down = t.to == State::Down;
                    if level_down {
                        warn!(route = %route_name, backend = %addr, probe = %outcome.result.detail,
                            "backend fails its health check");
                    } else {
                        info!(route = %route_name, backend = %addr, from = %t.from, to = %t.to,
                            "backend health changed");
                    }
                    self.apply_checks(&mut w);
                    self.checks.insert(route_name.clone(), w);
                    self.publish_checked_down();
                    self.dirty = true;
                    return;
                }
            }
        }
        self.checks.insert(route_name.clone(), w);
        self.dirty = true;
    }

    /// Tells DNS which backends the checks prove down (every checked route's, whether or
    /// not its pool routes to all: DNS applies its own all-failing rule per name).
    fn publish_checked_down(&self) {
        let down = self
            .checks
            .values()
            .flat_map(|w| w.health.iter())
            .filter(|(_, h)| h.state() == State::Down)
            .map(|(addr, _)| *addr)
            .collect();
        self.checked_down.publish(down);
    }

    /// Sets each checked backend's flag from its health, unless more than half of the pool
    /// is down: then nobody is flagged and the pool routes to all.
    fn apply_checks(&self, w: &mut CheckWatch) {
        let backends = w.route.pool.backends();
        let down = backends
            .iter()
            .filter(|b| {
                w.health
                    .get(&b.addr)
                    .is_some_and(|h| h.state() == State::Down)
            })
            .count();
        let to_all = down * 2 > backends.len();
        if to_all != w.routing_to_all {
            if to_all {
                warn!(route = %w.route.name, down, of = backends.len(),
                    "more than half of the pool fails its health check; routing to all of it");
            } else {
                info!(route = %w.route.name, down, of = backends.len(),
                    "enough of the pool passes its health check again; failing backends are skipped");
            }
            w.routing_to_all = to_all;
        }
        for b in backends {
            let is_down = w
                .health
                .get(&b.addr)
                .is_some_and(|h| h.state() == State::Down);
            b.set_check_down(is_down && !to_all);
            self.metrics
                .backend_up
                .with_label_values(&[&w.route.name, &b.addr.to_string()])
                .set(i64::from(b.is_available()));
        }
    }

    /// Logs and meters backends whose passive ejection has ended.
    fn sweep_ejected(&mut self) {
        while let Ok((route, backend)) = self.ejections.try_recv() {
            let known = self
                .ejected
                .iter()
                .any(|(r, b)| *r == route && Arc::ptr_eq(b, &backend));
            if !known {
                self.ejected.push((route, backend));
            }
        }
        let (returned, still_out): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ejected)
            .into_iter()
            .partition(|(_, b)| !b.is_ejected());
        self.ejected = still_out;
        if returned.is_empty() {
            return;
        }
        let table = self.routes.load();
        for (route, backend) in returned {
            let labels = [route.as_str(), &backend.addr.to_string()];
            let still_there = table.routes.iter().any(|r| {
                r.name == route && r.pool.backends().iter().any(|b| Arc::ptr_eq(b, &backend))
            });
            if !still_there {
                let _ = self.metrics.backend_up.remove_label_values(&labels);
                continue;
            }
            info!(route = %route, backend = %backend.addr, "ejected backend back in rotation");
            self.metrics
                .backend_up
                .with_label_values(&labels)
                .set(i64::from(backend.is_available()));
        }
    }

    /// Drops every per-backend series of a route (it left, or starts over).
    fn forget_metrics(&self, route: &Route) {
        let m = &self.metrics;
        let host = alias_host(route);
        for b in route.pool.backends() {
            let addr = b.addr.to_string();
            let _ = m.backend_up.remove_label_values(&[&route.name, &addr]);
            if route.pool.is_leader_pool() {
                let _ = m.alias_leader.remove_label_values(&[host, &addr]);
            }
        }
    }

    /// Replaces the status `/debug/routes` shows.
    fn publish_status(&mut self) {
        self.dirty = false;
        let mut status = HealthStatus::default();
        for (name, w) in &self.aliases {
            status.aliases.insert(
                name.clone(),
                AliasStatus {
                    leader: w.tracker.leader(),
                    since: w.since,
                    conflict: w.tracker.conflict().map(<[SocketAddr]>::to_vec),
                    backends: w
                        .tracker
                        .backends()
                        .map(|(addr, h)| TargetStatus {
                            addr,
                            state: h.state(),
                            last: h.last().cloned(),
                        })
                        .collect(),
                },
            );
        }
        for (name, w) in &self.checks {
            let mut backends: Vec<TargetStatus> = w
                .health
                .iter()
                .map(|(addr, h)| TargetStatus {
                    addr: *addr,
                    state: h.state(),
                    last: h.last().cloned(),
                })
                .collect();
            backends.sort_by_key(|t| t.addr);
            status.checks.insert(
                name.clone(),
                CheckStatus {
                    routing_to_all: w.routing_to_all,
                    backends,
                },
            );
        }
        self.status.publish(status);
    }
}

/// How long an alias round waits for its last answers after the first: long enough for
/// masters on one network to answer, short against the interval.
fn settle(interval: Duration) -> Duration {
    (interval / 4).min(Duration::from_millis(250))
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The `alias` label: the alias's host name.
fn alias_host(route: &Route) -> &str {
    route.vhosts.first().map_or("", |h| h.as_str())
}

/// Moves an alias's leader flag: everyone else off first, then the leader on.
fn apply_leader(route: &Route, leader: Option<SocketAddr>) {
    for b in route.pool.backends() {
        if Some(b.addr) != leader {
            b.set_leader(false);
        }
    }
    if let Some(b) = route
        .pool
        .backends()
        .iter()
        .find(|b| Some(b.addr) == leader)
    {
        b.set_leader(true);
    }
}
