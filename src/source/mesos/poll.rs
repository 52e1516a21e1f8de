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
//!
//! `https://` masters are read over TLS (`source::https`; a redirect or a leader named in a
//! state keeps the scheme of the master that named it), and with `principal` and
//! `secret_file` every request carries HTTP basic auth (Mesos's `--authenticate_http_*`).

pub(super) mod zk;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::cluster::{master_addresses, resolve_and_convert};
use super::state::{self, split_host_port, MesosState, Pid};
use crate::catalog::cluster::Cluster;
use crate::config::{Config, MesosConfig};
use crate::handles::SourceStatus;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::source::https::{basic_auth, read_body, Get, GetError, TlsClient, TlsSetupError};

/// The label value of `source` in discovery metrics.
pub const SOURCE: &str = "mesos";

/// The largest state accepted (a big cluster's state is tens of MiB).
pub(super) const MAX_BODY: usize = 512 * 1024 * 1024;

/// How long one request (connect, head and body) may take.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Least time from one poll's start to a poll asked for by a re-read: a state can be tens of
/// MiB, and a loop of requests must not become a loop of full reads of the leader.
const REREAD_GAP: Duration = Duration::from_secs(1);

/// One good read: the cluster the leader's state describes, and where it came from.
#[derive(Debug)]
pub struct MesosSnapshot {
    pub cluster: Cluster,
    /// `host:port` of the master that answered (the leader).
    pub leader: String,
}

/// A master to read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Master {
    /// `host:port` to connect to; also how masters are told apart.
    pub authority: String,
    /// The host alone (no brackets): what an https master's certificate must name.
    pub host: String,
    pub tls: bool,
}

impl Master {
    /// From a configured URL, `http://host:port` or `https://host:port` (port 80 or 443
    /// when absent; a path is ignored).
    pub(super) fn parse(url: &str) -> Result<Master, MasterUrlError> {
        let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            _ => return Err(MasterUrlError::NotHttp(url.to_string())),
        };
        let hostport = rest.split('/').next().unwrap_or_default();
        let authority = if split_host_port(hostport).is_some() {
            hostport.to_string()
        } else {
            format!("{hostport}:{}", if tls { 443 } else { 80 })
        };
        Master::at(&authority, tls).ok_or_else(|| MasterUrlError::NoHost(url.to_string()))
    }

    /// The master at `host:port`, reached the same way (`tls`) as the one that named it.
    fn at(authority: &str, tls: bool) -> Option<Master> {
        let (host, _) = split_host_port(authority)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        (!host.is_empty()).then(|| Master {
            authority: authority.to_string(),
            host: host.to_string(),
            tls,
        })
    }
}

/// Why a configured master URL cannot be used. Clone: a `Poller` keeps it and says it again
/// at every round.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MasterUrlError {
    #[error("{0}: not an http:// or https:// URL")]
    NotHttp(String),
    #[error("{0}: no usable host")]
    NoHost(String),
}

/// How requests reach the masters: TLS when some master is https, and basic auth.
#[derive(Debug, Clone)]
pub(super) struct Transport {
    pub tls: Option<TlsClient>,
    pub auth: Option<HeaderValue>,
}

impl Transport {
    /// Loads the TLS roots (once per configuration); `auth` is set per round.
    fn new(cfg: &MesosConfig) -> Result<Transport, TlsSetupError> {
        let tls = if cfg.masters.iter().any(|m| m.starts_with("https://")) {
            Some(TlsClient::new(cfg.ca_file.as_deref(), "mesos")?)
        } else {
            None
        };
        Ok(Transport { tls, auth: None })
    }
}

/// The basic-auth header from `[mesos] principal` and `secret_file`. Read at every round
/// (a few bytes every few seconds), so a rotated secret is used without a reload.
fn read_auth(credentials: Option<&(String, PathBuf)>) -> Result<Option<HeaderValue>, PollError> {
    let Some((principal, file)) = credentials else {
        return Ok(None);
    };
    let secret = std::fs::read_to_string(file).map_err(|source| PollError::SecretFile {
        file: file.clone(),
        source,
    })?;
    Ok(Some(basic_auth(
        principal,
        secret.trim_end_matches(['\r', '\n']),
    )))
}

/// Why a read was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// A step of the GET to the master at `{0}`.
    #[error("{0}: {1}")]
    Get(String, #[source] GetError),
    #[error("{0}: no answer within {1:?}")]
    Timeout(String, Duration),
    #[error("{0}: 307 with an unusable Location {1:?}")]
    BadRedirect(String, Option<String>),
    /// A redirect to an https master when every configured one is http.
    #[error("{0}: an https master, but no configured master is https, so TLS is not set up")]
    NoTls(String),
    #[error("{0}: bad host")]
    BadHost(String),
    #[error("{0}: {1}")]
    BadRequest(String, #[source] hyper::http::Error),
    #[error("{0}: HTTP {1}")]
    Status(String, StatusCode),
    #[error("{0}: no leader is elected (503)")]
    NoLeader(String),
    #[error("{0}: {1}")]
    Decode(String, state::StateError),
    #[error("{0}: names {1} as leader, which does not confirm it")]
    NotLeader(String, String),
    /// The configured `ca_file` or the system's roots; shared, as every round repeats it.
    #[error("{0}")]
    Tls(#[source] Arc<TlsSetupError>),
    #[error("cannot read [mesos] secret_file {}: {source}", .file.display())]
    SecretFile {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Url(#[source] MasterUrlError),
    #[error("{0}: HTTP {1}: the master wants credentials ([mesos] principal and secret_file)")]
    Unauthorized(String, StatusCode),
}

/// Follows the leading master while `[mesos]` is configured: its operator API stream
/// (`super::stream`) when `stream` is on, else a poll every `[mesos] poll`. Follows config
/// changes, and reads at once on each `reread` (SIGHUP, `/_mlb_signal/hup`). `None` on the
/// channel means "not read yet"; a changed `[mesos]` starts from `None` again.
pub async fn run(
    mut config: watch::Receiver<Arc<Config>>,
    tx: watch::Sender<Option<Arc<MesosSnapshot>>>,
    metrics: Metrics,
    status: SourceStatus,
    mut reread: watch::Receiver<()>,
    shutdown: Shutdown,
    zk: crate::zk::Zk,
) {
    loop {
        let cfg = config.borrow_and_update().mesos.clone();
        tx.send_replace(None);
        metrics
            .discovery_stream_up
            .with_label_values(&[SOURCE])
            .set(0);
        let Some(cfg) = cfg else {
            status.ok();
            tokio::select! {
                r = config.changed() => if r.is_err() { return } else { continue },
                _ = shutdown.triggered() => return,
            }
        };
        let out = Output {
            tx: &tx,
            metrics: &metrics,
            status: &status,
        };
        let mut zk_leader = zk::LeaderHint::new(&zk, &cfg);
        let follow = async {
            if cfg.stream {
                super::stream::follow(&cfg, out, &mut reread, &mut zk_leader).await
            } else {
                poll_loop(&cfg, out, &mut reread, &mut zk_leader).await
            }
        };
        tokio::select! {
            _ = follow => return,
            _ = shutdown.triggered() => return,
            changed = wait_for_change(&mut config, &cfg) => if !changed { return },
        }
        info!("[mesos] changed; reading the new masters");
    }
}

/// Where a round's outcome goes: the snapshot channel, metrics, and the source's status.
#[derive(Clone, Copy)]
pub(super) struct Output<'a> {
    pub tx: &'a watch::Sender<Option<Arc<MesosSnapshot>>>,
    pub metrics: &'a Metrics,
    pub status: &'a SourceStatus,
}

/// Resolves when `[mesos]` differs from `current` (true) or the config channel closes.
async fn wait_for_change(config: &mut watch::Receiver<Arc<Config>>, current: &MesosConfig) -> bool {
    loop {
        if config.changed().await.is_err() {
            return false;
        }
        if config.borrow_and_update().mesos.as_ref() != Some(current) {
            return true;
        }
    }
}

/// Polls every `cfg.poll` (and soon after a `reread`) until the caller stops it.
async fn poll_loop(
    cfg: &MesosConfig,
    out: Output<'_>,
    reread: &mut watch::Receiver<()>,
    zk_leader: &mut zk::LeaderHint,
) {
    let mut poller = Poller::new(cfg);
    let mut tick = tokio::time::interval(cfg.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick polls at once: earlier requests are answered by it.
    reread.borrow_and_update();
    let mut reread_open = true;
    let mut last_poll: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = reread.changed(), if reread_open => {
                if r.is_err() {
                    reread_open = false;
                    continue;
                }
                info!("re-read requested; polling the Mesos master now");
                // The tick polls: at once, or `REREAD_GAP` after the last poll began
                // (never later than the regular tick). Regular polls go on a whole
                // `poll` after that one.
                tick.reset_at(reread_slot(last_poll, cfg.poll));
                continue;
            }
            view = zk_leader.changed() => {
                // A new leader in ZooKeeper: read its state now, not at the next tick.
                if poller.follow_zk(&view) {
                    let leader = crate::logfmt::or_none(poller.zk_leader.as_deref());
                    info!(%leader, "ZooKeeper names a new Mesos leader; polling it now");
                    tick.reset_immediately();
                }
                continue;
            }
        }
        last_poll = Some(tokio::time::Instant::now());
        match poller.read().await {
            Ok(snapshot) => {
                out.metrics.discovery_ok(SOURCE);
                out.status.ok();
                if let Some(snapshot) = poller.confirm(snapshot) {
                    out.tx.send_replace(Some(Arc::new(snapshot)));
                }
            }
            Err(errors) => {
                out.metrics.discovery_error(SOURCE);
                warn!(error = %errors, "no Mesos leader state read; keeping the last good one");
                out.status.failed(errors);
            }
        }
    }
}

/// When a read asked for by a re-read may start: at once, or [`REREAD_GAP`] (at most
/// `poll`) after the last read began.
pub(super) fn reread_slot(
    last: Option<tokio::time::Instant>,
    poll: Duration,
) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    last.map_or(now, |at| (at + REREAD_GAP.min(poll)).max(now))
}

/// What one round read: the leader's state, the master it came from, and the transport
/// (TLS, auth) that reached it.
pub(super) struct LeaderState {
    pub state: MesosState,
    pub leader: Master,
    pub transport: Transport,
}

/// The shrink guard (DESIGN §7) over whole states: a state with less than half of the
/// last published one's tasks is held until the next whole state confirms it.
#[derive(Debug, Default)]
pub(super) struct ShrinkGuard {
    /// Tasks in the last published state.
    last_tasks: Option<usize>,
    /// A sharply shrunk state waits for a second read to confirm it.
    held: bool,
}

impl ShrinkGuard {
    /// Whether a whole state of `tasks` tasks may be published now.
    pub fn full(&mut self, tasks: usize) -> bool {
        let shrunk = self.last_tasks.is_some_and(|last| tasks * 2 < last);
        if shrunk && !self.held {
            warn!(
                tasks,
                before = self.last_tasks.unwrap_or(0),
                "Mesos state lost more than half of its tasks; waiting for the next read to confirm"
            );
            self.held = true;
            return false;
        }
        self.held = false;
        self.last_tasks = Some(tasks);
        true
    }

    /// Whether a state changed by events (each one real, a kill included) may be published:
    /// always, unless a shrunk whole state is waiting; then only once events have brought it
    /// back to at least half of the last published count.
    pub fn events(&mut self, tasks: usize) -> bool {
        if self.held && self.last_tasks.is_some_and(|last| tasks * 2 < last) {
            return false;
        }
        self.held = false;
        self.last_tasks = Some(tasks);
        true
    }
}

/// The reading side, apart from scheduling (tests drive it directly).
pub struct Poller {
    masters: Vec<Result<Master, MasterUrlError>>,
    /// The masters as `host:port`, in the configured order: the cluster's `masters`.
    master_addresses: Vec<String>,
    /// `Err` when the TLS roots could not be loaded: every read says why.
    transport: Result<Transport, Arc<TlsSetupError>>,
    /// `[mesos] principal` and `secret_file`.
    credentials: Option<(String, PathBuf)>,
    /// Index of the master tried first.
    preferred: usize,
    guard: ShrinkGuard,
    /// How many of `masters` are configured; the rest were seen in ZooKeeper (`zk`).
    configured: usize,
    /// The leader ZooKeeper named last (`host:port`).
    pub(super) zk_leader: Option<String>,
}

impl Poller {
    pub fn new(cfg: &MesosConfig) -> Poller {
        let masters = cfg.masters.iter().map(|url| Master::parse(url)).collect();
        Poller {
            masters,
            master_addresses: master_addresses(&cfg.masters),
            transport: Transport::new(cfg).map_err(Arc::new),
            credentials: cfg.principal.clone().zip(cfg.secret_file.clone()),
            preferred: 0,
            guard: ShrinkGuard::default(),
            configured: cfg.masters.len(),
            zk_leader: None,
        }
    }

    /// The configured masters as `host:port`, in order: the cluster's `masters`.
    pub(super) fn master_addresses(&self) -> &[String] {
        &self.master_addresses
    }

    /// One round: the leader's state, converted, or every master's reason in one message.
    pub async fn read(&mut self) -> Result<MesosSnapshot, String> {
        let LeaderState { state, leader, .. } = self.read_state().await?;
        let cluster = resolve_and_convert(&state, &self.master_addresses).await;
        Ok(MesosSnapshot {
            cluster,
            leader: leader.authority,
        })
    }

    /// Which master leads, and its state: the one place that decides where to read and
    /// subscribe. Masters are tried in order, starting with the one that led last time.
    // A String: the masters' reasons joined into the one line logged and shown in
    // /debug/routes; each reason is a `PollError`.
    pub(super) async fn read_state(&mut self) -> Result<LeaderState, String> {
        let setup = self
            .transport
            .clone()
            .map_err(PollError::Tls)
            .and_then(|mut t| {
                t.auth = read_auth(self.credentials.as_ref())?;
                Ok(t)
            });
        let transport = &setup.map_err(|e| e.to_string())?;
        let n = self.masters.len();
        if n == 0 {
            return Err("no Mesos master known yet: waiting for ZooKeeper ([mesos] zk)".into());
        }
        let mut errors = Vec::new();
        for i in 0..n {
            let index = (self.preferred + i) % n;
            let master = match &self.masters[index] {
                Ok(m) => m.clone(),
                Err(e) => {
                    errors.push(PollError::Url(e.clone()).to_string());
                    continue;
                }
            };
            match read_leader(&master, transport).await {
                Ok((state, leader)) => {
                    let from = if leader == master.authority {
                        master.clone()
                    } else {
                        Master::at(&leader, master.tls).unwrap_or_else(|| master.clone())
                    };
                    // Start with the leader next time when it is one of ours.
                    let leader_index = self
                        .masters
                        .iter()
                        .position(|m| m.as_ref().is_ok_and(|m| m.authority == leader));
                    self.preferred = leader_index.unwrap_or(index);
                    if let Some(first) = state.problems.first() {
                        warn!(count = state.problems.len(), %first, "Mesos state entries left out");
                    }
                    return Ok(LeaderState {
                        state,
                        leader: from,
                        transport: transport.clone(),
                    });
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
        self.guard
            .full(snapshot.cluster.task_count())
            .then_some(snapshot)
    }
}

/// Reads `/master/state` from `master`, following a 307 or a `leader` naming another
/// master once; accepts only a state whose master says it leads. Returns the state and
/// the `host:port` it was read from.
async fn read_leader(
    master: &Master,
    transport: &Transport,
) -> Result<(MesosState, String), PollError> {
    let (status, location, body) = get(master, "/master/state", transport).await?;
    let (from, body) = match status {
        StatusCode::OK => (master.clone(), body),
        StatusCode::TEMPORARY_REDIRECT => {
            let leader = location
                .as_deref()
                .and_then(|l| redirect_target(l, master.tls))
                .ok_or_else(|| {
                    PollError::BadRedirect(master.authority.clone(), location.clone())
                })?;
            debug!(from = %master.authority, to = %leader.authority, "following the leader's redirect");
            let (status, _, body) = get(&leader, "/master/state", transport).await?;
            if status != StatusCode::OK {
                return Err(status_error(&leader.authority, status));
            }
            (leader, body)
        }
        other => return Err(status_error(&master.authority, other)),
    };
    let state = state::decode(&body).map_err(|e| PollError::Decode(from.authority.clone(), e))?;
    if leads(&state, &from.authority) {
        return Ok((state, from.authority));
    }
    // The master that answered names someone else: read from that one, once.
    let not_leader = || PollError::NotLeader(from.authority.clone(), format!("{:?}", state.leader));
    let named = Pid::parse(&state.leader).map_err(|_| not_leader())?;
    let leader = Master::at(&pid_authority(&named), from.tls).ok_or_else(not_leader)?;
    let (status, _, body) = get(&leader, "/master/state", transport).await?;
    if status != StatusCode::OK {
        return Err(status_error(&leader.authority, status));
    }
    let state = state::decode(&body).map_err(|e| PollError::Decode(leader.authority.clone(), e))?;
    if leads(&state, &leader.authority) {
        Ok((state, leader.authority))
    } else {
        Err(PollError::NotLeader(leader.authority, state.leader.clone()))
    }
}

pub(super) fn status_error(authority: &str, status: StatusCode) -> PollError {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        PollError::NoLeader(authority.to_string())
    } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        PollError::Unauthorized(authority.to_string(), status)
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

/// The master a 307's `Location` names: `//host:port/master/state` (Mesos writes it
/// protocol-relative, so it is reached as the master that redirected, `tls`) or
/// `http(s)://host:port/...`.
pub(super) fn redirect_target(location: &str, tls: bool) -> Option<Master> {
    let (tls, rest) = if let Some(rest) = location.strip_prefix("//") {
        (tls, rest)
    } else if let Some(rest) = location.strip_prefix("https://") {
        (true, rest)
    } else {
        (false, location.strip_prefix("http://")?)
    };
    Master::at(rest.split('/').next()?, tls)
}

/// One GET over a fresh connection: status, `Location`, and the whole body, all within
/// [`REQUEST_TIMEOUT`].
async fn get(
    master: &Master,
    path: &str,
    transport: &Transport,
) -> Result<(StatusCode, Option<String>, Bytes), PollError> {
    // One bound on the whole exchange, below.
    let (get, host) = exchange_with(master, transport, None)?;
    let authority = get.authority;
    let request = Request::get(path)
        .header(header::HOST, host)
        .header(header::USER_AGENT, "drover")
        .header(header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| PollError::BadRequest(authority.to_string(), e))?;
    let exchange = get.send(request, |response| async move {
        let status = response.status();
        let location = location(&response);
        let body = read_body(response.into_body(), MAX_BODY)
            .await
            .map_err(GetError::Body)?;
        Ok::<_, GetError>((status, location, body))
    });
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| PollError::Timeout(authority.to_string(), REQUEST_TIMEOUT))?
        .map_err(|e| PollError::Get(authority.to_string(), e))
}

/// An exchange with `master` (TLS when it is https, the transport's credentials, each step
/// bounded by `step_timeout` when given) and the `Host` header its requests carry.
pub(super) fn exchange_with<'a>(
    master: &'a Master,
    transport: &'a Transport,
    step_timeout: Option<Duration>,
) -> Result<(Get<'a>, HeaderValue), PollError> {
    let authority = master.authority.as_str();
    let tls = match (master.tls, &transport.tls) {
        (false, _) => None,
        (true, Some(tls)) => Some((tls, master.host.as_str())),
        // Only a redirect can lead here: every configured master is http.
        (true, None) => return Err(PollError::NoTls(authority.to_string())),
    };
    let host =
        HeaderValue::from_str(authority).map_err(|_| PollError::BadHost(authority.to_string()))?;
    let get = Get {
        authority,
        tls,
        auth: transport.auth.as_ref(),
        step_timeout,
    };
    Ok((get, host))
}

/// A response's `Location`, when it is text.
pub(super) fn location<B>(response: &hyper::Response<B>) -> Option<String> {
    response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_name_the_leader_protocol_relative() {
        let at = |l: &str, tls: bool| redirect_target(l, tls).map(|m| (m.authority, m.tls));
        assert_eq!(
            at("//10.0.0.2:5050/master/state", false),
            Some(("10.0.0.2:5050".into(), false))
        );
        // Protocol-relative keeps the scheme of the master that redirected.
        assert_eq!(
            at("//10.0.0.2:5050/master/state", true),
            Some(("10.0.0.2:5050".into(), true))
        );
        assert_eq!(
            at("http://[::1]:5050/master/state", true),
            Some(("[::1]:5050".into(), false))
        );
        assert_eq!(
            at("https://m2:5050/master/state", false),
            Some(("m2:5050".into(), true))
        );
        assert_eq!(at("/master/state", false), None);
        assert_eq!(at("//nohostport/x", false), None);
    }

    #[test]
    fn master_urls_give_where_to_connect_and_the_certificate_name() {
        let m = Master::parse("https://[::1]:5050/").unwrap();
        assert_eq!(
            (m.authority.as_str(), m.host.as_str(), m.tls),
            ("[::1]:5050", "::1", true)
        );
        let m = Master::parse("http://m1").unwrap();
        assert_eq!((m.authority.as_str(), m.tls), ("m1:80", false));
        assert_eq!(Master::parse("https://m1").unwrap().authority, "m1:443");
        assert!(Master::parse("ftp://m1:5050").is_err());
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
