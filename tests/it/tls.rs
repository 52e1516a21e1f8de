//! The `[https]` listener: a test CA made here, certificates chosen by SNI (exact, wildcard,
//! default), a certificate swapped while a connection stays open, and HTTP/2 through the
//! proxy to an HTTP/1.1 backend.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::support::{self, app, eventually, Backend, Drover};

/// A CA and the certificates it signs for the tests.
struct Ca {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "drover test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA cert");
        Ca {
            cert,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// Writes `dir/stem.pem` (leaf then key) for `names`; returns the leaf's DER.
    fn write(&self, dir: &Path, stem: &str, names: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let pem = format!("{}{}", cert.pem(), key.serialize_pem());
        // Write then rename, as deploy tools do, so a reload never sees half a file.
        let tmp = dir.join(format!(".{stem}.tmp"));
        std::fs::write(&tmp, pem).expect("write cert");
        std::fs::rename(&tmp, dir.join(format!("{stem}.pem"))).expect("rename cert");
        cert.der().to_vec()
    }

    fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// A TLS connection to `addr` with `sni`; the leaf certificate the server chose.
async fn connect(
    ca: &Ca,
    addr: SocketAddr,
    sni: &str,
    alpn: &[&[u8]],
) -> (TlsStream<TcpStream>, Vec<u8>) {
    let connector = tokio_rustls::TlsConnector::from(ca.client_config(alpn));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from(sni.to_string()).expect("server name");
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let leaf = tls.get_ref().1.peer_certificates().expect("certs")[0].to_vec();
    (tls, leaf)
}

/// An HTTP/1.1 client over an established TLS connection.
async fn h1(tls: TlsStream<TcpStream>) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    sender
}

/// One GET for `host` over `tls` (HTTP/1.1): the answer's `name` header.
async fn header_of_get(tls: TlsStream<TcpStream>, host: &str, name: &str) -> Option<String> {
    let resp = h1(tls).await.send_request(get(host)).await.expect("send");
    resp.headers()
        .get(name)
        .map(|v| v.to_str().expect("text header").to_string())
}

/// Makes `dir/certs`, the directory `https_config` names.
fn certs_dir(dir: &Path) -> std::path::PathBuf {
    let certs = dir.join("certs");
    std::fs::create_dir(&certs).expect("certs dir");
    certs
}

fn https_config() -> String {
    "[https]\nlisten = \"127.0.0.1:0\"\ncerts = \"certs\"\n".to_string()
}

async fn body(resp: hyper::Response<hyper::body::Incoming>) -> String {
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn get(host: &str) -> Request<Full<Bytes>> {
    Request::get(format!("https://{host}/"))
        .header("host", host)
        .body(Full::default())
        .expect("request")
}

#[tokio::test]
async fn sni_picks_exact_wildcard_and_default_and_routing_is_by_host() {
    let ca = Ca::new();
    let mut ders = std::collections::HashMap::new();
    let shop = Backend::start("shop").await;
    let api = Backend::start("api").await;
    let catalog = [
        app("/shop", "shop.example.test", 10001, &[shop.addr]),
        app("/api", "api.example.test", 10002, &[api.addr]),
    ]
    .concat();
    let d = Drover::start_prepared("", &https_config(), &catalog, |dir| {
        let certs = certs_dir(dir);
        ders.insert(
            "default",
            ca.write(&certs, "default", &["fallback.example.test"]),
        );
        ders.insert("star", ca.write(&certs, "star", &["*.example.test"]));
        ders.insert("shop", ca.write(&certs, "shop", &["shop.example.test"]));
    });
    d.ready().await;
    let addr = d.server().https_addr().expect("https");

    let (_, leaf) = connect(&ca, addr, "shop.example.test", &[b"http/1.1"]).await;
    assert_eq!(leaf, ders["shop"], "exact name");
    let (_, leaf) = connect(&ca, addr, "api.example.test", &[b"http/1.1"]).await;
    assert_eq!(leaf, ders["star"], "wildcard");
    let (_, leaf) = connect(&ca, addr, "fallback.example.test", &[b"http/1.1"]).await;
    assert_eq!(leaf, ders["default"]);

    // A connection made for shop's name still routes each request by its Host (HTTP/1.1).
    let (tls, _) = connect(&ca, addr, "shop.example.test", &[b"http/1.1"]).await;
    let resp = h1(tls)
        .await
        .send_request(get("api.example.test"))
        .await
        .expect("send");
    assert_eq!(
        resp.headers()
            .get("x-req-x-forwarded-proto")
            .map(|v| v.to_str().unwrap()),
        Some("https")
    );
    assert_eq!(body(resp).await, "api");
}

#[tokio::test]
async fn http2_through_the_proxy_reaches_http11_backends() {
    let ca = Ca::new();
    let shop = Backend::start("shop").await;
    let api = Backend::start("api").await;
    let catalog = [
        app("/shop", "shop.example.test", 10001, &[shop.addr]),
        app("/api", "api.example.test", 10002, &[api.addr]),
    ]
    .concat();
    let d = Drover::start_prepared("", &https_config(), &catalog, |dir| {
        let certs = certs_dir(dir);
        ca.write(&certs, "star", &["*.example.test"]);
    });
    d.ready().await;
    let addr = d.server().https_addr().expect("https");
    let (tls, _) = connect(&ca, addr, "shop.example.test", &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    // Several streams at once on one connection, for two hosts (coalescing): each by Host.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let mut sender = sender.clone();
        let host = if i % 2 == 0 {
            "shop.example.test"
        } else {
            "api.example.test"
        };
        tasks.push(tokio::spawn(async move {
            let req = Request::get(format!("https://{host}/n{i}"))
                .body(Full::<Bytes>::default())
                .unwrap();
            let resp = sender.send_request(req).await.expect("h2 request");
            assert_eq!(resp.status(), 200);
            (host, body(resp).await)
        }));
    }
    for t in tasks {
        let (host, got) = t.await.unwrap();
        let want = host.split('.').next().unwrap();
        assert_eq!(got, want, "{host}");
    }
    // The client closes its connection first: a drain with it still open would wait for
    // the client's answer to the GOAWAY ping, which this (blocked) test thread never sends.
    drop(sender);
    conn.await
        .expect("join")
        .expect("h2 connection closes cleanly");
}

#[tokio::test]
async fn a_certificate_swapped_while_a_connection_stays_open() {
    let ca = Ca::new();
    let shop = Backend::start("shop").await;
    let mut first = Vec::new();
    let d = Drover::start_prepared(
        "",
        &https_config(),
        &app("/shop", "shop.example.test", 10001, &[shop.addr]),
        |dir| {
            let certs = certs_dir(dir);
            first = ca.write(&certs, "shop", &["shop.example.test"]);
        },
    );
    d.ready().await;
    let addr = d.server().https_addr().expect("https");
    let (tls, leaf) = connect(&ca, addr, "shop.example.test", &[b"http/1.1"]).await;
    assert_eq!(leaf, first);
    let mut sender = h1(tls).await;

    let second = ca.write(&d.path("certs"), "shop", &["shop.example.test"]);
    assert_ne!(second, first);
    eventually("new connections get the new certificate", || async {
        let (_, leaf) = connect(&ca, addr, "shop.example.test", &[b"http/1.1"]).await;
        (leaf == second).then_some(())
    })
    .await;
    // The open connection was made before and still works.
    let resp = sender
        .send_request(get("shop.example.test"))
        .await
        .expect("send");
    assert_eq!(body(resp).await, "shop");

    // A broken file keeps the last good certificate, and is counted.
    std::fs::write(d.path("certs").join("shop.pem"), "not a certificate").unwrap();
    eventually("the broken file is counted", || async {
        support::get(d.admin(), "admin", "/metrics")
            .await
            .body
            .contains("drover_tls_reloads_total{result=\"error\"}")
            .then_some(())
    })
    .await;
    let (_, leaf) = connect(&ca, addr, "shop.example.test", &[b"http/1.1"]).await;
    assert_eq!(leaf, second, "the last good certificate stays");
    let m = support::get(d.admin(), "admin", "/metrics").await.body;
    assert!(
        m.contains("drover_tls_cert_not_after_timestamp_seconds{cert=\"shop\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn hsts_is_sent_over_https_only() {
    let ca = Ca::new();
    let shop = Backend::start("shop").await;
    let catalog = app("/shop", "shop.example.test", 10001, &[shop.addr]).replace(
        "HAPROXY_0_VHOST = \"shop.example.test\"",
        "HAPROXY_0_VHOST = \"shop.example.test\", HAPROXY_0_USE_HSTS = \"true\"",
    );
    let d = Drover::start_prepared("", &https_config(), &catalog, |dir| {
        let certs = certs_dir(dir);
        ca.write(&certs, "shop", &["shop.example.test"]);
    });
    d.ready().await;
    let addr = d.server().https_addr().expect("https");
    let (tls, _) = connect(&ca, addr, "shop.example.test", &[b"http/1.1"]).await;
    assert_eq!(
        header_of_get(tls, "shop.example.test", "strict-transport-security")
            .await
            .as_deref(),
        Some("max-age=15552000")
    );
    let plain = support::get(d.http(), "shop.example.test", "/").await;
    assert_eq!(plain.header("strict-transport-security"), None);
}

#[tokio::test]
async fn a_service_port_with_its_own_certificate_terminates_tls() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = Ca::new();
    let web = Backend::start("web").await;
    let catalog_for = |pem: &Path| {
        format!(
            "[[app]]\nid = \"/secure\"\nlabels = {{ HAPROXY_0_SSL_CERT = {:?} }}\nports = [10007]\n\
             tasks = [{{ host = \"127.0.0.1\", ports = [{}] }}]\n",
            pem.display().to_string(),
            web.addr.port()
        )
    };
    let tcp = "[tcp]\nbind = \"127.0.0.1\"\nports = \"10007\"\n";
    let certs_dir = tempfile::tempdir().unwrap();
    ca.write(certs_dir.path(), "secure", &["secure.example.test"]);
    let pem = certs_dir.path().join("secure.pem");
    let d = Drover::start(tcp, &catalog_for(&pem));
    d.ready().await;
    let port: SocketAddr = "127.0.0.1:10007".parse().unwrap();
    let answer = eventually("the TLS service port answers", || async {
        let connector = tokio_rustls::TlsConnector::from(ca.client_config(&[b"http/1.1"]));
        let tcp = TcpStream::connect(port).await.ok()?;
        let name = ServerName::try_from("secure.example.test".to_string()).unwrap();
        let mut tls = connector.connect(name, tcp).await.ok()?;
        tls.write_all(b"GET / HTTP/1.1\r\nHost: secure.example.test\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out).into_owned();
        text.ends_with("web").then_some(text)
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn https_behind_a_load_balancer_reads_the_proxy_header_before_tls() {
    use tokio::io::AsyncWriteExt;
    let ca = Ca::new();
    let shop = Backend::start("shop").await;
    let config = "[https]\nlisten = \"127.0.0.1:0\"\ncerts = \"certs\"\nproxy_protocol = [\"127.0.0.0/8\"]\n";
    let d = Drover::start_prepared(
        "",
        config,
        &app("/shop", "shop.example.test", 10001, &[shop.addr]),
        |dir| {
            let certs = certs_dir(dir);
            ca.write(&certs, "shop", &["shop.example.test"]);
        },
    );
    d.ready().await;
    let addr = d.server().https_addr().expect("https");
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"PROXY TCP4 198.51.100.20 127.0.0.1 40000 443\r\n")
        .await
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(ca.client_config(&[b"http/1.1"]));
    let name = ServerName::try_from("shop.example.test".to_string()).unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .expect("TLS after the header");
    assert_eq!(
        header_of_get(tls, "shop.example.test", "x-req-x-forwarded-for")
            .await
            .as_deref(),
        Some("198.51.100.20")
    );
    // Without the header the connection is closed before any TLS.
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let connector = tokio_rustls::TlsConnector::from(ca.client_config(&[b"http/1.1"]));
    let name = ServerName::try_from("shop.example.test".to_string()).unwrap();
    assert!(connector.connect(name, tcp).await.is_err());
}
