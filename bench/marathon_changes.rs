//! Route changes at cluster scale (issue 17): a Marathon of 10,000 apps × 5 tasks (the
//! shapes of `marathon_scale`), and how fast one app's change reaches the route table now
//! that an event re-reads its app alone and `control` patches the table. Run:
//! `cargo bench --features sim --bench marathon_changes`. Environment: `CHANGES_APPS`
//! (10000), `CHANGES_TASKS` (5), `CHANGES_ROUNDS` (100). A plain `fn main` (harness = false)
//! that prints a table and exits 0; nothing is asserted about the figures.
//!
//! End to end: the fake Marathon of `drover::sim` runs in a child process (this binary again,
//! with `CHANGES_FAKE=1`, driven by JSON lines on its stdin; it answers from bytes encoded
//! when each app is set, as a real Marathon's encoding is not Drover's time), so the
//! resident memory read from `/proc/self/status` is Drover's (started in this process with `Server::start`, one
//! worker, `[http]` only: 10,000 service-port listeners would measure the kernel). Reported:
//! start to ready and RSS after the start; per round, one app gains a task (the app is
//! changed in the fake, then `TASK_RUNNING` pushed: latency to the first table whose pool for
//! that app's vhost holds it) and loses it again (`TASK_KILLED`: latency to the first table
//! without it); a resync (`Reread`, as SIGHUP) after a silent change, to the table that
//! shows it; RSS after the rounds and the peak (`VmHWM`). With `CHANGES_LOAD_SECS=N` (and
//! `wrk` installed), the fake also answers HTTP on every task address (port 31000 on all
//! addresses) and wrk's requests/s through Drover to one app is measured for N seconds without
//! changes, then for N seconds while other apps change 10 times a second.
//!
//! Then the patch itself, in process: one app changed in a 10,000-app table, `routing::patch`
//! against the full `catalog::build_selected` + `routing::compile` it replaces.

// Benches measure real time and pace real servers (clippy.toml bars these elsewhere).
#![allow(clippy::disallowed_methods)]

#[path = "latency.rs"]
mod latency;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use drover::catalog::cluster::MarathonOnlyApp;
use drover::catalog::{self, RawApp, RawTask, Selection};
use drover::config::{Config, Groups};
use drover::dns::records;
use drover::dns::zone::{Lookup, QueryType, RecordData, RecordType, ZoneOptions};
use drover::metrics::Metrics;
use drover::routing::{self, RouteTable};
use drover::server::Server;
use drover::sim::marathon::{self, FakeMarathon, FakeTask};

const POLL: Duration = Duration::from_micros(200);
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

// === the cluster ===

fn app_id(i: usize) -> String {
    format!("/team-{}/app-{}", i / 100, i % 100)
}

fn vhost(i: usize) -> String {
    format!("app-{}.team-{}.example.com", i % 100, i / 100)
}

/// A loopback address per task (data only: nothing connects to it).
fn task_addr(i: usize, n: usize) -> SocketAddr {
    let k = i * 8 + n;
    SocketAddr::from(([127, (k >> 16) as u8, (k >> 8) as u8, k as u8], 31000))
}

fn tasks(i: usize, per_app: usize) -> Vec<FakeTask> {
    (0..per_app)
        .map(|n| FakeTask::new(&marathon::task_id(&app_id(i), n as u32), task_addr(i, n)))
        .collect()
}

fn app_json(i: usize, tasks: &[FakeTask]) -> Value {
    let vhost = vhost(i);
    let labels = [("HAPROXY_GROUP", "external"), ("HAPROXY_0_VHOST", &vhost)];
    marathon::app(&app_id(i), &labels, 10_000 + i as u16 % 50_000, tasks)
}

// === the fake Marathon, in a child process ===

/// Serves the cluster and applies `{"set_app": ...}` / `{"push": ...}` lines from stdin;
/// ends at the end of stdin.
fn fake_marathon() -> Result<(), String> {
    let (apps, per_app) = (
        latency::env_or("CHANGES_APPS", 10_000),
        latency::env_or("CHANGES_TASKS", 5),
    );
    let rt = latency::fakes_runtime()?;
    let fake = rt.block_on(FakeMarathon::start());
    let list: Vec<Value> = (0..apps).map(|i| app_json(i, &tasks(i, per_app))).collect();
    fake.set_apps(marathon::apps_json(&list));
    if std::env::var_os("CHANGES_LOAD_SECS").is_some() {
        rt.spawn(answer_every_task());
    }
    println!("{}", fake.url());
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let command: Value = serde_json::from_str(&line).map_err(|e| format!("{line}: {e}"))?;
        if let Some(app) = command.get("set_app") {
            fake.set_app(app.clone());
        }
        if let Some(event) = command.get("push") {
            fake.push(event.clone());
        }
    }
    Ok(())
}

/// Every task address is 127.x.y.z:31000: one listener on the port answers them all, with a
/// small keep-alive `200` per request, for the loaded-router phase.
async fn answer_every_task() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(listener) = tokio::net::TcpListener::bind(("0.0.0.0", 31000)).await else {
        eprintln!("marathon_changes: port 31000 is taken (by another backend, or the loaded phase gets errors)");
        return;
    };
    while let Ok((mut conn, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut seen = Vec::new();
            while let Ok(n @ 1..) = conn.read(&mut buf).await {
                seen.extend_from_slice(&buf[..n]);
                // One answer per complete request head (GETs without bodies).
                while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                    seen.drain(..end + 4);
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";
                    if conn.write_all(reply).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

/// The parent's end of the fake.
struct Fake {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    url: String,
}

impl Fake {
    fn spawn() -> Result<Fake, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
        let mut child = Command::new(exe)
            .env("CHANGES_FAKE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn the fake: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let mut url = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?)
            .read_line(&mut url)
            .map_err(|e| format!("the fake's url: {e}"))?;
        Ok(Fake {
            child,
            stdin,
            url: url.trim().to_string(),
        })
    }

    fn send(&mut self, command: Value) -> Result<(), String> {
        writeln!(self.stdin, "{command}").map_err(|e| format!("to the fake: {e}"))
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === measuring ===

/// `VmRSS` and `VmHWM` of this process, in MB.
fn rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The A-record name of app `i` in the zone (`[dns] domain = "mesos"`).
fn dns_name(i: usize) -> String {
    let app = MarathonOnlyApp {
        id: app_id(i),
        tasks: Vec::new(),
    };
    let options = ZoneOptions::mesos_dns_defaults("mesos");
    format!(
        "{}.marathon.mesos.",
        records::marathon_app_label(&app, &options.records)
    )
}

/// Whether the zone in use answers `name` with `addr`'s IP.
fn in_zone(server: &Server, name: &str, addr: SocketAddr) -> bool {
    let Some(zone) = server.view().zone.load_full() else {
        return false;
    };
    let IpAddr::V4(ip) = addr.ip() else {
        return false;
    };
    match zone.lookup(name, QueryType::Record(RecordType::A)) {
        Lookup::Found { answers, .. } => answers.iter().any(|r| r.data == RecordData::A(ip)),
        _ => false,
    }
}

/// Whether the pool behind `host` holds `addr`.
fn routed(server: &Server, host: &str, addr: SocketAddr) -> bool {
    let table = server.view().routes.load();
    table
        .lookup_http(host, "/")
        .is_some_and(|r| r.pool.backends().iter().any(|b| b.addr == addr))
}

fn main() -> ExitCode {
    let result = if std::env::var_os("CHANGES_FAKE").is_some() {
        fake_marathon()
    } else {
        end_to_end().and_then(|()| patch_alone())
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("marathon_changes: {e}");
            ExitCode::FAILURE
        }
    }
}

fn end_to_end() -> Result<(), String> {
    let (apps, per_app) = (
        latency::env_or("CHANGES_APPS", 10_000),
        latency::env_or("CHANGES_TASKS", 5),
    );
    let rounds = latency::env_or("CHANGES_ROUNDS", 100);
    let mut fake = Fake::spawn()?;
    let config = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n[marathon]\nurls = [\"{}\"]\ngroups = [\"external\"]\n\n\
         [runtime]\nworkers = 1\ndrain_timeout = \"1s\"\n\n\
         [dns]\nlisten = \"127.0.0.1:0\"\ndomain = \"mesos\"\n",
        fake.url
    );
    let start = Instant::now();
    let server = latency::start_drover(&config)?;
    let ready = latency::until(start, SETUP_TIMEOUT, POLL, || {
        server.view().routes.is_ready() && server.view().zone.load().is_some()
    })
    .ok_or("Drover did not get ready in time")?;
    // The read that follows the event stream's opening.
    std::thread::sleep(Duration::from_secs(3));
    let (rss_start, _) = rss_mb();

    let (mut adds, mut kills) = (Vec::new(), Vec::new());
    let (mut add_timeouts, mut kill_timeouts) = (0, 0);
    let (mut dns_adds, mut dns_kills) = (Vec::new(), Vec::new());
    let (mut dns_add_timeouts, mut dns_kill_timeouts) = (0, 0);
    for round in 0..rounds {
        let i = (round * 7919) % apps;
        let (id, host) = (app_id(i), vhost(i));
        let mut with = tasks(i, per_app);
        let new_id = marathon::task_id(&id, 1000 + round as u32);
        let addr = task_addr(i, 7);
        with.push(FakeTask::new(&new_id, addr));
        fake.send(json!({ "set_app": app_json(i, &with) }))?;
        let ip = addr.ip().to_string();
        let pushed = Instant::now();
        let running = marathon::status_update(&id, &new_id, "TASK_RUNNING", &ip, addr.port());
        fake.send(json!({ "push": running }))?;
        match latency::until(pushed, ROUND_TIMEOUT, POLL, || routed(&server, &host, addr)) {
            Some(d) => adds.push(d),
            None => add_timeouts += 1,
        }
        let name = dns_name(i);
        match latency::until(pushed, ROUND_TIMEOUT, POLL, || {
            in_zone(&server, &name, addr)
        }) {
            Some(d) => dns_adds.push(d),
            None => dns_add_timeouts += 1,
        }
        let killed = marathon::status_update(&id, &new_id, "TASK_KILLED", &ip, addr.port());
        let pushed = Instant::now();
        fake.send(json!({ "push": killed }))?;
        fake.send(json!({ "set_app": app_json(i, &tasks(i, per_app)) }))?;
        match latency::until(pushed, ROUND_TIMEOUT, POLL, || {
            !routed(&server, &host, addr)
        }) {
            Some(d) => kills.push(d),
            None => kill_timeouts += 1,
        }
        match latency::until(pushed, ROUND_TIMEOUT, POLL, || {
            !in_zone(&server, &name, addr)
        }) {
            Some(d) => dns_kills.push(d),
            None => dns_kill_timeouts += 1,
        }
        // Past the per-app debounce, so rounds do not coalesce.
        std::thread::sleep(Duration::from_millis(120));
    }
    let (rss_after, _) = rss_mb();

    // A change no event announces, found by a full re-read.
    let i = apps / 2;
    let addr = task_addr(i, 6);
    let mut with = tasks(i, per_app);
    with.push(FakeTask::new(&marathon::task_id(&app_id(i), 999_999), addr));
    fake.send(json!({ "set_app": app_json(i, &with) }))?;
    std::thread::sleep(Duration::from_millis(200));
    let asked = Instant::now();
    server.view().reread.request();
    let resync = latency::until(asked, SETUP_TIMEOUT, POLL, || {
        routed(&server, &vhost(i), addr)
    });
    let (_, peak) = rss_mb();
    let loaded = loaded_router(&server, &mut fake, apps, per_app)?;

    println!("marathon_changes: {apps} apps x {per_app} tasks, {rounds} rounds");
    println!("start to ready        {:>9} ms", latency::ms(ready));
    println!(
        "resync to routed      {:>9} ms",
        resync.map_or("-".into(), latency::ms)
    );
    println!(
        "RSS after start {rss_start:.0} MB, after {rounds} changes {rss_after:.0} MB ({:.2}x), peak {peak:.0} MB",
        rss_after / rss_start
    );
    println!(
        "{:<8} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "timeouts"
    );
    latency::row("add", &adds, add_timeouts);
    latency::row("kill", &kills, kill_timeouts);
    latency::row("dns add", &dns_adds, dns_add_timeouts);
    latency::row("dns kill", &dns_kills, dns_kill_timeouts);
    if let Some((quiet, changing, changes)) = loaded {
        println!(
            "loaded router: {quiet:.0} req/s without changes, {changing:.0} req/s while {changes} changes were applied ({:.3}x)",
            changing / quiet
        );
    }
    server.shutdown();
    let _ = server.wait();
    Ok(())
}

/// With `CHANGES_LOAD_SECS` set (and `wrk` on the PATH): wrk's requests/s through Drover to
/// one app, for that many seconds without changes and then while other apps change 10 times
/// a second (a task added, then killed). `None` when not asked for.
fn loaded_router(
    server: &Server,
    fake: &mut Fake,
    apps: usize,
    per_app: usize,
) -> Result<Option<(f64, f64, usize)>, String> {
    let Some(secs) = std::env::var("CHANGES_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return Ok(None);
    };
    let http = server.http_addr().ok_or("no [http] listener")?;
    let wrk = |secs: u64| {
        Command::new("wrk")
            .args([
                "-t1",
                "-c32",
                &format!("-d{secs}s"),
                "-H",
                &format!("Host: {}", vhost(0)),
            ])
            .arg(format!("http://{http}/"))
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("wrk: {e}"))
    };
    let rate = |child: std::process::Child| -> Result<f64, String> {
        let out = child.wait_with_output().map_err(|e| format!("wrk: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no Requests/sec in wrk's output: {text}"))
    };
    let fake_stat = format!("/proc/{}/stat", fake.child.id());
    let fake_cpu = || stat_cpu_secs(&fake_stat).1;
    let cpu_before = process_cpu_secs();
    let threads_before = thread_cpu_secs();
    let fake_before = fake_cpu();
    let quiet = rate(wrk(secs)?)?;
    let cpu_quiet = process_cpu_secs() - cpu_before;
    let threads_quiet = minus(thread_cpu_secs(), &threads_before);
    let fake_quiet = fake_cpu() - fake_before;
    let load = wrk(secs)?;
    let cpu_before = process_cpu_secs();
    let threads_before = thread_cpu_secs();
    let fake_before = fake_cpu();
    let started = Instant::now();
    let mut changes = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        // Apps 1.. change; app 0 carries the load.
        let i = 1 + (changes / 2 * 7919) % (apps - 1);
        let (id, addr) = (app_id(i), task_addr(i, 7));
        let task = marathon::task_id(&id, 5000 + changes as u32 / 2);
        let ip = addr.ip().to_string();
        let mut list = tasks(i, per_app);
        if changes % 2 == 0 {
            list.push(FakeTask::new(&task, addr));
            fake.send(json!({ "set_app": app_json(i, &list) }))?;
            let event = marathon::status_update(&id, &task, "TASK_RUNNING", &ip, addr.port());
            fake.send(json!({ "push": event }))?;
        } else {
            let event = marathon::status_update(&id, &task, "TASK_KILLED", &ip, addr.port());
            fake.send(json!({ "push": event }))?;
            fake.send(json!({ "set_app": app_json(i, &list) }))?;
        }
        changes += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let changing = rate(load)?;
    let cpu_changing = process_cpu_secs() - cpu_before;
    let threads_changing = minus(thread_cpu_secs(), &threads_before);
    let fake_changing = fake_cpu() - fake_before;
    // This process is Drover (and the idle main thread): its CPU per request says whether
    // the changes cost Drover or the machine.
    let per_request = |cpu: f64, rps: f64| cpu * 1e6 / (rps * secs as f64);
    println!(
        "loaded router: Drover's CPU per request {:.1} µs without changes, {:.1} µs with ({:.2} s and {:.2} s of CPU)",
        per_request(cpu_quiet, quiet),
        per_request(cpu_changing, changing),
        cpu_quiet,
        cpu_changing
    );
    // Which of Drover's threads the changes cost (threads that ended are in neither).
    let names: BTreeSet<&String> = threads_quiet
        .keys()
        .chain(threads_changing.keys())
        .collect();
    let by_thread: Vec<String> = names
        .into_iter()
        .map(|name| {
            let at = |m: &BTreeMap<String, f64>| m.get(name).copied().unwrap_or(0.0);
            format!(
                "{name} {:.2} -> {:.2}",
                at(&threads_quiet),
                at(&threads_changing)
            )
        })
        .collect();
    println!(
        "loaded router: CPU s by thread, without -> with changes: {}; the fake (Marathon and backend) {fake_quiet:.2} -> {fake_changing:.2}",
        by_thread.join(", ")
    );
    Ok(Some((quiet, changing, changes)))
}

/// User + system CPU seconds of each of this process's threads so far, summed by thread
/// name (`/proc/self/task/*/stat`).
fn thread_cpu_secs() -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let (name, secs) = stat_cpu_secs(task.path().join("stat"));
        *by_name.entry(name).or_insert(0.0) += secs;
    }
    by_name
}

fn minus(after: BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .into_iter()
        .map(|(name, t)| {
            let was = before.get(&name).copied().unwrap_or(0.0);
            (name, (t - was).max(0.0))
        })
        .collect()
}

/// User + system CPU seconds of this process so far.
fn process_cpu_secs() -> f64 {
    stat_cpu_secs("/proc/self/stat").1
}

/// The name and user + system CPU seconds a `/proc/.../stat` file gives (`("?", 0.0)` when
/// it cannot be read).
fn stat_cpu_secs(path: impl AsRef<std::path::Path>) -> (String, f64) {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let Some((head, rest)) = stat.rsplit_once(") ") else {
        return ("?".to_string(), 0.0);
    };
    let name = head.split_once(" (").map_or("?", |(_, n)| n).to_string();
    (name, cpu_ticks(rest) / 100.0)
}

/// utime + stime in clock ticks, from the part of a `stat` line after the name.
fn cpu_ticks(after_name: &str) -> f64 {
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of /proc/PID/stat (utime, stime), counted from the state field (3).
    ticks(11) + ticks(12)
}

// === the patch alone ===

fn raw_app(i: usize, per_app: usize) -> RawApp {
    RawApp {
        id: app_id(i),
        labels: [
            ("HAPROXY_GROUP".to_string(), "external".to_string()),
            ("HAPROXY_0_VHOST".to_string(), vhost(i)),
        ]
        .into(),
        ports: vec![10_000 + i as u16 % 50_000],
        tasks: (0..per_app)
            .map(|n| {
                let addr = task_addr(i, n);
                RawTask {
                    id: format!("{}.{n}", app_id(i)),
                    host: addr.ip().to_string(),
                    ports: vec![addr.port()],
                    state: "TASK_RUNNING".into(),
                    healthy: None,
                }
            })
            .collect(),
        ..RawApp::default()
    }
}

fn patch_alone() -> Result<(), String> {
    let (apps, per_app) = (
        latency::env_or("CHANGES_APPS", 10_000),
        latency::env_or("CHANGES_TASKS", 5),
    );
    let rounds = latency::env_or("CHANGES_ROUNDS", 100);
    let config = Config::parse(
        "[http]\nlisten = \"127.0.0.1:0\"\n",
        std::path::Path::new("."),
    )
    .map_err(|e| format!("config: {e:?}"))?;
    let metrics = Metrics::new(prometheus::Registry::new());
    let stats = |name: &str| metrics.route_stats(name);
    let selection = Selection {
        groups: Groups::all(),
        strict: false,
    };
    let mut raw: Vec<RawApp> = (0..apps).map(|i| raw_app(i, per_app)).collect();
    let catalog = catalog::build_selected(&raw, &selection);
    let mut table = routing::compile(&catalog, &config, 1, &RouteTable::default(), &stats);
    let (mut patches, mut fulls) = (Vec::new(), Vec::new());
    for round in 0..rounds.min(30) {
        let i = (round * 7919) % apps;
        raw[i].tasks.push(RawTask {
            id: format!("{}.extra{round}", app_id(i)),
            host: "127.0.0.1".into(),
            ports: vec![40_000 + round as u16],
            state: "TASK_RUNNING".into(),
            healthy: None,
        });
        let version = round as u64 + 2;
        let started = Instant::now();
        let services = catalog::build_app(&raw[i], &selection).services;
        let changed = BTreeSet::from([raw[i].id.as_str()]);
        let patched = routing::patch(
            &table,
            &changed,
            &services,
            Vec::new(),
            &config,
            version,
            &stats,
        )
        .ok_or("the patch was refused")?;
        patches.push(started.elapsed());
        let started = Instant::now();
        let catalog = catalog::build_selected(&raw, &selection);
        let full = routing::compile(&catalog, &config, version, &table, &stats);
        fulls.push(started.elapsed());
        drop(full);
        table = patched;
    }
    println!("one app changed in a {apps}-app table (in process):");
    println!(
        "{:<8} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "timeouts"
    );
    latency::row("patch", &patches, 0);
    latency::row("full", &fulls, 0);
    Ok(())
}
