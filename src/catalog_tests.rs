use super::*;

fn app(id: &str, labels: &[(&str, &str)], ports: &[u16], tasks: &[(&str, &[u16])]) -> RawApp {
    RawApp {
        id: id.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ports: ports.to_vec(),
        tasks: tasks
            .iter()
            .enumerate()
            .map(|(i, (host, ports))| RawTask {
                id: format!("{id}.{i}"),
                host: host.to_string(),
                ports: ports.to_vec(),
                state: "TASK_RUNNING".into(),
                healthy: None,
            })
            .collect(),
        ..RawApp::default()
    }
}

#[test]
fn labels_give_vhosts_mode_path_and_balance() {
    let a = app(
        "/shop/api",
        &[
            ("HAPROXY_0_VHOST", "Shop.example.com, api.example.com"),
            ("HAPROXY_0_PATH", "/api"),
            ("HAPROXY_0_BALANCE", "leastconn"),
            ("HAPROXY_1_MODE", "tcp"),
        ],
        &[10002, 10003],
        &[
            ("127.0.0.2", &[31001, 31002]),
            ("127.0.0.1", &[31003, 31004]),
        ],
    );
    let c = build(&[a], &Groups::all());
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    let s0 = &c.services[0];
    assert_eq!(s0.name, "shop_api_10002");
    assert_eq!(s0.mode, Mode::Http);
    assert_eq!(s0.path.as_deref(), Some("/api"));
    assert_eq!(s0.balance, Balance::LeastConn);
    let vhosts: Vec<&str> = s0.vhosts.iter().map(HostName::as_str).collect();
    assert_eq!(vhosts, ["shop.example.com", "api.example.com"]);
    assert_eq!(
        s0.backends,
        [
            "127.0.0.1:31003".parse().unwrap(),
            "127.0.0.2:31001".parse().unwrap()
        ]
    );
    let s1 = &c.services[1];
    assert_eq!((s1.port, s1.mode), (10003, Mode::Tcp));
    assert_eq!(s1.backends[0], "127.0.0.1:31004".parse().unwrap());
}

#[test]
fn port_and_bind_addr_labels_override() {
    let a = app(
        "/redis",
        &[
            ("HAPROXY_0_PORT", "6379"),
            ("HAPROXY_0_BIND_ADDR", "127.0.0.5"),
        ],
        &[10004],
        &[("127.0.0.1", &[31401])],
    );
    let c = build(&[a], &Groups::all());
    assert_eq!(c.services[0].port, 6379);
    assert_eq!(c.services[0].name, "redis_6379");
    assert_eq!(c.services[0].bind_addr, Some("127.0.0.5".parse().unwrap()));
}

#[test]
fn groups_select_apps_and_ports() {
    let ext = app("/ext", &[("HAPROXY_GROUP", "external")], &[10001], &[]);
    let int = app("/int", &[("HAPROXY_GROUP", "internal")], &[10002], &[]);
    let none = app("/none", &[], &[10003], &[]);
    let mixed = app(
        "/mixed",
        &[
            ("HAPROXY_GROUP", "internal"),
            ("HAPROXY_1_GROUP", "external"),
        ],
        &[10004, 10005],
        &[],
    );
    let apps = [ext, int, none, mixed];
    let ports = |groups: &[&str]| -> Vec<u16> {
        let g = Groups(groups.iter().map(|s| s.to_string()).collect());
        build(&apps, &g).services.iter().map(|s| s.port).collect()
    };
    assert_eq!(ports(&["external"]), [10001, 10005]);
    assert_eq!(ports(&["internal"]), [10002, 10004]);
    assert_eq!(ports(&["*"]), [10001, 10002, 10004, 10005, 10003]);
}

#[test]
fn enabled_false_hides_a_port() {
    let a = app(
        "/a",
        &[("HAPROXY_0_ENABLED", "false")],
        &[10001, 10002],
        &[],
    );
    let c = build(&[a], &Groups::all());
    assert_eq!(c.services.len(), 1);
    assert_eq!(c.services[0].port, 10002);
}

#[test]
fn a_bad_label_disables_only_that_app() {
    let bad = app("/bad", &[("HAPROXY_0_BALANCE", "fastest")], &[10001], &[]);
    let good = app("/good", &[], &[10002], &[]);
    let c = build(&[bad, good], &Groups::all());
    assert_eq!(c.services.len(), 1);
    assert_eq!(c.services[0].app_id, "/good");
    assert_eq!(c.problems.len(), 1);
    assert!(
        c.problems[0].message.contains("HAPROXY_0_BALANCE"),
        "{}",
        c.problems[0]
    );
}

#[test]
fn only_serving_tasks_with_ip_hosts_are_backends() {
    let mut a = app(
        "/a",
        &[],
        &[10001],
        &[
            ("127.0.0.1", &[1]),
            ("127.0.0.1", &[2]),
            ("127.0.0.1", &[3]),
            ("", &[4]),
        ],
    );
    a.tasks[1].state = "TASK_KILLING".into();
    a.tasks[2].state = "TASK_UNREACHABLE".into();
    let c = build(&[a], &Groups::all());
    let ports: Vec<u16> = c.services[0].backends.iter().map(|b| b.port()).collect();
    assert_eq!(ports, [1, 3]);
}

fn selection(strict: bool) -> Selection {
    Selection {
        groups: Groups::all(),
        strict,
    }
}

#[test]
fn strict_mode_needs_enabled_with_marathon_lb_truthy_words() {
    let a = app(
        "/a",
        &[
            ("HAPROXY_0_ENABLED", "T"),
            ("HAPROXY_2_ENABLED", "Yes"),
            ("HAPROXY_3_ENABLED", "y"),
            ("HAPROXY_4_ENABLED", "n"),
        ],
        &[10001, 10002, 10003, 10004, 10005],
        &[],
    );
    let ports = |strict| -> Vec<u16> {
        build_selected(std::slice::from_ref(&a), &selection(strict))
            .services
            .iter()
            .map(|s| s.port)
            .collect()
    };
    assert_eq!(ports(true), [10001, 10003, 10004]);
    assert_eq!(ports(false), [10001, 10002, 10003, 10004]);
    // `build` is the non-strict selection.
    assert_eq!(
        build(std::slice::from_ref(&a), &Groups::all())
            .services
            .len(),
        4
    );
}

#[test]
fn an_http_health_check_makes_http_the_default_mode() {
    let mut a = app("/a", &[("HAPROXY_1_MODE", "tcp")], &[10001, 10002], &[]);
    a.http_health_check = true;
    let c = build(&[a], &Groups::all());
    assert_eq!(c.services[0].mode, Mode::Http);
    assert_eq!(c.services[1].mode, Mode::Tcp, "the label still wins");
}

#[test]
fn weight_redirect_and_sticky_are_parsed() {
    let a = app(
        "/a",
        &[
            ("HAPROXY_0_VHOST", "a.example.com"),
            ("HAPROXY_0_PATH", "/api"),
            ("HAPROXY_0_REDIRECT_TO_HTTPS", "true"),
            ("HAPROXY_0_STICKY", "yes"),
            ("HAPROXY_1_VHOST", "a.example.com"),
            ("HAPROXY_1_PATH", "/"),
            ("HAPROXY_1_BACKEND_WEIGHT", "-2"),
            ("HAPROXY_2_VHOST", "b.example.com"),
        ],
        &[10001, 10002, 10003],
        &[],
    );
    let b = app(
        "/b",
        &[
            ("HAPROXY_0_VHOST", "c.example.com"),
            ("HAPROXY_0_BACKEND_WEIGHT", "5"),
        ],
        &[10004],
        &[],
    );
    let c = build(&[a, b], &Groups::all());
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    let s = &c.services;
    assert_eq!(
        (s[0].weight, s[0].redirect_to_https, s[0].sticky),
        (1, true, true)
    );
    assert_eq!(
        (s[1].weight, s[1].redirect_to_https, s[1].sticky),
        (-2, false, false)
    );
    assert_eq!(s[2].weight, 0);
    let order: Vec<&str> = c
        .http_rule_order()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(order, ["b_10004", "a_10001", "a_10003", "a_10002"]);
}

#[test]
fn bad_weight_or_boolean_disables_the_app() {
    for (label, value) in [
        ("HAPROXY_0_BACKEND_WEIGHT", "heavy"),
        ("HAPROXY_0_STICKY", "sometimes"),
        ("HAPROXY_0_REDIRECT_TO_HTTPS", "2"),
        ("HAPROXY_0_ENABLED", "ture"),
    ] {
        let a = app("/a", &[(label, value)], &[10001], &[]);
        let c = build_selected(&[a], &selection(false));
        assert!(c.services.is_empty(), "{label}");
        assert!(c.problems[0].message.contains(label), "{}", c.problems[0]);
    }
}

#[test]
fn merge_applies_each_sources_selection_and_orders_services_across_sources() {
    let file_apps = [app("/z/file", &[], &[10010], &[("127.0.0.1", &[31000])])];
    let marathon_apps = [
        app("/a/plain", &[], &[10001], &[("127.0.0.2", &[31001])]),
        app(
            "/m/enabled",
            &[("HAPROXY_0_ENABLED", "true")],
            &[10002],
            &[("127.0.0.3", &[31002])],
        ),
        app(
            "/m/bad",
            &[("HAPROXY_0_ENABLED", "true"), ("HAPROXY_0_MODE", "udp")],
            &[10003],
            &[],
        ),
    ];
    let decode_problem = AppProblem {
        app_id: "/m/undecodable".into(),
        message: "does not decode".into(),
    };
    let file_apps = file_apps.map(std::sync::Arc::new);
    let marathon_apps = marathon_apps.map(std::sync::Arc::new);
    let catalog = merge([
        SourceApps {
            apps: &file_apps,
            problems: &[],
            selection: selection(false),
        },
        SourceApps {
            apps: &marathon_apps,
            problems: std::slice::from_ref(&decode_problem),
            selection: selection(true),
        },
    ]);
    // Strict mode applies to Marathon's apps only; the file's app needs no label.
    let ids: Vec<&str> = catalog.services.iter().map(|s| s.app_id.as_str()).collect();
    assert_eq!(ids, ["/m/enabled", "/z/file"]);
    // A source's decode problems come before the problems its apps' labels gave.
    let problem_apps: Vec<&str> = catalog.problems.iter().map(|p| p.app_id.as_str()).collect();
    assert_eq!(problem_apps, ["/m/undecodable", "/m/bad"]);
}

#[test]
fn a_udp_only_port_keeps_no_tcp_or_http_check() {
    let mut a = app(
        "/metrics/statsd",
        &[],
        &[10006, 10007, 10008],
        &[("127.0.0.1", &[31001, 31002, 31003])],
    );
    a.protocols = vec![Protocol::Udp, Protocol::TcpUdp, Protocol::Tcp];
    let check = ActiveCheck {
        kind: CheckKind::Tcp,
        interval: std::time::Duration::from_secs(1),
        timeout: std::time::Duration::from_secs(1),
        rise: 1,
        fall: 1,
    };
    a.checks = (0..3)
        .map(|index| PortCheck {
            index,
            check: check.clone(),
        })
        .collect();
    let c = build(&[a], &Groups::all());
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    let checked: Vec<bool> = c.services.iter().map(|s| s.check.is_some()).collect();
    // A TCP probe of a UDP-only port would fail and mark every backend down.
    assert_eq!(checked, [false, true, true]);
}
