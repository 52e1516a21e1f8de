//! Event-to-DNS latency of the Mesos operator API stream (issue 15): how long after a master
//! sends a task event Drover's DNS server answers the change over UDP. Run:
//! `cargo bench --bench mesos_event_latency` (`MESOS_EVENT_LATENCY_ROUNDS=N` for another
//! round count, default 100).
//!
//! The fake masters of `drover::sim` (one master on 127.0.0.1 with the operator API:
//! `POST /api/v1` `SUBSCRIBE`, RecordIO, `SUBSCRIBED` then pushed events) feed a Drover
//! started with `Server::start` (`[mesos] poll = "600s"`, so nothing but the stream can
//! bring a change within a round; `[dns]` on 127.0.0.1:0). Rounds alternate:
//! - add: `TASK_ADDED` then `TASK_UPDATED` `TASK_RUNNING` (with the task's own address in
//!   its container status) are pushed; latency runs from the first push to the first UDP
//!   answer for `web.marathon.<domain>` that holds the new address;
//! - kill: `TASK_UPDATED` `TASK_KILLED` for the oldest task; latency runs until no answer
//!   holds its address.
//!
//! The main thread asks over UDP every `POLL` and timestamps with `Instant`. Rounds are
//! `PAUSE` apart so one round's events never coalesce with the next; a round gives up after
//! `ROUND_TIMEOUT` and counts as a timeout.

// Benches measure real time and pace real servers (clippy.toml bars these elsewhere).
#![allow(clippy::disallowed_methods)]

#[path = "latency.rs"]
mod latency;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use serde_json::{json, Value};

use drover::sim::masters::FakeMasters;

const FRAMEWORK: &str = "bench-framework-0000";
const AGENT: &str = "bench-agent-S0";
const NAME: &str = "web.marathon.mesos.";
const POLL: Duration = Duration::from_millis(1);
const PAUSE: Duration = Duration::from_millis(150);
const ROUND_TIMEOUT: Duration = Duration::from_secs(5);
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Tasks running when the rounds start.
const TASKS: u32 = 3;

// === the cluster, in the operator API's JSON ===

fn task_id(n: u32) -> String {
    format!("web.{n:08}")
}

/// Task `n`'s own address: 10.1.x.y, never a socket (DNS only names it).
fn task_ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a01_0000 + n)
}

fn status(n: u32, state: &str) -> Value {
    json!({
        "task_id": { "value": task_id(n) },
        "state": state,
        "source": "SOURCE_EXECUTOR",
        "timestamp": 1_716_555_600.0 + f64::from(n),
        "container_status": {
            "network_infos": [ { "ip_addresses": [ { "ip_address": task_ip(n).to_string() } ] } ]
        }
    })
}

fn task(n: u32, state: &str) -> Value {
    let statuses = if state == "TASK_RUNNING" {
        vec![status(n, state)]
    } else {
        Vec::new()
    };
    json!({
        "name": "web",
        "task_id": { "value": task_id(n) },
        "framework_id": { "value": FRAMEWORK },
        "agent_id": { "value": AGENT },
        "state": state,
        "resources": [ { "name": "ports", "type": "RANGES",
                         "ranges": { "range": [ { "begin": 31000 + n, "end": 31000 + n } ] } } ],
        "statuses": statuses,
    })
}

fn get_state(tasks: &[u32]) -> Value {
    json!({
        "get_tasks": { "tasks": tasks.iter().map(|n| task(*n, "TASK_RUNNING")).collect::<Vec<_>>() },
        "get_frameworks": { "frameworks": [
            { "framework_info": { "id": { "value": FRAMEWORK }, "name": "marathon", "hostname": "127.0.0.1" },
              "active": true, "connected": true, "recovered": false }
        ] },
        "get_agents": { "agents": [
            { "agent_info": { "hostname": "127.0.0.1", "port": 5051, "id": { "value": AGENT } },
              "active": true, "version": "1.11.0", "pid": "slave(1)@127.0.0.1:5051" }
        ] },
    })
}

fn task_added(n: u32) -> Value {
    json!({ "type": "TASK_ADDED", "task_added": { "task": task(n, "TASK_STAGING") } })
}

fn task_updated(n: u32, state: &str) -> Value {
    json!({
        "type": "TASK_UPDATED",
        "task_updated": {
            "framework_id": { "value": FRAMEWORK },
            "status": status(n, state),
            "state": state,
        }
    })
}

// === measuring ===

/// The A answers for `NAME` from Drover's DNS over UDP (empty on any failure).
fn answer(socket: &UdpSocket, dns: SocketAddr, id: &mut u16) -> Vec<Ipv4Addr> {
    *id = id.wrapping_add(1);
    let mut q = Message::new(*id, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(
        Name::from_str(NAME).expect("a name"),
        RecordType::A,
    ));
    let Ok(bytes) = q.to_vec() else {
        return Vec::new();
    };
    if socket.send_to(&bytes, dns).is_err() {
        return Vec::new();
    }
    let mut buf = [0u8; 4096];
    loop {
        let Ok((n, _)) = socket.recv_from(&mut buf) else {
            return Vec::new();
        };
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            return Vec::new();
        };
        // A late reply to an earlier question: read on.
        if reply.metadata.id != *id {
            continue;
        }
        return reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesos_event_latency: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let rounds = latency::env_or("MESOS_EVENT_LATENCY_ROUNDS", 100);
    let rt = latency::fakes_runtime()?;
    let mut running: Vec<u32> = (1..=TASKS).collect();
    let masters = rt.block_on(
        FakeMasters::builder(1, Some(0))
            .operator_api(get_state(&running), &[])
            .start(),
    );

    let config = format!(
        "[mesos]\nmasters = {}\npoll = \"600s\"\n\n[dns]\nlisten = \"127.0.0.1:0\"\n\
         domain = \"mesos\"\n\n[runtime]\nworkers = 1\ndrain_timeout = \"1s\"\n",
        masters.masters_toml()
    );
    let server = latency::start_drover(&config)?;
    let dns = server.dns_addr().ok_or("no DNS address")?;
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("udp: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| format!("udp: {e}"))?;
    let mut id = 0u16;

    let start = Instant::now();
    let initial: Vec<Ipv4Addr> = running.iter().map(|n| task_ip(*n)).collect();
    latency::until(start, SETUP_TIMEOUT, POLL, || {
        let mut got = answer(&socket, dns, &mut id);
        got.sort();
        masters.subscriptions() >= 1 && got == initial
    })
    .ok_or("Drover did not subscribe and answer the initial tasks in time")?;

    let (mut adds, mut kills) = (Vec::new(), Vec::new());
    let (mut add_timeouts, mut kill_timeouts) = (0, 0);
    let mut next = TASKS;
    for round in 0..rounds {
        if round % 2 == 0 {
            next += 1;
            let ip = task_ip(next);
            let t0 = Instant::now();
            masters.push_event(task_added(next));
            masters.push_event(task_updated(next, "TASK_RUNNING"));
            running.push(next);
            match latency::until(t0, ROUND_TIMEOUT, POLL, || {
                answer(&socket, dns, &mut id).contains(&ip)
            }) {
                Some(d) => adds.push(d),
                None => add_timeouts += 1,
            }
        } else {
            let oldest = running.remove(0);
            let ip = task_ip(oldest);
            let t0 = Instant::now();
            masters.push_event(task_updated(oldest, "TASK_KILLED"));
            match latency::until(t0, ROUND_TIMEOUT, POLL, || {
                !answer(&socket, dns, &mut id).contains(&ip)
            }) {
                Some(d) => kills.push(d),
                None => kill_timeouts += 1,
            }
        }
        std::thread::sleep(PAUSE);
    }

    println!(
        "mesos_event_latency: {rounds} rounds, operator API event push -> UDP DNS answer \
         (ms; asked every {} ms, {} ms between rounds; {} subscription(s))",
        POLL.as_millis(),
        PAUSE.as_millis(),
        masters.subscriptions()
    );
    println!(
        "{:<8} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "kind", "n", "p50", "p90", "p99", "max", "timeouts"
    );
    latency::row("add", &adds, add_timeouts);
    latency::row("kill", &kills, kill_timeouts);
    let all: Vec<Duration> = adds.iter().chain(&kills).copied().collect();
    latency::row("all", &all, add_timeouts + kill_timeouts);

    // Stop Drover, but never wait on it for long: the figures are out already.
    server.shutdown();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(server.join());
    });
    let _ = done_rx.recv_timeout(Duration::from_secs(5));
    drop(masters);
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
