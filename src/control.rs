//! The one writer. Whenever the config or a source changes, `control` rebuilds the catalog,
//! compiles a new route table against the previous one (so backend state carries over),
//! stores it with one `ArcSwap` store, updates the table metrics and tells the listener
//! reconciler. Nothing else ever writes the table.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::catalog;
use crate::config::{Config, Groups};
use crate::routing::{self, RouteTable};
use crate::shutdown::Shutdown;
use crate::source::Snapshot;
use crate::Shared;

/// What `control` rebuilds from: the config and every source's latest good snapshot
/// (`None` until that source's first good read).
pub struct Inputs {
    pub config: watch::Receiver<Arc<Config>>,
    pub file: watch::Receiver<Option<Arc<Snapshot>>>,
    pub marathon: watch::Receiver<Option<Arc<Snapshot>>>,
}

/// Rebuilds on every input change until shutdown; publishes each stored table on `tables`.
pub async fn run(
    shared: Arc<Shared>,
    mut inputs: Inputs,
    tables: watch::Sender<Arc<RouteTable>>,
    shutdown: Shutdown,
) {
    let mut version = 0;
    loop {
        let cfg = inputs.config.borrow_and_update().clone();
        let file = inputs.file.borrow_and_update().clone();
        let marathon = inputs.marathon.borrow_and_update().clone();
        // Before every configured source has been read once there is nothing true to
        // route; the table stays unset so /readyz keeps saying "not yet".
        let marathon = match (&cfg.marathon, marathon) {
            (None, _) => Some(None),
            (Some(_), Some(m)) => Some(Some(m)),
            (Some(_), None) => None,
        };
        if let (Some(file), Some(marathon)) = (file, marathon) {
            version += 1;
            let sources = Sources {
                file: &file,
                marathon: marathon.as_deref(),
            };
            tables.send_replace(rebuild(&shared, &cfg, sources, version));
        }
        tokio::select! {
            r = inputs.config.changed() => if r.is_err() { return },
            r = inputs.file.changed() => if r.is_err() { return },
            r = inputs.marathon.changed() => if r.is_err() { return },
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
    shared: &Shared,
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
    let previous = shared.table.load_full();
    let table = routing::compile(&catalog, config, version, &previous, &shared.metrics);
    report(&previous, &table);
    update_metrics(shared, &previous, &table);
    let stored = Arc::new(table);
    shared.table.store(stored.clone());
    shared.set_ready();
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

fn update_metrics(shared: &Shared, previous: &RouteTable, table: &RouteTable) {
    let m = &shared.metrics;
    m.route_table_version.set(table.version as i64);
    m.route_conflicts.set(table.conflicts.len() as i64);
    m.app_problems.set(table.problems.len() as i64);
    let now: HashSet<&str> = table.routes.iter().map(|r| r.name.as_str()).collect();
    for gone in previous
        .routes
        .iter()
        .filter(|r| !now.contains(r.name.as_str()))
    {
        let _ = m.backends.remove_label_values(&[&gone.name, "up"]);
    }
    for r in &table.routes {
        m.backends
            .with_label_values(&[&r.name, "up"])
            .set(r.pool.backends().len() as i64);
    }
}
