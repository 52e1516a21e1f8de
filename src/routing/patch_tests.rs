//! `patch` against `compile`: over a long random sequence of app changes (tasks come and go,
//! labels change so that conflicts appear and disappear, apps come and go), the patched
//! table must dump exactly as the fully compiled one, and share every unchanged route.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::catalog::{self, Protocol, RawApp, RawTask, Selection};
use crate::config::Groups;
use crate::metrics::Metrics;
use crate::routing::compile;

/// Service ports 10000-10050 are listened on; an alias holds 10050 and `alias.test`.
const CONFIG: &str = "[http]\nlisten = \"127.0.0.1:0\"\n\
    [tcp]\nbind = \"127.0.0.1\"\nports = \"10000-10050\"\n\
    [[alias]]\nhost = \"alias.test\"\nport = 10050\n\
    backends = [\"127.0.0.1:5050\"]\ncheck = \"mesos\"\n";

const APPS: usize = 12;
const STEPS: usize = 400;

fn stats(name: &str) -> RouteStats {
    thread_local!(static METRICS: Metrics = Metrics::new(prometheus::Registry::new()));
    METRICS.with(|m| m.route_stats(name))
}

fn selection() -> Selection {
    Selection {
        groups: Groups::all(),
        strict: false,
    }
}

/// Everything a proxy or the listener reconciler can see of a table, as text.
fn dump(t: &RouteTable) -> String {
    let mut out = String::new();
    for r in &t.routes {
        let backends: Vec<_> = r.pool.backends().iter().map(|b| b.addr).collect();
        let _ = writeln!(
            out,
            "route {} app={} index={} mode={:?} port={} vhosts={:?} path={:?} \
             listen={:?} udp={:?} backends={backends:?} kind={:?} log={}",
            r.name,
            r.app_id,
            r.index,
            r.mode,
            r.port,
            r.vhosts,
            r.path,
            r.listen,
            r.udp_listen,
            r.kind,
            r.log_name
        );
    }
    for (host, paths) in t.vhosts() {
        for p in paths {
            let _ = writeln!(out, "vhost {host} {:?} -> {}", p.prefix, p.route.name);
        }
    }
    for r in t.tcp_routes() {
        let _ = writeln!(out, "tcp {} -> {}", r.port, r.name);
    }
    for r in t.udp_routes() {
        let _ = writeln!(out, "udp {} -> {}", r.port, r.name);
    }
    let app_ids: BTreeMap<_, _> = t.app_ids.iter().map(|(k, r)| (k, &r.name)).collect();
    let _ = writeln!(out, "app_ids {app_ids:?}");
    for c in &t.conflicts {
        let _ = writeln!(out, "conflict {c}");
    }
    for p in &t.problems {
        let _ = writeln!(out, "problem {p}");
    }
    out
}

fn app_id(n: usize) -> String {
    format!("/app-{n:02}")
}

fn task(rng: &mut SmallRng, id: &str, ports: usize) -> RawTask {
    let n: u32 = rng.random_range(0..1_000_000);
    RawTask {
        id: format!("{id}.{n}"),
        host: format!("127.0.0.{}", rng.random_range(1..4)),
        ports: (0..ports).map(|_| rng.random_range(31000..31010)).collect(),
        state: "TASK_RUNNING".into(),
        healthy: None,
    }
}

/// A random app: small pools of ports, vhosts and paths so that claims collide often.
fn random_app(rng: &mut SmallRng, id: &str) -> RawApp {
    let n_ports = rng.random_range(1..=2);
    let ports: Vec<u16> = (0..n_ports)
        .map(|_| match rng.random_range(0..10) {
            0 => 10050, // the alias's port
            1 => 20000, // outside [tcp] ports: no listener
            _ => rng.random_range(10000..10040),
        })
        .collect();
    let mut labels = BTreeMap::new();
    for i in 0..n_ports {
        if rng.random_bool(0.6) {
            let hosts = [
                "a.test",
                "b.test",
                "c.test",
                "d.test",
                "e.test",
                "alias.test",
            ];
            let host = hosts[rng.random_range(0..hosts.len())];
            labels.insert(format!("HAPROXY_{i}_VHOST"), host.to_string());
        }
        if rng.random_bool(0.3) {
            let path = ["/x", "/y", "/xy"][rng.random_range(0..3)];
            labels.insert(format!("HAPROXY_{i}_PATH"), path.to_string());
        }
        if rng.random_bool(0.1) {
            labels.insert(format!("HAPROXY_{i}_MODE"), "tcp".into());
        }
    }
    if rng.random_bool(0.05) {
        labels.insert("HAPROXY_0_BALANCE".into(), "bogus".into());
    }
    let protocols = (0..n_ports)
        .map(|_| match rng.random_range(0..8) {
            0 => Protocol::Udp,
            1 => Protocol::TcpUdp,
            _ => Protocol::Tcp,
        })
        .collect();
    let tasks = (0..rng.random_range(0..3))
        .map(|_| task(rng, id, n_ports))
        .collect();
    RawApp {
        id: id.into(),
        labels,
        ports,
        tasks,
        protocols,
        ..RawApp::default()
    }
}

/// Changes one or two apps at random; returns their ids.
fn mutate(rng: &mut SmallRng, apps: &mut BTreeMap<String, RawApp>) -> BTreeSet<String> {
    let mut changed = BTreeSet::new();
    for _ in 0..rng.random_range(1..=2) {
        let id = app_id(rng.random_range(0..APPS));
        match (rng.random_range(0..12), apps.get_mut(&id)) {
            (0..=5, Some(app)) => {
                let ports = app.ports.len();
                let t = task(rng, &id, ports);
                app.tasks.push(t);
            }
            (6..=8, Some(app)) if !app.tasks.is_empty() => {
                let i = rng.random_range(0..app.tasks.len());
                app.tasks.remove(i);
            }
            (9 | 10, Some(_)) | (_, None) => {
                let app = random_app(rng, &id);
                apps.insert(id.clone(), app);
            }
            _ => {
                apps.remove(&id);
            }
        }
        changed.insert(id);
    }
    changed
}

#[test]
fn patched_tables_equal_full_compiles_over_random_changes() {
    let config = Config::parse(CONFIG, Path::new(".")).expect("test config");
    let mut rng = SmallRng::seed_from_u64(17);
    let mut apps: BTreeMap<String, RawApp> = (0..APPS)
        .map(|n| (app_id(n), random_app(&mut rng, &app_id(n))))
        .collect();
    let build = |apps: &BTreeMap<String, RawApp>| {
        let list: Vec<&RawApp> = apps.values().collect();
        catalog::build_selected(&list, &selection())
    };
    let mut full = compile(&build(&apps), &config, 1, &RouteTable::default(), &stats);
    let mut patched = compile(&build(&apps), &config, 1, &RouteTable::default(), &stats);
    let (mut patches, mut fallbacks) = (0, 0);
    for step in 0..STEPS {
        let version = step as u64 + 2;
        let changed = mutate(&mut rng, &mut apps);
        let catalog = build(&apps);
        let next_full = compile(&catalog, &config, version, &full, &stats);

        let ids: BTreeSet<&str> = changed.iter().map(String::as_str).collect();
        let services: Vec<Service> = changed
            .iter()
            .filter_map(|id| apps.get(id))
            .flat_map(|app| catalog::build_app(app, &selection()).services)
            .collect();
        let problems = catalog.problems.clone();
        let next_patched = match patch(
            &patched, &ids, &services, problems, &config, version, &stats,
        ) {
            Some(t) => {
                patches += 1;
                // Every route of an unchanged app is the previous table's, shared.
                for r in t.routes.iter().filter(|r| !ids.contains(r.app_id.as_str())) {
                    // (An app with one port twice has two routes of one name.)
                    let before = patched
                        .routes
                        .iter()
                        .find(|p| p.name == r.name && p.index == r.index);
                    assert!(
                        before.is_some_and(|p| Arc::ptr_eq(p, r)),
                        "step {step}: {} was rebuilt",
                        r.name
                    );
                }
                t
            }
            None => {
                fallbacks += 1;
                compile(&catalog, &config, version, &patched, &stats)
            }
        };
        assert_eq!(
            dump(&next_patched),
            dump(&next_full),
            "step {step}: changed {changed:?}"
        );
        full = next_full;
        patched = next_patched;
    }
    // Both paths were exercised. (This world is crowded on purpose, so conflicts, which
    // always fall back, are common: about a quarter of the steps patch.)
    assert!(patches > STEPS / 5, "patched {patches} of {STEPS}");
    assert!(fallbacks > 10, "fell back {fallbacks} times");
}

#[test]
fn backend_state_carries_over_a_patch() {
    let config = Config::parse(CONFIG, Path::new(".")).expect("test config");
    let mut rng = SmallRng::seed_from_u64(1);
    let mut app = random_app(&mut rng, "/solo");
    app.ports = vec![10005];
    app.labels.clear();
    app.protocols.clear();
    app.tasks = vec![task(&mut rng, "/solo", 1)];
    let catalog = catalog::build_selected(std::slice::from_ref(&app), &selection());
    let first = compile(&catalog, &config, 1, &RouteTable::default(), &stats);
    app.tasks.push(task(&mut rng, "/solo", 1));
    let services = catalog::build_app(&app, &selection()).services;
    let ids = BTreeSet::from(["/solo"]);
    let second = patch(&first, &ids, &services, Vec::new(), &config, 2, &stats).expect("patched");
    let before = &first.lookup_tcp(10005).expect("routed").pool.backends()[0];
    let after = second.lookup_tcp(10005).expect("routed").pool.backends();
    assert!(
        after.iter().any(|b| Arc::ptr_eq(b, before)),
        "the kept backend is the same object"
    );
    assert_eq!(second.version, 2);
}

/// The changed app's routes are found by binary search, which needs the catalog order:
/// a table compiled from services out of that order is compiled in full, never patched;
/// and services for an app not named as changed are refused too.
#[test]
fn only_tables_in_catalog_order_are_patched() {
    let config = Config::parse(CONFIG, Path::new(".")).expect("test config");
    let mut rng = SmallRng::seed_from_u64(3);
    let apps: Vec<RawApp> = ["/a", "/b", "/c"]
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let mut app = random_app(&mut rng, id);
            app.ports = vec![10001 + n as u16];
            app.labels.clear();
            app.protocols.clear();
            app.tasks = vec![task(&mut rng, id, 1)];
            app
        })
        .collect();
    let mut catalog = catalog::build_selected(&apps, &selection());
    let services = catalog::build_app(&apps[1], &selection()).services;
    let ids = BTreeSet::from(["/b"]);
    let sorted = compile(&catalog, &config, 1, &RouteTable::default(), &stats);
    let patched = patch(&sorted, &ids, &services, Vec::new(), &config, 2, &stats);
    assert!(patched.is_some(), "in catalog order: patched");
    let elsewhere = BTreeSet::from(["/c"]);
    let wrong = patch(
        &sorted,
        &elsewhere,
        &services,
        Vec::new(),
        &config,
        2,
        &stats,
    );
    assert!(wrong.is_none(), "services of an app not named as changed");

    catalog.services.reverse();
    let unsorted = compile(&catalog, &config, 1, &RouteTable::default(), &stats);
    let patched = patch(&unsorted, &ids, &services, Vec::new(), &config, 2, &stats);
    assert!(patched.is_none(), "out of order: compiled in full");
}
