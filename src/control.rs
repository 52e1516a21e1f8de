//! The one writer. Whenever the config or a source changes, `control` rebuilds the catalog,
//! compiles a new route table against the previous one (so backend state carries over),
//! stores it with one `ArcSwap` store, updates the table metrics and tells the listener
//! reconciler; with `[dns]` it also compiles the DNS zone (from the catalog's cluster: what
//! the Mesos leader reported, and the apps only Marathon knows) and stores it the same way.
//! Nothing else writes either. It only orchestrates: every decision is in `catalog`,
//! `routing` or `dns`.
//!
//! When only Marathon apps changed since the stored table was built (same config, catalog
//! file and ZooKeeper members, and the Marathon snapshot says which apps changed since the
//! one the table came from), only those apps' catalog entries are rebuilt and the table is
//! patched (`routing::patch`); anything else, or a patch `routing` refuses, compiles in full.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::catalog::{self, cluster, AppProblem, Catalog};
use crate::config::{Config, DnsConfig, Groups};
use crate::dns::zone::ZoneState;
use crate::dns::Zone;
use crate::dns::{ZoneInput, ZoneOptions};
use crate::handles::{
    CheckedDown, CheckedDownReceiver, ConfigInUse, ConfigWriter, RouteTableWriter, ZoneInfo,
    ZoneWriter,
};
use crate::metrics::Metrics;
use crate::routing::{self, RouteTable};
use crate::shutdown::Shutdown;
use crate::source::mesos::poll::MesosSnapshot;
use crate::source::Snapshot;

/// What `control` rebuilds from: the config and every source's latest good snapshot
/// (`None` until that source's first good read).
pub struct Inputs {
    pub config: watch::Receiver<Arc<Config>>,
    pub file: watch::Receiver<Option<Arc<Snapshot>>>,
    pub marathon: watch::Receiver<Option<Arc<Snapshot>>>,
    pub mesos: watch::Receiver<Option<Arc<MesosSnapshot>>>,
    /// Backends the health monitor's checks prove down; the zone follows them with
    /// `[dns] healthy_only`.
    pub checked_down: CheckedDownReceiver,
    /// The masters ZooKeeper names for aliases with `zk` and no `backends`.
    pub zk_members: watch::Receiver<Arc<crate::zk::AliasMembers>>,
}

/// What `control` writes; it holds the only writer of each.
pub struct Outputs {
    pub table: RouteTableWriter,
    pub zone: ZoneWriter,
    pub config: ConfigWriter,
    /// For the table and zone gauges, and each route's metric handles.
    pub metrics: Metrics,
}

/// Rebuilds on every input change until shutdown; publishes each stored table on `tables`.
pub async fn run(
    out: Outputs,
    mut inputs: Inputs,
    tables: watch::Sender<Arc<RouteTable>>,
    shutdown: Shutdown,
) {
    let mut version = 0;
    // The SOA serial: starts at the Unix time and counts zone builds, so it also grows
    // across restarts (for secondaries that compare serials).
    let mut zone_version: u32 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs() as u32);
    // What woke the loop: when only the checks changed, the table is left alone (the data
    // plane reads check flags from the backends themselves) and the zone is rebuilt only if
    // it reads them.
    let mut only_checks = false;
    // What the stored table was built from, to patch the next one.
    let mut built: Option<Built> = None;
    // The zone in use with what it was built from, to patch the next one.
    let mut zone_base: Option<ZoneBase> = None;
    loop {
        let cfg = inputs.config.borrow_and_update().clone();
        let file = inputs.file.borrow_and_update().clone();
        let marathon = inputs.marathon.borrow_and_update().clone();
        let mesos = inputs.mesos.borrow_and_update().clone();
        let checked_down = inputs.checked_down.borrow_and_update().clone();
        // Before every configured source has been read once there is nothing true to
        // route; the table stays unset so /readyz keeps saying "not yet".
        let marathon = match (&cfg.marathon, marathon) {
            (None, _) => Some(None),
            (Some(_), Some(m)) => Some(Some(m)),
            (Some(_), None) => None,
        };
        if !only_checks {
            out.config.store(ConfigInUse {
                config: cfg.clone(),
                zone: cfg.dns.as_ref().map(ZoneOptions::from_config),
            });
            if let (Some(file), Some(marathon)) = (file, marathon.clone()) {
                version += 1;
                let members = inputs.zk_members.borrow_and_update().clone();
                let given = Given {
                    config: &cfg,
                    file: &file,
                    marathon: marathon.as_ref(),
                    members: &members,
                };
                let table = match built.as_mut().and_then(|b| b.patch(&out, &given, version)) {
                    Some(table) => table,
                    None => {
                        let (table, base) = rebuild(&out, &given, version);
                        built = Some(base);
                        table
                    }
                };
                tables.send_replace(table);
            }
        }
        match &cfg.dns {
            Some(dns) if !only_checks || dns.healthy_only => {
                // The zone waits only for the sources it is built from.
                let mesos_ready = cfg.mesos.is_none() || mesos.is_some();
                if let (true, Some(marathon)) = (mesos_ready, marathon) {
                    zone_version += 1;
                    let input = ZoneSources {
                        mesos: mesos.clone(),
                        marathon,
                        checked_down,
                    };
                    let (base, took, kind) =
                        update_zone(dns, input, zone_base.take(), zone_version).await;
                    store_zone(&out, base.state.zone().clone(), took, kind, zone_version);
                    zone_base = Some(base);
                }
            }
            Some(_) => {}
            None if out.zone.is_set() => {
                zone_base = None;
                out.zone.store(None);
                out.metrics.dns_zone_records.set(0);
                out.metrics.dns_all_failing_names.set(0);
            }
            None => {}
        }
        only_checks = false;
        tokio::select! {
            r = inputs.config.changed() => if r.is_err() { return },
            r = inputs.file.changed() => if r.is_err() { return },
            r = inputs.marathon.changed() => if r.is_err() { return },
            r = inputs.mesos.changed() => if r.is_err() { return },
            r = inputs.zk_members.changed() => if r.is_err() { return },
            r = inputs.checked_down.changed() => {
                if r.is_err() { return }
                only_checks = true;
            }
            _ = shutdown.triggered() => return,
        }
    }
}

/// What a zone is compiled from besides its options.
pub struct ZoneSources {
    pub mesos: Option<Arc<MesosSnapshot>>,
    /// `None` without `[marathon]`.
    pub marathon: Option<Arc<Snapshot>>,
    pub checked_down: CheckedDown,
}

/// What one table is built from: the config, the catalog file's snapshot, Marathon's
/// (`None` without `[marathon]`), and the masters ZooKeeper names for aliases.
pub struct Given<'a> {
    pub config: &'a Arc<Config>,
    pub file: &'a Arc<Snapshot>,
    pub marathon: Option<&'a Arc<Snapshot>>,
    pub members: &'a Arc<crate::zk::AliasMembers>,
}

/// A rebuild's inputs and the parts of its catalog a patch reuses.
pub struct Built {
    table: Arc<RouteTable>,
    config: Arc<Config>,
    /// The config with ZooKeeper's members filled in: what the table was compiled with.
    routed: Arc<Config>,
    file: Arc<Snapshot>,
    members: Arc<crate::zk::AliasMembers>,
    /// The Marathon snapshot's `(origin, generation)`.
    marathon: Option<(u64, u64)>,
    /// The catalog file's problems (its own, then its build's): the head of the list.
    file_problems: Vec<AppProblem>,
    /// The catalog file's app ids: a Marathon app of the same id is never patched alone.
    file_ids: HashSet<String>,
    /// Each Marathon app's build problems, by id (the order `catalog` lists them in).
    app_problems: BTreeMap<String, Vec<AppProblem>>,
    /// Problems `backend_tls` added: the tail of the list.
    tls_problems: Vec<AppProblem>,
}

/// At most this many changed apps are patched; more compile in full.
const MAX_PATCHED_APPS: usize = 1000;

/// The catalog file's selection under `config`.
fn file_selection(config: &Config) -> catalog::Selection {
    catalog::Selection {
        groups: config
            .catalog
            .as_ref()
            .map_or_else(Groups::all, |c| c.groups.clone()),
        strict: false,
    }
}

/// One full rebuild: catalog, compile, store, metrics, logs. Returns the stored table and
/// what the next patch starts from.
pub fn rebuild(out: &Outputs, given: &Given<'_>, version: u64) -> (Arc<RouteTable>, Built) {
    let routed = crate::zk::with_alias_members(given.config, given.members);
    let config = &*routed;
    // Each source's catalog apart (as `catalog::merge` would), so that a patch can tell
    // whose problems are whose.
    let file = catalog::build_selected(&given.file.apps, &file_selection(config));
    let marathon = given
        .marathon
        .zip(config.marathon.as_ref())
        .map(|(snapshot, m)| {
            let selection = catalog::Selection {
                groups: m.groups.clone(),
                strict: m.strict,
            };
            (
                snapshot,
                catalog::build_selected(&snapshot.apps, &selection),
            )
        });
    let mut file_problems = given.file.problems.clone();
    file_problems.extend(file.problems);
    let mut app_problems: BTreeMap<String, Vec<AppProblem>> = BTreeMap::new();
    let mut catalog = Catalog {
        services: file.services,
        problems: file_problems.clone(),
    };
    if let Some((snapshot, built)) = marathon {
        catalog.problems.extend(snapshot.problems.iter().cloned());
        catalog.problems.extend(built.problems.iter().cloned());
        for p in built.problems {
            app_problems.entry(p.app_id.clone()).or_default().push(p);
        }
        catalog.services.extend(built.services);
    }
    catalog
        .services
        .sort_by(|a, b| (&a.app_id, a.index).cmp(&(&b.app_id, b.index)));
    // The one file read on the way to a table: CA files of `h2` backends.
    let before_tls = catalog.problems.len();
    let backend_tls = routing::backend_tls::load(&mut catalog);
    let tls_problems = catalog.problems[before_tls..].to_vec();
    let previous = out.table.current();
    let stats = |route: &str| out.metrics.route_stats(route);
    let mut table = routing::compile(&catalog, config, version, &previous, &stats);
    table.backend_tls = backend_tls;
    report(&previous, &table, None);
    out.metrics
        .route_table_builds
        .with_label_values(&["full"])
        .inc();
    let stored = store(out, table);
    let base = Built {
        table: stored.clone(),
        config: given.config.clone(),
        routed: routed.clone(),
        file: given.file.clone(),
        members: given.members.clone(),
        marathon: given
            .marathon
            .map(|m| (m.changes.origin, m.changes.generation)),
        file_problems,
        file_ids: given.file.apps.iter().map(|a| a.id.clone()).collect(),
        app_problems,
        tls_problems,
    };
    (stored, base)
}

fn store(out: &Outputs, table: RouteTable) -> Arc<RouteTable> {
    update_metrics(&out.metrics, &table);
    let stored = Arc::new(table);
    out.table.store(stored.clone());
    stored
}

// === impl Built ===

impl Built {
    /// Patches the stored table when only Marathon apps changed since it was built, and
    /// stores it; `None`: a full rebuild is needed.
    fn patch(&mut self, out: &Outputs, given: &Given<'_>, version: u64) -> Option<Arc<RouteTable>> {
        let same = Arc::ptr_eq(&self.config, given.config)
            && Arc::ptr_eq(&self.file, given.file)
            && Arc::ptr_eq(&self.members, given.members)
            && Arc::ptr_eq(&self.table, &out.table.current());
        let (origin, generation) = self.marathon?;
        let snapshot = given.marathon?;
        let marathon = self.routed.marathon.as_ref()?;
        if !same {
            return None;
        }
        let changed = snapshot.changes.changed_since(origin, generation)?;
        let touched = |id: &&str| {
            self.file_ids.contains(*id) || self.tls_problems.iter().any(|p| p.app_id == *id)
        };
        if changed.len() > MAX_PATCHED_APPS || changed.iter().any(touched) {
            return None;
        }
        let selection = catalog::Selection {
            groups: marathon.groups.clone(),
            strict: marathon.strict,
        };
        // The changed apps' catalog entries, in catalog order (`changed` is sorted by id,
        // and so are the snapshot's apps).
        let mut services = Vec::new();
        let mut app_problems = self.app_problems.clone();
        for id in &changed {
            app_problems.remove(*id);
            let Ok(i) = snapshot.apps.binary_search_by(|a| a.id.as_str().cmp(id)) else {
                continue; // removed
            };
            let built = catalog::build_app(&snapshot.apps[i], &selection);
            services.extend(built.services);
            if !built.problems.is_empty() {
                app_problems.insert(id.to_string(), built.problems);
            }
        }
        let problems: Vec<AppProblem> = self
            .file_problems
            .iter()
            .chain(&snapshot.problems)
            .chain(app_problems.values().flatten())
            .chain(&self.tls_problems)
            .cloned()
            .collect();
        let previous = self.table.clone();
        let stats = |route: &str| out.metrics.route_stats(route);
        let table = routing::patch(
            &previous,
            &changed,
            &services,
            problems,
            &self.routed,
            version,
            &stats,
        )?;
        report(&previous, &table, Some(&changed));
        out.metrics
            .route_table_builds
            .with_label_values(&["patch"])
            .inc();
        let stored = store(out, table);
        self.table = stored.clone();
        self.marathon = Some((origin, snapshot.changes.generation));
        self.app_problems = app_problems;
        Some(stored)
    }
}

/// Logs what changed: the new table's size, and conflicts and problems not seen before.
/// After a patch (`changed`: the patched apps) only those apps' problems can be new, and
/// the conflicts are the previous table's.
fn report(previous: &RouteTable, table: &RouteTable, changed: Option<&BTreeSet<&str>>) {
    let backends: usize = table.routes.iter().map(|r| r.pool.backends().len()).sum();
    let message = match changed {
        Some(_) => "route table patched",
        None => "route table stored",
    };
    info!(
        version = table.version,
        routes = table.routes.len(),
        vhosts = table.vhost_count(),
        ports = table.tcp_routes().count(),
        backends,
        patched = changed.map(|c| c.len()),
        "{message}"
    );
    if changed.is_none() {
        let old: HashSet<String> = previous.conflicts.iter().map(|c| c.to_string()).collect();
        for c in table
            .conflicts
            .iter()
            .filter(|c| !old.contains(&c.to_string()))
        {
            warn!(version = table.version, "conflict: {c}");
        }
    }
    let concerned = |p: &&AppProblem| changed.is_none_or(|c| c.contains(p.app_id.as_str()));
    let old: HashSet<String> = previous
        .problems
        .iter()
        .filter(concerned)
        .map(|p| p.to_string())
        .collect();
    for p in table
        .problems
        .iter()
        .filter(concerned)
        .filter(|p| !old.contains(&p.to_string()))
    {
        warn!(version = table.version, "{p}");
    }
}

fn update_metrics(m: &Metrics, table: &RouteTable) {
    m.route_table_version.set(table.version as i64);
    m.route_conflicts.set(table.conflicts.len() as i64);
    m.app_problems.set(table.problems.len() as i64);
}

/// The zone in use, with what it was built from: a later change to Marathon apps alone is
/// patched into it (`ZoneState::replace_marathon_apps`) instead of compiled again.
pub struct ZoneBase {
    state: ZoneState,
    options: ZoneOptions,
    mesos: Option<Arc<MesosSnapshot>>,
    checked_down: CheckedDown,
    /// The Marathon snapshot's `(origin, generation)`; `None` without `[marathon]`.
    marathon: Option<(u64, u64)>,
}

/// How a zone was made, for the log and `drover_dns_zone_builds_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneBuild {
    Full,
    Patch,
}

/// The next zone: `base` patched when only Marathon apps changed since it was built (same
/// DNS options, Mesos snapshot and checked-down set, and the Marathon snapshot names the
/// apps that changed since `base`'s), else a full compile of the Mesos leader's cluster and
/// the apps only Marathon knows. Says how long that took. The work runs on a blocking
/// thread: a big cluster's compile takes long enough to stall the probes and admin answers
/// this runtime also serves.
pub async fn update_zone(
    dns: &DnsConfig,
    input: ZoneSources,
    base: Option<ZoneBase>,
    serial: u32,
) -> (ZoneBase, Duration, ZoneBuild) {
    let options = ZoneOptions::from_config(dns);
    let ZoneSources {
        mesos,
        marathon,
        checked_down,
    } = input;
    let marathon_at = marathon
        .as_ref()
        .map(|m| (m.changes.origin, m.changes.generation));
    let changed: Option<Vec<String>> = base.as_ref().and_then(|b| {
        let same = b.options == options
            && same_arc(&b.mesos, &mesos)
            && (Arc::ptr_eq(&b.checked_down, &checked_down) || b.checked_down == checked_down)
            && !b.state.should_recompile();
        let (origin, generation) = b.marathon?;
        let ids = marathon
            .as_ref()?
            .changes
            .changed_since(origin, generation)?;
        (same && ids.len() <= MAX_PATCHED_APPS)
            .then(|| ids.into_iter().map(str::to_string).collect())
    });
    let build = move || {
        // CPU work on a blocking thread: the real clock, which paused time would stop.
        #[allow(clippy::disallowed_methods)]
        let started = std::time::Instant::now();
        let cluster = mesos.as_ref().map(|m| &m.cluster);
        let (state, kind) = match (base, changed) {
            (Some(mut base), Some(ids)) => {
                let apps = marathon.as_deref().map_or_else(Vec::new, |m| {
                    // The snapshot's apps are sorted by id.
                    let changed = ids.iter().filter_map(|id| {
                        let at = m.apps.binary_search_by(|a| a.id.as_str().cmp(id)).ok()?;
                        Some(&*m.apps[at])
                    });
                    cluster::marathon_only_apps(&changed.collect::<Vec<_>>(), cluster)
                });
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                base.state.replace_marathon_apps(&ids, &apps, serial);
                (base.state, ZoneBuild::Patch)
            }
            _ => {
                let apps = marathon
                    .as_deref()
                    .map_or_else(Vec::new, |m| cluster::marathon_only_apps(&m.apps, cluster));
                let state = ZoneState::compile(&ZoneInput {
                    cluster,
                    marathon_apps: &apps,
                    options: &options,
                    checked_down: &checked_down,
                    serial,
                });
                (state, ZoneBuild::Full)
            }
        };
        let base = ZoneBase {
            state,
            options,
            mesos,
            checked_down,
            marathon: marathon_at,
        };
        (base, started.elapsed(), kind)
    };
    let (base, took, kind) = match tokio::task::spawn_blocking(build).await {
        Ok(built) => built,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let zone = base.state.zone();
    match kind {
        ZoneBuild::Full => info!(
            serial,
            records = zone.record_count(),
            compile_ms = took.as_millis() as u64,
            "DNS zone compiled"
        ),
        ZoneBuild::Patch => debug!(
            serial,
            records = zone.record_count(),
            patch_us = took.as_micros() as u64,
            "DNS zone patched"
        ),
    }
    if kind == ZoneBuild::Full && !zone.dropped_names().is_empty() {
        warn!(
            count = zone.dropped_names().len(),
            first = %zone.dropped_names()[0],
            "names left out of the DNS zone (not valid on the wire)"
        );
    }
    (base, took, kind)
}

/// Both absent, or the same snapshot.
fn same_arc<T>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

fn store_zone(out: &Outputs, zone: Arc<Zone>, took: Duration, kind: ZoneBuild, serial: u32) {
    debug!(serial, "DNS zone stored");
    let records = zone.record_count();
    out.metrics.dns_zone_records.set(records as i64);
    out.metrics
        .dns_all_failing_names
        .set(zone.all_failing_names() as i64);
    let kind_label = match kind {
        ZoneBuild::Full => "full",
        ZoneBuild::Patch => "patch",
    };
    out.metrics
        .dns_zone_builds
        .with_label_values(&[kind_label])
        .inc();
    let info = ZoneInfo {
        serial,
        records,
        compiled_at: std::time::SystemTime::now(),
        took,
    };
    out.zone.store_compiled(zone, info);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::catalog::{RawApp, RawTask};
    use crate::source::Changes;

    fn outputs() -> Outputs {
        Outputs {
            table: RouteTableWriter::new(),
            zone: ZoneWriter::new(),
            config: ConfigWriter::new(),
            metrics: Metrics::new(prometheus::Registry::new()),
        }
    }

    fn app(id: &str, port: u16, labels: &[(&str, &str)], tasks: usize) -> Arc<RawApp> {
        Arc::new(RawApp {
            id: id.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ports: vec![port],
            tasks: (0..tasks)
                .map(|n| RawTask {
                    id: format!("{id}.{n}"),
                    host: "127.0.0.1".into(),
                    ports: vec![31000 + n as u16],
                    state: "TASK_RUNNING".into(),
                    healthy: None,
                })
                .collect(),
            ..RawApp::default()
        })
    }

    fn names(t: &RouteTable) -> Vec<(String, Vec<std::net::SocketAddr>)> {
        t.routes
            .iter()
            .map(|r| {
                let addrs = r.pool.backends().iter().map(|b| b.addr).collect();
                (r.name.clone(), addrs)
            })
            .collect()
    }

    /// A patch gives the table, problems included, that a full rebuild of the same inputs
    /// gives; and it is taken only when the inputs allow it.
    #[test]
    fn a_patch_equals_a_full_rebuild_problems_included() {
        let config = Arc::new(
            Config::parse(
                "[http]\nlisten = \"127.0.0.1:0\"\n[marathon]\nurls = [\"http://127.0.0.1:1\"]\ngroups = [\"*\"]\n",
                Path::new("."),
            )
            .expect("config"),
        );
        let file = Arc::new(Snapshot {
            apps: vec![app("/file", 10001, &[("HAPROXY_0_BALANCE", "bogus")], 1)],
            ..Snapshot::default()
        });
        let members = Arc::new(crate::zk::AliasMembers::new());
        let bad = AppProblem {
            app_id: "/b".into(),
            message: "decoded badly".into(),
        };
        let first = Arc::new(Snapshot {
            apps: vec![
                app("/a", 10002, &[("HAPROXY_0_VHOST", "a.test")], 1),
                app("/b", 10003, &[("HAPROXY_0_BALANCE", "bogus")], 1),
                app("/c", 10004, &[("HAPROXY_0_VHOST", "c.test")], 2),
            ],
            problems: vec![bad.clone()],
            changes: Changes::first(9),
        });
        let given = |marathon| Given {
            config: &config,
            file: &file,
            marathon: Some(marathon),
            members: &members,
        };
        let out = outputs();
        let (_, mut built) = rebuild(&out, &given(&first), 1);

        // /a gains a task, /b's bad label is fixed, /c is gone.
        let second = Arc::new(Snapshot {
            apps: vec![
                app("/a", 10002, &[("HAPROXY_0_VHOST", "a.test")], 2),
                app("/b", 10003, &[], 1),
            ],
            problems: vec![bad],
            changes: first
                .changes
                .next(Some(vec!["/a".into(), "/b".into(), "/c".into()])),
        });
        let patched = built.patch(&out, &given(&second), 2).expect("patched");
        assert_eq!(patched.version, 2);
        let (full, _) = rebuild(&outputs(), &given(&second), 2);
        assert_eq!(names(&patched), names(&full));
        assert_eq!(patched.problems, full.problems);
        assert_eq!(patched.vhost_count(), full.vhost_count());
        assert!(patched.problems.iter().all(|p| p.app_id != "/c"));

        // A changed catalog file, or a snapshot from another run of the source: in full.
        let third = Arc::new(Snapshot {
            changes: Changes::first(10),
            ..(*second).clone()
        });
        assert!(built.patch(&out, &given(&third), 3).is_none());
        let other_file = Arc::new((*file).clone());
        let other = Given {
            file: &other_file,
            ..given(&second)
        };
        assert!(built.patch(&out, &other, 3).is_none());
    }
}
