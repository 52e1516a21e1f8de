//! The fixtures of `tests/fixtures/marathon/` through the whole path (decode →
//! `to_raw_apps` → `catalog::build_selected` → `routing::compile`), asserting what
//! `EXPECTED.md` says marathon-lb builds; and the conversion rules one at a time.

use super::*;

use std::path::Path;

use crate::catalog::{self, Balance, Catalog, Mode, Selection};
use crate::config::{Config, Groups};
use crate::metrics::Metrics;
use crate::routing::{self, RouteTable};

/// Reads a fixture of `tests/fixtures/` at run time.
fn fixture(rel: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/marathon/{rel}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// How marathon-lb was run.
struct Lb {
    groups: &'static [&'static str],
    strict: bool,
    health_check: bool,
}

/// EXPECTED.md's defaults: `--group external`, `--health-check`, no `--strict-mode`.
const DEFAULT: Lb = Lb {
    groups: &["external"],
    strict: false,
    health_check: true,
};

struct Built {
    catalog: Catalog,
    table: RouteTable,
    problems: Vec<AppProblem>,
}

fn build(rel: &str, lb: &Lb) -> Built {
    let apps = decode(&fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let opts = ConvertOptions {
        health_check: lb.health_check,
        ..ConvertOptions::default()
    };
    let (raw, problems) = to_raw_apps(&apps, &mut HealthMemory::new(), &opts);
    let selection = Selection {
        groups: Groups(lb.groups.iter().map(|g| g.to_string()).collect()),
        strict: lb.strict,
    };
    let catalog = catalog::build_selected(&raw, &selection);
    // Every port listens, so bind ports are asserted as they are.
    let config = Config::parse("[tcp]\nports = \"1-65535\"\n", Path::new(".")).unwrap();
    let metrics = Metrics::new(prometheus::Registry::new());
    let stats = |name: &str| metrics.route_stats(name);
    let table = routing::compile(&catalog, &config, 1, &RouteTable::default(), &stats);
    Built {
        catalog,
        table,
        problems,
    }
}

/// One per-port frontend as EXPECTED.md writes it: bind (`*` = any address), mode, backend
/// name, servers.
type Frontend = (String, Mode, String, Vec<String>);

fn fe(bind: &str, mode: Mode, name: &str, servers: &[&str]) -> Frontend {
    (
        bind.to_string(),
        mode,
        name.to_string(),
        servers.iter().map(|s| s.to_string()).collect(),
    )
}

/// The listening routes that have backends: what marathon-lb emits as frontends.
fn frontends(t: &RouteTable) -> Vec<Frontend> {
    let mut out: Vec<Frontend> = t
        .tcp_routes()
        .filter(|r| !r.pool.is_empty())
        .map(|r| {
            let listen = r.listen.expect("a tcp route listens");
            let bind = if listen.ip().is_unspecified() {
                format!("*:{}", listen.port())
            } else {
                listen.to_string()
            };
            let servers = r
                .pool
                .backends()
                .iter()
                .map(|b| b.addr.to_string())
                .collect();
            (bind, r.mode, r.name.clone(), servers)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Route names with no usable task. marathon-lb emits nothing for these; Drover keeps
/// the route and answers 503 / closes at once (DESIGN §4), so clients see why.
fn empty_routes(t: &RouteTable) -> Vec<String> {
    t.routes
        .iter()
        .filter(|r| r.pool.is_empty())
        .map(|r| r.name.clone())
        .collect()
}

/// The `:80`/`:443` rules in marathon-lb order, as (host, path, backend name), for
/// services that have backends (the others are asserted by `empty_routes`).
fn http_rules(b: &Built) -> Vec<(String, String, String)> {
    b.catalog
        .http_rule_order()
        .into_iter()
        .filter(|s| !s.backends.is_empty())
        .flat_map(|s| {
            s.vhosts.iter().map(|h| {
                (
                    h.as_str().to_string(),
                    s.path.clone().unwrap_or_default(),
                    s.name.clone(),
                )
            })
        })
        .collect()
}

fn rule(host: &str, path: &str, name: &str) -> (String, String, String) {
    (host.to_string(), path.to_string(), name.to_string())
}

fn http(t: &RouteTable, host: &str, path: &str) -> Option<String> {
    t.lookup_http(host, path).map(|r| r.name.clone())
}

fn service<'a>(c: &'a Catalog, name: &str) -> &'a catalog::Service {
    c.services
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no service {name}"))
}

// === own/ fixtures ===

#[test]
fn vhost_routing_external() {
    let b = build("own/apps_vhost_routing.json", &DEFAULT);
    assert!(b.problems.is_empty(), "{:?}", b.problems);
    assert!(b.catalog.problems.is_empty(), "{:?}", b.catalog.problems);
    assert!(b.table.conflicts.is_empty(), "{:?}", b.table.conflicts);
    assert_eq!(
        frontends(&b.table),
        [
            fe(
                "*:10001",
                Mode::Http,
                "web_10001",
                &["192.0.2.11:31001", "192.0.2.12:31002"]
            ),
            fe(
                "*:10002",
                Mode::Http,
                "shop_api_10002",
                &["192.0.2.21:31201", "192.0.2.22:31202"]
            ),
            fe(
                "*:10003",
                Mode::Http,
                "shop_frontend_10003",
                &["192.0.2.23:31301"]
            ),
            fe("*:10005", Mode::Tcp, "multi_10005", &["192.0.2.41:31501"]),
            fe("*:10006", Mode::Http, "multi_10006", &["192.0.2.41:31502"]),
            fe(
                "10.0.0.5:6379",
                Mode::Tcp,
                "redis_6379",
                &["192.0.2.31:31401"]
            ),
        ]
    );
    // Drover differs on purpose: /scaled-to-zero keeps its port and vhost and answers 503.
    assert_eq!(empty_routes(&b.table), ["scaled-to-zero_10009"]);
    assert_eq!(
        http(&b.table, "zero.example.com", "/").as_deref(),
        Some("scaled-to-zero_10009")
    );

    // :80 and :443 rule order (the :80 redirect of rule 1 is `redirect_to_https`, applied
    // with TLS; the route is already there for :443).
    assert_eq!(
        http_rules(&b),
        [
            rule("shop.example.com", "/api", "shop_api_10002"),
            rule("admin.example.com", "", "multi_10006"),
            rule("shop.example.com", "", "shop_frontend_10003"),
            rule("web.example.com", "", "web_10001"),
            rule("www.example.com", "", "web_10001"),
        ]
    );
    let api = service(&b.catalog, "shop_api_10002");
    assert_eq!(
        (api.weight, api.redirect_to_https, api.sticky),
        (1, true, true)
    );
    let web = service(&b.catalog, "web_10001");
    assert_eq!(
        (web.weight, web.redirect_to_https, web.sticky),
        (0, false, false)
    );

    // Lookups agree with the rule order: the longer path wins on a shared vhost.
    let t = &b.table;
    assert_eq!(
        http(t, "shop.example.com", "/api/cart").as_deref(),
        Some("shop_api_10002")
    );
    assert_eq!(
        http(t, "shop.example.com", "/").as_deref(),
        Some("shop_frontend_10003")
    );
    assert_eq!(
        http(t, "WWW.Example.com:80", "/").as_deref(),
        Some("web_10001")
    );
    assert_eq!(
        http(t, "admin.example.com", "/x").as_deref(),
        Some("multi_10006")
    );
    let redis = t.lookup_tcp(6379).unwrap();
    assert_eq!(redis.pool.balance(), Some(Balance::LeastConn));
    assert!(t.lookup_tcp(10007).is_none() && t.lookup_tcp(10008).is_none());
}

#[test]
fn vhost_routing_other_groups() {
    let all = build(
        "own/apps_vhost_routing.json",
        &Lb {
            groups: &["*"],
            ..DEFAULT
        },
    );
    let f = frontends(&all.table);
    assert_eq!(f.len(), 8);
    assert!(f.contains(&fe(
        "*:10007",
        Mode::Tcp,
        "internal-db_10007",
        &["192.0.2.51:31601"]
    )));
    assert!(f.contains(&fe(
        "*:10008",
        Mode::Tcp,
        "nolabel_10008",
        &["192.0.2.52:31701"]
    )));

    let internal = build(
        "own/apps_vhost_routing.json",
        &Lb {
            groups: &["internal"],
            ..DEFAULT
        },
    );
    assert_eq!(
        frontends(&internal.table),
        [fe(
            "*:10007",
            Mode::Tcp,
            "internal-db_10007",
            &["192.0.2.51:31601"]
        )]
    );
    assert!(internal.catalog.http_rule_order().is_empty());
}

#[test]
fn task_states_with_health_check() {
    let b = build("own/apps_task_states.json", &DEFAULT);
    assert!(b.problems.is_empty(), "{:?}", b.problems);
    assert_eq!(
        frontends(&b.table),
        [
            fe(
                "*:10100",
                Mode::Http,
                "stateful_10100",
                &[
                    "198.51.100.1:32001",
                    "198.51.100.6:32006",
                    "198.51.100.7:32007"
                ]
            ),
            fe(
                "*:10101",
                Mode::Tcp,
                "nohc_10101",
                &["198.51.100.101:33001"]
            ),
            fe(
                "*:10102",
                Mode::Tcp,
                "tcpcheck_10102",
                &["198.51.100.201:34001", "198.51.100.202:34002"]
            ),
            // MESOS_HTTP does not switch the mode to http.
            fe(
                "*:10103",
                Mode::Tcp,
                "mesoshttp-novhost_10103",
                &["198.51.100.211:35001"]
            ),
        ]
    );
    assert_eq!(
        http(&b.table, "stateful.example.com", "/").as_deref(),
        Some("stateful_10100")
    );
}

#[test]
fn task_states_without_health_check() {
    let b = build(
        "own/apps_task_states.json",
        &Lb {
            health_check: false,
            ..DEFAULT
        },
    );
    let f = frontends(&b.table);
    assert_eq!(
        f[0],
        fe(
            "*:10100",
            Mode::Http,
            "stateful_10100",
            &[
                "198.51.100.1:32001",
                "198.51.100.2:32002",
                "198.51.100.3:32003",
                "198.51.100.6:32006",
                "198.51.100.7:32007",
                "198.51.100.8:32008",
            ]
        )
    );
    // The state filter does not depend on the flag.
    assert_eq!(
        f[1],
        fe(
            "*:10101",
            Mode::Tcp,
            "nohc_10101",
            &["198.51.100.101:33001"]
        )
    );
}

#[test]
fn ip_per_task() {
    let b = build("own/apps_ip_per_task.json", &DEFAULT);
    assert!(b.problems.is_empty(), "{:?}", b.problems);
    assert!(b.catalog.problems.is_empty(), "{:?}", b.catalog.problems);
    assert_eq!(
        frontends(&b.table),
        [
            // Auto-assigned: 10050 + sha1("/ippt-legacy-9000-0")[..8] mod 51.
            fe(
                "*:10070",
                Mode::Http,
                "ippt-legacy_10070",
                &["9.0.2.20:9000"]
            ),
            // The second task has no IP yet and is skipped.
            fe("*:10200", Mode::Http, "ippt-m15_10200", &["9.0.1.10:8080"]),
            fe(
                "*:10201",
                Mode::Tcp,
                "bridge-m15_10201",
                &["192.0.2.71:31711"]
            ),
            fe(
                "*:10202",
                Mode::Tcp,
                "docker-bridge-legacy_10202",
                &["192.0.2.72:31722"]
            ),
            fe(
                "*:10203",
                Mode::Tcp,
                "ippt-user-m13_10203",
                &["10.233.0.7:80"]
            ),
            fe(
                "*:10204",
                Mode::Http,
                "ippt-user-m13_10204",
                &["10.233.0.7:81"]
            ),
        ]
    );
    assert_eq!(
        http_rules(&b),
        [
            // Equal weights: (app id, port) order.
            rule("legacy.example.com", "", "ippt-legacy_10070"),
            rule("ippt.example.com", "", "ippt-m15_10200"),
            rule("user13.example.com", "", "ippt-user-m13_10204"),
        ]
    );
}

#[test]
fn groups() {
    let ports = |groups: &'static [&'static str]| -> Vec<String> {
        let b = build("own/apps_groups.json", &Lb { groups, ..DEFAULT });
        // One server each.
        assert!(frontends(&b.table).iter().all(|f| f.3.len() == 1));
        frontends(&b.table).into_iter().map(|f| f.0).collect()
    };
    assert_eq!(ports(&["external"]), ["*:10300", "*:10301", "*:10303"]);
    assert_eq!(
        ports(&["internal"]),
        ["*:10300", "*:10302", "*:10304", "*:10305"]
    );
    assert_eq!(
        ports(&["*"]),
        ["*:10300", "*:10301", "*:10302", "*:10303", "*:10304", "*:10305", "*:10306"]
    );
    // Several groups are OR-ed.
    assert_eq!(
        ports(&["external", "internal"]),
        ["*:10300", "*:10301", "*:10302", "*:10303", "*:10304", "*:10305"]
    );
}

#[test]
fn strict_mode() {
    let ports = |strict| -> Vec<String> {
        let b = build("own/apps_strict_mode.json", &Lb { strict, ..DEFAULT });
        frontends(&b.table).into_iter().map(|f| f.0).collect()
    };
    assert_eq!(ports(false), ["*:10400", "*:10401", "*:10403", "*:10404"]);
    assert_eq!(ports(true), ["*:10400", "*:10404"]);
}

// === upstream marathon-lb fixtures ===

#[test]
fn marathon15_apps() {
    let b = build("upstream-marathon-lb/tests/marathon15_apps.json", &DEFAULT);
    // Agent IP + host port: container/bridge is not IP-per-task (172.17.0.2 is ignored).
    assert_eq!(
        frontends(&b.table),
        [fe(
            "*:10101",
            Mode::Http,
            "pywebserver_10101",
            &["10.0.2.148:1565"]
        )]
    );
    assert_eq!(
        http_rules(&b),
        [rule("myvhost.com", "", "pywebserver_10101")]
    );
}

#[test]
fn zdd_apps_merge_and_drain() {
    let b = build("upstream-marathon-lb/tests/zdd_apps.json", &DEFAULT);
    assert!(b.problems.is_empty(), "{:?}", b.problems);
    // marathon-lb emits 10.0.6.25:31184 as `disabled` (draining: the oldest-id task of the
    // old app, one per healthy new task); Drover leaves it out of the pool, which is the
    // same traffic.
    assert_eq!(
        frontends(&b.table),
        [fe(
            "*:10000",
            Mode::Http,
            "nginx_10000",
            &["10.0.1.147:25724", "10.0.6.25:16916", "10.0.6.25:23336"]
        )]
    );
    assert_eq!(b.catalog.services.len(), 1, "the pair is one app /nginx");
    assert_eq!(b.catalog.services[0].app_id, "/nginx");
    assert!(http_rules(&b).is_empty());
}

#[test]
fn zdd_app_blue_alone() {
    let b = build("upstream-marathon-lb/tests/zdd_app_blue.json", &DEFAULT);
    // One app in its deployment group: named after the group, nothing drained.
    assert_eq!(
        frontends(&b.table),
        [fe(
            "*:10000",
            Mode::Http,
            "nginx_10000",
            &["10.0.6.25:16916", "10.0.6.25:23336", "10.0.6.25:31184"]
        )]
    );
}

#[test]
fn zdd_app_blue_marathon15_mesos_http_stays_tcp() {
    let b = build(
        "upstream-marathon-lb/tests/zdd_app_blue_marathon1.5.json",
        &DEFAULT,
    );
    assert_eq!(
        frontends(&b.table),
        [fe(
            "*:10000",
            Mode::Tcp,
            "nginx_10000",
            &["10.0.6.25:16916", "10.0.6.25:23336", "10.0.6.25:31184"]
        )]
    );
}

// === api/ fixtures and bad input ===

#[test]
fn app_list_without_tasks_gives_no_backends() {
    let b = build(
        "api/docs-examples/app_list.json",
        &Lb {
            groups: &["*"],
            ..DEFAULT
        },
    );
    assert!(frontends(&b.table).is_empty());
    // Drover keeps both ports (503 / close) where marathon-lb emits nothing.
    assert_eq!(empty_routes(&b.table), ["myapp_10013", "myapp_10015"]);
}

#[test]
fn every_fixture_decodes() {
    for rel in [
        "own/apps_groups.json",
        "own/apps_ip_per_task.json",
        "own/apps_strict_mode.json",
        "own/apps_task_states.json",
        "own/apps_vhost_routing.json",
        "upstream-marathon-lb/tests/marathon15_apps.json",
        "upstream-marathon-lb/tests/zdd_apps.json",
        "upstream-marathon-lb/tests/zdd_app_blue.json",
        "upstream-marathon-lb/tests/zdd_app_blue_marathon1.5.json",
        "api/docs-examples/app_list.json",
    ] {
        let apps = decode(&fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(!apps.is_empty(), "{rel}");
    }
}

#[test]
fn malformed_json_is_a_decode_error_with_position() {
    let e = decode(b"{\"apps\": [\n  {\"id\": \"/a\",}\n]}").unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.column > 0);
    assert!(e.to_string().contains("line 2"), "{e}");

    for body in [
        &b""[..],
        b"null",
        b"[]",
        b"{\"message\": \"Marathon is not the leader\"}",
        b"{\"apps\": {}}",
        b"{\"apps\": [{\"id\": 5}]}",
        b"{\"apps\": [{\"id\": \"/a\", \"ports\": [-1]}]}",
        b"\xff\xfe",
    ] {
        assert!(decode(body).is_err(), "{:?}", String::from_utf8_lossy(body));
    }
    // Deep nesting hits serde_json's recursion limit, not the stack.
    let deep = format!("{{\"apps\": {}", "[".repeat(100_000));
    assert!(decode(deep.as_bytes()).is_err());
}

#[test]
fn unknown_fields_and_nulls_are_accepted() {
    let body = br#"{"apps": [{
        "id": "/a", "someFutureField": {"x": 1}, "labels": {"HAPROXY_0_VHOST": "a.test", "n": 3},
        "container": null, "ipAddress": null, "networks": null, "portDefinitions": [{"port": 10001, "extra": true}],
        "healthChecks": null, "deployments": null,
        "tasks": [{"id": "a.1", "host": "10.0.0.1", "ports": [31000], "ipAddresses": null,
                   "state": "TASK_RUNNING", "newTaskField": []}]
    }], "topLevelExtra": 1}"#;
    let apps = decode(body).unwrap();
    assert_eq!(apps[0].labels["n"], "3");
    let (raw, problems) = to_raw_apps(&apps, &mut HealthMemory::new(), &ConvertOptions::default());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(raw[0].ports, [10001]);
    assert_eq!(raw[0].tasks[0].host, "10.0.0.1");
    assert_eq!(raw[0].tasks[0].ports, [31000]);
}

// === conversion rules ===

fn app(json: &str) -> MarathonApp {
    decode(format!("{{\"apps\": [{json}]}}").as_bytes())
        .unwrap()
        .remove(0)
}

fn hosts(raw: &[RawApp]) -> Vec<String> {
    raw[0]
        .tasks
        .iter()
        .map(|t| format!("{}:{:?}", t.host, t.ports))
        .collect()
}

#[test]
fn missing_health_results_reuse_the_last_verdict() {
    let with = |results: &str| {
        app(&format!(
            r#"{{"id": "/a", "portDefinitions": [{{"port": 10001}}],
                "healthChecks": [{{"protocol": "HTTP", "path": "/"}}],
                "tasks": [
                  {{"id": "t1", "host": "10.0.0.1", "ports": [1], "state": "TASK_RUNNING" {results}}},
                  {{"id": "t2", "host": "10.0.0.2", "ports": [2], "state": "TASK_RUNNING",
                    "healthCheckResults": [{{"alive": true}}]}}
                ]}}"#
        ))
    };
    let opts = ConvertOptions::default();
    let mut memory = HealthMemory::new();
    // First sight without results: nothing known, so t1 is left out.
    let (raw, _) = to_raw_apps(&[with("")], &mut memory, &opts);
    assert_eq!(hosts(&raw), ["10.0.0.2:[2]"]);
    // Seen alive once, then the key goes missing (Marathon failover): t1 stays.
    to_raw_apps(
        &[with(
            r#", "healthCheckResults": [{"alive": false}, {"alive": true}]"#,
        )],
        &mut memory,
        &opts,
    );
    assert_eq!(memory.get("t1"), Some(true));
    let (raw, _) = to_raw_apps(&[with("")], &mut memory, &opts);
    assert_eq!(hosts(&raw), ["10.0.0.1:[1]", "10.0.0.2:[2]"]);
    // An empty list is "not alive", and is remembered as such.
    let (raw, _) = to_raw_apps(&[with(r#", "healthCheckResults": []"#)], &mut memory, &opts);
    assert_eq!(hosts(&raw), ["10.0.0.2:[2]"]);
    assert_eq!(memory.get("t1"), Some(false));
    // One empty snapshot (a Marathon mid-election) forgets nothing; tasks gone for
    // longer are forgotten.
    to_raw_apps(&[], &mut memory, &opts);
    assert_eq!(memory.get("t1"), Some(false));
    for _ in 0..FORGET_AFTER {
        to_raw_apps(&[], &mut memory, &opts);
    }
    assert!(memory.is_empty());
}

#[test]
fn tasks_carry_their_health_for_dns() {
    let task = |id: &str, results: &str| {
        format!(
            r#"{{"id": "{id}", "host": "10.0.0.1", "ports": [1], "state": "TASK_RUNNING" {results}}}"#
        )
    };
    let tasks = [
        task(
            "all",
            r#", "healthCheckResults": [{"alive": true}, {"alive": true}]"#,
        ),
        task(
            "one-down",
            r#", "healthCheckResults": [{"alive": true}, {"alive": false}]"#,
        ),
        task("down", r#", "healthCheckResults": [{"alive": false}]"#),
        task("empty", r#", "healthCheckResults": []"#),
        task("none", ""),
    ]
    .join(",");
    let with_checks = |checks: &str| {
        app(&format!(
            r#"{{"id": "/a", "portDefinitions": [{{"port": 10001}}],
                "healthChecks": {checks}, "tasks": [{tasks}]}}"#
        ))
    };
    // Routing's health filter off, so every task reaches the catalog.
    let opts = ConvertOptions {
        health_check: false,
        ..ConvertOptions::default()
    };
    let health = |app: MarathonApp| -> Vec<(String, Option<bool>)> {
        let (raw, _) = to_raw_apps(&[app], &mut HealthMemory::new(), &opts);
        raw[0]
            .tasks
            .iter()
            .map(|t| (t.id.clone(), t.healthy))
            .collect()
    };
    assert_eq!(
        health(with_checks(r#"[{"protocol": "HTTP", "path": "/"}]"#)),
        [
            ("all".to_string(), Some(true)),
            ("one-down".to_string(), Some(false)),
            ("down".to_string(), Some(false)),
            ("empty".to_string(), None),
            ("none".to_string(), None),
        ]
    );
    // Without health checks, results say nothing.
    assert!(health(with_checks("[]")).iter().all(|(_, h)| h.is_none()));
}

#[test]
fn readiness_holds_new_tasks_during_a_deployment() {
    let with = |deployments: &str, results: &str| {
        app(&format!(
            r#"{{"id": "/a", "version": "v2", "portDefinitions": [{{"port": 10001}}],
                "readinessChecks": [{{"name": "ready", "path": "/ready", "portName": "http"}}],
                "deployments": {deployments},
                "readinessCheckResults": {results},
                "tasks": [
                  {{"id": "old", "host": "10.0.0.1", "ports": [1], "state": "TASK_RUNNING", "version": "v1"}},
                  {{"id": "new1", "host": "10.0.0.2", "ports": [2], "state": "TASK_RUNNING", "version": "v2"}},
                  {{"id": "new2", "host": "10.0.0.3", "ports": [3], "state": "TASK_RUNNING", "version": "v2"}}
                ]}}"#
        ))
    };
    let convert =
        |a: MarathonApp| to_raw_apps(&[a], &mut HealthMemory::new(), &ConvertOptions::default()).0;
    let deploying = r#"[{"id": "d1"}]"#;
    // new1 not ready yet, new2 without a result yet: only the old task serves.
    let raw = convert(with(
        deploying,
        r#"[{"name": "ready", "taskId": "new1", "ready": false}]"#,
    ));
    assert_eq!(hosts(&raw), ["10.0.0.1:[1]"]);
    // new1 ready: it joins.
    let raw = convert(with(
        deploying,
        r#"[{"name": "ready", "taskId": "new1", "ready": true}]"#,
    ));
    assert_eq!(hosts(&raw), ["10.0.0.1:[1]", "10.0.0.2:[2]"]);
    // The deployment is over: everyone serves.
    let raw = convert(with("[]", "[]"));
    assert_eq!(hosts(&raw).len(), 3);
}

#[test]
fn template_labels_give_one_warning_per_app() {
    let a = app(
        r#"{"id": "/a", "portDefinitions": [{"port": 10001}], "labels": {
            "HAPROXY_0_FRONTEND_HEAD": "x", "HAPROXY_0_BACKEND_SERVER_OPTIONS": "y",
            "HAPROXY_HTTP_FRONTEND_HEAD": "z", "HAPROXY_0_VHOST": "a.test",
            "HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL": "10.0.0.0/8", "HAPROXY_GROUP": "external"}}"#,
    );
    let b = app(r#"{"id": "/b", "labels": {"HAPROXY_1_HTTP_FRONTEND_ACL": "x"}}"#);
    let c = app(r#"{"id": "/c", "labels": {"HAPROXY_0_VHOST": "c.test"}}"#);
    let (raw, problems) = to_raw_apps(
        &[a, b, c],
        &mut HealthMemory::new(),
        &ConvertOptions::default(),
    );
    assert_eq!(raw.len(), 3, "the apps are still served");
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].app_id, "/a");
    assert_eq!(
        problems[0].message,
        "raw HAProxy template labels cannot apply: HAPROXY_0_BACKEND_SERVER_OPTIONS, \
         HAPROXY_0_FRONTEND_HEAD, HAPROXY_HTTP_FRONTEND_HEAD; the app is served without them"
    );
    assert!(problems[1].message.contains("HAPROXY_1_HTTP_FRONTEND_ACL"));
}

#[test]
fn service_port_precedence() {
    let convert = |json: &str| {
        to_raw_apps(
            &[app(json)],
            &mut HealthMemory::new(),
            &ConvertOptions::default(),
        )
        .0[0]
            .ports
            .clone()
    };
    // Bridge: portMappings wins over portDefinitions and ports.
    assert_eq!(
        convert(
            r#"{"id": "/a", "networks": [{"mode": "container/bridge"}], "ports": [1],
                "portDefinitions": [{"port": 2}],
                "container": {"portMappings": [{"containerPort": 80, "servicePort": 3}]}}"#
        ),
        [3]
    );
    // Host networking ignores portMappings; portDefinitions (even empty) wins over ports.
    assert_eq!(
        convert(
            r#"{"id": "/a", "ports": [1], "portDefinitions": [{"port": 2}],
                "container": {"portMappings": [{"containerPort": 80, "servicePort": 3}]}}"#
        ),
        [2]
    );
    assert_eq!(convert(r#"{"id": "/a", "ports": [1]}"#), [1]);
    // No tasks: no port can be auto-assigned for an IP-per-task app.
    assert!(
        convert(r#"{"id": "/a", "ipAddress": {"discovery": {"ports": [{"number": 9000}]}}}"#)
            .is_empty()
    );
}

#[test]
fn auto_assigned_ports_stay_in_range_and_apart() {
    let opts = ConvertOptions {
        min_ip_per_task_port: 20000,
        max_ip_per_task_port: 20002,
        ..ConvertOptions::default()
    };
    let apps: Vec<MarathonApp> = (0..4)
        .map(|i| {
            app(&format!(
                r#"{{"id": "/ip{i}", "ipAddress": {{"discovery": {{"ports": [{{"number": 80}}]}}}},
                    "tasks": [{{"id": "t{i}", "host": "h", "state": "TASK_RUNNING",
                                "ipAddresses": [{{"ipAddress": "9.0.0.{i}"}}]}}]}}"#
            ))
        })
        .collect();
    let (raw, _) = to_raw_apps(&apps, &mut HealthMemory::new(), &opts);
    let mut ports: Vec<u16> = raw.iter().map(|a| a.ports[0]).collect();
    // Three fit the range; the fourth gets 0 (no service), as marathon-lb gives none.
    assert_eq!(ports.iter().filter(|p| **p == 0).count(), 1);
    ports.sort();
    assert_eq!(ports, [0, 20000, 20001, 20002]);
}

#[test]
fn deployment_target_counts_only_with_new_instances_label() {
    // Old app: 3 tasks; new app: 2 healthy tasks with NEW_INSTANCES and target 4.
    // drained = min(3, 2, max(0, 2 + 3 - 4)) = 1.
    let old = app(
        r#"{"id": "/g-old", "instances": 3, "portDefinitions": [{"port": 10000}],
            "labels": {"HAPROXY_DEPLOYMENT_GROUP": "g", "HAPROXY_DEPLOYMENT_STARTED_AT": "2020-01-01T00:00:00"},
            "tasks": [
              {"id": "o3", "host": "10.0.0.3", "ports": [3], "state": "TASK_RUNNING"},
              {"id": "o1", "host": "10.0.0.1", "ports": [1], "state": "TASK_RUNNING"},
              {"id": "o2", "host": "10.0.0.2", "ports": [2], "state": "TASK_RUNNING"}]}"#,
    );
    let new = app(
        r#"{"id": "/g-new", "instances": 2, "portDefinitions": [{"port": 10001}],
            "labels": {"HAPROXY_DEPLOYMENT_GROUP": "g", "HAPROXY_DEPLOYMENT_STARTED_AT": "2020-01-02T00:00:00",
                       "HAPROXY_DEPLOYMENT_NEW_INSTANCES": "2", "HAPROXY_DEPLOYMENT_TARGET_INSTANCES": "4"},
            "tasks": [
              {"id": "n1", "host": "10.0.1.1", "ports": [11], "state": "TASK_RUNNING"},
              {"id": "n2", "host": "10.0.1.2", "ports": [12], "state": "TASK_RUNNING"}]}"#,
    );
    // Order in the snapshot does not matter: the older STARTED_AT is the old app.
    let (raw, _) = to_raw_apps(
        &[new, old],
        &mut HealthMemory::new(),
        &ConvertOptions::default(),
    );
    assert_eq!(raw.len(), 1);
    assert_eq!(
        (raw[0].id.as_str(), raw[0].ports.as_slice()),
        ("/g", &[10000][..])
    );
    assert_eq!(
        hosts(&raw),
        [
            "10.0.0.3:[3]",
            "10.0.0.2:[2]",
            "10.0.1.1:[11]",
            "10.0.1.2:[12]"
        ],
        "o1 (lowest id of the old app) is drained"
    );
}

#[test]
fn out_of_range_ports_disable_only_that_app() {
    let bad = app(r#"{"id": "/bad", "portDefinitions": [{"port": 70000}]}"#);
    let bad_task = app(r#"{"id": "/bad-task", "portDefinitions": [{"port": 10001}],
            "tasks": [{"id": "t", "host": "10.0.0.1", "ports": [99999]}]}"#);
    let good = app(r#"{"id": "/good", "portDefinitions": [{"port": 10002}]}"#);
    let (raw, problems) = to_raw_apps(
        &[bad, bad_task, good],
        &mut HealthMemory::new(),
        &ConvertOptions::default(),
    );
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].id, "/good");
    assert_eq!(problems.len(), 2, "{problems:?}");
}

#[test]
fn agent_host_names_are_left_for_the_caller() {
    let a = app(r#"{"id": "/a", "portDefinitions": [{"port": 10001}],
            "tasks": [{"id": "t", "host": "agent-1.example", "ports": [31000]}]}"#);
    let (raw, _) = to_raw_apps(&[a], &mut HealthMemory::new(), &ConvertOptions::default());
    assert_eq!(raw[0].tasks[0].host, "agent-1.example");
    assert_eq!(
        raw[0].tasks[0].state, "TASK_RUNNING",
        "no state: an old Marathon"
    );
}

#[test]
fn auto_assigned_ports_hash_like_marathon_lb() {
    // Computed by the hand-written SHA-1 this replaced (which matched the sha1 crate on
    // 2,000 random inputs of 0 to 399 bytes): the same ports, so no app moves. The repeated
    // "/a" container port 9001 collides and takes the later hashed attempts.
    let mut p = PortAssigner::new(&ConvertOptions {
        min_ip_per_task_port: 10050,
        max_ip_per_task_port: 10100,
        ..ConvertOptions::default()
    });
    let got: Vec<u16> = [
        ("/ippt-legacy", 9000),
        ("/a", 9001),
        ("/b/c", 9000),
        ("/a", 9001),
        ("/a", 9000),
        ("/a", 9001),
    ]
    .iter()
    .map(|&(id, port)| p.assign(id, port))
    .collect();
    assert_eq!(got, [10070, 10078, 10059, 10052, 10091, 10092]);
}

#[test]
fn health_checks_become_active_checks_like_marathon_lb() {
    let b = build("own/apps_task_states.json", &DEFAULT);
    let check = |app: &str| {
        b.catalog
            .services
            .iter()
            .find(|s| s.app_id == app)
            .unwrap_or_else(|| panic!("{app} has a service"))
            .check
            .clone()
    };
    // MESOS_HTTP probes like HTTP; fall = maxConsecutiveFailures + 1 (marathon-lb).
    assert_eq!(
        check("/stateful"),
        Some(catalog::ActiveCheck {
            kind: catalog::CheckKind::Http {
                path: "/ready".into()
            },
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            fall: 4,
            rise: 2,
        })
    );
    let tcp = check("/tcpcheck").expect("TCP check");
    assert_eq!(tcp.kind, catalog::CheckKind::Tcp);
    assert_eq!((tcp.interval, tcp.fall), (Duration::from_secs(7), 6));
    assert_eq!(check("/nohc"), None);

    // Switched off, nothing is probed.
    let apps = decode(&fixture("own/apps_task_states.json")).unwrap();
    let opts = ConvertOptions {
        active_checks: false,
        ..ConvertOptions::default()
    };
    let (raw, _) = to_raw_apps(&apps, &mut HealthMemory::new(), &opts);
    assert!(raw.iter().all(|a| a.checks.is_empty()));
}

// === port protocols ===

/// The protocols of one app's service ports, or the app's problem.
fn protocols(json: &str) -> Result<(Vec<u16>, Vec<catalog::Protocol>), String> {
    let (raw, problems) = to_raw_apps(
        &[app(json)],
        &mut HealthMemory::new(),
        &ConvertOptions::default(),
    );
    match (raw.first(), problems.first()) {
        (Some(a), None) => Ok((a.ports.clone(), a.protocols.clone())),
        (_, Some(p)) => Err(p.message.clone()),
        (None, None) => Err("no app".into()),
    }
}

#[test]
fn port_protocols_come_from_the_list_the_service_ports_came_from() {
    use catalog::Protocol::{Tcp, TcpUdp, Udp};
    // Host networking: portDefinitions; absent means tcp.
    let defs = r#"{"id": "/a", "portDefinitions": [
        {"port": 10001, "protocol": "udp"}, {"port": 10002},
        {"port": 10003, "protocol": "udp,tcp"}, {"port": 10004, "protocol": "tcp,udp"}]}"#;
    assert_eq!(
        protocols(defs),
        Ok((
            vec![10001, 10002, 10003, 10004],
            vec![Udp, Tcp, TcpUdp, TcpUdp]
        ))
    );
    // Marathon 1.5+ bridge networking: container.portMappings.
    let mappings = r#"{"id": "/a", "networks": [{"mode": "container/bridge"}],
        "container": {"type": "DOCKER", "portMappings": [
            {"containerPort": 53, "servicePort": 10053, "protocol": "udp"},
            {"containerPort": 80, "servicePort": 10080, "protocol": "tcp"}]}}"#;
    assert_eq!(
        protocols(mappings),
        Ok((vec![10053, 10080], vec![Udp, Tcp]))
    );
    // Before 1.5: container.docker.portMappings under BRIDGE.
    let docker = r#"{"id": "/a", "container": {"type": "DOCKER", "docker": {
        "network": "BRIDGE", "portMappings": [
            {"containerPort": 514, "hostPort": 0, "servicePort": 10514, "protocol": "udp,tcp"}]}}}"#;
    assert_eq!(protocols(docker), Ok((vec![10514], vec![TcpUdp])));
    // Legacy `ports` carry no protocol: tcp.
    assert_eq!(
        protocols(r#"{"id": "/a", "ports": [10001]}"#),
        Ok((vec![10001], vec![Tcp]))
    );
}

#[test]
fn an_unknown_port_protocol_leaves_only_that_app_out() {
    let err =
        protocols(r#"{"id": "/a", "portDefinitions": [{"port": 10001, "protocol": "sctp"}]}"#)
            .unwrap_err();
    assert!(
        err.contains("\"sctp\"") && err.contains("app left out"),
        "{err}"
    );
    let apps = [
        app(r#"{"id": "/bad", "portDefinitions": [{"port": 10001, "protocol": "quic"}]}"#),
        app(r#"{"id": "/good", "portDefinitions": [{"port": 10002, "protocol": "udp"}]}"#),
    ];
    let (raw, problems) = to_raw_apps(&apps, &mut HealthMemory::new(), &ConvertOptions::default());
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].id, "/good");
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].app_id, "/bad");
}
