//! Connections spread over the worker threads: a burst of keep-alive connections to the
//! HTTP router is served by both workers (the test config runs two), whichever accepted it;
//! a burst on a TCP service port, some of it handed between workers, carries every byte.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{app, Drover, DEADLINE};

const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// A keep-alive HTTP/1.1 backend that counts the connections it accepts and answers every
/// request head with `ANSWER`.
async fn counting_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    // Requests have no body here: each head ends a request.
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if stream.write_all(ANSWER).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// Sends one request on `stream` and reads the whole answer (its body is 2 bytes).
async fn request(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: web.example.com\r\n\r\n")
        .await
        .expect("write");
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\nok") {
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut chunk))
            .await
            .expect("answer within the deadline")
            .expect("read");
        assert!(n > 0, "connection closed before the answer was complete");
        got.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connections_is_served_by_both_workers() {
    let (backend, upstream_connections) = counting_backend().await;
    let drover = Drover::start("", &app("/web", "web.example.com", 10001, &[backend]));
    drover.ready().await;

    // 16 connections opened at once: one worker tends to accept the whole burst.
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(TcpStream::connect(drover.http()).await.expect("connect"));
    }
    // One request at a time: a worker then reuses its one pooled backend connection, so
    // each worker that serves any of the 16 adds exactly one backend connection (or more,
    // if a request comes before the previous answer's connection is back in the pool).
    for round in 0..2 {
        for (i, client) in clients.iter_mut().enumerate() {
            let answer = request(client).await;
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "round {round}, connection {i}: {answer}"
            );
        }
    }
    let upstream = upstream_connections.load(Ordering::SeqCst);
    assert!(
        upstream >= 2,
        "{upstream} backend connection(s): one worker served all 16 clients"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_a_service_port_round_trips_on_every_connection() {
    // An echo backend.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let backend = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let port = crate::support::free_port();
    let tcp = "[tcp]\nbind = \"127.0.0.1\"\nports = \"1024-65535\"\n";
    let drover = Drover::start(tcp, &app("/echo", "", port, &[backend]));
    drover.ready().await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let first = crate::support::eventually("the service port to accept", || async move {
        TcpStream::connect(addr).await.ok()
    })
    .await;

    let mut clients = vec![first];
    for _ in 1..16 {
        clients.push(TcpStream::connect(addr).await.expect("connect"));
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let msg = format!("hello from {i}");
        client.write_all(msg.as_bytes()).await.expect("write");
        let mut back = vec![0; msg.len()];
        tokio::time::timeout(DEADLINE, client.read_exact(&mut back))
            .await
            .expect("echo within the deadline")
            .expect("read");
        assert_eq!(back, msg.as_bytes(), "connection {i}");
    }
}
