//! The one writer. Whenever the config or a source changes, `control` rebuilds the catalog,
//! compiles a new route table against the previous one (so backend state carries over),
//! stores it with one `ArcSwap` store, updates the table metrics and tells the listener
//! reconciler; with `[dns]` it also compiles the DNS zone (from the catalog's cluster: what
//! the Mesos leader reported, and the apps only Marathon knows) and stores it the same way.
//! Nothing else writes either. It only orchestrates: every decision is in `catalog`,
//! `routing` or `dns`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::catalog::{self, cluster};
use crate::config::{Config, DnsConfig, Groups};
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
                let sources = Sources {
                    file: &file,
                    marathon: marathon.as_deref(),
                };
                let members = inputs.zk_members.borrow_and_update().clone();
                let routed = crate::zk::with_alias_members(&cfg, &members);
                tables.send_replace(rebuild(&out, &routed, sources, version));
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
                    let compiled = compile_zone(dns, input, zone_version).await;
                    store_zone(&out, compiled, zone_version);
                }
            }
            Some(_) => {}
            None if out.zone.is_set() => {
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

/// The snapshots one rebuild combines.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub file: &'a Snapshot,
    /// Present when `[marathon]` is configured.
    pub marathon: Option<&'a Snapshot>,
}

/// One rebuild: catalog, compile, store, metrics, logs. Returns the stored table.
pub fn rebuild(
    out: &Outputs,
    config: &Config,
    sources: Sources<'_>,
    version: u64,
) -> Arc<RouteTable> {
    let file = catalog::SourceApps {
        apps: &sources.file.apps,
        problems: &sources.file.problems,
        selection: catalog::Selection {
            groups: config
                .catalog
                .as_ref()
                .map_or_else(Groups::all, |c| c.groups.clone()),
            strict: false,
        },
    };
    let marathon = sources
        .marathon
        .zip(config.marathon.as_ref())
        .map(|(snapshot, marathon)| catalog::SourceApps {
            apps: &snapshot.apps,
            problems: &snapshot.problems,
            selection: catalog::Selection {
                groups: marathon.groups.clone(),
                strict: marathon.strict,
            },
        });
    let mut catalog = catalog::merge(std::iter::once(file).chain(marathon));
    // The one file read on the way to a table: CA files of `h2` backends.
    let backend_tls = routing::backend_tls::load(&mut catalog);
    let previous = out.table.current();
    let stats = |route: &str| out.metrics.route_stats(route);
    let mut table = routing::compile(&catalog, config, version, &previous, &stats);
    table.backend_tls = backend_tls;
    report(&previous, &table);
    update_metrics(&out.metrics, &table);
    let stored = Arc::new(table);
    out.table.store(stored.clone());
    stored
}

/// Logs what changed: the new table's size, and conflicts and problems not seen before.
fn report(previous: &RouteTable, table: &RouteTable) {
    let backends: usize = table.routes.iter().map(|r| r.pool.backends().len()).sum();
    info!(
        version = table.version,
        routes = table.routes.len(),
        vhosts = table.vhosts().len(),
        ports = table.tcp_routes().count(),
        backends,
        "route table stored"
    );
    let old: HashSet<String> = previous.conflicts.iter().map(|c| c.to_string()).collect();
    for c in table
        .conflicts
        .iter()
        .filter(|c| !old.contains(&c.to_string()))
    {
        warn!(version = table.version, "conflict: {c}");
    }
    let old: HashSet<String> = previous.problems.iter().map(|p| p.to_string()).collect();
    for p in table
        .problems
        .iter()
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

/// Compiles the zone from the Mesos leader's cluster and the apps only Marathon knows, and
/// says how long that took. The compile runs on a blocking thread: a big cluster's zone
/// takes long enough to stall the probes and admin answers this runtime also serves.
pub async fn compile_zone(dns: &DnsConfig, input: ZoneSources, serial: u32) -> (Zone, Duration) {
    let options = ZoneOptions::from_config(dns);
    let ZoneSources {
        mesos,
        marathon,
        checked_down,
    } = input;
    let build = move || {
        let cluster = mesos.as_ref().map(|m| &m.cluster);
        let apps = marathon
            .as_deref()
            .map_or_else(Vec::new, |m| cluster::marathon_only_apps(&m.apps, cluster));
        // CPU work on a blocking thread: the real clock, which paused time would stop.
        #[allow(clippy::disallowed_methods)]
        let started = std::time::Instant::now();
        let zone = Zone::compile(&ZoneInput {
            cluster,
            marathon_apps: &apps,
            options: &options,
            checked_down: &checked_down,
            serial,
        });
        (zone, started.elapsed())
    };
    let (zone, took) = match tokio::task::spawn_blocking(build).await {
        Ok(built) => built,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    info!(
        serial,
        records = zone.record_count(),
        compile_ms = took.as_millis() as u64,
        "DNS zone compiled"
    );
    if !zone.dropped_names().is_empty() {
        warn!(
            count = zone.dropped_names().len(),
            first = %zone.dropped_names()[0],
            "names left out of the DNS zone (not valid on the wire)"
        );
    }
    (zone, took)
}

fn store_zone(out: &Outputs, (zone, took): (Zone, Duration), serial: u32) {
    debug!(serial, "DNS zone stored");
    let records = zone.record_count();
    out.metrics.dns_zone_records.set(records as i64);
    out.metrics
        .dns_all_failing_names
        .set(zone.all_failing_names() as i64);
    let info = ZoneInfo {
        serial,
        records,
        compiled_at: std::time::SystemTime::now(),
        took,
    };
    out.zone.store_compiled(Arc::new(zone), info);
}
