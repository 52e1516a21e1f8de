//! Fake masters: N HTTP servers sharing one "who leads" cell that the caller moves at will.
//! Each answers the leader checks the way the real ones do, so one set stands in for the
//! Mesos, Marathon and Chronos masters of a control plane at once:
//!
//! - Mesos: `GET /metrics/snapshot` is `{"master/elected": 1.0}` on the leader, 0.0
//!   elsewhere. `GET /master/state` is the state on the leader (with `elected_time`, and
//!   `leader` and `pid` naming itself), a 307 with a protocol-relative `Location` naming the
//!   leader elsewhere (as Mesos 1.0+ does), and 503 everywhere while nobody leads.
//! - Marathon: `GET /ping` is 200 `pong` everywhere; a standby adds `X-Marathon-Via` (it
//!   proxies to the leader, so a plain 200 proves nothing). `GET /v2/leader` names the
//!   leader's `host:port`, or is 404 while nobody leads.
//! - Mesos operator API (with [`MastersBuilder::operator_api`]; see `operator_api`): `POST
//!   /api/v1` `SUBSCRIBE` streams RecordIO events on the leader, is a 307 to it elsewhere,
//!   and a 404 without the option (a master before 1.1). A leadership move closes every
//!   stream; `/master/state` then renders the same cluster the stream carries.
//! - Chronos: `GET /scheduler/jobs` is 200 on the leader and a 307 to it elsewhere.
//! - Every other path is a one-line page, `master 2 of 3 (leader): GET /x`, that
//!   [`Page::parse`] reads back, so a client behind Drover sees who answered and whether it
//!   led at that moment.
//!
//! Requests on the check paths count as probes, the others as served, per master, so a
//! test can prove no request reached a follower. Faults: a master that accepts and never
//! answers, one that claims leadership whatever the cell says (a split brain). Options
//! ([`MastersBuilder`]): https with basic auth (Mesos `--authenticate_http_readonly`), a
//! state document to serve, and master `i` on 127.0.0.`i+1` so each has its own address in
//! DNS answers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::operator_api::{self, Api};
use super::{full, RespBody};

/// The leader cell holds this while nobody leads.
const NOBODY: usize = usize::MAX;

/// A running set of masters. Dropping it stops every listener and connection.
pub struct FakeMasters {
    set: Arc<Set>,
    tasks: Vec<JoinHandle<()>>,
}

/// How to start a set: `FakeMasters::builder(3, Some(0)).own_ips().start().await`.
pub struct MastersBuilder {
    n: usize,
    leader: Option<usize>,
    own_ips: bool,
    tls: Option<rustls::ServerConfig>,
    auth: Option<String>,
    state: Option<Value>,
    api: Option<Api>,
}

/// What every master's connections share.
struct Set {
    addrs: Vec<SocketAddr>,
    /// `http` or `https`.
    scheme: &'static str,
    /// Index of the leader, or `NOBODY`.
    leader: AtomicUsize,
    /// The `/master/state` document the leader serves, before it names itself in it.
    state: Value,
    /// The `Authorization` value every request must carry.
    auth: Option<String>,
    masters: Vec<Master>,
    /// The operator API (`POST /api/v1`); `None`: 404, a master before Mesos 1.1.
    api: Option<Arc<Api>>,
}

/// One master's faults and counters.
#[derive(Default)]
struct Master {
    /// Requests answered with a page.
    served: AtomicUsize,
    /// Requests on a check path answered, and connections held while hanging.
    probes: AtomicUsize,
    /// Accept connections but never answer.
    hang: AtomicBool,
    /// Claim leadership whatever the cell says.
    claims: AtomicBool,
}

/// What a master's page says: who answered, and whether it led when it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// The master's index, from 0 (the page counts from 1, for people).
    pub index: usize,
    pub leads: bool,
}

// === impl FakeMasters ===

impl FakeMasters {
    /// `n` masters over http on 127.0.0.1; `leader` leads at first (`None`: nobody).
    pub async fn start(n: usize, leader: Option<usize>) -> FakeMasters {
        FakeMasters::builder(n, leader).start().await
    }

    /// `n` masters with more options; `leader` leads at first (`None`: nobody).
    pub fn builder(n: usize, leader: Option<usize>) -> MastersBuilder {
        MastersBuilder {
            n,
            leader,
            own_ips: false,
            tls: None,
            auth: None,
            state: None,
            api: None,
        }
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.set.addrs
    }

    /// Moves leadership to `to` (`None`: nobody leads). A master that stops leading
    /// closes its operator API streams.
    pub fn set_leader(&self, to: Option<usize>) {
        let before = self.set.leader.swap(to.unwrap_or(NOBODY), Ordering::SeqCst);
        if before != to.unwrap_or(NOBODY) {
            if let Some(api) = &self.set.api {
                api.close_streams();
            }
        }
    }

    /// Who leads by the cell (a master that also claims is not counted).
    pub fn leader(&self) -> Option<usize> {
        self.set.leader()
    }

    /// Requests master `i` answered with a page: the traffic a client sent it.
    pub fn served(&self, i: usize) -> usize {
        self.set.masters[i].served.load(Ordering::SeqCst)
    }

    /// Check-path requests master `i` answered (or, while hanging, connections it held).
    pub fn probes(&self, i: usize) -> usize {
        self.set.masters[i].probes.load(Ordering::SeqCst)
    }

    /// Makes master `i` accept and then never answer (new connections only).
    pub fn hang(&self, i: usize, on: bool) {
        self.set.masters[i].hang.store(on, Ordering::SeqCst);
    }

    /// Makes master `i` claim leadership whatever the cell says.
    pub fn also_claim(&self, i: usize, on: bool) {
        self.set.masters[i].claims.store(on, Ordering::SeqCst);
    }

    // --- the operator API (built with `MastersBuilder::operator_api`) ---

    fn api(&self) -> &Api {
        self.set
            .api
            .as_deref()
            .expect("masters built with operator_api")
    }

    /// Applies a v1 event (`{"type": "TASK_ADDED", "task_added": {...}}`) to the cluster and
    /// sends it on every open stream.
    pub fn push_event(&self, event: Value) {
        self.api().push(&event);
    }

    /// Heartbeats this often on every stream (15 s, Mesos's default, unless set).
    pub fn set_heartbeat(&self, every: std::time::Duration) {
        self.api().set_heartbeat(every);
    }

    /// Open streams go silent (no heartbeats, no events) while `on`; connections stay open.
    pub fn go_silent(&self, on: bool) {
        self.api().set_silent(on);
    }

    /// `/api/v1` answers 404 while `on`, as a master without the API.
    pub fn api_missing(&self, on: bool) {
        self.api().set_missing(on);
    }

    /// `SUBSCRIBE` is answered `200` with an HTML page, then closed, while `on`.
    pub fn garble_stream(&self, on: bool) {
        self.api().set_garbled(on);
    }

    /// `SUBSCRIBE` calls answered with a stream so far.
    pub fn subscriptions(&self) -> usize {
        self.api().subscriptions()
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.api().open_streams()
    }

    /// `["127.0.0.1:a", ...]`, for an alias's `backends`.
    pub fn backends_toml(&self) -> String {
        let list: Vec<String> = self.addrs().iter().map(|a| format!("\"{a}\"")).collect();
        format!("[{}]", list.join(", "))
    }

    /// `["http://127.0.0.1:a", ...]` (`https://` with TLS), for `[mesos] masters`.
    pub fn masters_toml(&self) -> String {
        let list: Vec<String> = self
            .addrs()
            .iter()
            .map(|a| format!("\"{}://{a}\"", self.set.scheme))
            .collect();
        format!("[{}]", list.join(", "))
    }
}

impl Drop for FakeMasters {
    fn drop(&mut self) {
        // Each accept task owns its connection tasks, so they go with it.
        for t in &self.tasks {
            t.abort();
        }
    }
}

// === impl MastersBuilder ===

impl MastersBuilder {
    /// Master `i` listens on 127.0.0.`i+1` instead of 127.0.0.1 (Linux routes all of
    /// 127.0.0.0/8 to loopback; other systems may not).
    pub fn own_ips(mut self) -> MastersBuilder {
        self.own_ips = true;
        self
    }

    /// Serves https with this setup (see [`super::pki::server_with_new_ca`]).
    pub fn tls(mut self, config: rustls::ServerConfig) -> MastersBuilder {
        self.tls = Some(config);
        self
    }

    /// Every request must carry `Authorization: Basic base64(user:password)`; others get
    /// 401 with `WWW-Authenticate: Basic realm="Mesos master"`.
    pub fn basic_auth(mut self, user: &str, password: &str) -> MastersBuilder {
        self.auth = Some(super::basic_auth(user, password));
        self
    }

    /// The `/master/state` document the leader serves (its `leader` and `pid` are replaced
    /// by the leader's own). Without one, a small state with `elected_time` and no agents.
    pub fn state(mut self, state: Value) -> MastersBuilder {
        self.state = Some(state);
        self
    }

    /// Serves the operator API: `subscribed` (a `SUBSCRIBED` event or its `get_state`) is
    /// the cluster, changed by [`FakeMasters::push_event`]; `/master/state` is rendered from
    /// it, with these framework pids (`(framework id, pid)`; the v1 state has none).
    pub fn operator_api(mut self, subscribed: Value, pids: &[(&str, &str)]) -> MastersBuilder {
        self.api = Some(Api::new(
            subscribed,
            pids,
            std::time::Duration::from_secs(15),
        ));
        self
    }

    /// Binds every master and serves it on the current runtime.
    pub async fn start(self) -> FakeMasters {
        let mut listeners = Vec::with_capacity(self.n);
        for i in 0..self.n {
            let ip = if self.own_ips {
                format!("127.0.0.{}", i + 1)
            } else {
                "127.0.0.1".to_string()
            };
            listeners.push(super::bind(&ip, "fake master").await);
        }
        let addrs = listeners
            .iter()
            .map(|l| l.local_addr().expect("bound address"))
            .collect();
        let set = Arc::new(Set {
            addrs,
            scheme: if self.tls.is_some() { "https" } else { "http" },
            leader: AtomicUsize::new(self.leader.unwrap_or(NOBODY)),
            state: self.state.unwrap_or_else(|| {
                json!({
                    "version": "1.11.0", "start_time": 1.0, "elected_time": 2.0,
                    "frameworks": [], "slaves": [],
                })
            }),
            auth: self.auth,
            masters: (0..self.n).map(|_| Master::default()).collect(),
            api: self.api.map(Arc::new),
        });
        let tls = self.tls.map(|c| TlsAcceptor::from(Arc::new(c)));
        let mut tasks = Vec::with_capacity(self.n);
        for (index, listener) in listeners.into_iter().enumerate() {
            let admit = {
                let set = set.clone();
                // Connections a hanging master accepted stay open, unanswered, until the
                // set is dropped.
                let mut held = Vec::new();
                move |stream: TcpStream| {
                    let me = &set.masters[index];
                    if !me.hang.load(Ordering::SeqCst) {
                        return Some(stream);
                    }
                    me.probes.fetch_add(1, Ordering::SeqCst);
                    held.push(stream);
                    None
                }
            };
            let handle = {
                let set = set.clone();
                move |_peer: SocketAddr, req: Request<Incoming>| set.answer(index, req)
            };
            tasks.push(tokio::spawn(super::accept_loop(
                listener,
                tls.clone(),
                admit,
                handle,
            )));
        }
        FakeMasters { set, tasks }
    }
}

// === impl Set ===

impl Set {
    fn leader(&self) -> Option<usize> {
        let leader = self.leader.load(Ordering::SeqCst);
        (leader < self.addrs.len()).then_some(leader)
    }

    fn answer(&self, index: usize, req: Request<Incoming>) -> Response<RespBody> {
        let me = &self.masters[index];
        if let Some(want) = &self.auth {
            let given = req.headers().get("authorization").map(|v| v.as_bytes());
            if given != Some(want.as_bytes()) {
                return Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .header("www-authenticate", "Basic realm=\"Mesos master\"")
                    .body(full(""))
                    .expect("static response parts");
            }
        }
        let leader = self.leader();
        let leads = leader == Some(index) || me.claims.load(Ordering::SeqCst);
        let path = req.uri().path();
        let check = matches!(
            path,
            "/metrics/snapshot"
                | "/master/state"
                | "/ping"
                | "/v2/leader"
                | "/scheduler/jobs"
                | "/api/v1"
        );
        if !check {
            me.served.fetch_add(1, Ordering::SeqCst);
            let page = format!(
                "master {} of {} ({}): {} {path}\n",
                index + 1,
                self.addrs.len(),
                if leads { "leader" } else { "standby" },
                req.method(),
            );
            return text(StatusCode::OK, "text/plain", page);
        }
        me.probes.fetch_add(1, Ordering::SeqCst);
        let to_leader = |path: &str, prefix: &str| {
            let location = match leader {
                Some(l) => format!("{prefix}{}{path}", self.addrs[l]),
                None => return text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "no leader\n"),
            };
            let mut resp = text(StatusCode::TEMPORARY_REDIRECT, "text/plain", "");
            let location = HeaderValue::from_str(&location).expect("an address is a header value");
            resp.headers_mut().insert(LOCATION, location);
            resp
        };
        if path == "/api/v1" {
            return match &self.api {
                Some(api) if !api.missing() => {
                    if !leads {
                        to_leader("/api/v1", "//")
                    } else if req.method() != hyper::Method::POST {
                        text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "")
                    } else {
                        api.subscribe(req.into_body())
                    }
                }
                _ => operator_api::not_found(),
            };
        }
        match path {
            // The `mesos` check reads `master/elected`.
            "/metrics/snapshot" => {
                let elected = if leads { "1.0" } else { "0.0" };
                let body =
                    format!("{{\"master/elected\": {elected}, \"master/uptime_secs\": 100.0}}");
                text(StatusCode::OK, "application/json", body)
            }
            "/master/state" if leads && self.api.is_some() => {
                let pid = format!("master@{}", self.addrs[index]);
                let api = self.api.as_ref().expect("checked");
                text(
                    StatusCode::OK,
                    "application/json",
                    api.master_state(&pid).to_string(),
                )
            }
            "/master/state" if leads => {
                let mut state = self.state.clone();
                let pid = Value::String(format!("master@{}", self.addrs[index]));
                state["leader"] = pid.clone();
                state["pid"] = pid;
                text(StatusCode::OK, "application/json", state.to_string())
            }
            // Mesos 1.0+ redirects without a scheme; the reader keeps its own.
            "/master/state" => to_leader("/master/state", "//"),
            "/ping" => {
                let mut resp = text(StatusCode::OK, "text/plain", "pong\n");
                if !leads {
                    let via = format!("1.1 {}", self.addrs[index]);
                    let via = HeaderValue::from_str(&via).expect("an address is a header value");
                    resp.headers_mut().insert("x-marathon-via", via);
                }
                resp
            }
            // The value is host:port, without a scheme, as Marathon writes it.
            "/v2/leader" => match leader {
                Some(l) => {
                    let body = json!({ "leader": self.addrs[l].to_string() }).to_string();
                    text(StatusCode::OK, "application/json", body)
                }
                None => text(
                    StatusCode::NOT_FOUND,
                    "application/json",
                    r#"{"message":"There is no leader"}"#,
                ),
            },
            "/scheduler/jobs" if leads => text(StatusCode::OK, "application/json", "[]\n"),
            // A Chronos that redirects: probes never follow redirects, so only the leader
            // passes a check that wants 200.
            _ => to_leader("/scheduler/jobs", "http://"),
        }
    }
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<bytes::Bytes>,
) -> Response<RespBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

// === impl Page ===

impl Page {
    /// Reads a page body (`master 2 of 3 (leader): GET /x`); `None` for anything else.
    pub fn parse(body: &str) -> Option<Page> {
        let rest = body.strip_prefix("master ")?;
        let (number, rest) = rest.split_once(" of ")?;
        let index = number.parse::<usize>().ok()?.checked_sub(1)?;
        let (_, rest) = rest.split_once(' ')?;
        let leads = if rest.starts_with("(leader):") {
            true
        } else if rest.starts_with("(standby):") {
            false
        } else {
            return None;
        };
        Some(Page { index, leads })
    }
}

#[cfg(test)]
mod tests {
    use super::Page;

    #[test]
    fn a_page_reads_back() {
        let leader = Page::parse("master 2 of 3 (leader): GET /master/tasks\n");
        assert_eq!(
            leader,
            Some(Page {
                index: 1,
                leads: true
            })
        );
        let standby = Page::parse("master 1 of 3 (standby): POST /\n");
        assert_eq!(
            standby,
            Some(Page {
                index: 0,
                leads: false
            })
        );
        for other in [
            "",
            "master-1",
            "master 0 of 3 (leader): GET /",
            "master 1 of 3 (x): GET /",
        ] {
            assert_eq!(Page::parse(other), None, "{other:?}");
        }
    }
}
