//! The TCP proxy on service ports, end to end: bytes and half-close through a port, falling
//! through a refused backend, a port without tasks, and listeners following the catalog
//! (ports opened, closed while open connections continue, failed binds retried).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{self, eventually, free_port, Drover, DEADLINE};

const TCP: &str = "[tcp]\nbind = \"127.0.0.1\"\nports = \"1024-65535\"\n";

/// A backend that echoes every byte and closes its side after the client closes its own.
struct Echo {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Echo {
    async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                        let _ = w.shutdown().await;
                    }
                });
            }
        });
        Echo { addr, task }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Connects to the service port once its listener is open.
async fn connect_when_open(port: u16) -> TcpStream {
    eventually(&format!("port {port} to accept"), || async move {
        TcpStream::connect(local(port)).await.ok()
    })
    .await
}

/// Waits until the admin status of the service port on 127.0.0.1 is `want` (None: absent).
async fn listener_state(drover: &Drover, port: u16, want: Option<&str>) {
    let view = drover.server().view().clone();
    eventually(&format!("listener {port} to be {want:?}"), || {
        let state = view.listeners.load_full().get(&local(port)).cloned();
        async move { (state.as_deref() == want).then_some(()) }
    })
    .await
}

/// Writes `msg` and reads the same number of bytes back.
async fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).await.expect("write");
    let mut back = vec![0; msg.len()];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut back))
        .await
        .expect("echo within the deadline")
        .expect("read echo");
    back
}

/// Reads until EOF; fails the test on an error or after the deadline.
async fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut out))
        .await
        .expect("EOF within the deadline")
        .expect("read");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_round_trip_through_a_service_port() {
    let echo = Echo::start().await;
    let port = free_port();
    let drover = Drover::start(TCP, &support::app("/echo", "", port, &[echo.addr]));
    drover.ready().await;

    let mut s = connect_when_open(port).await;
    assert_eq!(round_trip(&mut s, b"hello").await, b"hello");
    assert_eq!(round_trip(&mut s, b"again").await, b"again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_still_returns_every_byte_then_eof() {
    let echo = Echo::start().await;
    let port = free_port();
    let drover = Drover::start(TCP, &support::app("/echo", "", port, &[echo.addr]));
    drover.ready().await;

    // Large enough to fill socket buffers, so writing and reading must overlap.
    let sent: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let stream = connect_when_open(port).await;
    let (mut r, mut w) = stream.into_split();
    let to_send = sent.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&to_send).await.expect("write");
        // Half-close: no more bytes from us, but keep reading.
        w.shutdown().await.expect("shutdown write");
        w
    });
    let mut back = Vec::new();
    tokio::time::timeout(DEADLINE, r.read_to_end(&mut back))
        .await
        .expect("EOF within the deadline")
        .expect("read");
    let _w = writer.await.expect("writer");
    assert_eq!(back.len(), sent.len());
    assert!(back == sent, "echoed bytes differ");
}

/// The backend ends its side first and the client goes on sending: the backend still gets
/// every byte, then a clean EOF (the proxy closes that socket without a separate shutdown
/// once both directions are over, and the close must be a FIN, never a reset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_done_first_still_gets_every_byte_then_eof() {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let backend_addr = listener.local_addr().expect("addr");
    let backend = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        stream.write_all(b"bye").await.expect("write");
        stream.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        // An error here (a reset) fails the test: the client's bytes must end in EOF.
        stream.read_to_end(&mut got).await.map(|_| got)
    });
    let port = free_port();
    let drover = Drover::start(TCP, &support::app("/first", "", port, &[backend_addr]));
    drover.ready().await;

    let mut client = connect_when_open(port).await;
    // The backend's FIN has come through before the client sends.
    assert_eq!(read_to_eof(&mut client).await, b"bye");
    client.write_all(b"late bytes").await.expect("write");
    client.shutdown().await.expect("shutdown");
    let got = tokio::time::timeout(DEADLINE, backend)
        .await
        .expect("backend done within the deadline")
        .expect("backend task")
        .expect("backend read to a clean EOF");
    assert_eq!(got, b"late bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_backend_falls_through_to_the_next() {
    let echo = Echo::start().await;
    let dead = local(free_port()); // nothing listens there: connect is refused
    let port = free_port();
    let drover = Drover::start(TCP, &support::app("/echo", "", port, &[dead, echo.addr]));
    drover.ready().await;

    // Round robin over two backends: of two consecutive connections, one picks the dead
    // backend first and must fall through to the echo.
    for i in 0..4 {
        let mut s = connect_when_open(port).await;
        let msg = format!("try {i}");
        assert_eq!(round_trip(&mut s, msg.as_bytes()).await, msg.as_bytes());
    }
    let metrics = &drover.server().view().metrics;
    let route = format!("echo_{port}");
    let failed = metrics
        .upstream_errors
        .with_label_values(&[&route, "connect"])
        .get();
    assert!(failed >= 1, "connect failures counted: {failed}");
    let table = drover.server().view().routes.load();
    let pool = &table.lookup_tcp(port).expect("route").pool;
    let dead_backend = pool
        .backends()
        .iter()
        .find(|b| b.addr == dead)
        .expect("dead");
    assert!(dead_backend.failures() >= 1);
    assert_eq!(
        dead_backend.in_flight(),
        0,
        "a failed connect holds no in-flight count"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_without_tasks_accepts_then_closes_at_once() {
    let port = free_port();
    let drover = Drover::start(TCP, &support::app("/idle", "", port, &[]));
    drover.ready().await;

    let mut s = connect_when_open(port).await;
    assert!(read_to_eof(&mut s).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_app_closes_its_port_but_open_connections_continue() {
    let echo = Echo::start().await;
    let port = free_port();
    let drover = Drover::start(TCP, &support::app("/echo", "", port, &[echo.addr]));
    drover.ready().await;
    let mut open = connect_when_open(port).await;
    assert_eq!(round_trip(&mut open, b"before").await, b"before");

    let v = drover.version();
    drover.write("catalog.toml", "");
    drover.newer_than(v).await;
    eventually("the port to refuse connections", || async move {
        TcpStream::connect(local(port)).await.is_err().then_some(())
    })
    .await;

    // The connection accepted before the removal still reaches its backend.
    assert_eq!(round_trip(&mut open, b"after").await, b"after");
    open.shutdown().await.expect("shutdown write");
    assert!(read_to_eof(&mut open).await.is_empty());
    listener_state(&drover, port, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_an_app_opens_its_port() {
    let echo = Echo::start().await;
    let (first, second) = (free_port(), free_port());
    let one = support::app("/one", "", first, &[echo.addr]);
    let drover = Drover::start(TCP, &one);
    drover.ready().await;
    let mut s = connect_when_open(first).await;
    assert_eq!(round_trip(&mut s, b"one").await, b"one");

    let v = drover.version();
    let two = support::app("/two", "", second, &[echo.addr]);
    drover.write("catalog.toml", &format!("{one}{two}"));
    drover.newer_than(v).await;
    let mut s = connect_when_open(second).await;
    assert_eq!(round_trip(&mut s, b"two").await, b"two");

    listener_state(&drover, first, Some("open")).await;
    listener_state(&drover, second, Some("open")).await;
    let metrics = &drover.server().view().metrics;
    assert_eq!(metrics.tcp_listeners.with_label_values(&["open"]).get(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_bind_is_reported_and_retried() {
    let echo = Echo::start().await;
    // Hold the service port ourselves so Drover's bind fails.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").expect("bind blocker");
    let port = blocker.local_addr().expect("addr").port();
    let drover = Drover::start(TCP, &support::app("/echo", "", port, &[echo.addr]));
    drover.ready().await;

    let view = drover.server().view().clone();
    let error = eventually("the bind failure to be reported", || {
        let state = view.listeners.load_full().get(&local(port)).cloned();
        async move { state.filter(|s| s != "open") }
    })
    .await;
    assert!(!error.is_empty());
    let failed = view
        .metrics
        .tcp_listeners
        .with_label_values(&["failed"])
        .get();
    assert_eq!(failed, 1);

    // Free the port: a retry on the backoff timer opens it without any table change.
    drop(blocker);
    let mut s = connect_when_open(port).await;
    assert_eq!(round_trip(&mut s, b"late").await, b"late");
    listener_state(&drover, port, Some("open")).await;
    assert_eq!(
        view.metrics
            .tcp_listeners
            .with_label_values(&["failed"])
            .get(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_are_counted_by_port() {
    let echo = Echo::start().await;
    let port = free_port();
    let drover = Drover::start(TCP, &support::app("/echo", "", port, &[echo.addr]));
    drover.ready().await;

    let mut s = connect_when_open(port).await;
    assert_eq!(round_trip(&mut s, b"count me").await, b"count me");
    let text = drover.server().view().metrics.render();
    let line = format!("drover_tcp_connections_total{{port=\"{port}\"}}");
    assert!(text.contains(&line), "{line} missing from:\n{text}");
}
