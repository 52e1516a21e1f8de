//! Master-alias failover and the cost of leader probes (issue 4). Run:
//! `cargo bench --bench failover` (about 60 s; `FAILOVER_MOVES=N` moves, default 10;
//! `FAILOVER_CPU_SECS=S` seconds of CPU sampling, default 20; `FAILOVER_ALIASES=A` aliases
//! for the CPU part, default 100).
//!
//! The fake masters of `drover::sim` (the set the integration tests and the demo use; one
//! set per alias, on 127.0.0.1:0, on their own runtime whose threads are named
//! `fake-masters`) answer `GET /metrics/snapshot` with `"master/elected": 1.0` on the leader
//! of their set and 0.0 elsewhere, and every other request with a page naming the master and
//! whether it led when it answered (`master 2 of 3 (leader): GET /master/tasks`). A Drover
//! started with `Server::start` (1 worker, `check = "mesos"`, `interval = "1s"`) fronts them.
//!
//! (a) Failover: one alias over 3 masters. Each move waits a random fraction of the probe
//!     interval (so moves land at every phase of the probe ticks), moves leadership on the
//!     fakes, and polls through Drover's HTTP router every `POLL` on one keep-alive
//!     connection. Failover time runs from the move to the first answer of the final run of
//!     answers from the new leader; a move ends `SETTLE` after that run began (more than one
//!     probe round, so a flap back would show) or after `MOVE_TIMEOUT`. Before each request
//!     the pool's leader flag is read: an answer from any other master when the flag already
//!     named the new leader is a *non-leader after the switch* (must be 0). Answers from the
//!     old leader before the switch and 503s (no proven leader) are counted apart.
//! (b) Probe cost: `FAILOVER_ALIASES` aliases × 3 masters, probed every second, for
//!     `FAILOVER_CPU_SECS`. CPU is read per thread from `/proc/self/task/*/schedstat`
//!     (nanoseconds on CPU, user + kernel) and summed by thread name: Drover's threads are
//!     `drover-control` (which runs the health monitor and every probe task) and
//!     `drover-worker-N`; the fakes' are `fake-masters`. `getrusage(RUSAGE_SELF)` gives the
//!     whole process for comparison.
//!
//! Every loop is bounded; everything listens on 127.0.0.1 only.

// Benches measure real time and pace real servers (clippy.toml bars these elsewhere).
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;

use drover::config::Config;
use drover::host::HostName;
use drover::routing::alias_route_name;
use drover::server::{Options, Server};
use drover::sim::masters::{FakeMasters, Page};

const MASTERS: usize = 3;
const INTERVAL: Duration = Duration::from_secs(1);
/// How often the client asks through Drover during a move.
const POLL: Duration = Duration::from_millis(5);
/// How long answers must come only from the new leader before a move counts as done.
const SETTLE: Duration = Duration::from_millis(1200);
/// A move that has not settled by then is a timeout.
const MOVE_TIMEOUT: Duration = Duration::from_secs(6);
/// Startup waits (first leader proven, every alias led).
const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Warm-up before CPU sampling starts.
const WARM_UP: Duration = Duration::from_secs(2);
/// The failover target (issue 4).
const TARGET_MAX: Duration = Duration::from_secs(2);
const HOST: &str = "mesos.bench";

// === fake masters ===

/// `groups` sets of `per_group` masters served on `rt`, each with its own "who leads" cell;
/// master `g % per_group` leads set `g`.
fn start_masters(
    rt: &tokio::runtime::Runtime,
    groups: usize,
    per_group: usize,
) -> Vec<FakeMasters> {
    (0..groups)
        .map(|g| rt.block_on(FakeMasters::start(per_group, Some(g % per_group))))
        .collect()
}

/// Leader probes answered, all masters together.
fn probes(sets: &[FakeMasters]) -> u64 {
    let per_set = |m: &FakeMasters| (0..m.addrs().len()).map(|i| m.probes(i)).sum::<usize>();
    sets.iter().map(per_set).sum::<usize>() as u64
}

/// `[[alias]]` tables, one per set: `alias-G.bench`, or `HOST` when there is one.
fn aliases_toml(sets: &[FakeMasters]) -> String {
    let mut out = String::new();
    for (g, masters) in sets.iter().enumerate() {
        out.push_str(&format!(
            "[[alias]]\nhost = \"{}\"\nbackends = {}\ncheck = \"mesos\"\ninterval = \"{}ms\"\n\n",
            alias_host(sets.len(), g),
            masters.backends_toml(),
            INTERVAL.as_millis()
        ));
    }
    out
}

fn alias_host(groups: usize, g: usize) -> String {
    if groups == 1 {
        HOST.to_string()
    } else {
        format!("alias-{g}.bench")
    }
}

// === Drover ===

fn start_drover(aliases: &str) -> Result<Server, String> {
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n[runtime]\nworkers = 1\ndrain_timeout = \"1s\"\n\n{aliases}"
    );
    let config = Config::parse(&text, Path::new(".")).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        format!("config: {}", list.join("; "))
    })?;
    Server::start(
        config,
        Options {
            config_path: None,
            handle_signals: false,
        },
    )
    .map_err(|e| format!("start: {e}"))
}

/// The leader Drover's pool for `host` routes to now.
fn drover_leader(server: &Server, host: &str) -> Option<SocketAddr> {
    let name = alias_route_name(&HostName::parse(host).ok()?);
    let table = server.view().routes.load();
    let route = table.routes.iter().find(|r| r.name == name)?;
    route.pool.current_leader().map(|b| b.addr)
}

fn counter(server: &Server, which: &str) -> u64 {
    let m = &server.view().metrics;
    match which {
        "conflicts" => m.leader_conflicts.with_label_values(&[HOST]).get(),
        _ => m.leader_changes.with_label_values(&[HOST]).get(),
    }
}

/// Stops Drover without waiting on it for long: the figures are out already.
fn stop(server: Server) {
    server.shutdown();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(server.join());
    });
    let _ = done_rx.recv_timeout(Duration::from_secs(5));
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > timeout {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

// === the client ===

/// One keep-alive HTTP/1.1 connection to Drover's router, reopened after an error.
struct Client {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    sender: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>>,
}

/// What one request through Drover got.
enum Reply {
    /// 200 from master `index`, which said whether it led when it answered.
    Master {
        index: usize,
        leads: bool,
    },
    Status(u16),
    Error,
}

impl Client {
    fn new(addr: SocketAddr) -> Result<Client, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("client runtime: {e}"))?;
        Ok(Client {
            rt,
            addr,
            sender: None,
        })
    }

    fn ask(&mut self) -> Reply {
        let addr = self.addr;
        let sender = self.sender.take();
        let (reply, sender) = self.rt.block_on(async move {
            let mut sender = match sender {
                Some(s) if !s.is_closed() => s,
                _ => match connect(addr).await {
                    Some(s) => s,
                    None => return (Reply::Error, None),
                },
            };
            let req = Request::get("/master/tasks")
                .header("host", HOST)
                .body(Empty::new())
                .expect("request");
            let exchange = async {
                let resp = sender.send_request(req).await.ok()?;
                let status = resp.status().as_u16();
                let body = resp.into_body().collect().await.ok()?.to_bytes();
                Some((status, body))
            };
            match tokio::time::timeout(Duration::from_secs(2), exchange).await {
                Ok(Some((200, body))) => match Page::parse(&String::from_utf8_lossy(&body)) {
                    Some(Page { index, leads }) => (Reply::Master { index, leads }, Some(sender)),
                    None => (Reply::Status(200), Some(sender)),
                },
                Ok(Some((status, _))) => (Reply::Status(status), Some(sender)),
                _ => (Reply::Error, None),
            }
        });
        self.sender = sender;
        reply
    }

    fn sleep(&self, d: Duration) {
        self.rt.block_on(async move { tokio::time::sleep(d).await });
    }
}

async fn connect(
    addr: SocketAddr,
) -> Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(sender)
}

// === (a) failover ===

struct Move {
    from: usize,
    to: usize,
    phase: Duration,
    /// Move to the pool's leader flag naming the new leader.
    switch: Option<Duration>,
    /// Move to the first answer of the final run from the new leader.
    failover: Option<Duration>,
    requests: usize,
    /// Answers from the old leader while Drover still named it.
    stale: usize,
    /// Answers from a non-leader although Drover already named the new leader.
    wrong_after_switch: usize,
    /// Answers whose master said "standby" when it answered.
    standby_answers: usize,
    n503: usize,
    errors: usize,
}

/// A small xorshift for the move phases; seeded from the clock, printed for a re-run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn failover(moves: usize, seed: u64, fakes_rt: &tokio::runtime::Runtime) -> Result<bool, String> {
    let sets = start_masters(fakes_rt, 1, MASTERS);
    let addrs = sets[0].addrs().to_vec();
    let server = start_drover(&aliases_toml(&sets))?;
    let started = Instant::now();
    wait_until("the first leader", SETUP_TIMEOUT, || {
        drover_leader(&server, HOST) == Some(addrs[0])
    })?;
    let first_leader = started.elapsed();
    let mut client = Client::new(server.http_addr().ok_or("no HTTP address")?)?;
    let (conflicts0, changes0) = (counter(&server, "conflicts"), counter(&server, "changes"));

    let mut rng = Rng(seed | 1);
    let mut results = Vec::with_capacity(moves);
    let mut current = 0;
    for _ in 0..moves {
        let to = (current + 1) % MASTERS;
        let phase = Duration::from_millis(rng.below(INTERVAL.as_millis() as u64));
        client.sleep(phase);
        let mut m = Move {
            from: current,
            to,
            phase,
            switch: None,
            failover: None,
            requests: 0,
            stale: 0,
            wrong_after_switch: 0,
            standby_answers: 0,
            n503: 0,
            errors: 0,
        };
        let t0 = Instant::now();
        sets[0].set_leader(Some(to));
        // The first answer of the current run of answers from the new leader.
        let mut run_from: Option<Instant> = None;
        loop {
            let sent = Instant::now();
            let switched = drover_leader(&server, HOST) == Some(addrs[to]);
            if switched && m.switch.is_none() {
                m.switch = Some(sent - t0);
            }
            let reply = client.ask();
            let got = Instant::now();
            m.requests += 1;
            match reply {
                Reply::Master { index, leads } => {
                    if !leads {
                        m.standby_answers += 1;
                    }
                    if index == to {
                        run_from.get_or_insert(got);
                    } else {
                        run_from = None;
                        if switched {
                            m.wrong_after_switch += 1;
                        } else {
                            m.stale += 1;
                        }
                    }
                }
                Reply::Status(503) => {
                    m.n503 += 1;
                    run_from = None;
                }
                Reply::Status(_) | Reply::Error => {
                    m.errors += 1;
                    run_from = None;
                }
            }
            if let Some(from) = run_from {
                if got - from >= SETTLE {
                    m.failover = Some(from - t0);
                    break;
                }
            }
            if t0.elapsed() > MOVE_TIMEOUT {
                break;
            }
            if let Some(rest) = POLL.checked_sub(sent.elapsed()) {
                client.sleep(rest);
            }
        }
        current = to;
        results.push(m);
    }
    let conflicts = counter(&server, "conflicts") - conflicts0;
    let changes = counter(&server, "changes") - changes0;
    drop(client);
    stop(server);

    println!(
        "(a) failover: {moves} moves over {MASTERS} masters, check mesos, interval {} ms, \
         poll {} ms (seed {seed}); first leader proven {:.0} ms after start",
        INTERVAL.as_millis(),
        POLL.as_millis(),
        first_leader.as_secs_f64() * 1e3
    );
    println!(
        "{:>4} {:>6} {:>8} {:>9} {:>11} {:>5} {:>6} {:>6} {:>9} {:>7}",
        "move",
        "from>to",
        "phase",
        "switch",
        "failover",
        "reqs",
        "stale",
        "503s",
        "wrong",
        "errors"
    );
    let ms = |d: Option<Duration>| {
        d.map_or("timeout".to_string(), |d| {
            format!("{:.1}", d.as_secs_f64() * 1e3)
        })
    };
    for (i, m) in results.iter().enumerate() {
        println!(
            "{:>4} {:>6} {:>8} {:>9} {:>11} {:>5} {:>6} {:>6} {:>9} {:>7}",
            i + 1,
            format!("{}>{}", m.from, m.to),
            ms(Some(m.phase)),
            ms(m.switch),
            ms(m.failover),
            m.requests,
            m.stale,
            m.n503,
            m.wrong_after_switch,
            m.errors
        );
    }
    let mut times: Vec<Duration> = results.iter().filter_map(|m| m.failover).collect();
    times.sort();
    let timeouts = results.len() - times.len();
    let sum = |f: fn(&Move) -> usize| results.iter().map(f).sum::<usize>();
    let wrong = sum(|m| m.wrong_after_switch);
    let median = if times.is_empty() {
        None
    } else if times.len() % 2 == 1 {
        Some(times[times.len() / 2])
    } else {
        Some((times[times.len() / 2 - 1] + times[times.len() / 2]) / 2)
    };
    let max = times.last().copied();
    println!(
        "failover ms: median {} max {} (target max < {} ms: {}); timeouts {timeouts}",
        ms(median),
        ms(max),
        TARGET_MAX.as_millis(),
        match max {
            Some(m) if m < TARGET_MAX && timeouts == 0 => "met",
            _ => "MISSED",
        }
    );
    println!(
        "requests {}; old leader before the switch {}; 503s {} (in {} of {} moves); \
         non-leader after the switch {wrong} (must be 0); errors {}",
        sum(|m| m.requests),
        sum(|m| m.stale),
        sum(|m| m.n503),
        results.iter().filter(|m| m.n503 > 0).count(),
        results.len(),
        sum(|m| m.errors)
    );
    println!(
        "answers a master gave as standby {}; drover_leader_changes_total +{changes}, \
         drover_leader_conflicts_total +{conflicts}",
        sum(|m| m.standby_answers)
    );
    Ok(wrong == 0 && timeouts == 0)
}

// === (b) probe cost ===

/// CPU time on each thread of this process, by tid: (name, nanoseconds).
fn thread_cpu() -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    let tick_ns = 1e9 / (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64);
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let name = std::fs::read_to_string(path.join("comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        // schedstat: on-CPU nanoseconds first; stat's utime + stime (ticks) as a fallback.
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .or_else(|| {
                let stat = std::fs::read_to_string(path.join("stat")).ok()?;
                let rest = &stat[stat.rfind(')')? + 2..];
                let f: Vec<&str> = rest.split_whitespace().collect();
                let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
                Some((ticks as f64 * tick_ns) as u64)
            });
        if let Some(ns) = ns {
            out.insert(tid, (name, ns));
        }
    }
    out
}

/// User + system CPU of the whole process, in nanoseconds.
fn process_cpu() -> u64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The thread-name group a thread's CPU is reported under.
fn group_of(name: &str) -> &'static str {
    if name == "drover-control" {
        "drover-control"
    } else if name.starts_with("drover-worker") {
        "drover-worker-*"
    } else if name.starts_with("fake-masters") {
        "fake-masters"
    } else {
        "other (main thread, ...)"
    }
}

fn probe_cost(aliases: usize, secs: u64, fakes_rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let sets = start_masters(fakes_rt, aliases, MASTERS);
    let server = start_drover(&aliases_toml(&sets))?;
    let hosts: Vec<String> = (0..aliases).map(|g| alias_host(aliases, g)).collect();
    let all_led = |server: &Server| {
        hosts
            .iter()
            .enumerate()
            .all(|(g, h)| drover_leader(server, h) == Some(sets[g].addrs()[g % MASTERS]))
    };
    wait_until("every alias to have its leader", SETUP_TIMEOUT, || {
        all_led(&server)
    })?;
    std::thread::sleep(WARM_UP);

    let (threads0, process0, probes0, t0) =
        (thread_cpu(), process_cpu(), probes(&sets), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let (threads1, process1, probes1, wall) =
        (thread_cpu(), process_cpu(), probes(&sets), t0.elapsed());
    let still_led = all_led(&server);
    stop(server);

    let mut by_group: BTreeMap<&str, (u64, usize)> = BTreeMap::new();
    for (tid, (name, ns)) in &threads1 {
        let before = threads0.get(tid).map_or(0, |(_, ns)| *ns);
        let e = by_group.entry(group_of(name)).or_default();
        e.0 += ns.saturating_sub(before);
        e.1 += 1;
    }
    let wall_s = wall.as_secs_f64();
    let probes = probes1 - probes0;
    let drover_ns: u64 = by_group
        .iter()
        .filter(|(g, _)| g.starts_with("drover"))
        .map(|(_, (ns, _))| ns)
        .sum();
    let threads_ns: u64 = by_group.values().map(|(ns, _)| ns).sum();
    let process_ns = process1 - process0;
    let pct = |ns: u64| ns as f64 / 1e9 / wall_s * 100.0;

    println!(
        "\n(b) probe cost: {aliases} aliases × {MASTERS} masters, interval {} ms, {wall_s:.1} s sampled",
        INTERVAL.as_millis()
    );
    println!(
        "probes answered by the fakes: {probes} ({:.1}/s; {} targets); every alias still led: {still_led}",
        probes as f64 / wall_s,
        aliases * MASTERS
    );
    println!(
        "{:<26} {:>7} {:>10} {:>12}",
        "threads", "count", "CPU ms", "% of a core"
    );
    for (group, (ns, n)) in &by_group {
        println!(
            "{group:<26} {n:>7} {:>10.1} {:>12.2}",
            *ns as f64 / 1e6,
            pct(*ns)
        );
    }
    println!(
        "{:<26} {:>7} {:>10.1} {:>12.2}",
        "process (getrusage)",
        "",
        process_ns as f64 / 1e6,
        pct(process_ns)
    );
    if process_ns > threads_ns {
        println!(
            "(threads that ended during the sample, not attributed: {:.1} ms)",
            (process_ns - threads_ns) as f64 / 1e6
        );
    }
    println!(
        "drover: {:.2} % of one core; {:.1} µs of CPU per probe",
        pct(drover_ns),
        if probes == 0 {
            0.0
        } else {
            drover_ns as f64 / 1e3 / probes as f64
        }
    );
    Ok(())
}

// === main ===

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> ExitCode {
    let moves = env_num("FAILOVER_MOVES", 10) as usize;
    let secs = env_num("FAILOVER_CPU_SECS", 20).clamp(1, 600);
    let aliases = env_num("FAILOVER_ALIASES", 100).clamp(1, 2000) as usize;
    let seed = env_num(
        "FAILOVER_SEED",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    );
    let fakes_rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fake-masters")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("failover: fakes runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let verdict = failover(moves, seed, &fakes_rt).and_then(|ok| {
        probe_cost(aliases, secs, &fakes_rt)?;
        Ok(ok)
    });
    fakes_rt.shutdown_timeout(Duration::from_secs(1));
    match verdict {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!(
                "failover: a request reached a non-leader after the switch, or a move timed out"
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("failover: {e}");
            ExitCode::FAILURE
        }
    }
}
