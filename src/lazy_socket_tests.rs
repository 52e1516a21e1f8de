use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

async fn pair() -> (LazyStream, SocketAddr, tokio::net::TcpStream) {
    let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std.set_nonblocking(true).unwrap();
    let listener = LazyListener::new(std).unwrap();
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, peer) = listener.accept().await.unwrap();
    (server, peer, client)
}

#[tokio::test]
async fn a_request_already_sent_is_read_and_answered_without_registering() {
    let (mut server, peer, mut client) = pair().await;
    assert_eq!(peer, client.local_addr().unwrap());
    client.write_all(b"ping").await.unwrap();
    // Wait until the bytes are in the server's receive buffer, as a client's request usually is.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut got = [0u8; 16];
    let n = server.read(&mut got).await.unwrap();
    assert_eq!(&got[..n], b"ping");
    server.write_all(b"pong").await.unwrap();
    server.shutdown().await.unwrap();
    assert!(!server.is_registered(), "nothing had to wait");
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, b"pong");
}

#[tokio::test]
async fn a_read_with_nothing_sent_yet_registers_and_wakes_when_bytes_come() {
    let (mut server, _, mut client) = pair().await;
    let reader = tokio::spawn(async move {
        let mut got = [0u8; 16];
        let n = server.read(&mut got).await.unwrap();
        (got[..n].to_vec(), server.is_registered())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.write_all(b"late").await.unwrap();
    let (got, registered) = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the reactor woke the reader")
        .unwrap();
    assert_eq!(got, b"late");
    assert!(registered);
}

#[tokio::test]
async fn a_write_past_the_send_buffer_waits_for_the_peer_and_completes() {
    let (mut server, _, mut client) = pair().await;
    let big = vec![7u8; 8 << 20];
    let writer = tokio::spawn(async move {
        server.write_all(&big).await.unwrap();
        server.shutdown().await.unwrap();
        server.is_registered()
    });
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut got))
        .await
        .expect("the whole body within 10 s")
        .unwrap();
    assert_eq!(got.len(), 8 << 20);
    assert!(got.iter().all(|&b| b == 7));
    assert!(
        writer.await.unwrap(),
        "8 MiB does not fit a loopback send buffer"
    );
}

#[tokio::test]
async fn a_socket_handed_to_another_worker_keeps_working() {
    let (server, _, mut client) = pair().await;
    let std = server.detach().unwrap();
    let mut server = LazyStream::attach(std).unwrap();
    client.write_all(b"moved").await.unwrap();
    let mut got = [0u8; 5];
    server.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"moved");
    // A registered one leaves its reactor and comes back unregistered.
    let mut more = [0u8; 4];
    let read = tokio::spawn(async move {
        server.read_exact(&mut more).await.unwrap();
        (server, more)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.write_all(b"wait").await.unwrap();
    let (server, more) = read.await.unwrap();
    assert_eq!(&more, b"wait");
    assert!(server.is_registered());
    let mut server = LazyStream::attach(server.detach().unwrap()).unwrap();
    assert!(!server.is_registered());
    server.write_all(b"ok").await.unwrap();
    let mut answer = [0u8; 2];
    client.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"ok");
}

#[tokio::test]
async fn accepted_sockets_are_non_blocking_with_nodelay() {
    let (server, _, _client) = pair().await;
    let std = server.detach().unwrap();
    assert!(std.nodelay().unwrap());
    let mut buf = [0u8; 1];
    let err = std::io::Read::read(&mut &std, &mut buf).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
}
