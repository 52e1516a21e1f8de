//! Polls the leading Mesos master's `/master/state` every `[mesos] poll` and publishes each
//! good read. Only a leader's state is accepted (a non-leader answers with no tasks):
//!
//! - masters are tried in order, starting with the one that led last time;
//! - a `307` (a non-leader, Mesos 1.0+) names the leader in a protocol-relative `Location`
//!   (`//host:port/master/state`): that one is read instead;
//! - a `503` means "no leader elected": the next master is tried;
//! - a `200` whose `leader` is not the master that answered (an older Mesos, or one that
//!   just lost the election) is re-read from the leader it names.
//!
//! A failed round keeps the last good state (logged, counted, shown in `/debug/routes`). A
//! state with less than half of the previous one's tasks is held for one poll and published
//! only if the next read confirms it (DESIGN §7).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::state::{self, split_host_port, MesosState, Pid};
use crate::config::{Config, MesosConfig};
use crate::shutdown::Shutdown;
use crate::Shared;

/// The label value of `source` in discovery metrics.
pub const SOURCE: &str = "mesos";

/// The largest state accepted (a big cluster's state is tens of MiB).
const MAX_BODY: usize = 512 * 1024 * 1024;

/// How long one request (connect, head and body) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One good read: the leader's state and where it came from.
#[derive(Debug)]
pub struct MesosSnapshot {
    pub state: MesosState,
    /// `host:port` of the master that answered (the leader).
    pub leader: String,
}

/// A master to read from: `host:port` (the configured URL without `http://`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Master {
    authority: String,
}

/// Why a read was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("{0}: {1}")]
    Request(String, String),
    #[error("{0}: HTTP {1}")]
    Status(String, StatusCode),
    #[error("{0}: no leader is elected (503)")]
    NoLeader(String),
    #[error("{0}: {1}")]
    Decode(String, state::StateError),
    #[error("{0}: names {1} as leader, which does not confirm it")]
    NotLeader(String, String),
    #[error("{0}: only http:// master URLs are supported")]
    Scheme(String),
}

/// Polls while `[mesos]` is configured; follows config changes. `None` on the channel
/// means "not read yet"; a changed master list starts from `None` again.
pub async fn run(
    mut config: watch::Receiver<Arc<Config>>,
    tx: watch::Sender<Option<Arc<MesosSnapshot>>>,
    shared: Arc<Shared>,
    shutdown: Shutdown,
) {
    loop {
        let cfg = config.borrow_and_update().mesos.clone();
        let Some(cfg) = cfg else {
            tx.send_replace(None);
            shared.set_source_error(SOURCE, None);
            tokio::select! {
                r = config.changed() => if r.is_err() { return } else { continue },
                _ = shutdown.triggered() => return,
            }
        };
        tx.send_replace(None);
        let mut poller = Poller::new(&cfg);
        let mut tick = tokio::time::interval(cfg.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                r = config.changed() => {
                    if r.is_err() { return }
                    if config.borrow().mesos.as_ref() != Some(&cfg) {
                        info!("[mesos] changed; reading the new masters");
                        break;
                    }
                    continue;
                }
                _ = shutdown.triggered() => return,
            }
            let round = tokio::select! {
                r = poller.read() => r,
                _ = shutdown.triggered() => return,
            };
            match round {
                Ok(snapshot) => {
                    shared.metrics.discovery_ok(SOURCE);
                    shared.set_source_error(SOURCE, None);
                    if let Some(snapshot) = poller.confirm(snapshot) {
                        tx.send_replace(Some(Arc::new(snapshot)));
                    }
                }
                Err(errors) => {
                    shared.metrics.discovery_error(SOURCE);
                    warn!(error = %errors, "no Mesos leader state read; keeping the last good one");
                    shared.set_source_error(SOURCE, Some(errors));
                }
            }
        }
    }
}

/// The reading side, apart from scheduling (tests drive it directly).
pub struct Poller {
    masters: Vec<Result<Master, String>>,
    /// Index of the master tried first.
    preferred: usize,
    /// Tasks in the last published state.
    last_tasks: Option<usize>,
    /// A sharply shrunk state waiting for a second read to confirm it.
    held: bool,
}

impl Poller {
    pub fn new(cfg: &MesosConfig) -> Poller {
        let masters = cfg
            .masters
            .iter()
            .map(|url| match url.strip_prefix("http://") {
                Some(rest) => Ok(Master {
                    authority: rest.trim_end_matches('/').to_string(),
                }),
                None => Err(url.clone()),
            })
            .collect();
        Poller {
            masters,
            preferred: 0,
            last_tasks: None,
            held: false,
        }
    }

    /// One round: the leader's state, or every master's reason in one message.
    pub async fn read(&mut self) -> Result<MesosSnapshot, String> {
        let n = self.masters.len();
        let mut errors = Vec::new();
        for i in 0..n {
            let index = (self.preferred + i) % n;
            let master = match &self.masters[index] {
                Ok(m) => m.clone(),
                Err(url) => {
                    errors.push(PollError::Scheme(url.clone()).to_string());
                    continue;
                }
            };
            match read_leader(&master.authority).await {
                Ok(snapshot) => {
                    // Start with the leader next time when it is one of ours.
                    let leader_index = self
                        .masters
                        .iter()
                        .position(|m| m.as_ref().is_ok_and(|m| m.authority == snapshot.leader));
                    self.preferred = leader_index.unwrap_or(index);
                    return Ok(snapshot);
                }
                Err(e) => {
                    debug!(error = %e, "Mesos master did not give a leader's state");
                    errors.push(e.to_string());
                }
            }
        }
        Err(errors.join("; "))
    }

    /// Applies the shrink guard: `None` while a sharply smaller state waits to be confirmed.
    pub fn confirm(&mut self, snapshot: MesosSnapshot) -> Option<MesosSnapshot> {
        let tasks = snapshot
            .state
            .frameworks
            .iter()
            .map(|f| f.tasks.len())
            .sum::<usize>();
        let shrunk = self.last_tasks.is_some_and(|last| tasks * 2 < last);
        if shrunk && !self.held {
            warn!(
                tasks,
                before = self.last_tasks.unwrap_or(0),
                "Mesos state lost more than half of its tasks; waiting for the next read to confirm"
            );
            self.held = true;
            return None;
        }
        self.held = false;
        self.last_tasks = Some(tasks);
        Some(snapshot)
    }
}

/// Reads `/master/state` from `authority`, following a 307 or a `leader` naming another
/// master once; accepts only a state whose master says it leads.
async fn read_leader(authority: &str) -> Result<MesosSnapshot, PollError> {
    let (status, location, body) = get(authority, "/master/state").await?;
    let (from, body) = match status {
        StatusCode::OK => (authority.to_string(), body),
        StatusCode::TEMPORARY_REDIRECT => {
            let leader = location
                .as_deref()
                .and_then(redirect_authority)
                .ok_or_else(|| {
                    PollError::Request(
                        authority.to_string(),
                        format!("307 with an unusable Location {location:?}"),
                    )
                })?;
            debug!(from = %authority, to = %leader, "following the leader's redirect");
            let (status, _, body) = get(&leader, "/master/state").await?;
            if status != StatusCode::OK {
                return Err(status_error(&leader, status));
            }
            (leader, body)
        }
        other => return Err(status_error(authority, other)),
    };
    let state = state::decode(&body).map_err(|e| PollError::Decode(from.clone(), e))?;
    if leads(&state, &from) {
        return Ok(MesosSnapshot {
            state,
            leader: from,
        });
    }
    // The master that answered names someone else: read from that one, once.
    let named = Pid::parse(&state.leader)
        .map_err(|_| PollError::NotLeader(from.clone(), format!("{:?}", state.leader)))?;
    let leader = pid_authority(&named);
    let (status, _, body) = get(&leader, "/master/state").await?;
    if status != StatusCode::OK {
        return Err(status_error(&leader, status));
    }
    let state = state::decode(&body).map_err(|e| PollError::Decode(leader.clone(), e))?;
    if leads(&state, &leader) {
        Ok(MesosSnapshot { state, leader })
    } else {
        Err(PollError::NotLeader(leader, state.leader.clone()))
    }
}

fn status_error(authority: &str, status: StatusCode) -> PollError {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        PollError::NoLeader(authority.to_string())
    } else {
        PollError::Status(authority.to_string(), status)
    }
}

/// Whether `state`, read from `authority`, is a leader's: its own pid is the leader's, or
/// (when it has no `pid`) the leader's address is the one we read from.
fn leads(state: &MesosState, authority: &str) -> bool {
    if state.leader.is_empty() {
        return false;
    }
    if !state.pid.is_empty() {
        return state.pid == state.leader;
    }
    Pid::parse(&state.leader).is_ok_and(|p| pid_authority(&p) == authority)
}

fn pid_authority(pid: &Pid) -> String {
    if pid.host.contains(':') {
        format!("[{}]:{}", pid.host, pid.port)
    } else {
        format!("{}:{}", pid.host, pid.port)
    }
}

/// `host:port` from a 307's `Location`: `//host:port/master/state` (Mesos writes it
/// protocol-relative) or `http://host:port/...`.
fn redirect_authority(location: &str) -> Option<String> {
    let rest = location
        .strip_prefix("//")
        .or_else(|| location.strip_prefix("http://"))?;
    let authority = rest.split('/').next()?;
    split_host_port(authority)?;
    Some(authority.to_string())
}

/// One GET over a fresh connection: status, `Location`, and the whole body.
async fn get(
    authority: &str,
    path: &str,
) -> Result<(StatusCode, Option<String>, Bytes), PollError> {
    let fail = |reason: String| PollError::Request(authority.to_string(), reason);
    let exchange = async {
        let stream = TcpStream::connect(authority)
            .await
            .map_err(|e| fail(format!("connect: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(format!("handshake: {e}")))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let host = HeaderValue::from_str(authority).map_err(|_| fail("bad host".into()))?;
        let request = Request::get(path)
            .header(header::HOST, host)
            .header(header::USER_AGENT, "drover")
            .header(header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| fail(format!("request: {e}")))?;
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| fail(format!("reading the body: {e}")))?
            .to_bytes();
        Ok((status, location, body))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| fail(format!("no answer within {REQUEST_TIMEOUT:?}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_name_the_leader_protocol_relative() {
        assert_eq!(
            redirect_authority("//10.0.0.2:5050/master/state").as_deref(),
            Some("10.0.0.2:5050")
        );
        assert_eq!(
            redirect_authority("http://[::1]:5050/master/state").as_deref(),
            Some("[::1]:5050")
        );
        assert_eq!(redirect_authority("/master/state"), None);
        assert_eq!(redirect_authority("//nohostport/x"), None);
    }

    #[test]
    fn a_state_leads_when_its_pid_is_the_leader() {
        let mut s = MesosState {
            leader: "master@10.0.0.1:5050".into(),
            pid: "master@10.0.0.1:5050".into(),
            ..MesosState::default()
        };
        assert!(leads(&s, "m1:5050"), "pid decides, whatever the URL");
        s.pid = "master@10.0.0.2:5050".into();
        assert!(!leads(&s, "10.0.0.1:5050"));
        s.pid.clear();
        assert!(leads(&s, "10.0.0.1:5050"), "no pid: the address decides");
        assert!(!leads(&s, "10.0.0.2:5050"));
        s.leader.clear();
        assert!(!leads(&s, "10.0.0.1:5050"), "no leader: nobody leads");
    }
}
