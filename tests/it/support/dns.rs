//! DNS test support: Drover's DNS server started alone on 127.0.0.1 (UDP and TCP on one
//! OS-assigned port) over a zone the test stores, the fixture zone of EXPECTED.md config R,
//! a client that sends hickory-proto messages over UDP or TCP, and a fake upstream
//! resolver for forwarding.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drover::dns::name::LabelRules;
use drover::dns::records::{HostRecord, IpSource, RecordOptions};
use drover::dns::server::{serve, DnsServerSettings};
use drover::dns::zone::{Zone, ZoneInput, ZoneOptions};
use drover::handles::ZoneWriter;
use drover::metrics::Metrics;
use drover::shutdown::Shutdown;
use drover::source::mesos::cluster::{convert, ResolvedHosts};
use drover::source::mesos::state::{self, MesosState};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// How long a client waits for one reply.
pub const REPLY_WAIT: Duration = Duration::from_secs(5);

pub fn fixture(rel: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/mesos/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

pub fn fixture_state() -> MesosState {
    state::decode(&fixture("mesos-dns-fake-state.json")).expect("fixture decodes")
}

/// EXPECTED.md §0 config R: domain `mesos`, sources netinfo, docker, mesos, host, RFC 952,
/// name server `mesos-dns.mesos.` at 127.0.0.1, TTL 60 (and master 144.76.157.37:5050: see
/// `compile`).
pub fn config_r(legacy: bool) -> ZoneOptions {
    let mut options = ZoneOptions::mesos_dns_defaults("mesos");
    options.records = RecordOptions {
        domain: "mesos".into(),
        ip_sources: vec![
            IpSource::Netinfo,
            IpSource::Docker,
            IpSource::Mesos,
            IpSource::Host,
        ],
        labels: LabelRules::Rfc952,
        name_server: Some(HostRecord {
            name: "mesos-dns.mesos.".into(),
            ips: vec!["127.0.0.1".parse().unwrap()],
        }),
        legacy_discovery_names: legacy,
        healthy_only: false,
    };
    options
}

/// The zone of `state` as the Mesos source converts it, config R's master configured.
pub fn compile(state: &MesosState, options: &ZoneOptions) -> Zone {
    // The fixture's `no pid` framework is named at `localhost`, resolved as 127.0.0.1.
    let resolved: ResolvedHosts =
        [("localhost".to_string(), vec!["127.0.0.1".parse().unwrap()])].into();
    let cluster = convert(state, &["144.76.157.37:5050".to_string()], &resolved);
    Zone::compile(&ZoneInput {
        cluster: Some(&cluster),
        marathon_apps: &[],
        options,
        checked_down: &std::collections::BTreeSet::new(),
        serial: 0,
    })
}

/// The fixture zone with config R (legacy names as asked).
pub fn fixture_zone(legacy: bool) -> Zone {
    compile(&fixture_state(), &config_r(legacy))
}

/// A DNS server of its own, on its own runtime thread, stopped on drop.
pub struct TestDns {
    pub addr: SocketAddr,
    /// The server's UDP socket (a second handle), for its options.
    pub udp_socket: std::net::UdpSocket,
    /// Stores the zone the server answers from.
    pub zone: ZoneWriter,
    pub metrics: Metrics,
    shutdown: Shutdown,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestDns {
    /// Starts the server for domain `mesos` with `zone` stored (or none) and `forward`.
    pub fn start(zone: Option<Zone>, forward: Vec<SocketAddr>) -> TestDns {
        let mut settings = DnsServerSettings::new("mesos", forward);
        settings.forward_timeout = Duration::from_millis(300);
        TestDns::start_with(zone, settings)
    }

    pub fn start_with(zone: Option<Zone>, settings: DnsServerSettings) -> TestDns {
        let metrics = Metrics::new(prometheus::Registry::new());
        let writer = ZoneWriter::new();
        writer.store(zone.map(Arc::new));
        let shutdown = Shutdown::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = {
            let (reader, metrics, shutdown) = (writer.reader(), metrics.clone(), shutdown.clone());
            std::thread::spawn(move || {
                // As in Drover: a current-thread runtime.
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let (udp, tcp, handle) = bind_pair().await;
                    tx.send((udp.local_addr().unwrap(), handle)).unwrap();
                    serve(udp, tcp, settings, reader, metrics, shutdown).await;
                });
            })
        };
        let (addr, udp_socket) = rx.recv_timeout(REPLY_WAIT).expect("DNS server bound");
        TestDns {
            addr,
            udp_socket,
            zone: writer,
            metrics,
            shutdown,
            thread: Some(thread),
        }
    }

    /// The value of `drover_dns_queries_total{qtype,rcode,transport}`.
    pub fn count(&self, qtype: &str, rcode: &str, transport: &str) -> u64 {
        self.metrics
            .dns_queries
            .get_metric_with_label_values(&[qtype, rcode, transport])
            .map(|c| c.get())
            .unwrap_or(0)
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// UDP and TCP on one port of 127.0.0.1.
/// A UDP socket and a TCP listener on one loopback port, and a second handle on the UDP
/// socket (to read its options while the server has it).
async fn bind_pair() -> (UdpSocket, TcpListener, std::net::UdpSocket) {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        udp.set_nonblocking(true).unwrap();
        let handle = udp.try_clone().unwrap();
        let udp = UdpSocket::from_std(udp).unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
            return (udp, tcp, handle);
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// A query message; `edns` is the advertised UDP payload size, if any.
pub fn query(name: &str, rtype: RecordType, rd: bool, edns: Option<u16>) -> Message {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = rd;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.edns = Some(e);
    }
    m
}

/// One datagram out, one back (or `None` after `wait`).
pub async fn udp_raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => {
            buf.truncate(n);
            Some(buf)
        }
        _ => None,
    }
}

/// One framed message out over a new TCP connection, one back (or `None`).
pub async fn tcp_raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(bytes);
        s.write_all(&framed).await.ok()?;
        let len = s.read_u16().await.ok()?;
        let mut reply = vec![0u8; usize::from(len)];
        s.read_exact(&mut reply).await.ok()?;
        Some(reply)
    };
    tokio::time::timeout(wait, exchange).await.ok().flatten()
}

pub async fn udp(addr: SocketAddr, q: &Message) -> Message {
    let reply = udp_raw(addr, &q.to_vec().unwrap(), REPLY_WAIT)
        .await
        .expect("UDP reply");
    let m = Message::from_vec(&reply).expect("reply parses");
    assert_eq!(m.metadata.id, q.metadata.id, "reply ID");
    m
}

pub async fn tcp(addr: SocketAddr, q: &Message) -> Message {
    let reply = tcp_raw(addr, &q.to_vec().unwrap(), REPLY_WAIT)
        .await
        .expect("TCP reply");
    let m = Message::from_vec(&reply).expect("reply parses");
    assert_eq!(m.metadata.id, q.metadata.id, "reply ID");
    m
}

/// A fake upstream resolver on UDP and TCP of one port: answers every query with
/// `answer` (a function of the query), or stays silent when `silent`; counts queries.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeUpstream {
    pub async fn start(answer: fn(&Message) -> Option<Message>) -> FakeUpstream {
        let (udp, tcp, _) = bind_pair().await;
        let addr = udp.local_addr().unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let count = queries.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                tokio::select! {
                    r = udp.recv_from(&mut buf) => {
                        let Ok((n, from)) = r else { return };
                        count.fetch_add(1, Ordering::SeqCst);
                        let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
                        if let Some(reply) = answer(&q) {
                            let _ = udp.send_to(&reply.to_vec().unwrap(), from).await;
                        }
                    }
                    r = tcp.accept() => {
                        let Ok((mut s, _)) = r else { return };
                        count.fetch_add(1, Ordering::SeqCst);
                        tokio::spawn(async move {
                            let Ok(len) = s.read_u16().await else { return };
                            let mut body = vec![0u8; usize::from(len)];
                            if s.read_exact(&mut body).await.is_err() { return }
                            let Ok(q) = Message::from_vec(&body) else { return };
                            if let Some(reply) = answer(&q) {
                                let bytes = reply.to_vec().unwrap();
                                let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                                framed.extend_from_slice(&bytes);
                                let _ = s.write_all(&framed).await;
                            } else {
                                // Silent: hold the connection open until the client gives up.
                                tokio::time::sleep(Duration::from_secs(30)).await;
                            }
                        });
                    }
                }
            }
        });
        FakeUpstream {
            addr,
            queries,
            task,
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The response code and the sorted A addresses of `name` in `d`'s DNS server, over UDP.
pub async fn drover_a(d: &super::Drover, name: &str) -> (String, Vec<String>) {
    let addr = d.server().dns_addr().expect("[dns] is configured");
    let q = query(name, hickory_proto::rr::RecordType::A, false, None);
    let reply = udp(addr, &q).await;
    let mut ips: Vec<String> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    ips.sort();
    (format!("{:?}", reply.metadata.response_code), ips)
}
