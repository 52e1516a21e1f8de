//! UDP service ports, end to end: real UDP echo backends on 127.0.0.x that answer with their
//! name, clients on their own sockets, the catalog file declaring ports as `udp` or
//! `udp,tcp`. Flows keep their backend, spread by the pool's balance, expire when idle, end
//! when their backend leaves, and are bounded by `max_flows`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::support::{eventually, free_port, Drover, DEADLINE};

const TCP: &str = "[tcp]\nbind = \"127.0.0.1\"\nports = \"1024-65535\"\n";

/// A UDP backend that answers each datagram with `NAME:` and the datagram; with `tcp`, an
/// echo on the same port number over TCP too.
struct Echo {
    addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Echo {
    /// On `ip` (127.0.0.x), a port of the system's choosing.
    async fn start(name: &str, ip: [u8; 4]) -> Echo {
        let socket = UdpSocket::bind(SocketAddr::from((ip, 0)))
            .await
            .expect("bind UDP echo");
        let addr = socket.local_addr().expect("addr");
        Echo {
            addr,
            tasks: vec![tokio::spawn(udp_echo(socket, name.to_string()))],
        }
    }

    /// UDP and TCP on one port number (picked again if the TCP side is taken).
    async fn start_both(name: &str) -> Echo {
        for _ in 0..20 {
            let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
            let addr = socket.local_addr().expect("addr");
            let Ok(listener) = TcpListener::bind(addr).await else {
                continue;
            };
            let tcp = tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    tokio::spawn(async move {
                        let (mut r, mut w) = stream.split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    });
                }
            });
            return Echo {
                addr,
                tasks: vec![tokio::spawn(udp_echo(socket, name.to_string())), tcp],
            };
        }
        panic!("no port free for both UDP and TCP");
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn udp_echo(socket: UdpSocket, name: String) {
    let mut buf = vec![0; 65_536];
    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
        let mut reply = format!("{name}:").into_bytes();
        reply.extend_from_slice(&buf[..n]);
        let _ = socket.send_to(&reply, from).await;
    }
}

/// A catalog app with one UDP (or `protocol`) service port and one task per backend.
fn app(id: &str, port: u16, protocol: &str, labels: &str, backends: &[SocketAddr]) -> String {
    let tasks: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ host = \"{}\", ports = [{}] }}", b.ip(), b.port()))
        .collect();
    format!(
        "[[app]]\nid = \"{id}\"\nlabels = {{ {labels} }}\n\
         ports = [{{ port = {port}, protocol = \"{protocol}\" }}]\ntasks = [{}]\n\n",
        tasks.join(", ")
    )
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Waits until Drover holds the UDP port (our own bind of it fails), without sending
/// anything, so no flow is opened and no pick is spent.
async fn wait_bound(port: u16) {
    eventually(&format!("UDP port {port} to be bound"), || async move {
        std::net::UdpSocket::bind(local(port))
            .is_err()
            .then_some(())
    })
    .await
}

/// A client: its own socket, connected to the service port.
async fn client(port: u16) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    s.connect(local(port)).await.expect("connect");
    s
}

/// Sends `msg`, returns the name of the backend that answered (the reply must echo `msg`);
/// `None` when no answer comes within `wait`.
async fn ask(s: &UdpSocket, msg: &str, wait: Duration) -> Option<String> {
    s.send(msg.as_bytes()).await.expect("send");
    let mut buf = vec![0; 2048];
    let n = tokio::time::timeout(wait, s.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    let reply = String::from_utf8_lossy(&buf[..n]).to_string();
    let (name, echoed) = reply.split_once(':').expect("NAME:msg");
    assert_eq!(echoed, msg, "the reply echoes the datagram");
    Some(name.to_string())
}

async fn answer(s: &UdpSocket, msg: &str) -> String {
    ask(s, msg, DEADLINE).await.expect("an answer")
}

fn gauge_flows(drover: &Drover, port: u16) -> i64 {
    let m = &drover.server().view().metrics;
    m.udp_flows.with_label_values(&[&port.to_string()]).get()
}

async fn flows_become(drover: &Drover, port: u16, want: i64) {
    eventually(&format!("{want} flows on {port}"), || {
        let n = gauge_flows(drover, port);
        async move { (n == want).then_some(()) }
    })
    .await
}

/// Waits until `counter` reaches `want`, and fails if it went past it.
async fn counter_becomes(counter: prometheus::IntCounter, want: u64) {
    eventually(&format!("a count of {want}"), || {
        let n = counter.get();
        async move { (n >= want).then_some(()) }
    })
    .await;
    assert_eq!(counter.get(), want);
}

fn config(udp: &str) -> String {
    format!("{TCP}\n[udp]\n{udp}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_flows_each_keep_one_backend_and_spread_by_round_robin() {
    let echoes = [
        Echo::start("a", [127, 0, 0, 2]).await,
        Echo::start("b", [127, 0, 0, 3]).await,
        Echo::start("c", [127, 0, 0, 4]).await,
    ];
    let addrs: Vec<SocketAddr> = echoes.iter().map(|e| e.addr).collect();
    let port = free_port();
    let drover = Drover::start(&config(""), &app("/stats", port, "udp", "", &addrs));
    drover.ready().await;
    wait_bound(port).await;

    // 100 clients at once, three datagrams each, each waiting for its answer.
    let clients: Vec<_> = (0..100)
        .map(|i| {
            tokio::spawn(async move {
                let s = client(port).await;
                let mut seen = Vec::new();
                for n in 0..3 {
                    seen.push(answer(&s, &format!("client {i} datagram {n}")).await);
                }
                seen
            })
        })
        .collect();
    let mut per_backend = std::collections::BTreeMap::new();
    for c in clients {
        let seen = c.await.expect("client");
        assert!(
            seen.iter().all(|b| *b == seen[0]),
            "one flow, one backend: {seen:?}"
        );
        *per_backend.entry(seen[0].clone()).or_insert(0) += 1;
    }
    // One pick per flow, round robin: 34, 33 and 33 in some order.
    let mut counts: Vec<i32> = per_backend.values().copied().collect();
    counts.sort();
    assert_eq!(counts, [33, 33, 34], "{per_backend:?}");

    assert_eq!(gauge_flows(&drover, port), 100);
    let m = &drover.server().view().metrics;
    let p = port.to_string();
    // Counted once sent, so the last reply may reach its client just before its count.
    counter_becomes(m.udp_datagrams.with_label_values(&[&p, "in"]), 300).await;
    counter_becomes(m.udp_datagrams.with_label_values(&[&p, "out"]), 300).await;
    // Each flow counts as in flight on its backend, for leastconn.
    let table = drover.server().view().routes.load();
    let pool = &table.lookup_udp(port).expect("udp route").pool;
    let in_flight: usize = pool.backends().iter().map(|b| b.in_flight()).sum();
    assert_eq!(in_flight, 100);
    let text = m.render();
    assert!(
        text.contains(&format!("drover_udp_flows{{port=\"{port}\"}} 100")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_balance_sends_every_flow_of_one_address_to_one_backend() {
    let echoes = [
        Echo::start("a", [127, 0, 0, 2]).await,
        Echo::start("b", [127, 0, 0, 3]).await,
        Echo::start("c", [127, 0, 0, 4]).await,
    ];
    let addrs: Vec<SocketAddr> = echoes.iter().map(|e| e.addr).collect();
    let port = free_port();
    let labels = "HAPROXY_0_BALANCE = \"source\"";
    let drover = Drover::start(&config(""), &app("/stats", port, "udp", labels, &addrs));
    drover.ready().await;
    wait_bound(port).await;

    // Every client is 127.0.0.1: the source hash gives all of them one backend.
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..10 {
        let s = client(port).await;
        seen.insert(answer(&s, &format!("client {i}")).await);
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    flows_become(&drover, port, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_flow_stays_and_an_idle_one_expires() {
    let (a, b) = (
        Echo::start("a", [127, 0, 0, 2]).await,
        Echo::start("b", [127, 0, 0, 3]).await,
    );
    let port = free_port();
    let drover = Drover::start(
        &config("idle_timeout = \"1s\""),
        &app("/stats", port, "udp", "", &[a.addr, b.addr]),
    );
    drover.ready().await;
    wait_bound(port).await;

    let s = client(port).await;
    let first = answer(&s, "hello").await;
    // Busy for longer than the idle timeout: still one flow, so still one backend.
    for n in 0..12 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(answer(&s, &format!("busy {n}")).await, first);
    }
    assert_eq!(gauge_flows(&drover, port), 1);

    // Silent: the flow ends.
    flows_become(&drover, port, 0).await;
    // The next datagram opens a new flow; round robin gives it the other backend.
    let next = answer(&s, "back again").await;
    assert_ne!(next, first, "a new flow, a new pick");
    assert_eq!(gauge_flows(&drover, port), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_backends_flows_end_at_once() {
    let (a, b) = (
        Echo::start("a", [127, 0, 0, 2]).await,
        Echo::start("b", [127, 0, 0, 3]).await,
    );
    let port = free_port();
    let drover = Drover::start(
        &config(""),
        &app("/stats", port, "udp", "", &[a.addr, b.addr]),
    );
    drover.ready().await;
    wait_bound(port).await;

    let (one, two) = (client(port).await, client(port).await);
    let on_one = answer(&one, "one").await;
    let on_two = answer(&two, "two").await;
    assert_ne!(on_one, on_two, "round robin: one flow on each");
    let (kept, removed) = if on_one == "a" {
        (b.addr, a.addr)
    } else {
        (a.addr, b.addr)
    };
    assert_eq!(gauge_flows(&drover, port), 2);

    let v = drover.version();
    drover.write("catalog.toml", &app("/stats", port, "udp", "", &[kept]));
    drover.newer_than(v).await;
    flows_become(&drover, port, 1).await;

    // The client whose backend left is on the one that stayed; the other never moved.
    let survivor = answer(&two, "two again").await;
    assert_eq!(survivor, on_two);
    let moved = answer(&one, "one again").await;
    assert_eq!(
        moved, on_two,
        "the flow to {removed} ended; a new one went to {kept}"
    );
    assert_eq!(gauge_flows(&drover, port), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_flows_bounds_the_flows_and_counts_the_rest() {
    let a = Echo::start("a", [127, 0, 0, 2]).await;
    let port = free_port();
    let drover = Drover::start(
        &config("max_flows = 5"),
        &app("/stats", port, "udp", "", &[a.addr]),
    );
    drover.ready().await;
    wait_bound(port).await;

    let clients = clients(8, port).await;
    // The first five open flows; three more find the port full and are dropped.
    for (i, s) in clients.iter().take(5).enumerate() {
        assert_eq!(answer(s, &format!("client {i}")).await, "a");
    }
    let late = clients[5..]
        .iter()
        .map(|s| ask(s, "late", Duration::from_millis(300)));
    for got in futures_util::future::join_all(late).await {
        assert_eq!(got, None, "no flow for a sixth client");
    }
    assert_eq!(gauge_flows(&drover, port), 5);
    let m = &drover.server().view().metrics;
    let dropped = m
        .udp_dropped
        .with_label_values(&[&port.to_string(), "max_flows"]);
    counter_becomes(dropped, 3).await;
    // The flows that exist carry on.
    assert_eq!(answer(&clients[0], "still here").await, "a");
}

async fn clients(n: usize, port: u16) -> Vec<UdpSocket> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(client(port).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_tcp_port_echoes_on_both_and_a_udp_port_has_no_tcp_listener() {
    let both = Echo::start_both("both").await;
    let udp_only = Echo::start("udp", [127, 0, 0, 2]).await;
    let (port, udp_port) = (free_port(), free_port());
    let catalog = format!(
        "{}{}",
        app("/syslog", port, "udp,tcp", "", &[both.addr]),
        app("/dns", udp_port, "udp", "", &[udp_only.addr])
    );
    let drover = Drover::start(&config(""), &catalog);
    drover.ready().await;
    wait_bound(port).await;

    let s = client(port).await;
    assert_eq!(answer(&s, "over udp").await, "both");
    let mut tcp = eventually("the TCP side to accept", || async move {
        TcpStream::connect(local(port)).await.ok()
    })
    .await;
    tcp.write_all(b"over tcp").await.expect("write");
    let mut back = [0; 8];
    tokio::time::timeout(DEADLINE, tcp.read_exact(&mut back))
        .await
        .expect("echo in time")
        .expect("read");
    assert_eq!(&back, b"over tcp");

    wait_bound(udp_port).await;
    let s = client(udp_port).await;
    assert_eq!(answer(&s, "dns").await, "udp");
    assert!(
        TcpStream::connect(local(udp_port)).await.is_err(),
        "a udp-only port gets no TCP listener"
    );

    // /debug/routes lists both UDP ports, and the udp,tcp one among the TCP ports too.
    let dump = crate::support::get(drover.admin(), "admin", "/debug/routes").await;
    let doc: serde_json::Value = serde_json::from_str(&dump.body).expect("JSON");
    let udp_ports: Vec<u64> = doc["udp_ports"]
        .as_array()
        .expect("udp_ports")
        .iter()
        .map(|p| p["port"].as_u64().expect("port"))
        .collect();
    let mut want = vec![u64::from(port), u64::from(udp_port)];
    want.sort();
    assert_eq!(udp_ports, want, "{doc:#}");
    let tcp_ports: Vec<u64> = doc["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| p["port"].as_u64().expect("port"))
        .collect();
    assert_eq!(tcp_ports, [u64::from(port)], "{doc:#}");
    let syslog = doc["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .find(|r| r["app_id"] == "/syslog")
        .expect("the /syslog route");
    assert_eq!(syslog["udp_listen"], format!("127.0.0.1:{port}"));
    assert_eq!(syslog["listen"], format!("127.0.0.1:{port}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_backend_ends_its_flow_and_counts_against_it() {
    let live = Echo::start("live", [127, 0, 0, 2]).await;
    // Bound, then closed: datagrams to it draw an ICMP port unreachable.
    let dead = std::net::UdpSocket::bind("127.0.0.3:0")
        .and_then(|s| s.local_addr())
        .expect("a dead UDP address");
    let port = free_port();
    let drover = Drover::start(
        &config(""),
        &app("/stats", port, "udp", "", &[live.addr, dead]),
    );
    drover.ready().await;
    wait_bound(port).await;

    // Round robin: of two new flows, one goes to the dead backend and gets nothing; the
    // one that answers tells which.
    let (one, two) = (client(port).await, client(port).await);
    one.send(b"one").await.expect("send");
    two.send(b"two").await.expect("send");
    let (mut buf_one, mut buf_two) = ([0; 64], [0; 64]);
    let unlucky = tokio::time::timeout(DEADLINE, async {
        tokio::select! {
            _ = one.recv(&mut buf_one) => &two,
            _ = two.recv(&mut buf_two) => &one,
        }
    })
    .await
    .expect("the live backend answers one of them");
    // The refusal ended that flow: the client's next datagram opens one to the live one.
    let route = format!("stats_{port}");
    let m = drover.server().view().metrics.clone();
    eventually("the refusal to be counted", || {
        let n = m.upstream_errors.with_label_values(&[&route, "udp"]).get();
        async move { (n >= 1).then_some(()) }
    })
    .await;
    assert_eq!(answer(unlucky, "again").await, "live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_near_maximum_datagrams_pass_whole() {
    let a = Echo::start("a", [127, 0, 0, 2]).await;
    let port = free_port();
    let drover = Drover::start(&config(""), &app("/stats", port, "udp", "", &[a.addr]));
    drover.ready().await;
    wait_bound(port).await;

    let s = client(port).await;
    assert_eq!(answer(&s, "").await, "a");
    // 60,000 bytes: one datagram, larger than any buffer short of 64 KiB.
    let big: String = (0..60_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    s.send(big.as_bytes()).await.expect("send");
    let mut buf = vec![0; 65_536];
    let n = tokio::time::timeout(DEADLINE, s.recv(&mut buf))
        .await
        .expect("in time")
        .expect("recv");
    assert_eq!(n, 2 + big.len());
    assert!(buf[..n] == *format!("a:{big}").as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marathon_udp_port_definition_gets_a_udp_port_and_a_bad_protocol_only_its_app_out() {
    use crate::support::marathon::{self, FakeMarathon, FakeTask};
    let a = Echo::start("a", [127, 0, 0, 2]).await;
    let (port, other) = (free_port(), free_port());
    let mut statsd = marathon::app(
        "/statsd",
        &[],
        port,
        &[FakeTask::new(&marathon::task_id("/statsd", 1), a.addr)],
    );
    statsd["portDefinitions"][0]["protocol"] = "udp".into();
    let mut bad = marathon::app("/bad", &[], other, &[]);
    bad["portDefinitions"][0]["protocol"] = "sctp".into();
    let fake = FakeMarathon::start().await;
    fake.set_apps(marathon::apps_json(&[statsd, bad]));
    let drover = Drover::start(
        &format!(
            "{}\n[marathon]\nurls = [\"{}\"]\ngroups = [\"*\"]\n",
            config(""),
            fake.url()
        ),
        "",
    );
    drover.ready().await;
    wait_bound(port).await;

    let s = client(port).await;
    assert_eq!(answer(&s, "gauge:1|g").await, "a");
    let table = drover.server().view().routes.load();
    assert!(
        table.lookup_tcp(port).is_none(),
        "udp only: no TCP listener"
    );
    let problem = table
        .problems
        .iter()
        .find(|p| p.app_id == "/bad")
        .expect("the bad app is reported");
    assert!(problem.message.contains("\"sctp\""), "{problem}");
    assert!(table.lookup_udp(other).is_none() && table.lookup_tcp(other).is_none());
}
