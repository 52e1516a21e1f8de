//! `compile`: catalog + config (+ the previous table) in, route table out. Every test builds
//! its catalog through `catalog::build`, as `control` does.

use super::*;

use std::collections::BTreeMap;
use std::path::Path;

use crate::catalog::{self, RawApp, RawTask};
use crate::config::Groups;
use crate::metrics::Metrics;

/// `[tcp]` on 127.0.0.1 for ports 10000-10100.
const TCP: &str = "[tcp]\nbind = \"127.0.0.1\"\nports = \"10000-10100\"\n";

fn config(text: &str) -> Config {
    Config::parse(text, Path::new(".")).unwrap_or_else(|p| panic!("test config: {p:#?}"))
}

/// Route stats on a registry nobody reads.
fn stats(name: &str) -> RouteStats {
    thread_local!(static METRICS: Metrics = Metrics::new(prometheus::Registry::new()));
    METRICS.with(|m| m.route_stats(name))
}

/// An app with one task per entry of `tasks` (host ports by service-port index).
fn app(id: &str, labels: &[(&str, &str)], ports: &[u16], tasks: &[&[u16]]) -> RawApp {
    RawApp {
        id: id.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ports: ports.to_vec(),
        tasks: tasks
            .iter()
            .enumerate()
            .map(|(i, ports)| RawTask {
                id: format!("{id}.{i}"),
                host: "127.0.0.1".into(),
                ports: ports.to_vec(),
                state: "TASK_RUNNING".into(),
                healthy: None,
            })
            .collect(),
        ..RawApp::default()
    }
}

fn compile_with(apps: &[RawApp], cfg: &str, previous: &RouteTable) -> RouteTable {
    let catalog = catalog::build(apps, &Groups::all());
    compile(
        &catalog,
        &config(cfg),
        previous.version + 1,
        previous,
        &stats,
    )
}

fn table(apps: &[RawApp], cfg: &str) -> RouteTable {
    compile_with(apps, cfg, &RouteTable::default())
}

/// The route name `lookup_http` answers with, if any.
fn http(t: &RouteTable, host: &str, path: &str) -> Option<String> {
    t.lookup_http(host, path).map(|r| r.name.clone())
}

fn tcp(t: &RouteTable, port: u16) -> Option<String> {
    t.lookup_tcp(port).map(|r| r.name.clone())
}

fn route<'a>(t: &'a RouteTable, name: &str) -> &'a Arc<Route> {
    t.routes
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no route {name} in {:?}", names(t)))
}

fn names(t: &RouteTable) -> Vec<&str> {
    t.routes.iter().map(|r| r.name.as_str()).collect()
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn vhost_lookup_ignores_case_port_and_trailing_dot() {
    let t = table(
        &[app(
            "/shop/web",
            &[("HAPROXY_0_VHOST", "Shop.Example.com,www.example.com")],
            &[10001],
            &[&[31001]],
        )],
        "",
    );
    for host in [
        "shop.example.com",
        "SHOP.EXAMPLE.COM",
        "shop.example.com:8080",
        "Shop.Example.Com.:80",
        "shop.example.com.",
        "www.example.com",
    ] {
        assert_eq!(
            http(&t, host, "/").as_deref(),
            Some("shop_web_10001"),
            "{host}"
        );
    }
    assert_eq!(http(&t, "other.example.com", "/"), None);
    assert_eq!(http(&t, "example.com", "/"), None);
    assert_eq!(http(&t, "", "/"), None);
    let (hosts, _): (Vec<&HostName>, Vec<_>) = t.vhosts().into_iter().unzip();
    let hosts: Vec<&str> = hosts.iter().map(|h| h.as_str()).collect();
    assert_eq!(hosts, ["shop.example.com", "www.example.com"]);
}

#[test]
fn the_longest_path_prefix_wins_and_no_path_is_the_fallback() {
    let vhost = ("HAPROXY_0_VHOST", "shop.example.com");
    let t = table(
        &[
            app("/web", &[vhost], &[10001], &[&[31001]]),
            app(
                "/api",
                &[vhost, ("HAPROXY_0_PATH", "/api")],
                &[10002],
                &[&[31002]],
            ),
            app(
                "/api2",
                &[vhost, ("HAPROXY_0_PATH", "/api/v2")],
                &[10003],
                &[&[31003]],
            ),
        ],
        "",
    );
    let at = |path: &str| http(&t, "shop.example.com", path);
    assert_eq!(at("/api/v2/users").as_deref(), Some("api2_10003"));
    assert_eq!(at("/api/v2").as_deref(), Some("api2_10003"));
    assert_eq!(at("/api/v1/users").as_deref(), Some("api_10002"));
    assert_eq!(at("/api").as_deref(), Some("api_10002"));
    assert_eq!(at("/").as_deref(), Some("web_10001"));
    assert_eq!(at("/shop/cart").as_deref(), Some("web_10001"));
    assert_eq!(at("/ap").as_deref(), Some("web_10001"));

    let (_, paths) = t.vhosts()[0];
    let prefixes: Vec<&str> = paths.iter().map(|p| p.prefix.as_str()).collect();
    assert_eq!(prefixes, ["/api/v2", "/api", ""]);
}

#[test]
fn a_vhost_with_only_path_routes_has_no_fallback() {
    let t = table(
        &[app(
            "/api",
            &[
                ("HAPROXY_0_VHOST", "api.example.com"),
                ("HAPROXY_0_PATH", "/v1"),
            ],
            &[10001],
            &[&[31001]],
        )],
        "",
    );
    assert_eq!(
        http(&t, "api.example.com", "/v1/x").as_deref(),
        Some("api_10001")
    );
    assert_eq!(http(&t, "api.example.com", "/"), None);
    assert_eq!(http(&t, "api.example.com", "/v2"), None);
}

#[test]
fn mode_is_http_with_a_vhost_tcp_without_and_the_label_overrides() {
    let t = table(
        &[
            app(
                "/web",
                &[("HAPROXY_0_VHOST", "web.example.com")],
                &[10001],
                &[],
            ),
            app("/db", &[], &[10002], &[]),
            app(
                "/forced-tcp",
                &[
                    ("HAPROXY_0_VHOST", "tcp.example.com"),
                    ("HAPROXY_0_MODE", "tcp"),
                ],
                &[10003],
                &[],
            ),
            app("/forced-http", &[("HAPROXY_0_MODE", "HTTP")], &[10004], &[]),
        ],
        TCP,
    );
    assert_eq!(route(&t, "web_10001").mode, Mode::Http);
    assert_eq!(route(&t, "db_10002").mode, Mode::Tcp);
    assert_eq!(route(&t, "forced-tcp_10003").mode, Mode::Tcp);
    assert_eq!(route(&t, "forced-http_10004").mode, Mode::Http);
    // The mode travels with the route behind both lookups.
    assert_eq!(t.lookup_tcp(10002).unwrap().mode, Mode::Tcp);
    assert_eq!(
        t.lookup_http("web.example.com", "/").unwrap().mode,
        Mode::Http
    );
}

#[test]
fn only_apps_in_the_selected_groups_get_routes() {
    let apps = [
        app(
            "/ext",
            &[
                ("HAPROXY_GROUP", "external"),
                ("HAPROXY_0_VHOST", "ext.example.com"),
            ],
            &[10001],
            &[&[31001]],
        ),
        app(
            "/int",
            &[
                ("HAPROXY_GROUP", "internal"),
                ("HAPROXY_0_VHOST", "int.example.com"),
            ],
            &[10002],
            &[&[31002]],
        ),
        app("/none", &[], &[10003], &[&[31003]]),
    ];
    let catalog = catalog::build(&apps, &Groups(vec!["external".into()]));
    let t = compile(&catalog, &config(TCP), 1, &RouteTable::default(), &stats);
    assert_eq!(names(&t), ["ext_10001"]);
    assert_eq!(
        http(&t, "ext.example.com", "/").as_deref(),
        Some("ext_10001")
    );
    assert_eq!(http(&t, "int.example.com", "/"), None);
    assert_eq!(tcp(&t, 10001).as_deref(), Some("ext_10001"));
    assert_eq!(tcp(&t, 10002), None);
    assert_eq!(tcp(&t, 10003), None);

    let catalog = catalog::build(&apps, &Groups::all());
    let t = compile(&catalog, &config(TCP), 1, &RouteTable::default(), &stats);
    assert_eq!(names(&t), ["ext_10001", "int_10002", "none_10003"]);
}

#[test]
fn only_service_ports_inside_the_tcp_range_listen() {
    let t = table(
        &[
            app("/low", &[], &[9999], &[&[31000]]),
            app("/first", &[], &[10000], &[&[31001]]),
            app(
                "/bound",
                &[("HAPROXY_0_BIND_ADDR", "127.0.0.5")],
                &[10050],
                &[&[31002]],
            ),
            app("/last", &[], &[10100], &[&[31003]]),
            app("/high", &[], &[10101], &[&[31004]]),
        ],
        TCP,
    );
    let listening: Vec<(u16, Option<SocketAddr>)> =
        t.tcp_routes().map(|r| (r.port, r.listen)).collect();
    assert_eq!(
        listening,
        [
            (10000, Some(sock("127.0.0.1:10000"))),
            (10050, Some(sock("127.0.0.5:10050"))),
            (10100, Some(sock("127.0.0.1:10100"))),
        ]
    );
    // Out of range: still a route (for /debug/routes), but nothing listens.
    assert_eq!(route(&t, "low_9999").listen, None);
    assert_eq!(route(&t, "high_10101").listen, None);
    assert_eq!(tcp(&t, 9999), None);
    assert_eq!(tcp(&t, 10101), None);
    assert_eq!(tcp(&t, 10050).as_deref(), Some("bound_10050"));
    assert_eq!(
        t.tcp_settings,
        Some(TcpSettings {
            connect_timeout: Duration::from_secs(2),
            proxy_protocol: vec![],
            send_proxy_protocol: None,
            max_connections: crate::config::DEFAULT_MAX_CONNECTIONS,
        })
    );
}

#[test]
fn the_port_label_moves_the_listener() {
    let t = table(
        &[app(
            "/redis",
            &[("HAPROXY_0_PORT", "10099")],
            &[30000],
            &[&[31001]],
        )],
        TCP,
    );
    assert_eq!(tcp(&t, 10099).as_deref(), Some("redis_10099"));
    assert_eq!(tcp(&t, 30000), None);
}

#[test]
fn without_a_tcp_section_nothing_listens() {
    let t = table(
        &[
            app("/db", &[], &[10001], &[&[31001]]),
            app(
                "/web",
                &[("HAPROXY_0_VHOST", "web.example.com")],
                &[10002],
                &[&[31002]],
            ),
        ],
        "[http]\nlisten = \"127.0.0.1:8080\"\n",
    );
    assert_eq!(t.tcp_routes().count(), 0);
    assert_eq!(tcp(&t, 10001), None);
    assert!(t.routes.iter().all(|r| r.listen.is_none()));
    assert_eq!(t.tcp_settings, None);
    // HTTP routing does not depend on [tcp].
    assert_eq!(
        http(&t, "web.example.com", "/").as_deref(),
        Some("web_10002")
    );
    assert_eq!(names(&t), ["db_10001", "web_10002"]);
}

#[test]
fn http_settings_and_version_come_from_the_inputs() {
    let catalog = catalog::build::<catalog::RawApp>(&[], &Groups::all());
    let cfg = config("[http]\nheader_timeout = \"3s\"\nmax_header_bytes = 4096\n");
    let t = compile(&catalog, &cfg, 42, &RouteTable::default(), &stats);
    assert_eq!(t.version, 42);
    assert_eq!(
        t.http,
        Some(HttpSettings {
            header_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(60),
            max_header_bytes: 4096,
            body_timeout: Duration::from_secs(30),
            underscore_headers: crate::config::UnderscoreHeaders::Pass,
            proxy_protocol: vec![],
            https_proxy_protocol: vec![],
        })
    );
    let t = compile(&catalog, &config(""), 1, &RouteTable::default(), &stats);
    assert_eq!(t.http, None);
}

#[test]
fn catalog_problems_are_carried_into_the_table() {
    let t = table(
        &[
            app("/bad", &[("HAPROXY_0_MODE", "udp")], &[10001], &[]),
            app("/good", &[], &[10002], &[]),
        ],
        TCP,
    );
    assert_eq!(names(&t), ["good_10002"]);
    assert_eq!(t.problems.len(), 1);
    assert_eq!(t.problems[0].app_id, "/bad");
}

#[test]
fn two_apps_on_one_port_is_one_conflict_and_the_first_keeps_it() {
    let apps = [
        app("/b", &[], &[10001], &[&[31002]]),
        app("/a", &[], &[10001], &[&[31001]]),
    ];
    let t = table(&apps, TCP);
    assert_eq!(
        t.conflicts,
        [Conflict {
            claim: Claim::Port(10001),
            kept: "a_10001".into(),
            refused: vec!["b_10001".into()],
        }]
    );
    assert_eq!(tcp(&t, 10001).as_deref(), Some("a_10001"));
    // The refused service keeps its route but not the listener.
    assert_eq!(route(&t, "a_10001").listen, Some(sock("127.0.0.1:10001")));
    assert_eq!(route(&t, "b_10001").listen, None);
    let text = t.conflicts[0].to_string();
    assert!(
        text.contains("service port 10001") && text.contains("a_10001 keeps it"),
        "{text}"
    );
}

#[test]
fn three_claimants_of_a_port_make_one_conflict() {
    let t = table(
        &[
            app("/c", &[], &[10001], &[]),
            app("/a", &[], &[10001], &[]),
            app("/b", &[], &[10001], &[]),
        ],
        TCP,
    );
    assert_eq!(t.conflicts.len(), 1);
    assert_eq!(t.conflicts[0].kept, "a_10001");
    assert_eq!(t.conflicts[0].refused, ["b_10001", "c_10001"]);
}

#[test]
fn the_previous_holder_of_a_port_keeps_it() {
    let a = app("/a", &[], &[10001], &[&[31001]]);
    let b = app("/b", &[], &[10001], &[&[31002]]);
    let first = table(std::slice::from_ref(&b), TCP);
    assert_eq!(first.conflicts, []);
    assert_eq!(tcp(&first, 10001).as_deref(), Some("b_10001"));

    // /a sorts first, but /b held the port: /b keeps it.
    let second = compile_with(&[a.clone(), b.clone()], TCP, &first);
    assert_eq!(tcp(&second, 10001).as_deref(), Some("b_10001"));
    assert_eq!(
        second.conflicts,
        [Conflict {
            claim: Claim::Port(10001),
            kept: "b_10001".into(),
            refused: vec!["a_10001".into()],
        }]
    );
    // And keeps it on the next build too (the table it held it in is now `second`).
    let third = compile_with(&[a.clone(), b], TCP, &second);
    assert_eq!(tcp(&third, 10001).as_deref(), Some("b_10001"));

    // When the holder leaves, the claim goes to the remaining app, without a conflict.
    let fourth = compile_with(&[a], TCP, &third);
    assert_eq!(tcp(&fourth, 10001).as_deref(), Some("a_10001"));
    assert_eq!(fourth.conflicts, []);
}

#[test]
fn two_apps_on_one_vhost_and_path_conflict_and_the_first_keeps_it() {
    let t = table(
        &[
            app(
                "/b",
                &[
                    ("HAPROXY_0_VHOST", "shop.example.com,b.example.com"),
                    ("HAPROXY_0_PATH", "/api"),
                ],
                &[10002],
                &[],
            ),
            app(
                "/a",
                &[
                    ("HAPROXY_0_VHOST", "shop.example.com"),
                    ("HAPROXY_0_PATH", "/api"),
                ],
                &[10001],
                &[],
            ),
            // Same vhost, other path: no conflict.
            app(
                "/c",
                &[("HAPROXY_0_VHOST", "shop.example.com")],
                &[10003],
                &[],
            ),
        ],
        "",
    );
    assert_eq!(
        t.conflicts,
        [Conflict {
            claim: Claim::Vhost {
                host: HostName::parse("shop.example.com").unwrap(),
                path: "/api".into(),
            },
            kept: "a_10001".into(),
            refused: vec!["b_10002".into()],
        }]
    );
    assert_eq!(
        http(&t, "shop.example.com", "/api/x").as_deref(),
        Some("a_10001")
    );
    assert_eq!(
        http(&t, "shop.example.com", "/").as_deref(),
        Some("c_10003")
    );
    // The refused app keeps its other vhost.
    assert_eq!(
        http(&t, "b.example.com", "/api").as_deref(),
        Some("b_10002")
    );
    assert!(
        t.conflicts[0]
            .to_string()
            .contains("vhost shop.example.com path /api"),
        "{}",
        t.conflicts[0]
    );
}

#[test]
fn the_previous_holder_of_a_vhost_keeps_it() {
    let a = app(
        "/a",
        &[("HAPROXY_0_VHOST", "Shop.example.com")],
        &[10001],
        &[],
    );
    let b = app(
        "/b",
        &[("HAPROXY_0_VHOST", "shop.example.com")],
        &[10002],
        &[],
    );
    let first = table(std::slice::from_ref(&b), "");
    let second = compile_with(&[a, b], "", &first);
    assert_eq!(
        http(&second, "shop.example.com", "/").as_deref(),
        Some("b_10002")
    );
    assert_eq!(
        second.conflicts,
        [Conflict {
            claim: Claim::Vhost {
                host: HostName::parse("shop.example.com").unwrap(),
                path: String::new(),
            },
            kept: "b_10002".into(),
            refused: vec!["a_10001".into()],
        }]
    );
    assert_eq!(
        second.conflicts[0].to_string(),
        "vhost shop.example.com is claimed by b_10002 and a_10001; \
         b_10002 keeps it, the others get no route for it"
    );
}

#[test]
fn a_port_and_a_vhost_conflict_are_both_reported() {
    let labels = [("HAPROXY_0_VHOST", "shop.example.com")];
    let a = app("/a", &labels, &[10001], &[&[31001]]);
    let b = app("/b", &labels, &[10001], &[&[31002]]);
    let t = table(&[a.clone(), b.clone()], TCP);
    let mut claims: Vec<String> = t.conflicts.iter().map(|c| c.claim.to_string()).collect();
    claims.sort();
    assert_eq!(claims, ["service port 10001", "vhost shop.example.com"]);
    assert!(t.conflicts.iter().all(|c| c.kept == "a_10001"));

    // With /b as the previous holder of both, /b keeps both.
    let first = table(std::slice::from_ref(&b), TCP);
    let second = compile_with(&[a, b], TCP, &first);
    assert_eq!(second.conflicts.len(), 2);
    assert!(
        second.conflicts.iter().all(|c| c.kept == "b_10001"),
        "{:?}",
        second.conflicts
    );
    assert_eq!(tcp(&second, 10001).as_deref(), Some("b_10001"));
    assert_eq!(
        http(&second, "shop.example.com", "/").as_deref(),
        Some("b_10001")
    );
}

#[test]
fn backends_keep_their_state_across_compiles() {
    let v1 = [app(
        "/web",
        &[("HAPROXY_0_VHOST", "web.example.com")],
        &[10001],
        &[&[31001], &[31002]],
    )];
    let first = table(&v1, TCP);
    let old = route(&first, "web_10001").pool.backends().to_vec();
    assert_eq!(old.len(), 2);
    let busy = old
        .iter()
        .find(|b| b.addr == sock("127.0.0.1:31001"))
        .unwrap()
        .clone();
    let guard = busy.start();
    route(&first, "web_10001").pool.failed(&busy);

    // 31002 goes, 31003 comes; another app shares 31001's address.
    let v2 = [
        app(
            "/web",
            &[("HAPROXY_0_VHOST", "web.example.com")],
            &[10001],
            &[&[31001], &[31003]],
        ),
        app("/other", &[], &[10002], &[&[31001]]),
    ];
    let second = compile_with(&v2, TCP, &first);
    let web = route(&second, "web_10001").pool.backends();
    let kept = web
        .iter()
        .find(|b| b.addr == sock("127.0.0.1:31001"))
        .unwrap();
    assert!(Arc::ptr_eq(kept, &busy), "same address, same Backend");
    assert_eq!(kept.in_flight(), 1, "in-flight count survives the rebuild");
    assert_eq!(kept.failures(), 1);
    let other = &route(&second, "other_10002").pool.backends()[0];
    assert!(
        !Arc::ptr_eq(other, &busy),
        "state is per route: another route's failures or ejection are not this one's"
    );
    assert_eq!(other.failures(), 0);
    let fresh = web
        .iter()
        .find(|b| b.addr == sock("127.0.0.1:31003"))
        .unwrap();
    assert_eq!(fresh.in_flight(), 0);
    assert!(!old.iter().any(|b| Arc::ptr_eq(b, fresh)));

    drop(guard);
    assert_eq!(kept.in_flight(), 0);

    // Without a previous table there is nothing to reuse.
    let unrelated = table(&v2, TCP);
    let again = &route(&unrelated, "web_10001").pool.backends()[0];
    assert_eq!(again.addr, busy.addr);
    assert!(!Arc::ptr_eq(again, &busy));
}

#[test]
fn an_app_without_tasks_still_has_a_route_with_an_empty_pool() {
    let t = table(
        &[
            app(
                "/web",
                &[("HAPROXY_0_VHOST", "web.example.com")],
                &[10001],
                &[],
            ),
            app("/db", &[], &[10002], &[]),
        ],
        TCP,
    );
    let web = t.lookup_http("web.example.com", "/").expect("vhost routed");
    assert!(web.pool.is_empty());
    assert_eq!(web.pool.pick("127.0.0.1".parse().unwrap()), None);
    let db = t.lookup_tcp(10002).expect("port listened on");
    assert!(db.pool.is_empty());
    assert_eq!(db.listen, Some(sock("127.0.0.1:10002")));
}

#[test]
fn routes_follow_catalog_order_and_carry_the_service() {
    let t = table(
        &[
            app(
                "/shop/api",
                &[
                    ("HAPROXY_0_VHOST", "api.example.com"),
                    ("HAPROXY_0_PATH", "/v1"),
                    ("HAPROXY_0_BALANCE", "leastconn"),
                ],
                &[10002, 10003],
                &[&[31002, 31003]],
            ),
            app("/a", &[], &[10001], &[&[31001]]),
        ],
        TCP,
    );
    assert_eq!(names(&t), ["a_10001", "shop_api_10002", "shop_api_10003"]);
    let r = route(&t, "shop_api_10002");
    assert_eq!(
        (r.app_id.as_str(), r.index, r.port),
        ("/shop/api", 0, 10002)
    );
    assert_eq!(r.path.as_deref(), Some("/v1"));
    assert_eq!(r.vhosts, [HostName::parse("api.example.com").unwrap()]);
    assert_eq!(r.pool.balance(), Some(crate::catalog::Balance::LeastConn));
    let r = route(&t, "shop_api_10003");
    assert_eq!((r.index, r.mode), (1, Mode::Tcp));
    assert_eq!(r.pool.backends()[0].addr, sock("127.0.0.1:31003"));
}

const ALIAS: &str = "[[alias]]\nhost = \"mesos.example.com\"\nport = 15050\n\
    backends = [\"127.0.0.1:5050\", \"127.0.0.2:5050\", \"127.0.0.1:5050\"]\ncheck = \"mesos\"\n";

#[test]
fn an_alias_owns_its_host_on_every_path_and_its_port() {
    let apps = [
        app(
            "/squatter",
            &[
                ("HAPROXY_0_VHOST", "mesos.example.com"),
                ("HAPROXY_0_PATH", "/api"),
            ],
            &[15050],
            &[&[31001]],
        ),
        app(
            "/web",
            &[("HAPROXY_0_VHOST", "web.example.com")],
            &[10001],
            &[&[31002]],
        ),
    ];
    let wide = TCP.replace("10000-10100", "10000-20000");
    let t = table(&apps, &format!("{wide}\n{ALIAS}"));
    let alias = route(&t, "alias:mesos.example.com");
    assert!(alias.pool.is_leader_pool());
    let masters: Vec<String> = alias
        .pool
        .backends()
        .iter()
        .map(|b| b.addr.to_string())
        .collect();
    assert_eq!(
        masters,
        ["127.0.0.1:5050", "127.0.0.2:5050"],
        "duplicates kept once"
    );
    assert_eq!(
        http(&t, "mesos.example.com", "/api/x").as_deref(),
        Some("alias:mesos.example.com")
    );
    assert_eq!(
        http(&t, "MESOS.example.com:80", "/").as_deref(),
        Some("alias:mesos.example.com")
    );
    assert_eq!(tcp(&t, 15050).as_deref(), Some("alias:mesos.example.com"));
    assert_eq!(alias.listen, Some("127.0.0.1:15050".parse().unwrap()));
    assert_eq!(
        http(&t, "web.example.com", "/").as_deref(),
        Some("web_10001")
    );
    let refused: Vec<(String, String)> = t
        .conflicts
        .iter()
        .map(|c| (c.kept.clone(), c.refused.join(",")))
        .collect();
    assert_eq!(
        refused,
        [
            (
                "alias:mesos.example.com".to_string(),
                "squatter_15050".to_string()
            ),
            (
                "alias:mesos.example.com".to_string(),
                "squatter_15050".to_string()
            ),
        ],
        "{:?}",
        t.conflicts
    );
}

#[test]
fn an_unchanged_alias_keeps_its_leader_and_a_changed_one_starts_over() {
    let cfg = format!("{TCP}\n{ALIAS}");
    let first = table(&[], &cfg);
    // Outside [tcp].ports (10000-10100), still listened on: it is operator config.
    assert_eq!(
        tcp(&first, 15050).as_deref(),
        Some("alias:mesos.example.com")
    );
    let leader = route(&first, "alias:mesos.example.com").pool.backends()[1].clone();
    leader.set_leader(true);

    let second = compile_with(&[], &cfg, &first);
    let kept = &route(&second, "alias:mesos.example.com").pool.backends()[1];
    assert!(Arc::ptr_eq(kept, &leader) && kept.is_leader());

    let moved = cfg.replace("127.0.0.2:5050", "127.0.0.3:5050");
    let third = compile_with(&[], &moved, &second);
    let pool = &route(&third, "alias:mesos.example.com").pool;
    assert!(
        pool.current_leader().is_none(),
        "new masters must prove a leader"
    );
    let other_check = cfg.replace("check = \"mesos\"", "check = \"marathon\"");
    let fourth = compile_with(&[], &other_check, &second);
    assert!(route(&fourth, "alias:mesos.example.com")
        .pool
        .current_leader()
        .is_none());
}
