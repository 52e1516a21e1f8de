//! The PROXY protocol on real sockets: a load balancer in front (trusted CIDRs) names the
//! client, which then shows in X-Forwarded-For and counts for ACLs; a missing, malformed or
//! untrusted header closes the connection; TCP service ports can announce the client to
//! backends with a v1 or v2 header.

use std::net::SocketAddr;

use drover::proxy::proxy_protocol::{encode_v2, read_header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{self, app, eventually, Backend, Drover};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n";

fn with_header(header: &[u8]) -> Vec<u8> {
    [header, REQUEST].concat()
}

#[tokio::test]
async fn the_header_names_the_client_for_forwarding_and_acls() {
    let b = Backend::start("web").await;
    let catalog = app("/web", "web.test", 10001, &[b.addr]).replace(
        "HAPROXY_0_VHOST = \"web.test\"",
        "HAPROXY_0_VHOST = \"web.test\", HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL = \"203.0.113.0/24\"",
    );
    let d = Drover::start_with("proxy_protocol = [\"127.0.0.0/8\"]", "", &catalog);
    d.ready().await;

    let v1 = support::raw(
        d.http(),
        &with_header(b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n"),
    )
    .await;
    assert!(v1.starts_with("HTTP/1.1 200"), "{v1}");
    assert!(
        v1.to_ascii_lowercase()
            .contains("x-req-x-forwarded-for: 203.0.113.7"),
        "{v1}"
    );

    let src: SocketAddr = "203.0.113.9:4000".parse().unwrap();
    let v2 = support::raw(d.http(), &with_header(&encode_v2(src, d.http()))).await;
    assert!(v2.starts_with("HTTP/1.1 200"), "{v2}");
    assert!(
        v2.to_ascii_lowercase()
            .contains("x-req-x-forwarded-for: 203.0.113.9"),
        "{v2}"
    );

    // A client outside the ACL, named by the header, is refused like a direct one.
    let outside = support::raw(
        d.http(),
        &with_header(b"PROXY TCP4 198.51.100.1 127.0.0.1 5555 80\r\n"),
    )
    .await;
    assert!(outside.starts_with("HTTP/1.1 403"), "{outside}");

    // No header, or a broken one: closed without an answer.
    assert_eq!(support::raw(d.http(), REQUEST).await, "");
    assert_eq!(
        support::raw(
            d.http(),
            &with_header(b"PROXY TCP4 1.2.3 127.0.0.1 1 2\r\n")
        )
        .await,
        ""
    );
    assert_eq!(
        b.hits(),
        2,
        "only the two good requests from inside the ACL"
    );
}

#[tokio::test]
async fn an_untrusted_peer_is_closed_on_even_with_a_good_header() {
    let b = Backend::start("web").await;
    let d = Drover::start_with(
        "proxy_protocol = [\"10.0.0.0/8\"]",
        "",
        &app("/web", "web.test", 10001, &[b.addr]),
    );
    d.ready().await;
    let out = support::raw(
        d.http(),
        &with_header(b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n"),
    )
    .await;
    assert_eq!(out, "", "127.0.0.1 is not a trusted load balancer");
    assert_eq!(b.hits(), 0);
}

/// A TCP backend that reads the PROXY header Drover sends and answers with the client
/// address it names, then echoes what follows.
async fn announce_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(h) = read_header(&mut s, std::time::Duration::from_secs(5)).await else {
                    return;
                };
                let who = h.source.map(|a| a.to_string()).unwrap_or_default();
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let _ = s
                    .write_all(
                        format!(
                            "{who} v{} {}",
                            h.version,
                            String::from_utf8_lossy(&buf[..n])
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn tcp_ports_take_the_header_and_announce_the_client_to_backends() {
    let backend = announce_backend().await;
    let tcp = "[tcp]\nbind = \"127.0.0.1\"\nports = \"10011\"\nproxy_protocol = [\"127.0.0.1\"]\nsend_proxy_protocol = \"v2\"\n";
    let d = Drover::start(tcp, &app("/db", "", 10011, &[backend]));
    d.ready().await;
    let port: SocketAddr = "127.0.0.1:10011".parse().unwrap();
    let answer = eventually("the service port answers", || async {
        let out = support::raw(port, b"PROXY TCP4 192.0.2.5 127.0.0.1 6000 10011\r\nping").await;
        (!out.is_empty()).then_some(out)
    })
    .await;
    assert_eq!(answer, "192.0.2.5:6000 v2 ping");
    assert_eq!(support::raw(port, b"ping").await, "", "no header: closed");
}
