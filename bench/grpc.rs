//! gRPC unary calls per second through Drover against the same calls sent straight to the
//! backend (issue 16). Run: `cargo bench --bench grpc` (about 25 s). Knobs (environment):
//! `GRPC_BENCH_SECS` per run (default 5), `GRPC_BENCH_ROUNDS` pairs of runs (default 2),
//! `GRPC_BENCH_CONNS` client connections (default 4), `GRPC_BENCH_STREAMS` calls in flight
//! per connection (default 16), `GRPC_BENCH_WORKERS` Drover's worker threads (default 1).
//! `GRPC_BENCH_SERVE=1` starts the backend and Drover only, prints `h2load` command lines for
//! both targets, and serves until Ctrl-C (or `GRPC_BENCH_SERVE_SECS`, default 600).
//!
//! The backend is a tonic `server::Grpc` (echo, one unary method, the message type written
//! by hand as in `tests/it/grpc.rs`) on hyper's HTTP/2 server, on a thread of its own. The
//! load client is tonic's `client::Grpc` over hyper HTTP/2 connections (h2c), on another
//! thread: `CONNS` connections × `STREAMS` tasks, each calling in a loop until the run ends.
//! Drover (`Server::start`, `DROVER_0_BACKEND_PROTO = "h2c"`) runs its own worker threads.
//! Runs alternate direct / through Drover so drift on a shared machine hits both alike;
//! figures on a busy machine say little (see `bench/README.md`).
//!
//! Everything listens on 127.0.0.1; every loop ends with its run.

// Benches measure real time (clippy.toml bars these elsewhere).
#![allow(clippy::disallowed_methods)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::http::uri::PathAndQuery;
use hyper::Uri;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tonic::client::Grpc;
use tonic::{Request, Response, Status};

use drover::config::Config;
use drover::server::{Options, Server};

#[derive(Clone, PartialEq, prost::Message)]
struct EchoMsg {
    #[prost(string, tag = "1")]
    message: String,
}

type Codec = tonic_prost::ProstCodec<EchoMsg, EchoMsg>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

const UNARY: &str = "/echo.Echo/Unary";
const VHOST: &str = "grpc.bench";

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// === backend ===

struct Echo;

impl tonic::server::UnaryService<EchoMsg> for Echo {
    type Response = EchoMsg;
    type Future = BoxFuture<Result<Response<EchoMsg>, Status>>;

    fn call(&mut self, req: Request<EchoMsg>) -> Self::Future {
        Box::pin(async move { Ok(Response::new(req.into_inner())) })
    }
}

async fn dispatch(
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<tonic::body::Body>, Infallible> {
    Ok(match req.uri().path() {
        UNARY => {
            tonic::server::Grpc::new(Codec::default())
                .unary(Echo, req)
                .await
        }
        _ => Status::unimplemented("no such method").into_http(),
    })
}

/// The backend on a thread of its own; its address.
fn start_backend() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("grpc-backend".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("backend runtime");
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                tx.send(listener.local_addr().expect("addr")).expect("send");
                while let Ok((tcp, _)) = listener.accept().await {
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .max_concurrent_streams(256)
                            .serve_connection(
                                TokioIo::new(tcp),
                                hyper::service::service_fn(dispatch),
                            ),
                    );
                }
            });
        })
        .expect("backend thread");
    rx.recv().expect("backend address")
}

// === Drover ===

fn start_drover(backend: SocketAddr, workers: u64) -> Result<(Server, tempfile::TempDir), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let catalog = format!(
        "[[app]]\nid = \"/grpc\"\nlabels = {{ HAPROXY_0_VHOST = \"{VHOST}\", DROVER_0_BACKEND_PROTO = \"h2c\" }}\n\
         ports = [10001]\ntasks = [ {{ host = \"{}\", ports = [{}] }} ]\n",
        backend.ip(),
        backend.port()
    );
    std::fs::write(dir.path().join("catalog.toml"), catalog).map_err(|e| e.to_string())?;
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n[catalog]\nfile = \"catalog.toml\"\n\n\
         [runtime]\nworkers = {workers}\ndrain_timeout = \"1s\"\n"
    );
    let config = Config::parse(&text, dir.path()).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        format!("config: {}", list.join("; "))
    })?;
    let server = Server::start(
        config,
        Options {
            config_path: None,
            handle_signals: false,
        },
    )
    .map_err(|e| format!("start: {e}"))?;
    Ok((server, dir))
}

// === load client ===

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

/// Calls per second (and failed calls) against `addr` for `secs`.
async fn run(addr: SocketAddr, conns: u64, streams: u64, secs: u64) -> Result<(f64, u64), String> {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .max_concurrent_reset_streams(16)
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let origin = Uri::try_from(format!("http://{VHOST}")).map_err(|e| e.to_string())?;
        let client = Grpc::with_origin(H2Channel(sender), origin);
        for _ in 0..streams {
            let (mut client, ok, failed) = (client.clone(), ok.clone(), failed.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < until {
                    let req = Request::new(EchoMsg {
                        message: "hello gRPC".into(),
                    });
                    let done = match client.ready().await {
                        Ok(()) => client
                            .unary::<_, EchoMsg, _>(
                                req,
                                PathAndQuery::from_static(UNARY),
                                Codec::default(),
                            )
                            .await
                            .is_ok(),
                        Err(_) => false,
                    };
                    let counter = if done { &ok } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let took = started.elapsed().as_secs_f64();
    Ok((
        ok.load(Ordering::Relaxed) as f64 / took,
        failed.load(Ordering::Relaxed),
    ))
}

/// Whether one call to `addr` succeeds.
async fn one_call(addr: SocketAddr) -> bool {
    let Ok(tcp) = TcpStream::connect(addr).await else {
        return false;
    };
    let Ok((sender, conn)) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await
    else {
        return false;
    };
    tokio::spawn(conn);
    let mut client = Grpc::with_origin(H2Channel(sender), Uri::from_static("http://grpc.bench"));
    if client.ready().await.is_err() {
        return false;
    }
    let req = Request::new(EchoMsg {
        message: "ready?".into(),
    });
    client
        .unary::<_, EchoMsg, _>(req, PathAndQuery::from_static(UNARY), Codec::default())
        .await
        .is_ok()
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let secs = knob("GRPC_BENCH_SECS", 5);
    let rounds = knob("GRPC_BENCH_ROUNDS", 2);
    let conns = knob("GRPC_BENCH_CONNS", 4);
    let streams = knob("GRPC_BENCH_STREAMS", 16);
    let workers = knob("GRPC_BENCH_WORKERS", 1);
    let backend = start_backend();
    let (drover, _dir) = match start_drover(backend, workers) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("grpc bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let through = drover.http_addr().expect("http listener");
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    // Wait for the first route table: a call through Drover succeeds.
    let ready = client.block_on(async {
        for _ in 0..100 {
            if one_call(through).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    });
    if !ready {
        eprintln!("grpc bench: no call through Drover succeeded within 5 s");
        return ExitCode::FAILURE;
    }
    if std::env::var_os("GRPC_BENCH_SERVE").is_some() {
        let frame = "printf '\\x00\\x00\\x00\\x00\\x0c\\x0a\\x0ahello gRPC' > /tmp/grpc-echo.bin";
        println!("backend {backend}, drover {through} (Host {VHOST})\n{frame}");
        for (name, addr) in [("direct", backend), ("drover", through)] {
            println!(
                "# {name}\nh2load -D 10 -c {conns} -m {streams} -d /tmp/grpc-echo.bin \
                 -H 'content-type: application/grpc' -H 'te: trailers' \
                 -H ':authority: {VHOST}' http://{addr}{UNARY}"
            );
        }
        std::thread::sleep(Duration::from_secs(knob("GRPC_BENCH_SERVE_SECS", 600)));
        return ExitCode::SUCCESS;
    }
    println!(
        "gRPC unary, {conns} connections x {streams} calls in flight, {secs} s runs, \
         Drover with {workers} worker(s)"
    );
    let mut failures = 0;
    for round in 1..=rounds {
        for (name, addr) in [("direct", backend), ("drover", through)] {
            match client.block_on(run(addr, conns, streams, secs)) {
                Ok((rate, failed)) => {
                    failures += failed;
                    println!("round {round} {name:>6}: {rate:>9.0} calls/s ({failed} failed)");
                }
                Err(e) => {
                    eprintln!("grpc bench: {name}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    drover.shutdown();
    drover.wait();
    if failures > 0 {
        eprintln!("grpc bench: {failures} calls failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
