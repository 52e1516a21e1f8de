//! Event-to-route latency (issue 3): how long after Marathon pushes a `status_update_event`
//! the route table in use reflects it. Run: `cargo bench --bench event_latency`
//! (`EVENT_LATENCY_ROUNDS=N` for another round count, default 100).
//!
//! The fake Marathon of `drover::sim` (the one the integration tests and the demo use:
//! `/v2/apps` in the Marathon 1.5+ shape with tasks, `/v2/events` as `text/event-stream`, on
//! 127.0.0.1:0) feeds a Drover started with `Server::start` (1 worker, no catalog). Rounds
//! alternate:
//! - add: the snapshot gains a task, then `TASK_RUNNING` is pushed; latency runs from the push
//!   to the first table whose pool holds the new task's address (a re-read of `/v2/apps`);
//! - kill: `TASK_KILLED` is pushed, then the snapshot loses the task; latency runs from the
//!   push to the first table without its address (the kill path, no re-read needed).
//!
//! The main thread polls `view().routes.load()` every `POLL` and timestamps with `Instant`.
//! Rounds are `PAUSE` apart so one round's events and re-reads never coalesce with the next;
//! a round gives up after `ROUND_TIMEOUT` and counts as a timeout.

// Benches measure real time and pace real servers (clippy.toml bars these elsewhere).
#![allow(clippy::disallowed_methods)]

#[path = "latency.rs"]
mod latency;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;

use drover::server::Server;
use drover::sim::marathon::{self, FakeMarathon, FakeTask};

const APP: &str = "/web";
const ROUTE: &str = "web_10001";
const SERVICE_PORT: u16 = 10001;
const BACKENDS: usize = 4;
const POLL: Duration = Duration::from_micros(100);
const PAUSE: Duration = Duration::from_millis(150);
const ROUND_TIMEOUT: Duration = Duration::from_secs(5);
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// `/v2/apps?embed=apps.tasks` with one app on host networking, vhost `web.example.com`.
fn apps(tasks: &[(String, SocketAddr)]) -> Value {
    let tasks: Vec<FakeTask> = tasks
        .iter()
        .map(|(id, addr)| FakeTask::new(id, *addr))
        .collect();
    let labels = [("HAPROXY_0_VHOST", "web.example.com")];
    marathon::apps_json(&[marathon::app(APP, &labels, SERVICE_PORT, &tasks)])
}

fn status_update(task_id: &str, status: &str, addr: SocketAddr) -> Value {
    let host = addr.ip().to_string();
    marathon::status_update(APP, task_id, status, &host, addr.port())
}

// === measuring ===

/// The backend addresses of `ROUTE` in the table in use.
fn pool(server: &Server) -> Vec<SocketAddr> {
    let table = server.view().routes.load();
    table
        .routes
        .iter()
        .filter(|r| r.name == ROUTE)
        .flat_map(|r| r.pool.backends().iter().map(|b| b.addr))
        .collect()
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("event_latency: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let rounds = latency::env_or("EVENT_LATENCY_ROUNDS", 100);
    let rt = latency::fakes_runtime()?;
    let fake = rt.block_on(FakeMarathon::start());
    // Backend addresses: bound (so the ports are real and distinct), never served: building
    // a route needs no live backend.
    let listeners: Vec<StdListener> = (0..BACKENDS)
        .map(|_| StdListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("backend: {e}"))?;
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(|l| l.local_addr().expect("bound"))
        .collect();

    // Tasks in the snapshot, oldest first; each on a distinct backend address.
    let mut next_id = 0u32;
    let mut tasks: Vec<(String, SocketAddr)> = Vec::new();
    for &addr in &addrs[..BACKENDS - 1] {
        next_id += 1;
        tasks.push((marathon::task_id(APP, next_id), addr));
    }
    fake.set_apps(apps(&tasks));

    let config = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n[marathon]\nurls = [\"{}\"]\ngroups = [\"*\"]\n\n\
         [runtime]\nworkers = 1\ndrain_timeout = \"1s\"\n",
        fake.url()
    );
    let server = latency::start_drover(&config)?;

    let start = Instant::now();
    let initial = |p: Vec<SocketAddr>| tasks.iter().all(|(_, a)| p.contains(a));
    latency::until(start, SETUP_TIMEOUT, POLL, || {
        server.view().routes.is_ready() && fake.subscriptions() >= 1 && initial(pool(&server))
    })
    .ok_or("Drover did not route the initial snapshot or subscribe to events in time")?;
    // Let the re-read that follows a (re)connect settle before the first round.
    std::thread::sleep(Duration::from_millis(300));

    let (mut adds, mut kills) = (Vec::new(), Vec::new());
    let (mut add_timeouts, mut kill_timeouts) = (0, 0);
    for round in 0..rounds {
        if round % 2 == 0 {
            // Add a task on the one free address.
            let addr = *addrs
                .iter()
                .find(|a| tasks.iter().all(|(_, t)| t != *a))
                .expect("a free address");
            next_id += 1;
            let id = marathon::task_id(APP, next_id);
            tasks.push((id.clone(), addr));
            fake.set_apps(apps(&tasks));
            let event = status_update(&id, "TASK_RUNNING", addr);
            let t0 = Instant::now();
            fake.push(event);
            match latency::until(t0, ROUND_TIMEOUT, POLL, || pool(&server).contains(&addr)) {
                Some(d) => adds.push(d),
                None => add_timeouts += 1,
            }
        } else {
            // Kill the oldest task.
            let (id, addr) = tasks.remove(0);
            let event = status_update(&id, "TASK_KILLED", addr);
            let t0 = Instant::now();
            fake.push(event);
            fake.set_apps(apps(&tasks));
            match latency::until(t0, ROUND_TIMEOUT, POLL, || !pool(&server).contains(&addr)) {
                Some(d) => kills.push(d),
                None => kill_timeouts += 1,
            }
        }
        std::thread::sleep(PAUSE);
    }

    let mut pool_now = pool(&server);
    pool_now.sort();
    let mut want: Vec<SocketAddr> = tasks.iter().map(|(_, a)| *a).collect();
    want.sort();
    println!(
        "event_latency: {rounds} rounds, status_update_event push -> route table in use \
         (ms; poll every {} µs, {} ms between rounds)",
        POLL.as_micros(),
        PAUSE.as_millis()
    );
    println!(
        "{:<8} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "kind", "n", "p50", "p90", "p99", "max", "timeouts"
    );
    latency::row("add", &adds, add_timeouts);
    latency::row("kill", &kills, kill_timeouts);
    let all: Vec<Duration> = adds.iter().chain(&kills).copied().collect();
    latency::row("all", &all, add_timeouts + kill_timeouts);
    if pool_now != want {
        println!("warning: final pool {pool_now:?} differs from the snapshot's {want:?}");
    }

    // Stop Drover, but never wait on it for long: the figures are out already.
    server.shutdown();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(server.join());
    });
    let _ = done_rx.recv_timeout(Duration::from_secs(5));
    drop(listeners);
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
