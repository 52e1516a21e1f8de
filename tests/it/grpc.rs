//! gRPC through Drover, with a real gRPC client and server (tonic) on both sides: unary and
//! all three streaming shapes, a `grpc-status` error passed through, deadlines, failures
//! answered as gRPC statuses, many calls multiplexed on few upstream connections, a backend
//! that says GOAWAY, sticky sessions, the access log's `grpc_status`, over the TLS listener
//! (ALPN h2) and over h2c with prior knowledge (with the `[https]` HTTP/2 limits, and a
//! broken frame ending only its connection), to `h2c` and `h2` backends; `drover check` on
//! bad labels.
//!
//! The service is `tests/proto/echo.proto`. Its Rust side is written here by hand (a prost
//! message derive and tonic's generic `client::Grpc` / `server::Grpc` with `ProstCodec`)
//! rather than generated at build time, so building the tests needs no `protoc` and adds
//! no build script. The client and the backend run on hyper's HTTP/2 connections directly:
//! the backend counts the connections Drover opens, and the client adds no deadline of its
//! own, so an expired deadline seen by the client is Drover's doing.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{self, Stream};
use hyper::body::Incoming;
use hyper::http::uri::PathAndQuery;
use hyper::Uri;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tonic::client::Grpc;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::support::{self, dead_addr, eventually, Drover};

// === the service (tests/proto/echo.proto) ===

#[derive(Clone, PartialEq, prost::Message)]
struct EchoMsg {
    #[prost(string, tag = "1")]
    message: String,
    #[prost(uint32, tag = "2")]
    count: u32,
    #[prost(uint32, tag = "3")]
    gap_ms: u32,
}

type Codec = tonic_prost::ProstCodec<EchoMsg, EchoMsg>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type MsgStream = Pin<Box<dyn Stream<Item = Result<EchoMsg, Status>> + Send>>;

fn msg(text: &str) -> EchoMsg {
    EchoMsg {
        message: text.to_string(),
        ..EchoMsg::default()
    }
}

const UNARY: &str = "/echo.Echo/Unary";
const SERVER_STREAM: &str = "/echo.Echo/ServerStream";
const CLIENT_STREAM: &str = "/echo.Echo/ClientStream";
const BIDI: &str = "/echo.Echo/Bidi";

/// The vhost every test app is routed by.
const VHOST: &str = "grpc.test";

// === the backend ===

/// A gRPC backend on 127.0.0.1: answers `NAME:<message>`, counts the connections it
/// accepts and the calls that arrived with `te: trailers`.
struct GrpcBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    te_trailers: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// How a test backend behaves beyond echoing.
#[derive(Default, Clone)]
struct Shape {
    /// Its `SETTINGS_MAX_CONCURRENT_STREAMS`.
    max_streams: Option<u32>,
    /// TLS with ALPN h2 (an `h2` backend).
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Each connection sends GOAWAY once a call arrives on it (then answers that call).
    goaway: bool,
}

impl GrpcBackend {
    async fn start(name: &str) -> GrpcBackend {
        GrpcBackend::start_with(name, Shape::default()).await
    }

    async fn start_with(name: &str, shape: Shape) -> GrpcBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let te_trailers = Arc::new(AtomicUsize::new(0));
        let name: Arc<str> = name.into();
        let (acc, te) = (accepted.clone(), te_trailers.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                acc.fetch_add(1, Ordering::Relaxed);
                let _ = tcp.set_nodelay(true);
                let (name, te, shape) = (name.clone(), te.clone(), shape.clone());
                tokio::spawn(async move {
                    match shape.tls.clone() {
                        None => serve_backend_conn(tcp, name, te, shape).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve_backend_conn(stream, name, te, shape).await;
                            }
                        }
                    }
                });
            }
        });
        GrpcBackend {
            addr,
            accepted,
            te_trailers,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for GrpcBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One backend connection, served until it ends.
async fn serve_backend_conn<S>(io: S, name: Arc<str>, te: Arc<AtomicUsize>, shape: Shape)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let bye = Arc::new(tokio::sync::Notify::new());
    let said_bye = bye.clone();
    let goaway = shape.goaway;
    let service = hyper::service::service_fn(move |req| {
        if req.headers().get("te").is_some_and(|v| v == "trailers") {
            te.fetch_add(1, Ordering::Relaxed);
        }
        let (name, bye) = (name.clone(), said_bye.clone());
        async move {
            if goaway {
                // GOAWAY goes out first; the answer follows it on the same connection.
                bye.notify_one();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            dispatch(name, req).await
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    if let Some(n) = shape.max_streams {
        builder.max_concurrent_streams(n);
    }
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = bye.notified() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn dispatch(
    name: Arc<str>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<tonic::body::Body>, Infallible> {
    let mut grpc = tonic::server::Grpc::new(Codec::default());
    Ok(match req.uri().path() {
        UNARY => grpc.unary(Unary(name), req).await,
        SERVER_STREAM => grpc.server_streaming(ServerStream(name), req).await,
        CLIENT_STREAM => grpc.client_streaming(ClientStream(name), req).await,
        BIDI => grpc.streaming(Bidi(name), req).await,
        _ => Status::unimplemented("no such method").into_http(),
    })
}

/// `NAME:<message>`; `fail` is INVALID_ARGUMENT; `sleep:<ms>` answers after a wait.
struct Unary(Arc<str>);

impl tonic::server::UnaryService<EchoMsg> for Unary {
    type Response = EchoMsg;
    type Future = BoxFuture<Result<Response<EchoMsg>, Status>>;

    fn call(&mut self, req: Request<EchoMsg>) -> Self::Future {
        let name = self.0.clone();
        Box::pin(async move {
            let m = req.into_inner();
            if m.message == "fail" {
                return Err(Status::invalid_argument("no such thing ✓ 100%"));
            }
            if let Some(ms) = m.message.strip_prefix("sleep:") {
                let ms = ms.parse().expect("sleep:<ms>");
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Ok(Response::new(msg(&format!("{name}:{}", m.message))))
        })
    }
}

/// `count` answers `NAME:<message>:<i>`, `gap_ms` apart.
struct ServerStream(Arc<str>);

impl tonic::server::ServerStreamingService<EchoMsg> for ServerStream {
    type Response = EchoMsg;
    type ResponseStream = MsgStream;
    type Future = BoxFuture<Result<Response<MsgStream>, Status>>;

    fn call(&mut self, req: Request<EchoMsg>) -> Self::Future {
        let name = self.0.clone();
        Box::pin(async move {
            let m = req.into_inner();
            let answers = stream::unfold(0, move |i| {
                let (name, m) = (name.clone(), m.clone());
                async move {
                    if i >= m.count {
                        return None;
                    }
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(m.gap_ms.into())).await;
                    }
                    Some((Ok(msg(&format!("{name}:{}:{i}", m.message))), i + 1))
                }
            });
            Ok(Response::new(Box::pin(answers) as MsgStream))
        })
    }
}

/// One answer: every message received, joined by `+`.
struct ClientStream(Arc<str>);

impl tonic::server::ClientStreamingService<EchoMsg> for ClientStream {
    type Response = EchoMsg;
    type Future = BoxFuture<Result<Response<EchoMsg>, Status>>;

    fn call(&mut self, req: Request<Streaming<EchoMsg>>) -> Self::Future {
        let name = self.0.clone();
        Box::pin(async move {
            let mut incoming = req.into_inner();
            let mut seen = Vec::new();
            while let Some(m) = incoming.message().await? {
                seen.push(m.message);
            }
            Ok(Response::new(msg(&format!("{name}:{}", seen.join("+")))))
        })
    }
}

/// An answer for each message, as it arrives.
struct Bidi(Arc<str>);

impl tonic::server::StreamingService<EchoMsg> for Bidi {
    type Response = EchoMsg;
    type ResponseStream = MsgStream;
    type Future = BoxFuture<Result<Response<MsgStream>, Status>>;

    fn call(&mut self, req: Request<Streaming<EchoMsg>>) -> Self::Future {
        let name = self.0.clone();
        Box::pin(async move {
            let answers = stream::unfold(req.into_inner(), move |mut incoming| {
                let name = name.clone();
                async move {
                    match incoming.message().await {
                        Ok(Some(m)) => Some((Ok(msg(&format!("{name}:{}", m.message))), incoming)),
                        Ok(None) | Err(_) => None,
                    }
                }
            });
            Ok(Response::new(Box::pin(answers) as MsgStream))
        })
    }
}

// === the client ===

/// One HTTP/2 connection to Drover as a tonic channel (no deadline enforcement of its own).
#[derive(Clone)]
struct H2Channel(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tonic::codegen::Service<hyper::Request<tonic::body::Body>> for H2Channel {
    type Response = hyper::Response<Incoming>;
    type Error = hyper::Error;
    type Future = BoxFuture<Result<hyper::Response<Incoming>, hyper::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: hyper::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

type Client = Grpc<H2Channel>;

async fn client_over<S>(io: S) -> Client
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("HTTP/2 handshake with Drover");
    tokio::spawn(conn);
    Grpc::with_origin(H2Channel(sender), Uri::from_static("http://grpc.test"))
}

/// A client on Drover's plain listener: h2c with prior knowledge.
async fn h2c_client(drover: &Drover) -> Client {
    client_over(TcpStream::connect(drover.http()).await.expect("connect")).await
}

async fn unary(client: &mut Client, req: Request<EchoMsg>) -> Result<String, Status> {
    client
        .ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let resp = client
        .unary(req, PathAndQuery::from_static(UNARY), Codec::default())
        .await?;
    Ok(resp.into_inner().message)
}

async fn say(client: &mut Client, text: &str) -> Result<String, Status> {
    unary(client, Request::new(msg(text))).await
}

/// Every shape of call once, checked: what the TLS and h2c tests both run.
async fn every_shape(client: &mut Client, backend: &str) {
    assert_eq!(
        say(client, "hi").await.expect("unary"),
        format!("{backend}:hi")
    );

    client.ready().await.expect("ready");
    let mut req = Request::new(msg("n"));
    req.get_mut().count = 3;
    let mut answers = client
        .server_streaming(
            req,
            PathAndQuery::from_static(SERVER_STREAM),
            Codec::default(),
        )
        .await
        .expect("server streaming")
        .into_inner();
    let mut got = Vec::new();
    while let Some(m) = answers.message().await.expect("stream message") {
        got.push(m.message);
    }
    let want: Vec<String> = (0..3).map(|i| format!("{backend}:n:{i}")).collect();
    assert_eq!(got, want);

    client.ready().await.expect("ready");
    let sent = stream::iter(["a", "b", "c"].map(msg));
    let resp = client
        .client_streaming(
            Request::new(sent),
            PathAndQuery::from_static(CLIENT_STREAM),
            Codec::default(),
        )
        .await
        .expect("client streaming");
    assert_eq!(resp.into_inner().message, format!("{backend}:a+b+c"));

    // Bidirectional, in lock step: each answer arrives before the next message is sent,
    // so nothing on the way waits for a whole body.
    client.ready().await.expect("ready");
    let (tx, rx) = tokio::sync::mpsc::channel::<EchoMsg>(1);
    let outgoing = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    tx.send(msg("one")).await.expect("send");
    let mut answers = client
        .streaming(
            Request::new(outgoing),
            PathAndQuery::from_static(BIDI),
            Codec::default(),
        )
        .await
        .expect("bidi")
        .into_inner();
    for word in ["one", "two", "three"] {
        if word != "one" {
            tx.send(msg(word)).await.expect("send");
        }
        let answer = tokio::time::timeout(support::DEADLINE, answers.message())
            .await
            .expect("an answer before the next message")
            .expect("bidi message")
            .expect("not the end");
        assert_eq!(answer.message, format!("{backend}:{word}"));
    }
    drop(tx);
    assert!(answers.message().await.expect("clean end").is_none());
}

// === Drover's side ===

/// A catalog app on `VHOST` (service port `port`) with `labels` (more inline-table pairs).
fn grpc_app(id: &str, vhost: &str, port: u16, labels: &str, backends: &[SocketAddr]) -> String {
    let tasks: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ host = \"{}\", ports = [{}] }}", b.ip(), b.port()))
        .collect();
    format!(
        "[[app]]\nid = \"{id}\"\nlabels = {{ HAPROXY_0_VHOST = \"{vhost}\", {labels} }}\n\
         ports = [{port}]\ntasks = [{}]\n\n",
        tasks.join(", ")
    )
}

const H2C: &str = "DROVER_0_BACKEND_PROTO = \"h2c\"";

/// The value of the `/metrics` sample whose line holds every one of `parts`.
async fn metric(drover: &Drover, parts: &[&str]) -> Option<f64> {
    let text = support::get(drover.admin(), "admin", "/metrics").await.body;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A CA and the certificates it signs (for Drover's listener and for `h2` backends).
struct Ca {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
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

    /// A leaf for `name`: (certificate PEM, key PEM).
    fn leaf(&self, name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    fn write_ca(&self, dir: &Path) -> std::path::PathBuf {
        let path = dir.join("backend-ca.pem");
        std::fs::write(&path, self.cert.pem()).expect("write CA");
        path
    }

    /// A TLS acceptor for `name` offering ALPN h2 only (an `h2` backend).
    fn acceptor(&self, name: &str) -> tokio_rustls::TlsAcceptor {
        let (cert, key) = self.leaf(name);
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("cert");
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        config.alpn_protocols = vec![b"h2".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    fn connector(&self, alpn: &[u8]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

use rustls_pki_types::pem::PemObject;

// === the tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_call_passes_over_h2c_to_an_h2c_backend() {
    let backend = GrpcBackend::start("b1").await;
    let drover = Drover::start("", &grpc_app("/grpc", VHOST, 10001, H2C, &[backend.addr]));
    drover.ready().await;
    let mut client = h2c_client(&drover).await;
    every_shape(&mut client, "b1").await;
    // `te: trailers` reached the backend on every call (4 shapes).
    assert_eq!(backend.te_trailers.load(Ordering::Relaxed), 4);

    // A backend's gRPC error passes through with its status and message (trailers).
    let err = say(&mut client, "fail")
        .await
        .expect_err("INVALID_ARGUMENT");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "no such thing ✓ 100%");

    // Counted by grpc-status under the route; the calls shared one upstream connection.
    let ok = metric(
        &drover,
        &[
            "drover_grpc_responses_total",
            "grpc_10001",
            "grpc_status=\"0\"",
        ],
    );
    assert_eq!(ok.await, Some(4.0));
    let invalid = metric(
        &drover,
        &[
            "drover_grpc_responses_total",
            "grpc_10001",
            "grpc_status=\"3\"",
        ],
    );
    assert_eq!(invalid.await, Some(1.0));
    assert_eq!(backend.accepted(), 1);

    // The route dump says how the backends are spoken to.
    let dump = support::get(drover.admin(), "admin", "/debug/routes")
        .await
        .body;
    let dump: serde_json::Value = serde_json::from_str(&dump).expect("route dump JSON");
    assert_eq!(dump["routes"][0]["backend_proto"], "h2c", "{dump}");

    // An HTTP/1.1 client reaches the HTTP/2 backend too (here: a method it lacks).
    let plain = support::get(drover.http(), VHOST, "/echo.Echo/Nothing").await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("grpc-status"), Some("12"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_call_passes_over_tls_with_alpn_h2() {
    let ca = Ca::new();
    let backend = GrpcBackend::start("b1").await;
    let catalog = grpc_app("/grpc", VHOST, 10001, H2C, &[backend.addr]);
    let https = "[https]\nlisten = \"127.0.0.1:0\"\ncerts = \"certs\"\n";
    let drover = Drover::start_prepared("", https, &catalog, |dir| {
        let certs = dir.join("certs");
        std::fs::create_dir(&certs).expect("certs dir");
        let (cert, key) = ca.leaf(VHOST);
        std::fs::write(certs.join("grpc.pem"), format!("{cert}{key}")).expect("write cert");
    });
    drover.ready().await;
    let addr = drover.server().https_addr().expect("https");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let tls = ca
        .connector(b"h2")
        .connect(ServerName::try_from(VHOST).expect("name"), tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut client = client_over(tls).await;
    every_shape(&mut client, "b1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_backends_are_reached_over_tls_checked_against_backend_ca() {
    let ca = Ca::new();
    let files = tempfile::tempdir().expect("temp dir");
    let ca_file = ca.write_ca(files.path());
    let backend = GrpcBackend::start_with(
        "secure",
        Shape {
            tls: Some(ca.acceptor(VHOST)),
            ..Shape::default()
        },
    )
    .await;
    let h2 = format!(
        "DROVER_0_BACKEND_PROTO = \"h2\", DROVER_0_BACKEND_CA = \"{}\"",
        ca_file.display()
    );
    let missing = files.path().join("missing-ca.pem");
    let bad = format!(
        "DROVER_0_BACKEND_PROTO = \"h2\", DROVER_0_BACKEND_CA = \"{}\"",
        missing.display()
    );
    let catalog = [
        grpc_app("/grpc", VHOST, 10001, &h2, &[backend.addr]),
        grpc_app("/broken", "broken.test", 10002, &bad, &[backend.addr]),
    ]
    .concat();
    let drover = Drover::start("", &catalog);
    drover.ready().await;
    let mut client = h2c_client(&drover).await;
    assert_eq!(say(&mut client, "tls").await.expect("unary"), "secure:tls");
    assert_eq!(backend.accepted(), 1);

    // The app whose CA file cannot be read is disabled with a problem naming the label;
    // the other app is served.
    let problems: Vec<String> = drover
        .server()
        .view()
        .routes
        .load()
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("app /broken: label DROVER_0_BACKEND_CA")
                && p.contains("cannot read it")
                && p.ends_with("app disabled")),
        "{problems:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_deadline_is_deadline_exceeded() {
    let backend = GrpcBackend::start("slow").await;
    let drover = Drover::start("", &grpc_app("/grpc", VHOST, 10001, H2C, &[backend.addr]));
    drover.ready().await;
    let mut client = h2c_client(&drover).await;

    // No answer head before the deadline.
    let started = tokio::time::Instant::now();
    let mut req = Request::new(msg("sleep:5000"));
    req.set_timeout(Duration::from_millis(300));
    let err = unary(&mut client, req).await.expect_err("deadline");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // A stream that stalls past the deadline is ended with DEADLINE_EXCEEDED trailers.
    client.ready().await.expect("ready");
    let mut req = Request::new(EchoMsg {
        message: "s".into(),
        count: 3,
        gap_ms: 5000,
    });
    req.set_timeout(Duration::from_millis(500));
    let mut answers = client
        .server_streaming(
            req,
            PathAndQuery::from_static(SERVER_STREAM),
            Codec::default(),
        )
        .await
        .expect("the stream starts")
        .into_inner();
    let first = answers.message().await.expect("first").expect("a message");
    assert_eq!(first.message, "slow:s:0");
    let err = answers.message().await.expect_err("deadline mid-stream");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let expired = metric(
        &drover,
        &[
            "drover_grpc_responses_total",
            "grpc_10001",
            "grpc_status=\"4\"",
        ],
    );
    assert_eq!(expired.await, Some(2.0));

    // The client's deadline is not held against the backend.
    let dump = support::get(drover.admin(), "admin", "/debug/routes")
        .await
        .body;
    let dump: serde_json::Value = serde_json::from_str(&dump).expect("route dump JSON");
    let backend = &dump["routes"][0]["backends"][0];
    assert_eq!(backend["failures"], 0, "{dump}");
    assert_eq!(backend["state"], "up", "{dump}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_backend_or_a_dead_one_is_unavailable() {
    let catalog = [
        grpc_app("/none", "none.test", 10001, H2C, &[]),
        grpc_app("/dead", "dead.test", 10002, H2C, &[dead_addr()]),
    ]
    .concat();
    let drover = Drover::start("", &catalog);
    drover.ready().await;
    let stream = TcpStream::connect(drover.http()).await.expect("connect");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    for host in ["none.test", "dead.test"] {
        let origin = Uri::try_from(format!("http://{host}")).expect("uri");
        let mut client = Grpc::with_origin(H2Channel(sender.clone()), origin);
        let err = say(&mut client, "x").await.expect_err("no backend");
        assert_eq!(err.code(), Code::Unavailable, "{host}: {err:?}");
        assert!(!err.message().is_empty(), "{host}: a grpc-message says why");
    }
    // A request that is not gRPC still gets the HTTP answer.
    let plain = support::get(drover.http(), "none.test", "/").await;
    assert_eq!(plain.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_share_few_upstream_connections() {
    // The backend takes 25 streams per connection; each call holds its stream a while.
    let backend = GrpcBackend::start_with(
        "b",
        Shape {
            max_streams: Some(25),
            ..Shape::default()
        },
    )
    .await;
    let drover = Drover::start("", &grpc_app("/grpc", VHOST, 10001, H2C, &[backend.addr]));
    drover.ready().await;
    let client = h2c_client(&drover).await;
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move { say(&mut client, &format!("sleep:{}", 300 + i % 10)).await })
        })
        .collect();
    for call in calls {
        let answer = call.await.expect("join").expect("call");
        assert!(answer.starts_with("b:sleep:3"), "{answer}");
    }
    // Up to 128 calls at once arrive on the one client connection (Drover's stream limit):
    // more than one backend connection's 25, so several connections, and far fewer than
    // calls. Drover's count agrees with the backend's.
    let accepted = backend.accepted();
    assert!(
        (3..=12).contains(&accepted),
        "{accepted} upstream connections"
    );
    let opened = eventually("the connection count", || async {
        metric(&drover, &["drover_upstream_h2_connections_total"]).await
    })
    .await;
    assert_eq!(opened as usize, accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_going_away_gets_no_new_calls_on_that_connection() {
    let backend = GrpcBackend::start_with(
        "b",
        Shape {
            goaway: true,
            ..Shape::default()
        },
    )
    .await;
    let drover = Drover::start("", &grpc_app("/grpc", VHOST, 10001, H2C, &[backend.addr]));
    drover.ready().await;
    let mut client = h2c_client(&drover).await;
    // Each connection says GOAWAY with its first call: every next call goes on a new one,
    // and none fails.
    for i in 1..=3 {
        assert_eq!(say(&mut client, "hi").await.expect("call"), "b:hi");
        assert_eq!(backend.accepted(), i);
    }
}

#[test]
fn check_reports_bad_backend_protocols_and_ca_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing-ca.pem");
    let catalog = format!(
        "[[app]]\nid = \"/ok\"\nlabels = {{ HAPROXY_0_VHOST = \"ok.test\", {H2C} }}\nports = [10001]\n\n\
         [[app]]\nid = \"/typo\"\nlabels = {{ HAPROXY_0_VHOST = \"typo.test\", DROVER_0_BACKEND_PROTO = \"http2\" }}\nports = [10002]\n\n\
         [[app]]\nid = \"/noca\"\nlabels = {{ HAPROXY_0_VHOST = \"noca.test\", DROVER_0_BACKEND_PROTO = \"h2\", DROVER_0_BACKEND_CA = \"{}\" }}\nports = [10003]\n",
        missing.display()
    );
    std::fs::write(dir.path().join("services.toml"), catalog).expect("write catalog");
    let path = dir.path().join("drover.toml");
    std::fs::write(&path, "[catalog]\nfile = \"services.toml\"\n").expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .output()
        .expect("run drover check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "app /typo: label DROVER_0_BACKEND_PROTO = \"http2\": expected http1, h2c or h2"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("app /noca: label DROVER_0_BACKEND_CA")
            && stderr.contains("cannot read it"),
        "{stderr}"
    );
    assert!(!stderr.contains("app /ok"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_sessions_hold_over_http2_backends() {
    let (a, b) = (GrpcBackend::start("a").await, GrpcBackend::start("b").await);
    let labels = format!("{H2C}, HAPROXY_0_STICKY = \"true\"");
    let drover = Drover::start(
        "",
        &grpc_app("/grpc", VHOST, 10001, &labels, &[a.addr, b.addr]),
    );
    drover.ready().await;
    let mut client = h2c_client(&drover).await;
    client.ready().await.expect("ready");
    let first = client
        .unary::<_, EchoMsg, _>(
            Request::new(msg("hi")),
            PathAndQuery::from_static(UNARY),
            Codec::default(),
        )
        .await
        .expect("call");
    let cookie = first
        .metadata()
        .get("set-cookie")
        .expect("a sticky cookie")
        .to_str()
        .expect("text")
        .split(';')
        .next()
        .expect("name=value")
        .to_string();
    let backend = first.into_inner().message;
    for _ in 0..6 {
        let mut req = Request::new(msg("hi"));
        req.metadata_mut()
            .insert("cookie", cookie.parse().expect("cookie value"));
        assert_eq!(unary(&mut client, req).await.expect("call"), backend);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_carry_the_grpc_status() {
    let backend = GrpcBackend::start("b").await;
    let catalog = [
        grpc_app("/grpc", VHOST, 10001, H2C, &[backend.addr]),
        grpc_app("/none", "none.test", 10002, H2C, &[]),
    ]
    .concat();
    let drover = Drover::start("[access_log]\npath = \"access.log\"\n", &catalog);
    drover.ready().await;
    let mut client = h2c_client(&drover).await;
    say(&mut client, "hi").await.expect("OK");
    say(&mut client, "fail")
        .await
        .expect_err("INVALID_ARGUMENT");
    let tcp = TcpStream::connect(drover.http()).await.expect("connect");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let mut none = Grpc::with_origin(H2Channel(sender), Uri::from_static("http://none.test"));
    say(&mut none, "x").await.expect_err("UNAVAILABLE");

    let path = drover.path("access.log");
    let lines = eventually("3 access-log lines", || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        async move { (lines.len() >= 3).then_some(lines) }
    })
    .await;
    // Lines of two client connections may come in either order.
    let mut seen: Vec<(String, u64, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["host"].as_str().unwrap_or("").to_string(),
                l["status"].as_u64().unwrap_or(0),
                l["grpc_status"].as_u64().unwrap_or(999),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (VHOST.to_string(), 200, 0),
            (VHOST.to_string(), 200, 3),
            ("none.test".to_string(), 200, 14),
        ],
        "{lines:?}"
    );
    for line in &lines {
        let ours = line["host"] == "none.test";
        let fault = if ours { "upstream" } else { "none" };
        assert_eq!(line["fault"], fault, "{line:?}");
        assert_eq!(line["proto"], "HTTP/2.0", "{line:?}");
    }
}

/// One HTTP/2 frame from `s`: (type, flags, payload), bounded by the test deadline.
async fn read_frame(s: &mut TcpStream) -> Option<(u8, u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 9];
    tokio::time::timeout(support::DEADLINE, s.read_exact(&mut head))
        .await
        .ok()?
        .ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    tokio::time::timeout(support::DEADLINE, s.read_exact(&mut payload))
        .await
        .ok()?
        .ok()?;
    Some((head[3], head[4], payload))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_gets_the_https_limits_and_a_broken_frame_ends_only_its_connection() {
    use tokio::io::AsyncWriteExt;
    let backend = GrpcBackend::start("b").await;
    let drover = Drover::start("", &grpc_app("/grpc", VHOST, 10001, H2C, &[backend.addr]));
    drover.ready().await;
    let mut s = TcpStream::connect(drover.http()).await.expect("connect");
    // The preface, then an empty SETTINGS frame.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("write");
    let (kind, flags, payload) = read_frame(&mut s).await.expect("Drover's SETTINGS");
    assert_eq!((kind, flags & 1), (0x4, 0), "a SETTINGS frame first");
    let settings: Vec<(u16, u32)> = payload
        .chunks(6)
        .map(|e| {
            (
                u16::from_be_bytes([e[0], e[1]]),
                u32::from_be_bytes([e[2], e[3], e[4], e[5]]),
            )
        })
        .collect();
    // MAX_CONCURRENT_STREAMS 128 and MAX_HEADER_LIST_SIZE = max_header_bytes (64 KiB), as on
    // [https].
    assert!(settings.contains(&(0x3, 128)), "{settings:?}");
    assert!(settings.contains(&(0x6, 64 * 1024)), "{settings:?}");
    // A DATA frame on stream 0 is a connection error: GOAWAY, then the close.
    s.write_all(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
        .await
        .expect("write");
    let mut goaway = false;
    while let Some((kind, _, _)) = read_frame(&mut s).await {
        goaway |= kind == 0x7;
    }
    assert!(goaway, "a GOAWAY before the close");
    // Other connections are served.
    let mut client = h2c_client(&drover).await;
    assert_eq!(say(&mut client, "still").await.expect("call"), "b:still");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_a_silent_backend_fail_together_not_one_connect_timeout_after_another() {
    // Accepts connections and never speaks HTTP/2: every connect times out waiting for its
    // SETTINGS.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = silent.local_addr().expect("addr");
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let drover = Drover::start_with(
        "connect_timeout = \"300ms\"",
        "",
        &grpc_app("/grpc", VHOST, 10001, H2C, &[addr]),
    );
    drover.ready().await;
    let client = h2c_client(&drover).await;
    let started = tokio::time::Instant::now();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { say(&mut client, "x").await })
        })
        .collect();
    for call in calls {
        let err = call.await.expect("join").expect_err("no HTTP/2 backend");
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    }
    // One after another, 20 connect timeouts would take 6 s.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    holder.abort();
}
