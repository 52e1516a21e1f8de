//! Test support: a Drover started from config text in a temp dir, fake HTTP backends, and
//! small clients. Everything listens on 127.0.0.1 with OS-assigned ports; waits poll with a
//! deadline instead of sleeping.

#![allow(dead_code)]

pub mod dns;
pub mod marathon;
pub mod mesos;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use drover::config::Config;
use drover::server::{Options, Server};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// How long any wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `check` until it returns `Some`, failing the test after `DEADLINE`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port that was free a moment ago (for catalog service ports, which Drover binds).
/// A loopback address nothing listens on (bound, then closed).
pub fn dead_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The test config: HTTP (plus `http_keys`) and admin on 127.0.0.1:0, catalog
/// `catalog.toml`, two workers, then `extra` (more sections, e.g. `[tcp]`).
pub fn config_text(http_keys: &str, extra: &str) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n{http_keys}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [catalog]\nfile = \"catalog.toml\"\n\n[runtime]\nworkers = 2\ndrain_timeout = \"5s\"\n\n{extra}\n"
    )
}

/// A running Drover in its own temp dir, with `drover.toml` and `catalog.toml`.
pub struct Drover {
    pub server: Option<Server>,
    pub dir: tempfile::TempDir,
}

impl Drover {
    /// Starts Drover with HTTP and admin on 127.0.0.1:0, the catalog file `catalog`, and
    /// `extra` appended to the config (more sections, e.g. `[tcp]`).
    pub fn start(extra: &str, catalog: &str) -> Drover {
        Drover::start_with("", extra, catalog)
    }

    /// As `start`, with more `[http]` keys (e.g. `response_timeout = "300ms"`).
    pub fn start_with(http_keys: &str, extra: &str, catalog: &str) -> Drover {
        Drover::start_prepared(http_keys, extra, catalog, |_| {})
    }

    /// As `start_with`, with `prepare` run on the temp dir first (e.g. to write
    /// certificates the config names).
    pub fn start_prepared(
        http_keys: &str,
        extra: &str,
        catalog: &str,
        prepare: impl FnOnce(&std::path::Path),
    ) -> Drover {
        init_logs();
        let dir = tempfile::tempdir().expect("temp dir");
        prepare(dir.path());
        std::fs::write(dir.path().join("catalog.toml"), catalog).expect("write catalog");
        let path = dir.path().join("drover.toml");
        std::fs::write(&path, config_text(http_keys, extra)).expect("write config");
        let config = Config::load(&path).unwrap_or_else(|e| panic!("test config: {e}"));
        let server = Server::start(
            config,
            Options {
                config_path: Some(path),
                handle_signals: false,
            },
        )
        .expect("drover starts");
        Drover {
            server: Some(server),
            dir,
        }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    pub fn http(&self) -> SocketAddr {
        self.server().http_addr().expect("http configured")
    }

    pub fn admin(&self) -> SocketAddr {
        self.server().admin_addr().expect("admin configured")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The version of the route table in use.
    pub fn version(&self) -> u64 {
        self.server().view().routes.load().version
    }

    /// Waits for the first route table.
    pub async fn ready(&self) {
        let routes = self.server().view().routes.clone();
        eventually("the first route table", || {
            let ready = routes.is_ready();
            async move { ready.then_some(()) }
        })
        .await
    }

    /// Waits until a table newer than `version` is in use.
    pub async fn newer_than(&self, version: u64) {
        let routes = self.server().view().routes.clone();
        eventually("a newer route table", || {
            let v = routes.load().version;
            async move { (v > version).then_some(()) }
        })
        .await
    }

    /// Replaces a file in the temp dir the way editors do: write aside, rename over.
    pub fn write(&self, name: &str, text: &str) {
        let tmp = self.path(&format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, self.path(name)).expect("rename");
    }

    /// Graceful shutdown; returns whether the drain finished in time.
    pub async fn stop(mut self) -> bool {
        let server = self.server.take().expect("running");
        server.shutdown();
        tokio::task::spawn_blocking(move || server.wait())
            .await
            .expect("join")
    }
}

impl Drop for Drover {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
            server.wait();
        }
    }
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A catalog `[[app]]` entry routing `vhost` (service port `port`) to `backends`.
pub fn app(id: &str, vhost: &str, port: u16, backends: &[SocketAddr]) -> String {
    let tasks: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ host = \"{}\", ports = [{}] }}", b.ip(), b.port()))
        .collect();
    let labels = if vhost.is_empty() {
        String::new()
    } else {
        format!("labels = {{ HAPROXY_0_VHOST = \"{vhost}\" }}\n")
    };
    format!(
        "[[app]]\nid = \"{id}\"\n{labels}ports = [{port}]\ntasks = [{}]\n\n",
        tasks.join(", ")
    )
}

/// A fake HTTP backend. Every response carries `x-backend: NAME` and, for each request
/// header, `x-req-<header>: <value>`. Paths: `/slow/<ms>` answers after a delay, `/hang`
/// never answers, `/echo` streams the request body back; anything else answers `NAME`.
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    pub hits: Arc<AtomicUsize>,
    /// The status every answer carries (200 unless a test sets another).
    status: Arc<AtomicU16>,
    /// Milliseconds every answer waits first (0 unless a test sets another).
    delay: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        Backend::serve(name, listener)
    }

    /// A backend on a given address (e.g. one that was down and comes back).
    pub async fn start_at(name: &str, addr: SocketAddr) -> Backend {
        let listener = TcpListener::bind(addr).await.expect("bind backend again");
        Backend::serve(name, listener)
    }

    fn serve(name: &str, listener: TcpListener) -> Backend {
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let status = Arc::new(AtomicU16::new(200));
        let delay = Arc::new(AtomicU64::new(0));
        let (n, h, st, de) = (
            name.to_string(),
            hits.clone(),
            status.clone(),
            delay.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (n, h, st, de) = (n.clone(), h.clone(), st.clone(), de.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        h.fetch_add(1, Ordering::Relaxed);
                        let (n, status) = (n.clone(), st.load(Ordering::Relaxed));
                        let wait = Duration::from_millis(de.load(Ordering::Relaxed));
                        async move {
                            if !wait.is_zero() {
                                tokio::time::sleep(wait).await;
                            }
                            answer(n, status, req).await
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Backend {
            addr,
            name: name.to_string(),
            hits,
            status,
            delay,
            task,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }

    /// Makes every later answer wait `ms` milliseconds first.
    pub fn set_delay(&self, ms: u64) {
        self.delay.store(ms, Ordering::Relaxed);
    }

    /// Makes every later answer carry `code` (e.g. 500 to fail, 200 to recover).
    pub fn set_status(&self, code: u16) {
        self.status.store(code, Ordering::Relaxed);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

async fn answer(
    name: String,
    status: u16,
    req: Request<Incoming>,
) -> Result<Response<BoxBody>, Infallible> {
    let mut builder = Response::builder().header("x-backend", &name).header(
        "x-path",
        req.uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string(),
    );
    for (k, v) in req.headers() {
        builder = builder.header(format!("x-req-{}", k.as_str()), v);
    }
    let path = req.uri().path().to_string();
    let body: BoxBody = if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(100))).await;
        full(format!("{name} slow\n"))
    } else if path == "/hang" {
        std::future::pending::<()>().await;
        unreachable!()
    } else if path == "/echo" {
        req.into_body().boxed()
    } else {
        full(name.clone())
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    Ok(builder.status(status).body(body).expect("response"))
}

fn full(s: String) -> BoxBody {
    Full::new(Bytes::from(s))
        .map_err(|never| match never {})
        .boxed()
}

/// One answered request: status, headers and the whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A keep-alive HTTP/1.1 client (hyper's pooled client).
pub fn client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// GET `path` on `addr` with `Host: host`, on the keep-alive client.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Answer {
    send(
        Request::get(format!("http://{addr}{path}"))
            .header("host", host)
            .body(Full::default())
            .expect("request"),
    )
    .await
    .expect("request answered")
}

/// Sends `req` on a fresh connection and reads the whole answer.
pub async fn send(req: Request<Full<Bytes>>) -> Result<Answer, String> {
    let resp = client().request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Sends raw bytes on a new TCP connection and returns everything read until the server
/// closes or `DEADLINE` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
