//! The one writer. Whenever the config or a source changes, `control` rebuilds the catalog,
//! compiles a new route table against the previous one (so backend state carries over),
//! stores it with one `ArcSwap` store, updates the table metrics and tells the listener
//! reconciler; with `[dns]` it also compiles the DNS zone (from the Mesos leader's state and
//! the Marathon-only apps) and stores it the same way. Nothing else writes either.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::catalog::{self, RawApp};
use crate::config::{Config, DnsConfig, Groups};
use crate::dns::records::{self, HostRecord, ResolvedHosts};
use crate::dns::{name::LabelRules, IpSource, MarathonOnlyApp, MarathonOnlyTask, Zone};
use crate::dns::{ZoneInput, ZoneOptions};
use crate::handles::{ConfigInUse, ConfigWriter, RouteTableWriter, ZoneWriter};
use crate::metrics::Metrics;
use crate::routing::{self, RouteTable};
use crate::shutdown::Shutdown;
use crate::source::mesos::poll::MesosSnapshot;
use crate::source::mesos::state::MesosState;
use crate::source::Snapshot;

/// What `control` rebuilds from: the config and every source's latest good snapshot
/// (`None` until that source's first good read).
pub struct Inputs {
    pub config: watch::Receiver<Arc<Config>>,
    pub file: watch::Receiver<Option<Arc<Snapshot>>>,
    pub marathon: watch::Receiver<Option<Arc<Snapshot>>>,
    pub mesos: watch::Receiver<Option<Arc<MesosSnapshot>>>,
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
    loop {
        let cfg = inputs.config.borrow_and_update().clone();
        out.config.store(ConfigInUse {
            config: cfg.clone(),
            zone: cfg.dns.as_ref().map(|dns| zone_options(&cfg, dns)),
        });
        let file = inputs.file.borrow_and_update().clone();
        let marathon = inputs.marathon.borrow_and_update().clone();
        let mesos = inputs.mesos.borrow_and_update().clone();
        // Before every configured source has been read once there is nothing true to
        // route; the table stays unset so /readyz keeps saying "not yet".
        let marathon = match (&cfg.marathon, marathon) {
            (None, _) => Some(None),
            (Some(_), Some(m)) => Some(Some(m)),
            (Some(_), None) => None,
        };
        if let (Some(file), Some(marathon)) = (file, marathon.clone()) {
            version += 1;
            let sources = Sources {
                file: &file,
                marathon: marathon.as_deref(),
            };
            tables.send_replace(rebuild(&out, &cfg, sources, version));
        }
        if let Some(dns) = &cfg.dns {
            // The zone waits only for the sources it is built from.
            let mesos_ready = cfg.mesos.is_none() || mesos.is_some();
            if let (true, Some(marathon)) = (mesos_ready, marathon) {
                zone_version += 1;
                let zone = compile_zone(&cfg, dns, mesos.clone(), marathon, zone_version).await;
                store_zone(&out, zone, zone_version);
            }
        } else if out.zone.is_set() {
            out.zone.store(None);
            out.metrics.dns_zone_records.set(0);
        }
        tokio::select! {
            r = inputs.config.changed() => if r.is_err() { return },
            r = inputs.file.changed() => if r.is_err() { return },
            r = inputs.marathon.changed() => if r.is_err() { return },
            r = inputs.mesos.changed() => if r.is_err() { return },
            _ = shutdown.triggered() => return,
        }
    }
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
    let file_groups = config
        .catalog
        .as_ref()
        .map_or_else(Groups::all, |c| c.groups.clone());
    let mut catalog = catalog::build(&sources.file.apps, &file_groups);
    catalog
        .problems
        .splice(0..0, sources.file.problems.iter().cloned());
    if let (Some(snapshot), Some(marathon)) = (sources.marathon, &config.marathon) {
        let selection = catalog::Selection {
            groups: marathon.groups.clone(),
            strict: marathon.strict,
        };
        let more = catalog::build_selected(&snapshot.apps, &selection);
        catalog.problems.extend(snapshot.problems.iter().cloned());
        catalog.problems.extend(more.problems);
        catalog.services.extend(more.services);
        // One order across sources, so conflicts settle the same way on every rebuild.
        catalog
            .services
            .sort_by(|a, b| (&a.app_id, a.index).cmp(&(&b.app_id, b.index)));
    }
    let previous = out.table.current();
    let stats = |route: &str| out.metrics.route_stats(route);
    let table = routing::compile(&catalog, config, version, &previous, &stats);
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

/// How long resolving the host names in a Mesos state may take before the zone is built
/// without the ones still unresolved.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Compiles the zone from the Mesos leader's state and the apps only Marathon knows,
/// resolving the host names the state uses instead of addresses first. The compile runs on
/// a blocking thread: a big cluster's zone takes long enough to stall the probes and admin
/// answers this runtime also serves.
pub async fn compile_zone(
    config: &Config,
    dns: &DnsConfig,
    mesos: Option<Arc<MesosSnapshot>>,
    marathon: Option<Arc<Snapshot>>,
    serial: u32,
) -> Zone {
    let options = zone_options(config, dns);
    let state = mesos.as_ref().map(|m| &m.state);
    let mut resolved = ResolvedHosts::new();
    for host in records::hosts_to_resolve(state, &options.records) {
        let lookup = tokio::net::lookup_host((host.clone(), 0));
        match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
            Ok(Ok(addrs)) => {
                resolved.insert(host, addrs.map(|a| a.ip()).collect());
            }
            Ok(Err(e)) => {
                warn!(%host, error = %e, "cannot resolve a host named in the Mesos state")
            }
            Err(_) => warn!(%host, "resolving a host named in the Mesos state timed out"),
        }
    }
    let build = move || {
        let state = mesos.as_ref().map(|m| &m.state);
        let apps = marathon
            .as_deref()
            .map_or_else(Vec::new, |m| marathon_only_apps(&m.apps, state));
        // CPU work on a blocking thread: the real clock, which paused time would stop.
        #[allow(clippy::disallowed_methods)]
        let started = std::time::Instant::now();
        let zone = Zone::compile(&ZoneInput {
            state,
            marathon_apps: &apps,
            resolved: &resolved,
            options: &options,
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
    zone
}

fn store_zone(out: &Outputs, zone: Zone, serial: u32) {
    debug!(serial, "DNS zone stored");
    out.metrics.dns_zone_records.set(zone.record_count() as i64);
    out.zone.store(Some(Arc::new(zone)));
}

/// The zone's settings from `[dns]` and `[mesos]`, with Mesos-DNS's defaults elsewhere.
pub fn zone_options(config: &Config, dns: &DnsConfig) -> ZoneOptions {
    let mut options = ZoneOptions::mesos_dns_defaults(dns.domain.as_str());
    options.ttl = dns.ttl.as_secs().clamp(0, u32::MAX as u64) as u32;
    options.soa.minimum = options.ttl;
    options.records.ip_sources = dns
        .ip_sources
        .iter()
        .filter_map(|s| IpSource::from_name(s))
        .collect();
    options.records.labels = LabelRules::from_name(&dns.labels).unwrap_or_default();
    options.records.legacy_discovery_names = dns.legacy_names;
    options.records.masters = config.mesos.as_ref().map_or_else(Vec::new, |m| {
        m.masters
            .iter()
            .map(|u| {
                u.trim_start_matches("http://")
                    .trim_start_matches("https://")
                    .trim_end_matches('/')
                    .to_string()
            })
            .collect()
    });
    // The name server's own name answers with the address DNS listens on, when that is one
    // address (not 0.0.0.0 / ::).
    let ip = dns.listen.ip();
    if !ip.is_unspecified() {
        options.records.name_server = Some(HostRecord {
            name: options.soa.mname.clone(),
            ips: vec![ip],
        });
    }
    options
}

/// The Marathon apps whose tasks the Mesos state does not list (all of them without
/// `[mesos]`), in the shape Mesos-DNS names Marathon tasks by.
fn marathon_only_apps(apps: &[RawApp], state: Option<&MesosState>) -> Vec<MarathonOnlyApp> {
    let known: HashSet<&str> = state
        .map(|s| {
            s.frameworks
                .iter()
                .flat_map(|f| f.tasks.iter().map(|t| t.id.as_str()))
                .collect()
        })
        .unwrap_or_default();
    apps.iter()
        .filter_map(|app| {
            let tasks: Vec<MarathonOnlyTask> = app
                .tasks
                .iter()
                .filter(|t| t.state == "TASK_RUNNING" && !known.contains(t.id.as_str()))
                .filter_map(|t| {
                    Some(MarathonOnlyTask {
                        id: t.id.clone(),
                        host: t.host.parse().ok()?,
                        ip_addresses: Vec::new(),
                        ports: t.ports.clone(),
                        agent_id: None,
                    })
                })
                .collect();
            (!tasks.is_empty()).then(|| MarathonOnlyApp {
                id: app.id.clone(),
                tasks,
            })
        })
        .collect()
}
