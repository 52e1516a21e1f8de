//! ZooKeeper leader change → alias switch and → `leader.<domain>` (issue 15). Run:
//! `cargo bench --bench zk_failover` (about 20 s; `ZK_MOVES=N` moves, default 20). Needs
//! Debian's `zookeeper` package (the server is started here, on 127.0.0.1).
//!
//! A real ZooKeeper (`drover::sim::zookeeper`), three fake Mesos masters (`drover::sim`,
//! on 127.0.0.1-3, serving mesos-dns's state fixture) whose `json.info_` znodes are created
//! with their real MasterInfo payloads, and a Drover (`Server::start`, 1 worker) with
//! `[mesos] zk` (poll 60 s, so only the watch can explain a quick follow), `[dns]` and one
//! `[[alias]] zk` without backends.
//!
//! Each move: the fakes are told the next master leads, then the leading master's node is
//! deleted (as when its session ends) and the clock starts. The alias switch is the moment
//! the alias's pool flags the new leader (what the data plane reads per request); the DNS
//! switch is the first UDP answer for `leader.mesos.` naming the new leader's address (the
//! whole path: ZooKeeper watch, a read of the new leader's state, a zone build). The old
//! leader's node is then created again, last in line, and the next move waits for the pool
//! to settle. Target (issue 15): both under 500 ms.
//!
//! Every loop is bounded; everything listens on 127.0.0.1 only.

// Benches measure real time and pace real servers (clippy.toml bars these elsewhere).
#![allow(clippy::disallowed_methods)]

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};

use drover::config::Config;
use drover::host::HostName;
use drover::routing::alias_route_name;
use drover::server::{Options, Server};
use drover::sim::masters::FakeMasters;
use drover::sim::zookeeper::{Election, ZooKeeper};

const MASTERS: usize = 3;
const HOST: &str = "mesos.bench";
/// A switch not seen by then is a timeout.
const MOVE_TIMEOUT: Duration = Duration::from_secs(5);
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The target (issue 15).
const TARGET: Duration = Duration::from_millis(500);

fn main() -> ExitCode {
    let moves = std::env::var("ZK_MOVES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20usize)
        .clamp(1, 1000);
    match run(moves) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("zk_failover: a move timed out");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("zk_failover: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(moves: usize) -> Result<bool, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sim")
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let zk = rt.block_on(ZooKeeper::start())?;
    let state: serde_json::Value = serde_json::from_str(include_str!(
        "../tests/fixtures/mesos/mesos-dns-fake-state.json"
    ))
    .map_err(|e| e.to_string())?;
    let masters = rt.block_on(
        FakeMasters::builder(MASTERS, Some(0))
            .own_ips()
            .state(state)
            .start(),
    );
    let election = rt
        .block_on(Election::open(zk.addr(), "/mesos"))
        .map_err(|e| format!("ZooKeeper: {e}"))?;
    // Node of each master, in line order (the first leads).
    let mut line: Vec<(usize, String)> = Vec::new();
    for (i, a) in masters.addrs().iter().enumerate() {
        let node = rt
            .block_on(election.join_mesos(*a))
            .map_err(|e| e.to_string())?;
        line.push((i, node));
    }
    let url = zk.url("/mesos");
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n[runtime]\nworkers = 1\ndrain_timeout = \"1s\"\n\n[mesos]\nzk = \"{url}\"\npoll = \"60s\"\n\n[dns]\nlisten = \"127.0.0.1:0\"\ndomain = \"mesos\"\n\n[[alias]]\nhost = \"{HOST}\"\nzk = \"{url}\"\n"
    );
    let config = Config::parse(&text, Path::new(".")).map_err(|p| format!("config: {p:?}"))?;
    let server = Server::start(
        config,
        Options {
            config_path: None,
            handle_signals: false,
        },
    )
    .map_err(|e| format!("start: {e}"))?;
    let dns = server.dns_addr().ok_or("no DNS address")?;
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let addr_of = |i: usize| masters.addrs()[i];
    wait_until("the first leader", SETUP_TIMEOUT, || {
        alias_leader(&server) == Some(addr_of(0))
            && leader_ip(&socket, dns) == Some(addr_of(0).ip())
    })?;

    let (mut alias_ms, mut dns_ms) = (Vec::new(), Vec::new());
    let mut timeouts = 0;
    for _ in 0..moves {
        let (old, old_node) = line.remove(0);
        let new = line[0].0;
        masters.set_leader(Some(new));
        rt.block_on(election.leave(&old_node))
            .map_err(|e| e.to_string())?;
        let moved = Instant::now();
        let (mut alias_at, mut dns_at) = (None, None);
        while (alias_at.is_none() || dns_at.is_none()) && moved.elapsed() < MOVE_TIMEOUT {
            if alias_at.is_none() && alias_leader(&server) == Some(addr_of(new)) {
                alias_at = Some(moved.elapsed());
            }
            if dns_at.is_none() && leader_ip(&socket, dns) == Some(addr_of(new).ip()) {
                dns_at = Some(moved.elapsed());
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        match (alias_at, dns_at) {
            (Some(a), Some(d)) => {
                alias_ms.push(a.as_secs_f64() * 1000.0);
                dns_ms.push(d.as_secs_f64() * 1000.0);
            }
            _ => timeouts += 1,
        }
        // The old leader comes back, last in line; the pool settles before the next move.
        let node = rt
            .block_on(election.join_mesos(addr_of(old)))
            .map_err(|e| e.to_string())?;
        line.push((old, node));
        wait_until("the pool with the old leader back", SETUP_TIMEOUT, || {
            pool_has(&server, addr_of(old)) && alias_leader(&server) == Some(addr_of(new))
        })?;
    }
    println!("ZooKeeper leader change -> switch, {moves} moves (target < {TARGET:?}):");
    for (what, v) in [
        ("alias (pool flag)", &mut alias_ms),
        ("leader.mesos (DNS)", &mut dns_ms),
    ] {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v.get(((v.len() as f64 - 1.0) * q).round() as usize);
        println!(
            "  {what:<20} median {:>7.1} ms  p90 {:>7.1} ms  max {:>7.1} ms  under target: {}/{}",
            at(0.5).copied().unwrap_or(f64::NAN),
            at(0.9).copied().unwrap_or(f64::NAN),
            v.last().copied().unwrap_or(f64::NAN),
            v.iter()
                .filter(|ms| **ms < TARGET.as_secs_f64() * 1000.0)
                .count(),
            v.len()
        );
    }
    println!("  timeouts: {timeouts}");
    server.shutdown();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(server.join());
    });
    let _ = done_rx.recv_timeout(Duration::from_secs(5));
    drop(zk);
    Ok(timeouts == 0)
}

/// The leader the alias's pool routes to now.
fn alias_leader(server: &Server) -> Option<SocketAddr> {
    let name = alias_route_name(&HostName::parse(HOST).ok()?);
    let table = server.view().routes.load();
    let route = table.routes.iter().find(|r| r.name == name)?;
    route.pool.current_leader().map(|b| b.addr)
}

fn pool_has(server: &Server, addr: SocketAddr) -> bool {
    let Ok(host) = HostName::parse(HOST) else {
        return false;
    };
    let name = alias_route_name(&host);
    let table = server.view().routes.load();
    table
        .routes
        .iter()
        .any(|r| r.name == name && r.pool.backends().iter().any(|b| b.addr == addr))
}

/// The address `leader.mesos.` has in Drover's DNS now (one UDP exchange).
fn leader_ip(socket: &UdpSocket, dns: SocketAddr) -> Option<std::net::IpAddr> {
    let mut q = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    q.add_query(Query::query(
        Name::from_ascii("leader.mesos.").ok()?,
        RecordType::A,
    ));
    socket.send_to(&q.to_vec().ok()?, dns).ok()?;
    let mut buf = [0u8; 1500];
    let n = socket.recv(&mut buf).ok()?;
    let reply = Message::from_vec(&buf[..n]).ok()?;
    if reply.metadata.id != q.metadata.id {
        return None;
    }
    reply.answers.iter().find_map(|r| match &r.data {
        RData::A(a) => Some(std::net::IpAddr::V4(a.0)),
        _ => None,
    })
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
