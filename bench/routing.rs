//! Benches of the functions every request or connection runs, plus the rebuild that bounds
//! reload latency. Run: `cargo bench --bench routing` (add `-- --quick` for a fast pass).
//!
//! Why each group exists:
//! - `lookup_http`: `RouteTable::lookup_http` runs once per HTTP request, before anything
//!   else. It must stay a hash lookup whatever the table size (10 vs 1,000 vhosts), must not
//!   allocate for an already-normal `Host` (lowercase, with or without `:port`), and the
//!   uncommon mixed-case host shows what the lowercasing copy costs. A miss (unknown Host →
//!   404) must be as cheap as a hit, since scanners send many. The `paths` variants put four
//!   path prefixes on every vhost: the prefix scan is linear, longest first.
//! - `pick`: `Pool::pick` runs once per request (HTTP) or connection (TCP). Round robin,
//!   random and source are O(1); leastconn scans the pool, so it is measured at 4 and 32
//!   backends to show how it grows.
//! - `compile`: `routing::compile` is off the hot path, but every catalog or config change
//!   pays it before the new table is stored, so it bounds how fast a change reaches traffic.
//!   Measured for 1,000 services from scratch (first table) and against the previous table
//!   (the usual reload: backend state is looked up and reused). `catalog_build` is the step
//!   before it on the same reload.
//! - `h1_scan`: the HTTP/1 guard's `Scanner::process` runs over every request head (and
//!   body) a client sends before hyper parses it: a load tool's short head, a browser's
//!   head of about 500 bytes, and a small POST with its body.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use drover::catalog::{self, Balance, Catalog, RawApp, RawTask};
use drover::config::{Config, Groups};
use drover::metrics::Metrics;
use drover::routing::pool::{Backend, Pool};
use drover::routing::{self, RouteTable};

/// Path prefixes given to every vhost in the `paths` tables (plus the root route).
const PREFIXES: [&str; 3] = ["/api/v2", "/api", "/static"];

/// The config the benches compile under: an HTTP router and TCP listeners on every service
/// port, as a marathon-lb replacement runs.
const CONFIG: &str = r#"
[http]
listen = "127.0.0.1:0"

[tcp]
bind = "127.0.0.1"
ports = "10000-30000"
"#;

fn config() -> Config {
    Config::parse(CONFIG, Path::new(".")).expect("the bench config is valid")
}

fn metrics() -> Metrics {
    Metrics::new(prometheus::Registry::new())
}

/// One app with `tasks` running tasks on 10.x addresses.
fn app(id: String, labels: &[(&str, String)], port: u16, tasks: usize) -> RawApp {
    RawApp {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        ports: vec![port],
        tasks: (0..tasks)
            .map(|t| RawTask {
                id: format!("{id}.{t}"),
                host: format!("10.0.{}.{}", port % 250, t + 1),
                ports: vec![31000 + t as u16],
                state: "TASK_RUNNING".into(),
                healthy: None,
            })
            .collect(),
        id,
        ..RawApp::default()
    }
}

/// `n` vhosts `app-I.bench.test`, each on its own service port with 4 tasks. With `paths`,
/// each vhost also gets one app per prefix in `PREFIXES`.
fn catalog(n: usize, paths: bool) -> Catalog {
    let mut apps = Vec::new();
    let mut port = 10000u16;
    for i in 0..n {
        let vhost = format!("app-{i}.bench.test");
        apps.push(app(
            format!("/bench/app-{i}"),
            &[("HAPROXY_0_VHOST", vhost.clone())],
            port,
            4,
        ));
        port += 1;
        if paths {
            for (p, prefix) in PREFIXES.iter().enumerate() {
                apps.push(app(
                    format!("/bench/app-{i}-p{p}"),
                    &[
                        ("HAPROXY_0_VHOST", vhost.clone()),
                        ("HAPROXY_0_PATH", prefix.to_string()),
                    ],
                    port,
                    4,
                ));
                port += 1;
            }
        }
    }
    let c = catalog::build(&apps, &Groups::all());
    assert!(c.problems.is_empty(), "bench catalog: {:?}", c.problems);
    c
}

fn table(catalog: &Catalog) -> RouteTable {
    let m = metrics();
    let stats = |name: &str| m.route_stats(name);
    let t = routing::compile(catalog, &config(), 1, &RouteTable::default(), &stats);
    assert!(t.conflicts.is_empty(), "bench table: {:?}", t.conflicts);
    t
}

fn bench_lookup_http(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup_http");
    for n in [10usize, 1000] {
        for paths in [false, true] {
            let t = table(&catalog(n, paths));
            let mid = n / 2;
            let lower = format!("app-{mid}.bench.test");
            let mixed = format!("App-{mid}.Bench.TEST:8080");
            let miss = format!("app-{mid}.unknown.test");
            // With prefixes, "/about" falls through every prefix to the root route: the
            // longest scan. Without them there is only the root route.
            let path = if paths { "/about" } else { "/index.html" };
            assert!(t.lookup_http(&lower, path).is_some());
            assert!(t.lookup_http(&mixed, path).is_some());
            assert!(t.lookup_http(&miss, path).is_none());
            let kind = if paths { "paths" } else { "plain" };
            for (case, host) in [
                ("hit_lower", &lower),
                ("hit_mixed_port", &mixed),
                ("miss", &miss),
            ] {
                g.bench_with_input(
                    BenchmarkId::new(format!("{n}/{kind}"), case),
                    host.as_str(),
                    |b, host| b.iter(|| t.lookup_http(black_box(host), black_box(path)).is_some()),
                );
            }
            if paths {
                // The longest prefix, first in the scan.
                g.bench_function(BenchmarkId::new(format!("{n}/paths"), "hit_prefix"), |b| {
                    b.iter(|| {
                        t.lookup_http(black_box(&lower), black_box("/api/v2/users"))
                            .is_some()
                    })
                });
            }
        }
    }
    g.finish();
}

fn pool(n: usize, balance: Balance) -> Pool {
    let backends = (0..n)
        .map(|i| {
            let addr = SocketAddr::from(([10, 0, 0, 1], 31000 + i as u16));
            Arc::new(Backend::new(addr))
        })
        .collect();
    Pool::new(backends, balance, None)
}

fn bench_pick(c: &mut Criterion) {
    let mut g = c.benchmark_group("pick");
    let client = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20));
    let cases = [
        ("roundrobin", Balance::RoundRobin, 4),
        ("leastconn", Balance::LeastConn, 4),
        ("leastconn", Balance::LeastConn, 32),
        ("random", Balance::Random, 4),
        ("source", Balance::Source, 4),
    ];
    for (name, balance, n) in cases {
        let p = pool(n, balance);
        // Some requests in flight, unevenly, so leastconn compares real counts.
        let _busy: Vec<_> = p
            .backends()
            .iter()
            .enumerate()
            .flat_map(|(i, b)| (0..i % 3).map(move |_| b.start()))
            .collect();
        g.bench_function(BenchmarkId::new(name, n), |b| {
            b.iter(|| p.pick(black_box(client)))
        });
    }
    g.finish();
}

fn bench_compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(20);
    let (config, metrics) = (config(), metrics());
    let stats = |name: &str| metrics.route_stats(name);
    let cat = catalog(1000, false);
    let previous = routing::compile(&cat, &config, 1, &RouteTable::default(), &stats);
    g.bench_function("1000_services/fresh", |b| {
        b.iter(|| routing::compile(black_box(&cat), &config, 2, &RouteTable::default(), &stats))
    });
    g.bench_function("1000_services/reload", |b| {
        b.iter(|| routing::compile(black_box(&cat), &config, 2, &previous, &stats))
    });
    let apps: Vec<RawApp> = (0..1000)
        .map(|i| {
            app(
                format!("/bench/app-{i}"),
                &[("HAPROXY_0_VHOST", format!("app-{i}.bench.test"))],
                10000 + i as u16,
                4,
            )
        })
        .collect();
    g.bench_function("catalog_build/1000_apps", |b| {
        b.iter(|| catalog::build(black_box(&apps), &Groups::all()))
    });
    g.finish();
}

fn bench_h1_scan(c: &mut Criterion) {
    use drover::config::UnderscoreHeaders;
    use drover::proxy::h1_scan::{Limits, Scanner};
    let limits = Limits {
        max_head: 64 * 1024,
        max_request_line: 8 * 1024,
        max_headers: 100,
        underscores: UnderscoreHeaders::Pass,
    };
    let short = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n".to_vec();
    let browser = b"GET /shop/cart?item=42&ref=home HTTP/1.1\r\nHost: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n\
Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n\
Connection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\n\r\n"
        .to_vec();
    let post = b"POST /api/v2/items HTTP/1.1\r\nHost: api.example.com\r\n\
Content-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"name\":\"widget\",\"count\":3}"
        .to_vec();
    let mut group = c.benchmark_group("h1_scan");
    for (name, head) in [("short", &short), ("browser", &browser), ("post", &post)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut scanner = Scanner::new(limits);
                black_box(scanner.process(black_box(head)))
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_lookup_http,
    bench_pick,
    bench_compile,
    bench_h1_scan
);
criterion_main!(benches);
