//! WebSocket (and any `Upgrade`) through the HTTP router: a real WebSocket client and echo
//! server; the tunnel survives route table swaps and is counted.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{self, app, eventually, Backend, Drover};

/// A WebSocket echo server on 127.0.0.1; answers every text message with `NAME: text`.
async fn echo_server(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if let Message::Text(t) = msg {
                        let reply = format!("{name}: {t}");
                        if ws.send(Message::Text(reply.into())).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_websocket_stays_open_across_route_table_changes() {
    let ws_backend = echo_server("ws").await;
    let other = Backend::start("other").await;
    let d = Drover::start("", &app("/chat", "chat.test", 10001, &[ws_backend]));
    d.ready().await;

    let stream = tokio::net::TcpStream::connect(d.http())
        .await
        .expect("connect");
    let request = format!("ws://{}/socket", "chat.test");
    let (mut ws, resp) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("WebSocket handshake through drover");
    assert_eq!(resp.status(), 101);
    ws.send(Message::Text("hello".into())).await.expect("send");
    let reply = ws.next().await.expect("reply").expect("frame");
    assert_eq!(reply.into_text().expect("text").as_str(), "ws: hello");

    // The route goes elsewhere and the table is swapped twice: the tunnel is untouched.
    let version = d.version();
    d.write(
        "catalog.toml",
        &app("/chat", "chat.test", 10001, &[other.addr]),
    );
    d.newer_than(version).await;
    assert_eq!(support::get(d.http(), "chat.test", "/").await.body, "other");
    for i in 0..5 {
        ws.send(Message::Text(format!("m{i}").into()))
            .await
            .expect("send");
        let reply = ws.next().await.expect("reply").expect("frame");
        assert_eq!(
            reply.into_text().expect("text").as_str(),
            format!("ws: m{i}")
        );
    }
    let metrics = support::get(d.admin(), "admin", "/metrics").await.body;
    assert!(
        metrics.contains("drover_http_upgrades_total{route=\"chat_10001\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("drover_http_tunnels_open 1"), "{metrics}");

    ws.close(None).await.expect("close");
    drop(ws);
    eventually("the tunnel is counted closed", || async {
        support::get(d.admin(), "admin", "/metrics")
            .await
            .body
            .contains("drover_http_tunnels_open 0")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_refused_upgrade_is_an_ordinary_answer() {
    // A plain HTTP backend ignores the Upgrade and answers 200: passed on as such.
    let plain = Backend::start("plain").await;
    let d = Drover::start("", &app("/web", "web.test", 10001, &[plain.addr]));
    d.ready().await;
    let answer = one_response(
        d.http(),
        b"GET / HTTP/1.1\r\nHost: web.test\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("plain"), "{answer}");
}

/// Sends `request` on a new connection and reads one response with a `Content-Length`
/// body. The connection stays open (keep-alive), so reading to its end would wait for the
/// test's deadline instead.
async fn one_response(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let read = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(request).await.expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .expect("a Content-Length");
                if got.len() >= end + 4 + length {
                    return text;
                }
            }
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before a whole response: {text}");
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(support::DEADLINE, read)
        .await
        .expect("a whole response in time")
}
