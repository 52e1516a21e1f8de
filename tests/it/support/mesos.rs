//! Fake Mesos masters: N HTTP servers, master `i` on 127.0.0.`i+1` so each has its own
//! address in DNS answers, sharing one "who leads" cell. `GET /master/state` on the leader
//! answers the fixture state with `leader` and `pid` naming itself; a follower answers 307
//! with a protocol-relative `Location` naming the leader, as Mesos 1.0+ does; with no
//! leader every master answers 503. `start_secure` serves the same over https and asks
//! for basic auth, as masters with `--authenticate_http_readonly` do.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::support::marathon::{basic_auth, test_pki};

const NOBODY: usize = usize::MAX;

pub struct FakeMesos {
    pub addrs: Vec<SocketAddr>,
    /// `http` or `https`.
    scheme: &'static str,
    leader: Arc<AtomicUsize>,
    /// `/master/state` requests, per master.
    reads: Vec<Arc<AtomicUsize>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// mesos-dns's state fixture.
pub fn fixture_state() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mesos/mesos-dns-fake-state.json"
    );
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

impl FakeMesos {
    pub async fn start(n: usize, leader: Option<usize>) -> FakeMesos {
        FakeMesos::serve(n, leader, None, None).await
    }

    /// As `start`, over https (a certificate from a CA made now), answering 401 to any
    /// request without `Authorization: Basic principal:secret`. Returns the CA in PEM.
    pub async fn start_secure(
        n: usize,
        leader: Option<usize>,
        principal: &str,
        secret: &str,
    ) -> (FakeMesos, String) {
        let (ca_pem, server) = test_pki();
        let tls = TlsAcceptor::from(Arc::new(server));
        let auth = basic_auth(principal, secret);
        (
            FakeMesos::serve(n, leader, Some(tls), Some(auth)).await,
            ca_pem,
        )
    }

    async fn serve(
        n: usize,
        leader: Option<usize>,
        tls: Option<TlsAcceptor>,
        auth: Option<String>,
    ) -> FakeMesos {
        let cell = Arc::new(AtomicUsize::new(leader.unwrap_or(NOBODY)));
        let mut listeners = Vec::new();
        for i in 0..n {
            let ip = format!("127.0.0.{}:0", i + 1);
            listeners.push(TcpListener::bind(&ip).await.expect("bind fake master"));
        }
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let state: Arc<serde_json::Value> =
            Arc::new(serde_json::from_str(&fixture_state()).expect("fixture JSON"));
        let mut m = FakeMesos {
            addrs: addrs.clone(),
            scheme: if tls.is_some() { "https" } else { "http" },
            leader: cell.clone(),
            reads: Vec::new(),
            tasks: Vec::new(),
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            let reads = Arc::new(AtomicUsize::new(0));
            m.reads.push(reads.clone());
            let me = Arc::new(Master {
                index: i,
                addrs: addrs.clone(),
                leader: cell.clone(),
                state: state.clone(),
                reads,
                auth: auth.clone(),
            });
            let tls = tls.clone();
            m.tasks.push(tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let me = me.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let service =
                            hyper::service::service_fn(move |req| answer(me.clone(), req));
                        let http = hyper::server::conn::http1::Builder::new();
                        match tls {
                            None => {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                            Some(tls) => {
                                if let Ok(stream) = tls.accept(stream).await {
                                    let _ =
                                        http.serve_connection(TokioIo::new(stream), service).await;
                                }
                            }
                        }
                    });
                }
            }));
        }
        m
    }

    pub fn set_leader(&self, to: Option<usize>) {
        self.leader.store(to.unwrap_or(NOBODY), Ordering::SeqCst);
    }

    pub fn reads(&self, i: usize) -> usize {
        self.reads[i].load(Ordering::SeqCst)
    }

    /// `["http://127.0.0.1:a", ...]` (`https://` from `start_secure`) for `[mesos] masters`.
    pub fn masters_toml(&self) -> String {
        let list: Vec<String> = self
            .addrs
            .iter()
            .map(|a| format!("\"{}://{a}\"", self.scheme))
            .collect();
        format!("[{}]", list.join(", "))
    }
}

impl Drop for FakeMesos {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct Master {
    index: usize,
    addrs: Vec<SocketAddr>,
    leader: Arc<AtomicUsize>,
    state: Arc<serde_json::Value>,
    reads: Arc<AtomicUsize>,
    /// The `Authorization` value every request must carry.
    auth: Option<String>,
}

async fn answer(
    me: Arc<Master>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let b = Response::builder();
    if req.uri().path() != "/master/state" {
        return Ok(b.status(404).body(Full::default()).unwrap());
    }
    let authorized = me.auth.as_deref().is_none_or(|want| {
        req.headers()
            .get("authorization")
            .is_some_and(|got| got.as_bytes() == want.as_bytes())
    });
    if !authorized {
        return Ok(b
            .status(401)
            .header("www-authenticate", "Basic realm=\"Mesos master\"")
            .body(Full::default())
            .unwrap());
    }
    me.reads.fetch_add(1, Ordering::SeqCst);
    let leader = me.leader.load(Ordering::SeqCst);
    let response = match me.addrs.get(leader) {
        None => b.status(503).body(Full::default()),
        Some(to) if leader != me.index => b
            .status(307)
            .header("location", format!("//{to}/master/state"))
            .body(Full::default()),
        Some(own) => {
            let mut state = (*me.state).clone();
            let pid = serde_json::Value::String(format!("master@{own}"));
            state["leader"] = pid.clone();
            state["pid"] = pid;
            b.status(200)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(state.to_string())))
        }
    };
    Ok(response.unwrap())
}
