//! Config validation: typed values, defaults, one problem per mistake (named by key path and
//! showing the bad value), every problem at once, and the files under `config/`.

use super::*;

/// The directory relative paths are resolved against in these tests.
const BASE: &str = "/etc/drover";

fn parse_ok(text: &str) -> Config {
    Config::parse(text, Path::new(BASE)).unwrap_or_else(|p| panic!("expected valid, got {p:#?}"))
}

fn parse_err(text: &str) -> Vec<Problem> {
    match Config::parse(text, Path::new(BASE)) {
        Ok(c) => panic!("expected problems, got {c:#?}"),
        Err(p) => p,
    }
}

fn paths(problems: &[Problem]) -> Vec<&str> {
    problems.iter().map(|p| p.path.as_str()).collect()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A config that uses every section and key with non-default values.
const EVERYTHING: &str = r#"
[http]
listen = "127.0.0.1:8080"
appid_listen = "[::1]:9091"
header_timeout = "3s"
connect_timeout = "250ms"
response_timeout = "2m"
max_header_bytes = 8192
body_timeout = "45s"
underscore_headers = "reject"
max_connections = 5000

[https]
listen = "0.0.0.0:8443"
certs = "certs"

[tcp]
bind = "10.1.2.3"
ports = "10000-10100"
connect_timeout = "1s"
max_connections = 300

[dns]
listen = "127.0.0.1:8053"
domain = "Cluster.Local."
ttl = "30s"
forward = ["9.9.9.9", "127.0.0.53:5353"]
ip_sources = ["host", "docker"]
labels = "rfc952"
legacy_names = true
healthy_only = true

[admin]
listen = "127.0.0.1:9999"

[marathon]
urls = ["http://m1:8080/", "https://m2:8443"]
groups = ["external", "internal"]
resync = "5m"
strict = true
user = "drover"
password_file = "marathon.pass"
ca_file = "/pki/ca.pem"

[mesos]
masters = ["http://10.0.0.1:5050", "https://10.0.0.2:5050"]
principal = "dns"
secret_file = "mesos.secret"
ca_file = "/pki/mesos-ca.pem"
poll = "2s"
stream = false

[catalog]
file = "services.toml"
groups = ["edge"]

[runtime]
workers = 3
drain_timeout = "30s"

[[alias]]
host = "Mesos.Example.com"
port = 15050
backends = ["10.0.0.1:5050", "10.0.0.2:5050"]
check = "mesos"
interval = "500ms"

[[alias]]
host = "marathon.example.com"
backends = ["10.0.0.1:8080"]
check = "marathon"

[[alias]]
host = "classic.example.com"
backends = ["10.0.0.3:5050"]
check = { path = "/master/state", expect_status = 203, expect_body = "elected_time" }
"#;

#[test]
fn every_section_and_key_parses_to_its_typed_value() {
    let c = parse_ok(EVERYTHING);

    assert_eq!(
        c.http,
        Some(HttpConfig {
            listen: addr("127.0.0.1:8080"),
            appid_listen: Some(addr("[::1]:9091")),
            header_timeout: secs(3),
            connect_timeout: Duration::from_millis(250),
            response_timeout: secs(120),
            max_header_bytes: 8192,
            body_timeout: secs(45),
            underscore_headers: UnderscoreHeaders::Reject,
            max_connections: 5000,
            proxy_protocol: vec![],
        })
    );
    assert_eq!(
        c.https,
        Some(HttpsConfig {
            listen: addr("0.0.0.0:8443"),
            certs: PathBuf::from("/etc/drover/certs"),
            proxy_protocol: vec![],
        })
    );
    assert_eq!(
        c.tcp,
        Some(TcpConfig {
            bind: "10.1.2.3".parse().unwrap(),
            ports: PortRange {
                first: 10000,
                last: 10100
            },
            connect_timeout: secs(1),
            proxy_protocol: vec![],
            send_proxy_protocol: None,
            max_connections: 300,
        })
    );
    assert_eq!(
        c.dns,
        Some(DnsConfig {
            listen: addr("127.0.0.1:8053"),
            domain: HostName::parse("cluster.local").unwrap(),
            ttl: secs(30),
            forward: vec![addr("9.9.9.9:53"), addr("127.0.0.53:5353")],
            ip_sources: vec!["host".into(), "docker".into()],
            labels: "rfc952".into(),
            legacy_names: true,
            healthy_only: true,
        })
    );
    assert_eq!(
        c.admin,
        Some(AdminConfig {
            listen: addr("127.0.0.1:9999")
        })
    );
    assert_eq!(
        c.marathon,
        Some(MarathonConfig {
            urls: vec!["http://m1:8080".into(), "https://m2:8443".into()],
            groups: Groups(vec!["external".into(), "internal".into()]),
            resync: secs(300),
            idle_timeout: secs(60),
            strict: true,
            health_check: true,
            active_checks: true,
            ip_per_task_ports: PortRange {
                first: 10050,
                last: 10100
            },
            user: Some("drover".into()),
            password_file: Some(PathBuf::from("/etc/drover/marathon.pass")),
            ca_file: Some(PathBuf::from("/pki/ca.pem")),
        })
    );
    assert_eq!(
        c.mesos,
        Some(MesosConfig {
            masters: vec![
                "http://10.0.0.1:5050".into(),
                "https://10.0.0.2:5050".into()
            ],
            poll: secs(2),
            principal: Some("dns".into()),
            secret_file: Some(PathBuf::from("/etc/drover/mesos.secret")),
            ca_file: Some(PathBuf::from("/pki/mesos-ca.pem")),
            zk: None,
            stream: false,
        })
    );
    assert_eq!(
        c.catalog,
        Some(CatalogConfig {
            file: PathBuf::from("/etc/drover/services.toml"),
            groups: Groups(vec!["edge".into()]),
        })
    );
    assert_eq!(
        c.runtime,
        RuntimeConfig {
            workers: 3,
            drain_timeout: secs(30),
        }
    );
    assert_eq!(
        c.aliases,
        vec![
            AliasConfig {
                host: HostName::parse("mesos.example.com").unwrap(),
                port: Some(15050),
                backends: vec![addr("10.0.0.1:5050"), addr("10.0.0.2:5050")],
                check: LeaderCheck::Mesos,
                interval: Duration::from_millis(500),
                zk: None,
            },
            AliasConfig {
                host: HostName::parse("marathon.example.com").unwrap(),
                port: None,
                backends: vec![addr("10.0.0.1:8080")],
                check: LeaderCheck::Marathon,
                interval: secs(1),
                zk: None,
            },
            AliasConfig {
                host: HostName::parse("classic.example.com").unwrap(),
                port: None,
                backends: vec![addr("10.0.0.3:5050")],
                check: LeaderCheck::Http {
                    path: "/master/state".into(),
                    expect_status: 203,
                    expect_body: Some("elected_time".into()),
                },
                interval: secs(1),
                zk: None,
            },
        ]
    );
}

#[test]
fn an_empty_file_turns_everything_off() {
    let c = parse_ok("");
    assert_eq!(c.http, None);
    assert_eq!(c.https, None);
    assert_eq!(c.tcp, None);
    assert_eq!(c.dns, None);
    assert_eq!(c.admin, None);
    assert_eq!(c.marathon, None);
    assert_eq!(c.mesos, None);
    assert_eq!(c.catalog, None);
    assert!(c.aliases.is_empty());
    assert_eq!(
        c.runtime,
        RuntimeConfig {
            workers: cores(),
            drain_timeout: secs(10),
        }
    );
}

#[test]
fn empty_sections_take_the_documented_defaults() {
    let c = parse_ok("[http]\n[https]\ncerts = \"/certs\"\n[tcp]\n[dns]\n[admin]\n[runtime]\n");
    assert_eq!(
        c.http,
        Some(HttpConfig {
            listen: addr("0.0.0.0:80"),
            appid_listen: None,
            header_timeout: secs(10),
            connect_timeout: secs(2),
            response_timeout: secs(60),
            max_header_bytes: 64 * 1024,
            body_timeout: secs(30),
            underscore_headers: UnderscoreHeaders::Pass,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            proxy_protocol: vec![],
        })
    );
    assert_eq!(c.https.unwrap().listen, addr("0.0.0.0:443"));
    assert_eq!(
        c.tcp,
        Some(TcpConfig {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ports: PortRange {
                first: 10000,
                last: 20000
            },
            connect_timeout: secs(2),
            proxy_protocol: vec![],
            send_proxy_protocol: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        })
    );
    assert_eq!(
        c.dns,
        Some(DnsConfig {
            listen: addr("0.0.0.0:53"),
            domain: HostName::parse("mesos").unwrap(),
            ttl: secs(60),
            forward: vec![],
            ip_sources: vec!["netinfo".into(), "mesos".into(), "host".into()],
            labels: "rfc1123".into(),
            legacy_names: false,
            healthy_only: false,
        })
    );
    assert_eq!(c.admin.unwrap().listen, addr("127.0.0.1:9090"));
    assert_eq!(c.runtime.workers, cores());
    assert_eq!(c.runtime.drain_timeout, secs(10));

    let c = parse_ok(
        "[marathon]\nurls = [\"http://m1:8080\"]\n[mesos]\nmasters = [\"http://m1:5050\"]\n\
         [catalog]\nfile = \"/srv/apps.toml\"\n[[alias]]\nhost = \"a.example.com\"\n\
         backends = [\"10.0.0.1:5050\"]\ncheck = { path = \"/ping\" }\n",
    );
    let m = c.marathon.unwrap();
    assert_eq!(m.groups, Groups(vec!["external".into()]));
    assert_eq!(m.resync, secs(300));
    assert!(!m.strict);
    assert_eq!((m.user, m.password_file, m.ca_file), (None, None, None));
    let mesos = c.mesos.unwrap();
    assert_eq!(mesos.poll, secs(60), "with the stream, a read is a resync");
    assert!(mesos.stream, "the operator API stream is on by default");
    let polling = parse_ok("[mesos]\nmasters = [\"http://m1:5050\"]\nstream = false\n");
    assert_eq!(polling.mesos.unwrap().poll, secs(5), "polling alone");
    let catalog = c.catalog.unwrap();
    assert_eq!(catalog.file, PathBuf::from("/srv/apps.toml"));
    assert!(catalog.groups.is_all());
    assert_eq!(c.aliases[0].port, None);
    assert_eq!(c.aliases[0].interval, secs(1));
    assert_eq!(
        c.aliases[0].check,
        LeaderCheck::Http {
            path: "/ping".into(),
            expect_status: 200,
            expect_body: None,
        }
    );
}

#[test]
fn zero_workers_means_one_per_core() {
    assert_eq!(
        parse_ok("[runtime]\nworkers = 0\n").runtime.workers,
        cores()
    );
    assert_eq!(parse_ok("[runtime]\nworkers = 256\n").runtime.workers, 256);
}

#[test]
fn port_ranges_take_a_range_or_one_port() {
    let ports = |raw: &str| {
        parse_ok(&format!("[tcp]\nports = \"{raw}\"\n"))
            .tcp
            .unwrap()
            .ports
    };
    let one = ports("10001");
    assert_eq!(
        one,
        PortRange {
            first: 10001,
            last: 10001
        }
    );
    assert!(one.contains(10001) && !one.contains(10002) && !one.contains(10000));
    let range = ports("1 - 65535");
    assert!(range.contains(1) && range.contains(65535));
    assert_eq!(ports("10000-10100").to_string(), "10000-10100");
}

#[test]
fn groups_select_by_name_or_star() {
    let g = Groups(vec!["external".into()]);
    assert!(g.selects(Some("external")));
    assert!(g.selects(Some("internal, external")));
    assert!(!g.selects(Some("internal")));
    assert!(!g.selects(None));
    assert!(Groups::all().selects(None));
    assert!(Groups::all().selects(Some("anything")));
}

/// One mistake per case: (config text, key path of the problem, the value it shows).
const MISTAKES: &[(&str, &str, &str)] = &[
    ("[http]\nlisten = \"localhost:80\"", "http.listen", "\"localhost:80\""),
    ("[http]\nlisten = \"0.0.0.0\"", "http.listen", "\"0.0.0.0\""),
    ("[http]\nappid_listen = \"9091\"", "http.appid_listen", "\"9091\""),
    ("[http]\nheader_timeout = \"soon\"", "http.header_timeout", "\"soon\""),
    ("[http]\nconnect_timeout = \"0s\"", "http.connect_timeout", "\"0s\""),
    ("[http]\nresponse_timeout = \"60\"", "http.response_timeout", "\"60\""),
    ("[http]\nmax_header_bytes = 100", "http.max_header_bytes", "100"),
    ("[http]\nmax_header_bytes = 2000000", "http.max_header_bytes", "2000000"),
    ("[http]\nunderscore_headers = \"merge\"", "http.underscore_headers", "\"merge\""),
    ("[http]\nmax_connections = 0", "http.max_connections", "0"),
    ("[https]\nlisten = \":443\"\ncerts = \"c\"", "https.listen", "\":443\""),
    ("[https]\nlisten = \"0.0.0.0:443\"", "https.certs", ""),
    ("[tcp]\nbind = \"0.0.0.0:80\"", "tcp.bind", "\"0.0.0.0:80\""),
    ("[tcp]\nports = \"20000-10000\"", "tcp.ports", "\"20000-10000\""),
    ("[tcp]\nports = \"0-100\"", "tcp.ports", "\"0-100\""),
    ("[tcp]\nports = \"10000-70000\"", "tcp.ports", "\"10000-70000\""),
    ("[tcp]\nports = \"many\"", "tcp.ports", "\"many\""),
    ("[tcp]\nconnect_timeout = \"1 fortnight\"", "tcp.connect_timeout", "\"1 fortnight\""),
    ("[dns]\nlisten = \"53\"", "dns.listen", "\"53\""),
    ("[dns]\ndomain = \"my domain\"", "dns.domain", "\"my domain\""),
    ("[dns]\nttl = \"forever\"", "dns.ttl", "\"forever\""),
    ("[dns]\nforward = [\"9.9.9.9\", \"dns.google\"]", "dns.forward[1]", "\"dns.google\""),
    ("[dns]\nip_sources = [\"netinfo\", \"dhcp\"]", "dns.ip_sources[1]", "\"dhcp\""),
    ("[dns]\nlabels = \"rfc1035\"", "dns.labels", "\"rfc1035\""),
    ("[admin]\nlisten = \"127.0.0.1\"", "admin.listen", "\"127.0.0.1\""),
    ("[marathon]\nurls = []", "marathon.urls", "[]"),
    ("[marathon]", "marathon.urls", "[]"),
    (
        "[marathon]\nurls = [\"http://m1:8080\", \"m2:8080\"]",
        "marathon.urls[1]",
        "\"m2:8080\"",
    ),
    ("[marathon]\nurls = [\"http:///v2\"]", "marathon.urls[0]", "\"http:///v2\""),
    ("[marathon]\nurls = [\"http://m\"]\ngroups = []", "marathon.groups", "[]"),
    ("[marathon]\nurls = [\"http://m\"]\nresync = \"often\"", "marathon.resync", "\"often\""),
    ("[marathon]\nurls = [\"http://m\"]\nuser = \"drover\"", "marathon.user", ""),
    ("[marathon]\nurls = [\"http://m\"]\npassword_file = \"p\"", "marathon.user", ""),
    ("[mesos]\nmasters = []", "mesos.masters", "[]"),
    ("[mesos]\nmasters = [\"ftp://m:5050\"]", "mesos.masters[0]", "\"ftp://m:5050\""),
    ("[mesos]\nmasters = [\"http://m\"]\npoll = \"0ms\"", "mesos.poll", "\"0ms\""),
    ("[mesos]\nmasters = [\"http://m\"]\nprincipal = \"dns\"", "mesos.principal", ""),
    ("[mesos]\nmasters = [\"http://m\"]\nsecret_file = \"s\"", "mesos.principal", ""),
    ("[mesos]\nmasters = [\"http://m\"]\nca_file = \" \"", "mesos.ca_file", "\"\""),
    ("[catalog]\ngroups = [\"a\"]", "catalog.file", ""),
    ("[catalog]\nfile = \"\"", "catalog.file", ""),
    ("[catalog]\nfile = \"s.toml\"\ngroups = []", "catalog.groups", "[]"),
    ("[runtime]\nworkers = 1000", "runtime.workers", "1000"),
    ("[runtime]\nworkers = -1", "runtime.workers", "-1"),
    ("[runtime]\ndrain_timeout = \"10\"", "runtime.drain_timeout", "\"10\""),
    ("[runtime]\ndrain_timeout = \"0s\"", "runtime.drain_timeout", "\"0s\""),
    ("alias = \"mesos\"", "alias", "\"mesos\""),
    (
        "[[alias]]\nbackends = [\"10.0.0.1:5050\"]\ncheck = \"mesos\"",
        "alias[0].host",
        "",
    ),
    (
        "[[alias]]\nhost = \"bad host\"\nbackends = [\"10.0.0.1:5050\"]\ncheck = \"mesos\"",
        "alias[0].host",
        "\"bad host\"",
    ),
    (
        "[[alias]]\nhost = \"a\"\nport = 0\nbackends = [\"10.0.0.1:5050\"]\ncheck = \"mesos\"",
        "alias[0].port",
        "0",
    ),
    (
        "[[alias]]\nhost = \"a\"\nport = 70000\nbackends = [\"10.0.0.1:5050\"]\ncheck = \"mesos\"",
        "alias[0].port",
        "70000",
    ),
    (
        "[[alias]]\nhost = \"a\"\nbackends = []\ncheck = \"mesos\"",
        "alias[0].backends",
        "[]",
    ),
    (
        "[[alias]]\nhost = \"a\"\nbackends = [\"10.0.0.1:5050\"]\ncheck = \"mesos\"\n\
         [[alias]]\nhost = \"b\"\nbackends = [\"10.0.0.1\"]\ncheck = \"mesos\"",
        "alias[1].backends[0]",
        "\"10.0.0.1\"",
    ),
    (
        "[[alias]]\nhost = \"a\"\nbackends = [\"10.0.0.1:5050\"]",
        "alias[0].check",
        "",
    ),
    (
        "[[alias]]\nhost = \"a\"\nbackends = [\"10.0.0.1:5050\"]\ncheck = \"zookeeper\"",
        "alias[0].check",
        "\"zookeeper\"",
    ),
    (
        "[[alias]]\nhost = \"a\"\nbackends = [\"10.0.0.1:5050\"]\ncheck = { path = \"state\" }",
        "alias[0].check.path",
        "\"state\"",
    ),
    (
        "[[alias]]\nhost = \"a\"\nbackends = [\"10.0.0.1:5050\"]\n\
         check = { path = \"/state\", expect_status = 99 }",
        "alias[0].check.expect_status",
        "99",
    ),
    (
        "[[alias]]\nhost = \"a\"\nbackends = [\"10.0.0.1:5050\"]\ncheck = \"mesos\"\ninterval = \"1\"",
        "alias[0].interval",
        "\"1\"",
    ),
];

#[test]
fn each_mistake_is_one_problem_naming_its_key_and_value() {
    for (text, path, value) in MISTAKES {
        let problems = parse_err(text);
        assert_eq!(
            problems.len(),
            1,
            "config {text:?}: expected one problem, got {problems:#?}"
        );
        let p = &problems[0];
        assert_eq!(p.path, *path, "config {text:?}: {p:?}");
        assert_eq!(p.value, *value, "config {text:?}: {p:?}");
        assert!(!p.message.is_empty(), "config {text:?}: no message");
    }
}

#[test]
fn problem_messages_say_what_is_expected() {
    let message = |text: &str| parse_err(text).remove(0).message;
    assert!(message("[http]\nlisten = \"x\"").contains("IP:port"));
    assert!(message("[runtime]\ndrain_timeout = \"0s\"").contains("longer than zero"));
    assert!(message("[runtime]\ndrain_timeout = \"soon\"").contains("\"5s\""));
    assert!(message("[tcp]\nports = \"20-10\"").contains("above the last"));
    assert!(message("[dns]\nip_sources = [\"dhcp\"]").contains("netinfo"));
}

#[test]
fn problems_display_path_value_and_message() {
    let p = parse_err("[http]\nlisten = \"nope\"").remove(0);
    assert_eq!(
        p.to_string(),
        format!("http.listen = \"nope\": {}", p.message)
    );
    let p = parse_err("[catalog]\n").remove(0);
    assert_eq!(p.to_string(), format!("catalog.file: {}", p.message));
}

#[test]
fn an_unknown_key_in_a_section_is_an_error_naming_it() {
    for (text, section, key) in [
        ("[http]\nlisen = \"127.0.0.1:80\"", "http", "lisen"),
        ("[tcp]\nport = \"10000-10100\"", "tcp", "port"),
        ("[admin]\nlisten = \"127.0.0.1:9090\"\ntoken = \"x\"", "admin", "token"),
        ("[runtime]\nthreads = 2", "runtime", "threads"),
        (
            "[[alias]]\nhost = \"a\"\nbackends = [\"10.0.0.1:5050\"]\ncheck = \"mesos\"\nleader = true",
            "alias[0]",
            "leader",
        ),
    ] {
        let problems = parse_err(text);
        assert_eq!(problems.len(), 1, "{text:?}: {problems:#?}");
        let p = &problems[0];
        // The problem belongs to the section (or names the key inside it) and names the key.
        assert!(
            p.path == section || p.path == format!("{section}.{key}"),
            "{text:?}: {p:?}"
        );
        assert!(
            p.message.contains(&format!("`{key}`")) || p.path.ends_with(key),
            "{text:?}: {p:?}"
        );
    }
}

#[test]
fn a_value_of_the_wrong_type_is_an_error_in_its_section() {
    for (text, section) in [
        ("[http]\nlisten = 80", "http"),
        ("[tcp]\nports = [10000, 10100]", "tcp"),
        ("[runtime]\nworkers = \"2\"", "runtime"),
        ("[marathon]\nurls = \"http://m1\"", "marathon"),
        ("http = \"0.0.0.0:80\"", "http"),
    ] {
        let problems = parse_err(text);
        assert_eq!(problems.len(), 1, "{text:?}: {problems:#?}");
        assert!(
            problems[0].path.starts_with(section),
            "{text:?}: {problems:#?}"
        );
    }
}

#[test]
fn an_unknown_section_is_an_error() {
    let problems = parse_err("[http]\nlisten = \"127.0.0.1:8080\"\n[htttp]\nlisten = \"x\"\n");
    assert_eq!(paths(&problems), ["htttp"]);
    assert!(
        problems[0].message.contains("unknown section"),
        "{problems:?}"
    );
    let problems = parse_err("listen = \"127.0.0.1:8080\"\n");
    assert_eq!(paths(&problems), ["listen"]);
}

#[test]
fn every_problem_in_every_section_is_reported_at_once() {
    let problems = parse_err(
        r#"
[http]
listen = "127.0.0.1"
header_timeout = "fast"

[tcp]
ports = "9-1"

[admin]
listen = "127.0.0.1:9090"
typo = 1

[runtime]
drain_timeout = "eventually"

[loadbalancer]

[[alias]]
host = "a.example.com"
backends = ["10.0.0.1:5050"]
check = "mesos"

[[alias]]
host = "b.example.com"
backends = ["10.0.0.2"]
check = "mesos"
"#,
    );
    // The unknown key is reported on its section (or on the key itself).
    let mut got: Vec<&str> = paths(&problems)
        .into_iter()
        .map(|p| if p == "admin.typo" { "admin" } else { p })
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        [
            "admin",
            "alias[1].backends[0]",
            "http.header_timeout",
            "http.listen",
            "loadbalancer",
            "runtime.drain_timeout",
            "tcp.ports",
        ],
        "{problems:#?}"
    );
}

#[test]
fn invalid_toml_reports_its_line() {
    let problems = parse_err("[http]\nlisten = \"127.0.0.1:80\"\nheader_timeout = 10s\n");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].path, "line 3");
    assert!(
        problems[0].message.contains("not valid TOML"),
        "{problems:?}"
    );

    let problems = parse_err("[http\nlisten = \"x\"\n");
    assert_eq!(paths(&problems), ["line 1"]);
}

#[test]
fn marathon_over_http_is_available() {
    let c =
        parse_ok("[marathon]\nurls = [\"http://m1:8080\", \"http://m2:8080\"]\nstrict = true\n");
    let m = c.marathon.expect("marathon");
    assert_eq!(m.idle_timeout, Duration::from_secs(60));
    assert!(m.strict);
    assert!(
        m.health_check,
        "marathon-lb's --health-check is the default"
    );

    let c = parse_ok(
        "[marathon]\nurls = [\"http://m\"]\nhealth_check = false\nip_per_task_ports = \"20000-20010\"\n",
    );
    let m = c.marathon.expect("marathon");
    assert!(!m.health_check);
    assert_eq!(
        m.ip_per_task_ports,
        PortRange {
            first: 20000,
            last: 20010
        }
    );
    let problems = parse_err("[marathon]\nurls = [\"http://m\"]\nip_per_task_ports = \"x\"\n");
    assert_eq!(problems[0].path, "marathon.ip_per_task_ports");
}

#[test]
fn marathon_over_https_with_a_ca_file_is_available() {
    let c = Config::parse(
        "[marathon]\nurls = [\"https://m1:8443\", \"http://m2:8080\"]\nca_file = \"ca.pem\"\n",
        Path::new("/etc/drover"),
    )
    .unwrap();
    let m = c.marathon.expect("marathon");
    assert_eq!(m.ca_file, Some(PathBuf::from("/etc/drover/ca.pem")));
    // Whether the file exists is for the start to find: checking stays pure.
    assert!(
        parse_ok("[marathon]\nurls = [\"https://m\"]\nca_file = \"/nope.pem\"\n")
            .marathon
            .is_some()
    );

    let problems = parse_err("[marathon]\nurls = [\"https://m\"]\nca_file = \" \"\n");
    assert_eq!(paths(&problems), ["marathon.ca_file"]);
}

#[test]
fn relative_paths_resolve_against_the_base_dir() {
    let file = |text: &str, base: &str| {
        Config::parse(text, Path::new(base))
            .unwrap()
            .catalog
            .unwrap()
            .file
    };
    assert_eq!(
        file("[catalog]\nfile = \"services.toml\"", "/etc/drover"),
        PathBuf::from("/etc/drover/services.toml")
    );
    assert_eq!(
        file("[catalog]\nfile = \"apps/services.toml\"", "/srv"),
        PathBuf::from("/srv/apps/services.toml")
    );
    assert_eq!(
        file("[catalog]\nfile = \"/var/lib/apps.toml\"", "/etc/drover"),
        PathBuf::from("/var/lib/apps.toml")
    );
}

#[test]
fn load_resolves_against_the_config_files_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drover.toml");
    std::fs::write(&path, "[catalog]\nfile = \"services.toml\"\n").unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.catalog.unwrap().file, dir.path().join("services.toml"));
}

#[test]
fn load_names_the_file_in_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drover.toml");
    std::fs::write(&path, "[http]\nlisten = \"x\"\n[tcp]\nports = \"y\"\n").unwrap();
    let e = Config::load(&path).unwrap_err();
    assert_eq!(e.file, path);
    assert_eq!(paths(&e.problems), ["http.listen", "tcp.ports"]);
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("{}: 2 problems", path.display())),
        "{text}"
    );
    assert!(text.contains("\n  - http.listen = \"x\": "), "{text}");
    assert!(text.contains("\n  - tcp.ports = \"y\": "), "{text}");

    let missing = dir.path().join("absent.toml");
    let e = Config::load(&missing).unwrap_err();
    assert_eq!(e.problems.len(), 1);
    assert_eq!(
        e.to_string(),
        format!(
            "--config {}: cannot read: No such file or directory (os error 2)",
            missing.display()
        )
    );
}

/// Every file under the crate's `config/` directory stays valid: each config loads, and the
/// catalog file parses and builds without a single problem.
#[test]
fn the_files_in_the_config_dir_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "example.toml",
        "everything.toml",
        "minimal.toml",
        "services.toml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "config/{expected} is missing"
        );
    }

    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy();
        if name == "services.toml" {
            let text = std::fs::read_to_string(path).unwrap();
            let snapshot = crate::source::file::parse(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(snapshot.problems, [], "{}", path.display());
            assert!(!snapshot.apps.is_empty(), "{} lists no app", path.display());
            let catalog = crate::catalog::build(&snapshot.apps, &Groups::all());
            assert_eq!(catalog.problems, [], "{}", path.display());
            assert!(
                catalog.services.iter().all(|s| !s.backends.is_empty()),
                "{}: every example app has a task",
                path.display()
            );
            continue;
        }
        let config = Config::load(path).unwrap_or_else(|e| panic!("{e}"));
        if let Some(catalog) = &config.catalog {
            assert!(
                catalog.file.is_file(),
                "{name}: catalog file {} does not exist",
                catalog.file.display()
            );
        }
    }
}

/// `everything.toml` sets every section, so each one's syntax is checked here.
#[test]
fn everything_sets_every_section() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/everything.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.http.is_some() && c.https.is_some() && c.tcp.is_some() && c.dns.is_some());
    assert!(c.admin.is_some() && c.marathon.is_some() && c.mesos.is_some());
    assert!(c.catalog.is_some() && !c.aliases.is_empty());
}

/// `example.toml` sets every key of the sections available now, so it documents them all.
#[test]
fn example_sets_every_available_section() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let http = config.http.expect("[http]");
    assert_eq!(http.listen, addr("127.0.0.1:8080"));
    let tcp = config.tcp.expect("[tcp]");
    assert_eq!(
        tcp.ports,
        PortRange {
            first: 10000,
            last: 10100
        }
    );
    assert_eq!(
        config.admin.expect("[admin]").listen,
        addr("127.0.0.1:9090")
    );
    assert_eq!(
        config.catalog.expect("[catalog]").file,
        path.parent().unwrap().join("services.toml")
    );
    // Every listener is unprivileged, so a newcomer can run it without root.
    for port in [http.listen.port(), tcp.ports.first] {
        assert!(port >= 1024, "port {port} needs root");
    }
}

#[test]
fn ejection_defaults_and_bounds() {
    let c = parse_ok("");
    assert_eq!(c.ejection, EjectionConfig::default());
    assert_eq!(c.ejection.after, 5);
    let c = parse_ok("[ejection]\nafter = 0\nbase = \"1s\"\nmax = \"1m\"\n");
    assert_eq!(c.ejection.after, 0, "0 turns it off");
    assert_eq!(c.ejection.max, secs(60));
    let problems = parse_err("[ejection]\nafter = -1\nbase = \"1m\"\nmax = \"10s\"\n");
    assert_eq!(paths(&problems), ["ejection.after", "ejection.max"]);
}

#[test]
fn two_aliases_cannot_share_a_host_or_port() {
    let alias = |host: &str, port: u16| {
        format!(
            "[[alias]]\nhost = \"{host}\"\nport = {port}\nbackends = [\"127.0.0.1:5050\"]\ncheck = \"mesos\"\n"
        )
    };
    let text = [
        "[tcp]\n".to_string(),
        alias("mesos.example.com", 15050),
        alias("MESOS.example.com", 15051),
        alias("marathon.example.com", 15050),
    ]
    .concat();
    let problems = parse_err(&text);
    assert_eq!(paths(&problems), ["alias[1].host", "alias[2].port"]);
    assert!(problems[0].message.contains("alias[0]"), "{problems:?}");
    let ok = parse_ok(
        &[
            "[tcp]\n".to_string(),
            alias("a.example.com", 1),
            alias("b.example.com", 2),
        ]
        .concat(),
    );
    assert_eq!(ok.aliases.len(), 2);
}

#[test]
fn an_alias_port_needs_a_tcp_section() {
    let alias = "[[alias]]\nhost = \"m.example.com\"\nport = 15050\nbackends = [\"127.0.0.1:5050\"]\ncheck = \"mesos\"\n";
    let problems = parse_err(alias);
    assert_eq!(paths(&problems), ["alias[0].port"]);
    assert!(problems[0].message.contains("[tcp]"), "{problems:?}");
    let ok = parse_ok(&format!("[tcp]\nbind = \"127.0.0.1\"\n{alias}"));
    assert_eq!(ok.aliases[0].port, Some(15050));
}

#[test]
fn proxy_protocol_sources_and_the_version_sent() {
    let c = parse_ok(
        "[http]\nproxy_protocol = [\"10.0.0.0/8\", \"192.168.1.7\"]\n[tcp]\nsend_proxy_protocol = \"v1\"\n",
    );
    let http = c.http.unwrap();
    assert_eq!(http.proxy_protocol.len(), 2);
    assert!(http.proxy_protocol[1].contains("192.168.1.7".parse().unwrap()));
    assert_eq!(c.tcp.unwrap().send_proxy_protocol, Some(1));
    let problems = parse_err(
        "[http]\nproxy_protocol = [\"10.0.0.0/33\"]\n[tcp]\nsend_proxy_protocol = \"v3\"\n",
    );
    assert_eq!(
        paths(&problems),
        ["http.proxy_protocol[0]", "tcp.send_proxy_protocol"]
    );
}

#[test]
fn access_log_and_log_sections() {
    let c = parse_ok("");
    assert_eq!(c.access_log, None, "off unless asked for");
    assert_eq!(c.log, LogConfig::default());
    let c = parse_ok("[access_log]\n");
    assert_eq!(
        c.access_log,
        Some(AccessLogConfig {
            target: AccessLogTarget::Stdout,
            format: AccessLogFormat::Json
        })
    );
    let c = parse_ok(
        "[access_log]\npath = \"access.log\"\nformat = \"combined\"\n[log]\nformat = \"json\"\nlevel = \"debug,hyper=warn\"\n",
    );
    let log = c.access_log.unwrap();
    assert_eq!(log.format, AccessLogFormat::Combined);
    // Relative to the config file's directory.
    assert_eq!(
        log.target,
        AccessLogTarget::File(PathBuf::from("/etc/drover/access.log"))
    );
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.level.as_deref(), Some("debug,hyper=warn"));
    let problems = parse_err(
        "[access_log]\npath = \"\"\nformat = \"clf\"\n[log]\nformat = \"xml\"\nlevel = \"==\"\n",
    );
    assert_eq!(
        paths(&problems),
        [
            "access_log.path",
            "access_log.format",
            "log.format",
            "log.level"
        ]
    );
}

#[test]
fn udp_defaults_and_bounds() {
    let c = parse_ok("");
    assert_eq!(c.udp, UdpConfig::default());
    assert_eq!((c.udp.idle_timeout, c.udp.max_flows), (secs(30), 100_000));
    let c = parse_ok("[udp]\nidle_timeout = \"2s\"\nmax_flows = 10\n");
    assert_eq!((c.udp.idle_timeout, c.udp.max_flows), (secs(2), 10));
    let problems = parse_err("[udp]\nidle_timeout = \"0s\"\nmax_flows = 0\nflows = 1\n");
    assert_eq!(paths(&problems), ["udp.flows"], "{problems:?}");
    let problems = parse_err("[udp]\nidle_timeout = \"0s\"\nmax_flows = 0\n");
    assert_eq!(paths(&problems), ["udp.max_flows", "udp.idle_timeout"]);
}

#[test]
fn zk_urls_in_mesos_and_aliases() {
    // zk instead of masters; an alias with zk alone needs neither backends nor a check.
    let c = parse_ok(
        r#"
[mesos]
zk = "zk://127.0.0.1:2181,127.0.0.2:2181/mesos"

[[alias]]
host = "mesos.example.com"
zk = "zk://127.0.0.1:2181/mesos"

[[alias]]
host = "marathon.example.com"
backends = ["10.0.0.1:8080"]
check = "marathon"
zk = "zk://127.0.0.1:2181/marathon/leader-curator"
"#,
    );
    let mesos = c.mesos.unwrap();
    assert!(mesos.masters.is_empty());
    let zk = mesos.zk.unwrap();
    assert_eq!(
        (zk.servers.as_str(), zk.path.as_str()),
        ("127.0.0.1:2181,127.0.0.2:2181", "/mesos")
    );
    assert!(c.aliases[0].backends.is_empty());
    assert_eq!(
        c.aliases[1].zk.as_ref().map(|z| (z.url.layout, z.confirm)),
        Some((crate::zk::Layout::MarathonLatch, true))
    );
    assert!(!c.aliases[0].zk.as_ref().unwrap().confirm);
    // Without zk, masters and backends are still required; a bad URL is named.
    let p = parse_err(
        r#"
[mesos]
zk = "http://127.0.0.1:2181/mesos"

[[alias]]
host = "a.example.com"
zk = "zk://127.0.0.1:2181/mesos"
check = "mesos"

[[alias]]
host = "b.example.com"
check = "mesos"
"#,
    );
    assert_eq!(
        paths(&p),
        vec![
            "mesos.zk",
            "mesos.masters",
            "alias[0].check",
            "alias[1].backends"
        ]
    );
    assert!(p[0].to_string().contains("not a zk:// URL"), "{}", p[0]);
}
