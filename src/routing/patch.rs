//! Patching a route table when only some apps changed: their routes are rebuilt from their
//! new services and every other route (`Arc<Route>`) is shared with the previous table, so
//! one app's change costs that app's routes, a copy of the route list and of the lookup
//! maps' shards its keys land in (`ShardedMap`), not a compile of every app.
//!
//! The result must be exactly the table `compile` would give for the whole catalog against
//! `previous`. Claims are where the two could differ, so a patch is refused (`None`: the
//! caller compiles in full) unless the changed apps' claims settle without any contest:
//! no conflict of `previous` names a changed app's route, none of their new claims is held
//! by another app or by a master alias's host, and no two of them claim one thing. Under
//! that rule every claim of a changed app has one claimant, before and after, and every
//! other claim keeps its holder, which is what `compile` decides too. Apps with `h2`
//! backends are also refused (their TLS setups are loaded by a full rebuild).
//!
//! The changed apps' routes are found by binary search (the routes are in catalog order,
//! which `compile` records), so a patch compares no more than a few app ids per changed
//! app, however many routes the table holds.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use super::{
    eject_policy, service_route, tcp_listen_addr, udp, PathRoute, Route, RouteKind, RouteTable,
};
use crate::catalog::{AppProblem, BackendProto, Mode, Service};
use crate::config::Config;
use crate::host::HostName;
use crate::metrics::RouteStats;

/// The table `previous` with the routes of the apps `changed` rebuilt from `services` (the
/// changed apps' services, in catalog order: by app id, then index; an app without any is
/// removed), `problems` as the whole catalog's, numbered `version`; or `None` when the
/// change touches a contested claim and only `compile` settles it. `config` must be the one
/// `previous` was compiled with.
pub fn patch(
    previous: &RouteTable,
    changed: &BTreeSet<&str>,
    services: &[Service],
    problems: Vec<AppProblem>,
    config: &Config,
    version: u64,
    stats: &dyn Fn(&str) -> RouteStats,
) -> Option<RouteTable> {
    let in_order = services
        .windows(2)
        .all(|w| (&w[0].app_id, w[0].index) <= (&w[1].app_id, w[1].index));
    let only_changed = services.iter().all(|s| changed.contains(s.app_id.as_str()));
    if !previous.routes_sorted || !in_order || !only_changed {
        return None;
    }
    // Each changed app's routes: one run of the sorted routes (empty for a new app).
    let runs: Vec<(&str, Range<usize>)> = changed
        .iter()
        .map(|id| (*id, app_routes(&previous.routes, id)))
        .collect();
    let old: Vec<&Arc<Route>> = runs
        .iter()
        .flat_map(|(_, run)| &previous.routes[run.clone()])
        .collect();
    let h2 = |p: &BackendProto| matches!(p, BackendProto::H2 { .. });
    if old.iter().any(|r| h2(&r.rules.backend)) || services.iter().any(|s| h2(&s.backend_proto)) {
        return None;
    }
    let names: HashSet<&str> = old
        .iter()
        .map(|r| r.name.as_str())
        .chain(services.iter().map(|s| s.name.as_str()))
        .collect();
    let contested = previous.conflicts.iter().any(|c| {
        names.contains(c.kept.as_str()) || c.refused.iter().any(|r| names.contains(r.as_str()))
    });
    if contested {
        return None;
    }
    let held_by_old = |route: Option<&Arc<Route>>| match route {
        None => true,
        Some(r) => old.iter().any(|o| Arc::ptr_eq(o, r)),
    };

    // The new claims: each must be free (or the changed apps' own) and claimed once.
    let mut ports = HashSet::new();
    let mut udp_ports = HashSet::new();
    let mut vhost_keys: HashSet<(&HostName, &str)> = HashSet::new();
    for s in services {
        if tcp_listen_addr(s, config).is_some()
            && (!ports.insert(s.port) || !held_by_old(previous.tcp.get(&s.port)))
        {
            return None;
        }
        if udp::listen_addr(s, config).is_some()
            && (!udp_ports.insert(s.port) || !held_by_old(previous.udp.get(&s.port)))
        {
            return None;
        }
        if !s.protocol.tcp() {
            continue;
        }
        let path = s.path.as_deref().unwrap_or("");
        for host in &s.vhosts {
            let holder = previous
                .vhosts
                .get(host)
                .and_then(|paths| paths.iter().find(|p| p.prefix == path))
                .map(|p| &p.route);
            let alias = config.aliases.iter().any(|a| a.host == *host);
            if alias || !vhost_keys.insert((host, path)) || !held_by_old(holder) {
                return None;
            }
        }
    }

    // Take the old routes out of every map.
    let mut tcp = previous.tcp.clone();
    let mut udp_map = previous.udp.clone();
    let mut vhosts = previous.vhosts.clone();
    let mut app_ids = previous.app_ids.clone();
    let mut touched_hosts: HashSet<HostName> = HashSet::new();
    for r in &old {
        if tcp.get(&r.port).is_some_and(|h| Arc::ptr_eq(h, r)) {
            tcp.remove(&r.port);
        }
        if udp_map.get(&r.port).is_some_and(|h| Arc::ptr_eq(h, r)) {
            udp_map.remove(&r.port);
        }
        for host in &r.vhosts {
            if let Some(paths) = vhosts.get_mut(host) {
                let kept: Vec<PathRoute> = (paths.iter())
                    .filter(|p| !Arc::ptr_eq(&p.route, r))
                    .cloned()
                    .collect();
                *paths = kept.into();
                touched_hosts.insert(host.clone());
            }
        }
    }
    for id in changed {
        app_ids.remove(*id);
    }

    // The new routes: every claim is theirs (checked above).
    let old_by_name: HashMap<&str, &Route> = old.iter().map(|r| (r.name.as_str(), &***r)).collect();
    let eject = eject_policy(config);
    let mut fresh = Vec::with_capacity(services.len());
    for s in services {
        let listen = (tcp_listen_addr(s, config), udp::listen_addr(s, config));
        let old = old_by_name.get(s.name.as_str()).copied();
        let route = service_route(s, listen, old, eject, stats);
        if route.listen.is_some() {
            tcp.insert(s.port, route.clone());
        }
        if route.udp_listen.is_some() {
            udp_map.insert(s.port, route.clone());
        }
        if s.mode == Mode::Http && s.protocol.tcp() {
            app_ids.get_or_insert_with(Arc::from(s.app_id.as_str()), || route.clone());
        }
        for host in s.vhosts.iter().filter(|_| s.protocol.tcp()) {
            let paths = vhosts.get_or_insert_with(host.clone(), || Arc::from([]));
            let mut grown = paths.to_vec();
            grown.push(PathRoute {
                prefix: s.path.clone().unwrap_or_default(),
                route: route.clone(),
            });
            *paths = grown.into();
            touched_hosts.insert(host.clone());
        }
        fresh.push(route);
    }
    // Longest prefix first, as `compile` orders them (equal lengths by prefix, the order
    // its claims are settled in).
    for host in touched_hosts {
        match vhosts.get_mut(&host) {
            Some(paths) if paths.is_empty() => {
                vhosts.remove(&host);
            }
            Some(paths) => {
                let mut sorted = paths.to_vec();
                sorted.sort_by(|a, b| {
                    (std::cmp::Reverse(a.prefix.len()), &a.prefix)
                        .cmp(&(std::cmp::Reverse(b.prefix.len()), &b.prefix))
                });
                *paths = sorted.into();
            }
            None => {}
        }
    }

    Some(RouteTable {
        version,
        vhosts,
        tcp,
        udp: udp_map,
        app_ids,
        routes: merge_routes(&previous.routes, &runs, fresh),
        routes_sorted: true,
        conflicts: previous.conflicts.clone(),
        problems,
        http: previous.http.clone(),
        tcp_settings: previous.tcp_settings.clone(),
        udp_settings: previous.udp_settings,
        backend_tls: previous.backend_tls.clone(),
    })
}

/// Where app `id`'s service routes are in `routes` (sorted by `sort_key`): the run of them,
/// or the empty run where they would go.
fn app_routes(routes: &[Arc<Route>], id: &str) -> Range<usize> {
    let start = routes.partition_point(|r| sort_key(r) < (true, id, 0));
    let len = routes[start..].partition_point(|r| sort_key(r) <= (true, id, usize::MAX));
    start..start + len
}

/// `previous` with each changed app's run replaced by its `fresh` routes (in catalog order),
/// which is where `compile` would put them: aliases first, then services by (app id, index).
fn merge_routes(
    previous: &[Arc<Route>],
    runs: &[(&str, Range<usize>)],
    fresh: Vec<Arc<Route>>,
) -> Vec<Arc<Route>> {
    let mut out = Vec::with_capacity(previous.len() + fresh.len());
    let mut fresh = fresh.into_iter().peekable();
    let mut kept_from = 0;
    for (id, run) in runs {
        out.extend_from_slice(&previous[kept_from..run.start]);
        while let Some(f) = fresh.next_if(|f| f.app_id.as_str() <= *id) {
            out.push(f);
        }
        kept_from = run.end;
    }
    out.extend_from_slice(&previous[kept_from..]);
    out.extend(fresh);
    out
}

/// The order `compile` lists routes in: aliases first (in config order: equal here), then
/// services by (app id, index).
pub(super) fn sort_key(r: &Route) -> (bool, &str, usize) {
    match r.kind {
        RouteKind::Service { .. } => (true, r.app_id.as_str(), r.index),
        RouteKind::Alias { .. } => (false, "", 0),
    }
}

#[cfg(test)]
#[path = "patch_tests.rs"]
mod tests;
