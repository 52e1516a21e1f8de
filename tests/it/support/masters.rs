//! Fake masters for leader-alias tests: N HTTP servers on 127.0.0.1 sharing one "who leads"
//! cell that a test moves at will. Each answers the leader checks the way the real thing
//! does, and every other request with `master-<i>` (and header `x-master: <i>`), counting
//! those per master so a test can prove no request reached a follower.
//!
//! - Mesos: `GET /metrics/snapshot` → `{"master/elected": 1}` on the leader, 0 elsewhere;
//!   `GET /master/state` → 200 with `elected_time` on the leader, a 307 to the leader elsewhere.
//! - Marathon: `GET /ping` → 200 `pong` everywhere; a standby adds `X-Marathon-Via` (it
//!   proxies to the leader), so a plain 200 proves nothing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// `leader` holds this when nobody leads.
const NOBODY: usize = usize::MAX;

pub struct FakeMasters {
    pub addrs: Vec<SocketAddr>,
    leader: Arc<AtomicUsize>,
    /// Non-probe requests served, per master.
    served: Vec<Arc<AtomicUsize>>,
    /// Probe requests seen, per master.
    probes: Vec<Arc<AtomicUsize>>,
    /// Per master: accept connections but never answer.
    hang: Vec<Arc<AtomicBool>>,
    /// Per master: claim leadership regardless of `leader` (a split brain).
    claims: Vec<Arc<AtomicBool>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl FakeMasters {
    /// `n` masters; `leader` leads at first (`None`: nobody).
    pub async fn start(n: usize, leader: Option<usize>) -> FakeMasters {
        let cell = Arc::new(AtomicUsize::new(leader.unwrap_or(NOBODY)));
        let mut m = FakeMasters {
            addrs: Vec::new(),
            leader: cell.clone(),
            served: Vec::new(),
            probes: Vec::new(),
            hang: Vec::new(),
            claims: Vec::new(),
            tasks: Vec::new(),
        };
        let listeners: Vec<TcpListener> = {
            let mut v = Vec::new();
            for _ in 0..n {
                v.push(TcpListener::bind("127.0.0.1:0").await.expect("bind master"));
            }
            v
        };
        let addrs: Vec<SocketAddr> = listeners
            .iter()
            .map(|l| l.local_addr().expect("addr"))
            .collect();
        for (i, listener) in listeners.into_iter().enumerate() {
            let me = Me {
                index: i,
                addrs: addrs.clone(),
                leader: cell.clone(),
                served: Arc::new(AtomicUsize::new(0)),
                probes: Arc::new(AtomicUsize::new(0)),
                hang: Arc::new(AtomicBool::new(false)),
                claims: Arc::new(AtomicBool::new(false)),
            };
            m.served.push(me.served.clone());
            m.probes.push(me.probes.clone());
            m.hang.push(me.hang.clone());
            m.claims.push(me.claims.clone());
            m.tasks.push(tokio::spawn(serve(listener, Arc::new(me))));
        }
        m.addrs = addrs;
        m
    }

    /// Moves leadership to `to` (`None`: nobody leads).
    pub fn set_leader(&self, to: Option<usize>) {
        self.leader.store(to.unwrap_or(NOBODY), Ordering::SeqCst);
    }

    /// Non-probe requests master `i` served.
    pub fn served(&self, i: usize) -> usize {
        self.served[i].load(Ordering::SeqCst)
    }

    /// Probe requests master `i` answered (or, when hanging, received).
    pub fn probes(&self, i: usize) -> usize {
        self.probes[i].load(Ordering::SeqCst)
    }

    /// Makes master `i` accept and then never answer.
    pub fn hang(&self, i: usize, on: bool) {
        self.hang[i].store(on, Ordering::SeqCst);
    }

    /// Makes master `i` claim leadership whatever the cell says.
    pub fn also_claim(&self, i: usize, on: bool) {
        self.claims[i].store(on, Ordering::SeqCst);
    }

    /// `["127.0.0.1:a", ...]` for a config's `backends`.
    pub fn backends_toml(&self) -> String {
        let list: Vec<String> = self.addrs.iter().map(|a| format!("\"{a}\"")).collect();
        format!("[{}]", list.join(", "))
    }
}

impl Drop for FakeMasters {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct Me {
    index: usize,
    addrs: Vec<SocketAddr>,
    leader: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
    probes: Arc<AtomicUsize>,
    hang: Arc<AtomicBool>,
    claims: Arc<AtomicBool>,
}

impl Me {
    fn leads(&self) -> bool {
        self.leader.load(Ordering::SeqCst) == self.index || self.claims.load(Ordering::SeqCst)
    }
}

async fn serve(listener: TcpListener, me: Arc<Me>) {
    let mut held = Vec::new();
    while let Ok((stream, _)) = listener.accept().await {
        if me.hang.load(Ordering::SeqCst) {
            me.probes.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
            continue;
        }
        let me = me.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(me.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(me: Arc<Me>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let leads = me.leads();
    let probe = req
        .headers()
        .get("user-agent")
        .is_some_and(|v| v.as_bytes().starts_with(b"drover-health"));
    let mut b = Response::builder().header("x-master", me.index.to_string());
    let body = match path {
        "/metrics/snapshot" if probe => {
            me.probes.fetch_add(1, Ordering::SeqCst);
            let elected = if leads { "1.0" } else { "0.0" };
            format!(r#"{{"master/uptime_secs": 100.0, "master/elected": {elected}}}"#)
        }
        "/master/state" if probe => {
            me.probes.fetch_add(1, Ordering::SeqCst);
            if leads {
                r#"{"version":"1.11.0","start_time":1.0,"elected_time":2.0}"#.to_string()
            } else {
                let leader = me.leader.load(Ordering::SeqCst);
                let to = me.addrs.get(leader).copied().unwrap_or(me.addrs[me.index]);
                b = b
                    .status(307)
                    .header("location", format!("//{to}/master/state"));
                String::new()
            }
        }
        "/ping" if probe => {
            me.probes.fetch_add(1, Ordering::SeqCst);
            if !leads {
                b = b.header("x-marathon-via", format!("{}", me.addrs[me.index]));
            }
            "pong".to_string()
        }
        _ => {
            me.served.fetch_add(1, Ordering::SeqCst);
            format!("master-{}", me.index)
        }
    };
    Ok(b.body(Full::new(Bytes::from(body))).expect("response"))
}
