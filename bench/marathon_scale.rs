//! The whole rebuild at cluster scale: a synthetic Marathon `/v2/apps?embed=apps.tasks`
//! body of 10,000 apps × 5 tasks (50,000 tasks) goes through the pipeline `source::marathon`
//! and `control` run on every change: `apps::decode`, `apps::to_raw_apps`,
//! `catalog::build_selected`, `routing::compile` (fresh, and against the previous table as
//! every rebuild after the first does). Issue 3's target: the whole under 200 ms and 300 MB
//! (mesos-dns needs 1.15 s and 542 MB for its records alone).
//!
//! Run: `cargo bench --bench marathon_scale`. A plain `fn main` (harness = false) that
//! prints a table and exits 0; nothing is asserted about the figures.
//!
//! Peak memory is taken first, in a fresh process: the body is generated, the kernel's
//! high-water mark is reset (`5` to `/proc/self/clear_refs`), then one full pipeline runs
//! and `VmHWM` in `/proc/self/status` is read before and after. `VmHWM` is process-wide,
//! so this runs before any timing loop. The timings are the median of `RUNS` runs.
//!
//! The task hosts are 10.x.y.z addresses: data only, nothing connects to them.

// Benches measure real time and pace real servers (clippy.toml bars these elsewhere).
#![allow(clippy::disallowed_methods)]

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use drover::catalog::{self, Catalog, RawApp, Selection};
use drover::config::{Config, Groups};
use drover::metrics::Metrics;
use drover::routing::{self, RouteTable};
use drover::source::marathon::apps::{self, ConvertOptions, HealthMemory, MarathonApp};

const APPS: usize = 10_000;
const TASKS_PER_APP: usize = 5;
const RUNS: usize = 5;

/// Every service port gets a TCP listener route, as a marathon-lb replacement runs.
const CONFIG: &str = r#"
[http]
listen = "127.0.0.1:0"

[tcp]
bind = "127.0.0.1"
ports = "10000-60000"
"#;

/// Every tenth app has no vhost (tcp mode).
fn tcp_only(i: usize) -> bool {
    i % 10 == 7
}

/// A third of the apps have a Marathon health check (and passing results).
fn health_checked(i: usize) -> bool {
    i % 3 == 0
}

/// Unique, spread over 10000-59995.
fn service_port(i: usize) -> usize {
    10_000 + i * 5
}

/// The `/v2/apps?embed=apps.tasks` body, in Marathon 1.5+'s shape (`networks`,
/// `portDefinitions`), with the fields Marathon writes whether Drover reads them or not.
fn snapshot_body() -> String {
    let mut s = String::with_capacity(APPS * 6_000);
    s.push_str("{\"apps\":[");
    for i in 0..APPS {
        let (team, m) = (i / 100, i % 100);
        let id = format!("/team-{team}/app-{m}");
        let port = service_port(i);
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            r#"{{"id":"{id}","cmd":"./run --port $PORT0","args":null,"user":null,"env":{{"LOG_LEVEL":"info"}},"instances":{TASKS_PER_APP},"cpus":0.1,"mem":128,"disk":0,"gpus":0,"executor":"","constraints":[],"uris":[],"fetch":[],"storeUrls":[],"backoffSeconds":1,"backoffFactor":1.15,"maxLaunchDelaySeconds":300,"networks":[{{"mode":"host"}}],"portDefinitions":[{{"port":{port},"protocol":"tcp","name":"http","labels":{{}}}}],"requirePorts":false,"labels":{{"HAPROXY_GROUP":"external""#
        );
        if !tcp_only(i) {
            let _ = write!(s, r#","HAPROXY_0_VHOST":"app-{m}.team-{team}.example.com""#);
        }
        s.push_str("},");
        if health_checked(i) {
            let protocol = if tcp_only(i) { "TCP" } else { "HTTP" };
            let _ = write!(
                s,
                r#""healthChecks":[{{"protocol":"{protocol}","path":"/health","portIndex":0,"gracePeriodSeconds":30,"intervalSeconds":10,"timeoutSeconds":5,"maxConsecutiveFailures":3,"ignoreHttp1xx":false,"delaySeconds":15}}],"#
            );
        } else {
            s.push_str(r#""healthChecks":[],"#);
        }
        let _ = write!(
            s,
            r#""readinessChecks":[],"dependencies":[],"upgradeStrategy":{{"minimumHealthCapacity":1,"maximumOverCapacity":1}},"unreachableStrategy":{{"inactiveAfterSeconds":0,"expungeAfterSeconds":0}},"killSelection":"YOUNGEST_FIRST","version":"2024-01-10T10:00:00.000Z","versionInfo":{{"lastScalingAt":"2024-01-10T10:00:00.000Z","lastConfigChangeAt":"2024-01-10T10:00:00.000Z"}},"tasksStaged":0,"tasksRunning":{TASKS_PER_APP},"tasksHealthy":{healthy},"tasksUnhealthy":0,"deployments":[],"tasks":["#,
            healthy = if health_checked(i) { TASKS_PER_APP } else { 0 },
        );
        for t in 0..TASKS_PER_APP {
            let n = i * TASKS_PER_APP + t + 1;
            let host = format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
            let host_port = 31_000 + n % 1_000;
            let task_id =
                format!("team-{team}_app-{m}.instance-{i:08x}-0000-0000-0000-{t:012x}._app.1");
            if t > 0 {
                s.push(',');
            }
            let _ = write!(
                s,
                r#"{{"id":"{task_id}","appId":"{id}","host":"{host}","slaveId":"agent-{n}","state":"TASK_RUNNING","ports":[{host_port}],"servicePorts":[{port}],"ipAddresses":[{{"ipAddress":"{host}","protocol":"IPv4"}}],"stagedAt":"2024-01-10T10:00:01.000Z","startedAt":"2024-01-10T10:00:03.000Z","version":"2024-01-10T10:00:00.000Z","localVolumes":[]"#
            );
            if health_checked(i) {
                let _ = write!(
                    s,
                    r#","healthCheckResults":[{{"alive":true,"consecutiveFailures":0,"firstSuccess":"2024-01-10T10:00:10.000Z","lastSuccess":"2024-01-10T10:05:00.000Z","lastFailure":null,"lastFailureCause":null,"instanceId":"{task_id}"}}]"#
                );
            }
            s.push('}');
        }
        s.push_str("]}");
    }
    s.push_str("]}");
    s
}

/// What one pass keeps, and how long each step took.
struct Pass {
    decoded: Vec<MarathonApp>,
    raw: Vec<RawApp>,
    catalog: Catalog,
    table: RouteTable,
    decode: Duration,
    convert: Duration,
    build: Duration,
    compile: Duration,
}

struct Env {
    config: Config,
    metrics: Metrics,
    selection: Selection,
    options: ConvertOptions,
}

impl Env {
    fn new() -> Env {
        Env {
            config: Config::parse(CONFIG, Path::new(".")).expect("the bench config is valid"),
            metrics: Metrics::new(prometheus::Registry::new()),
            // `[marathon]`'s defaults: group `external`, not strict.
            selection: Selection {
                groups: Groups(vec!["external".into()]),
                strict: false,
            },
            options: ConvertOptions::default(),
        }
    }

    /// decode → to_raw_apps → build_selected → compile against `previous`.
    fn pass(
        &self,
        body: &[u8],
        memory: &mut HealthMemory,
        previous: &RouteTable,
        version: u64,
    ) -> Pass {
        let t = Instant::now();
        let decoded = apps::decode(body).expect("the synthetic body decodes");
        let decode = t.elapsed();

        let t = Instant::now();
        let (raw, problems) = apps::to_raw_apps(&decoded, memory, &self.options);
        let convert = t.elapsed();
        assert!(problems.is_empty(), "conversion problems: {problems:?}");

        let t = Instant::now();
        let catalog = catalog::build_selected(&raw, &self.selection);
        let build = t.elapsed();

        let t = Instant::now();
        let stats = |name: &str| self.metrics.route_stats(name);
        let table = routing::compile(&catalog, &self.config, version, previous, &stats);
        let compile = t.elapsed();

        Pass {
            decoded,
            raw,
            catalog,
            table,
            decode,
            convert,
            build,
            compile,
        }
    }
}

/// `VmHWM` and `VmRSS` from /proc/self/status, in KiB.
fn vm() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Resets `VmHWM` to the current RSS (Linux 4.0+). False when the kernel refuses.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // Criterion-style arguments (`--bench`) are passed by `cargo bench`; there are no options.
    let t = Instant::now();
    let body = snapshot_body();
    let generated = t.elapsed();
    let env = Env::new();

    // --- Peak memory: one full pipeline, first thing, in this fresh process. ---
    let reset = reset_peak();
    let (hwm0, rss0) = vm();
    let mut memory = HealthMemory::new();
    let first = env.pass(body.as_bytes(), &mut memory, &RouteTable::default(), 1);
    let (hwm1, rss1) = vm();
    let services = first.catalog.services.len();
    let backends: usize = first
        .table
        .routes
        .iter()
        .map(|r| r.pool.backends().len())
        .sum();
    let vhosts = first.table.vhosts().len();
    let ports = first.table.tcp_routes().count();
    let raw_tasks: usize = first.raw.iter().map(|a| a.tasks.len()).sum();
    let conflicts = first.table.conflicts.len();
    let problems = first.table.problems.len();
    // What stays after a change: the snapshot's raw apps and the table (control drops the
    // catalog; sync drops the body and the decoded apps).
    let Pass {
        decoded,
        raw,
        catalog,
        table,
        ..
    } = first;
    drop(decoded);
    drop(catalog);
    let (_, rss_kept) = vm();

    // --- Timings: median of RUNS passes of each step. ---
    let mut memory = HealthMemory::new();
    let mut previous = table;
    let mut decode = Vec::new();
    let mut convert = Vec::new();
    let mut build = Vec::new();
    let mut fresh = Vec::new();
    let mut rebuild = Vec::new();
    let mut total_fresh = Vec::new();
    let mut total_rebuild = Vec::new();
    let mut drops = Vec::new();
    let mut parse_only = Vec::new();
    for run in 0..RUNS {
        // serde_json's parse of the same body, keeping nothing: the floor under decode.
        let t = Instant::now();
        serde_json::from_slice::<serde::de::IgnoredAny>(body.as_bytes())
            .expect("the synthetic body parses");
        parse_only.push(t.elapsed());

        let version = 2 + 2 * run as u64;
        let p = env.pass(
            body.as_bytes(),
            &mut memory,
            &RouteTable::default(),
            version,
        );
        let t = Instant::now();
        let again = routing::compile(
            &p.catalog,
            &env.config,
            version + 1,
            &previous,
            &|name: &str| env.metrics.route_stats(name),
        );
        let r = t.elapsed();
        let pipeline = p.decode + p.convert + p.build;
        decode.push(p.decode);
        convert.push(p.convert);
        build.push(p.build);
        fresh.push(p.compile);
        rebuild.push(r);
        total_fresh.push(pipeline + p.compile);
        total_rebuild.push(pipeline + r);
        let t = Instant::now();
        drop(p.decoded);
        drop(p.catalog);
        drop(p.table);
        drop(std::mem::replace(&mut previous, again));
        drops.push(t.elapsed());
    }
    drop(raw);

    println!(
        "marathon_scale: {APPS} apps x {TASKS_PER_APP} tasks = {} tasks; {services} services, \
         {backends} backends, {vhosts} vhosts, {ports} TCP ports, {conflicts} conflicts, \
         {problems} problems ({raw_tasks} serving tasks after conversion)",
        APPS * TASKS_PER_APP
    );
    println!(
        "body: {:.1} MiB of JSON ({} bytes), generated in {:.0} ms",
        body.len() as f64 / (1024.0 * 1024.0),
        body.len(),
        ms(generated)
    );
    println!();
    println!("| step (median of {RUNS}) | ms |");
    println!("| --- | ---: |");
    let rows = [
        (
            "(serde_json parse alone, IgnoredAny: the floor under decode)",
            median(parse_only),
        ),
        ("apps::decode", median(decode)),
        ("apps::to_raw_apps", median(convert)),
        ("catalog::build_selected", median(build)),
        ("routing::compile, fresh", median(fresh)),
        ("routing::compile, against previous", median(rebuild)),
        ("total, first table (fresh)", median(total_fresh)),
        ("total, a rebuild (against previous)", median(total_rebuild)),
        ("drop decoded + catalog + tables", median(drops)),
    ];
    for (name, d) in rows {
        println!("| {name} | {:.1} |", ms(d));
    }
    println!();
    println!("| memory (one pipeline, first thing in the process) | MiB |");
    println!("| --- | ---: |");
    println!("| VmRSS before (body held) | {:.1} |", mib(rss0));
    println!("| VmHWM before | {:.1} |", mib(hwm0));
    println!("| VmHWM after | {:.1} |", mib(hwm1));
    println!(
        "| **peak delta (VmHWM after - before)** | {:.1} |",
        mib(hwm1.saturating_sub(hwm0))
    );
    println!("| VmRSS after, everything alive | {:.1} |", mib(rss1));
    println!(
        "| VmRSS after, decoded + catalog dropped | {:.1} |",
        mib(rss_kept)
    );
    if !reset {
        println!(
            "(could not reset VmHWM through /proc/self/clear_refs: \"before\" includes \
             generating the body)"
        );
    }
}
