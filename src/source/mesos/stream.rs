//! Follows the leading master's operator API stream (`[mesos] stream`, Mesos 1.1+): `POST
//! /api/v1` `{"type":"SUBSCRIBE"}` on the leader, JSON events in RecordIO framing
//! (`recordio`), applied to a model (`v1`) and published as `MesosSnapshot`s, so DNS learns
//! of a task change within a fraction of a second instead of at the next poll.
//!
//! A round: read the leader's `/master/state` (`Poller::read_state`, the one place that
//! decides which master leads; it also gives the frameworks' pids, which the v1 API does not
//! carry, and the leader's pid), then subscribe there.
//! - `SUBSCRIBED` is a whole state: published through the shrink guard (DESIGN §7).
//! - Events apply as they come; the snapshot is published once the stream has nothing more
//!   buffered, or every [`COALESCE`] during a burst. A kill event is real and applies.
//! - No record (heartbeats included) for the heartbeat interval plus a margin: the stream
//!   is dead; a closed stream (the leader lost leadership or died), a read or framing error,
//!   or a resync that finds another leader end it too. Each end is logged, counted
//!   (`drover_discovery_stream_reconnects_total{source="mesos",reason}`) and shown in
//!   `/debug/routes`; the next round finds the leader again. The last records stay.
//! - Every `[mesos] poll` the leader's `/master/state` is read again (a resync): pids are
//!   refreshed, and the model is replaced by that state with the events received during the
//!   read applied again on top (each event sets absolute values, so replaying one the state
//!   already holds changes nothing).
//! - A master without the API (404, 405, 501 on `/api/v1`), a subscribe that fails, or a
//!   stream that ends before `SUBSCRIBED`: the round's state is published as a poll would,
//!   and the stream is tried again next round.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header;
use hyper::{Request, StatusCode};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::cluster::{convert, hosts_to_resolve, resolve, resolve_and_convert, ResolvedHosts};
use super::poll::zk::LeaderHint;
use super::poll::{
    exchange_with, location, redirect_target, reread_slot, status_error, LeaderState, Master,
    MesosSnapshot, Output, PollError, Poller, ShrinkGuard, Transport, MAX_BODY, REQUEST_TIMEOUT,
    SOURCE,
};
use super::recordio::Decoder;
use super::v1::{self, Model, Pids};
use crate::config::MesosConfig;
use crate::source::https::GetError;
use crate::zk::ZkView;

/// During a burst of events, a snapshot at least this often.
pub const COALESCE: Duration = Duration::from_millis(50);

/// A shrunk `SUBSCRIBED` held by the guard is checked against a fresh state this soon.
const CONFIRM_AFTER: Duration = Duration::from_secs(1);

/// The least margin past the heartbeat interval before a silent stream counts as dead.
const MIN_MARGIN: Duration = Duration::from_secs(1);

/// A stream that ends sooner than this after opening counts as a failure for the backoff.
const SHORT_SESSION: Duration = Duration::from_secs(1);

/// Retries after failed rounds wait from 200 ms, doubling, to this (or `poll`, if shorter).
const BACKOFF_MAX: Duration = Duration::from_secs(10);

const SUBSCRIBE_CALL: &str = r#"{"type":"SUBSCRIBE"}"#;

/// How long a stream may stay silent: the heartbeat interval plus as much again (at least
/// `MIN_MARGIN`). Mesos's default interval of 15 s gives 30 s.
pub fn silence_limit(heartbeat_secs: f64) -> Duration {
    let interval = Duration::try_from_secs_f64(heartbeat_secs)
        .unwrap_or(Duration::from_secs_f64(v1::DEFAULT_HEARTBEAT_SECS));
    interval + interval.max(MIN_MARGIN)
}

/// Follows `[mesos]` with the stream until the caller stops it (config change, shutdown).
pub(super) async fn follow(
    cfg: &MesosConfig,
    out: Output<'_>,
    reread: &mut watch::Receiver<()>,
    zk_leader: &mut LeaderHint,
) {
    let mut poller = Poller::new(cfg);
    let mut guard = ShrinkGuard::default();
    // The first round reads at once: earlier requests are answered by it.
    reread.borrow_and_update();
    let mut rereads = Rereads {
        rx: reread,
        open: true,
    };
    let mut next_round = Instant::now();
    let mut last_round: Option<Instant> = None;
    let mut failures = 0u32;
    loop {
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next_round) => break,
                _ = rereads.next() => {
                    info!("re-read requested; reading the Mesos master now");
                    next_round = next_round.min(reread_slot(last_round, cfg.poll));
                }
                view = zk_leader.changed() => {
                    if poller.follow_zk(&view) {
                        let leader = crate::logfmt::or_none(poller.zk_leader.as_deref());
                        info!(%leader, "ZooKeeper names a new Mesos leader; reading it now");
                        next_round = Instant::now();
                    }
                }
            }
        }
        last_round = Some(Instant::now());
        let read = match poller.read_state().await {
            Ok(read) => read,
            Err(errors) => {
                out.metrics.discovery_error(SOURCE);
                warn!(error = %errors, "no Mesos leader state read; keeping the last good one");
                out.status.failed(errors);
                failures += 1;
                next_round = Instant::now() + backoff(failures, cfg.poll);
                continue;
            }
        };
        out.metrics.discovery_ok(SOURCE);
        let subscribed = subscribe(&read.leader, &read.transport).await;
        let (at, body) = match subscribed {
            Ok(opened) => opened,
            Err(e) => {
                // Poll this round; the stream is tried again at the next.
                match &e {
                    SubscribeError::NoApi(..) => {
                        debug!(error = %e, "no operator API; polling");
                        out.status.ok();
                    }
                    SubscribeError::Failed(_) => {
                        warn!(error = %e, "cannot subscribe to the Mesos operator API; polling meanwhile");
                        out.status
                            .failed(format!("operator API stream: {e}; polling meanwhile"));
                    }
                }
                publish_read(&read, &poller, &mut guard, out).await;
                next_round = Instant::now() + cfg.poll;
                continue;
            }
        };
        info!(leader = %at.authority, "Mesos operator API stream open");
        out.metrics
            .discovery_stream_up
            .with_label_values(&[SOURCE])
            .set(1);
        let opened = Instant::now();
        let masters = poller.master_addresses().to_vec();
        let mut session = Session::new(&read, at, masters, cfg.poll);
        let ended = session
            .run(body, &mut poller, &mut guard, out, &mut rereads, zk_leader)
            .await;
        if let Some(view) = session.zk_view.take() {
            poller.follow_zk(&view);
        }
        out.metrics
            .discovery_stream_up
            .with_label_values(&[SOURCE])
            .set(0);
        out.metrics
            .discovery_stream_reconnects
            .with_label_values(&[SOURCE, ended.reason()])
            .inc();
        let leader = &session.leader.authority;
        warn!(%leader, "Mesos operator API stream ended ({ended}); finding the leader again");
        out.status.failed(format!(
            "operator API stream from {leader} ended ({ended}); re-subscribing"
        ));
        if !ended.after_subscribed {
            // A stream that never gave its state (a proxy's page, a broken master): the
            // round's state read is good, so it is used as a poll's would be.
            publish_read(&read, &poller, &mut guard, out).await;
        }
        let delay = if matches!(ended.kind, EndKind::LeaderMoved(_)) {
            // Another master leads: subscribe there now.
            Duration::ZERO
        } else if ended.after_subscribed && opened.elapsed() >= SHORT_SESSION {
            failures = 0;
            Duration::ZERO
        } else {
            failures += 1;
            backoff(failures, cfg.poll)
        };
        next_round = Instant::now() + delay;
    }
}

/// Publishes a round's state read, as a poll does (through the shrink guard).
async fn publish_read(
    read: &LeaderState,
    poller: &Poller,
    guard: &mut ShrinkGuard,
    out: Output<'_>,
) {
    let cluster = resolve_and_convert(&read.state, poller.master_addresses()).await;
    if guard.full(cluster.task_count()) {
        out.tx.send_replace(Some(Arc::new(MesosSnapshot {
            cluster,
            leader: read.leader.authority.clone(),
        })));
    }
}

/// The wait before round `failures` after as many failed ones in a row.
fn backoff(failures: u32, poll: Duration) -> Duration {
    Duration::from_millis(100)
        .saturating_mul(1 << failures.min(8))
        .min(BACKOFF_MAX)
        .min(poll)
}

/// Re-read requests (SIGHUP, `/_mlb_signal/hup`); pending forever once the sender is gone.
struct Rereads<'a> {
    rx: &'a mut watch::Receiver<()>,
    open: bool,
}

impl Rereads<'_> {
    async fn next(&mut self) {
        while self.open {
            if self.rx.changed().await.is_ok() {
                return;
            }
            self.open = false;
        }
        std::future::pending().await
    }
}

/// Why a stream ended.
#[derive(Debug)]
struct Ended {
    kind: EndKind,
    /// Whether `SUBSCRIBED` had arrived.
    after_subscribed: bool,
}

#[derive(Debug, thiserror::Error)]
enum EndKind {
    #[error("no event or heartbeat within {0:?}")]
    Silent(Duration),
    #[error("closed by the master")]
    Closed,
    #[error("{0}")]
    Error(String),
    #[error("{0} leads now")]
    LeaderMoved(String),
}

impl Ended {
    /// The metric label.
    fn reason(&self) -> &'static str {
        match self.kind {
            EndKind::Silent(_) => "silent",
            EndKind::Closed => "closed",
            EndKind::Error(_) => "error",
            EndKind::LeaderMoved(_) => "leader_moved",
        }
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.kind.fmt(f)
    }
}

/// A resync read in flight; it hands the poller back with its answer.
type StateRead<'p> =
    Pin<Box<dyn Future<Output = (Result<LeaderState, String>, &'p mut Poller)> + Send + 'p>>;

/// One subscription's view: where it streams from and what the events built.
struct Session {
    /// The master subscribed to.
    leader: Master,
    /// The leader's pid, from the last state read.
    leader_pid: String,
    /// Subscribed at another master than the state was read from (a 307): its pid and
    /// the pids are read again at once.
    redirected: bool,
    pids: Pids,
    masters: Vec<String>,
    /// Host names resolved so far, kept across events: a new agent's name is looked up once.
    resolved: ResolvedHosts,
    /// Names that did not resolve; tried again at the next resync, not at every event.
    unresolvable: BTreeSet<String>,
    model: Option<Model>,
    /// A ZooKeeper view that came while the poller was busy with a resync read, or the one
    /// that ended the session: handed to the poller when it is free.
    zk_view: Option<Arc<ZkView>>,
    /// `[mesos] poll`: how often the leader's whole state is read again.
    resync_every: Duration,
}

impl Session {
    fn new(
        read: &LeaderState,
        at: Master,
        masters: Vec<String>,
        resync_every: Duration,
    ) -> Session {
        // A redirected subscribe streams from another master than the state came from:
        // its pid is not known until the next read (due at once, see `run`).
        let redirected = at != read.leader;
        let leader_pid = if redirected {
            format!("master@{}", at.authority)
        } else {
            read.state.leader.clone()
        };
        Session {
            leader: at,
            leader_pid,
            redirected,
            pids: v1::pids_of(&read.state),
            masters,
            resolved: ResolvedHosts::new(),
            unresolvable: BTreeSet::new(),
            model: None,
            zk_view: None,
            resync_every,
        }
    }

    /// Reads the stream until it ends; the reason is returned.
    async fn run(
        &mut self,
        mut body: Incoming,
        poller: &mut Poller,
        guard: &mut ShrinkGuard,
        out: Output<'_>,
        rereads: &mut Rereads<'_>,
        zk_leader: &mut LeaderHint,
    ) -> Ended {
        let resync_every = self.resync_every;
        let mut decoder = Decoder::new(MAX_BODY);
        let mut deadline = Instant::now() + REQUEST_TIMEOUT;
        let mut silence = REQUEST_TIMEOUT;
        let mut resync_at = Instant::now() + resync_every;
        let mut resync: Option<StateRead<'_>> = None;
        let mut last_resync: Option<Instant> = None;
        // Records received while a resync read is out, applied again on top of its state.
        let mut during_resync: Vec<Bytes> = Vec::new();
        // When the first unpublished change was applied.
        let mut dirty_since: Option<Instant> = None;
        let mut poller = Some(poller);
        let end = |kind, model: &Option<Model>| Ended {
            kind,
            after_subscribed: model.is_some(),
        };
        loop {
            if dirty_since.is_some_and(|at| at.elapsed() >= COALESCE) {
                dirty_since = None;
                self.publish(false, guard, out).await;
            }
            tokio::select! {
                biased;
                frame = tokio::time::timeout_at(deadline, body.frame()) => {
                    let data = match frame {
                        Err(_) => return end(EndKind::Silent(silence), &self.model),
                        Ok(None) => return end(EndKind::Closed, &self.model),
                        Ok(Some(Err(e))) => return end(EndKind::Error(format!("reading the stream: {e}")), &self.model),
                        Ok(Some(Ok(frame))) => match frame.into_data() {
                            Ok(data) => data,
                            Err(_) => continue,
                        },
                    };
                    decoder.push(&data);
                    // Bytes arriving prove the stream alive, also midway through a large
                    // SUBSCRIBED.
                    if !data.is_empty() {
                        deadline = Instant::now() + silence;
                    }
                    loop {
                        let record = match decoder.next_record() {
                            Ok(Some(record)) => record,
                            Ok(None) => break,
                            Err(e) => return end(EndKind::Error(e.to_string()), &self.model),
                        };
                        let event = match v1::decode(&record) {
                            Ok(event) => event,
                            Err(e) => {
                                out.metrics.discovery_events.with_label_values(&[SOURCE, "other"]).inc();
                                warn!(error = %e, "undecodable Mesos event; resyncing soon");
                                resync_at = resync_at.min(Instant::now() + CONFIRM_AFTER);
                                continue;
                            }
                        };
                        out.metrics.discovery_events.with_label_values(&[SOURCE, event.label()]).inc();
                        if event.kind == "SUBSCRIBED" {
                            silence = silence_limit(event.heartbeat_secs());
                            match Model::from_subscribed(&event, &self.leader_pid, &self.pids) {
                                Ok(model) => {
                                    if let Some(first) = model.state.problems.first() {
                                        warn!(count = model.state.problems.len(), %first, "SUBSCRIBED entries left out");
                                    }
                                    self.model = Some(model);
                                }
                                Err(e) => return end(EndKind::Error(e.to_string()), &self.model),
                            }
                            dirty_since = None;
                            during_resync.clear();
                            out.status.ok();
                            out.metrics.discovery_ok(SOURCE);
                            if !self.publish(true, guard, out).await {
                                resync_at = resync_at.min(Instant::now() + CONFIRM_AFTER);
                            }
                            if self.redirected {
                                resync_at = Instant::now();
                            }
                        } else {
                            let Some(model) = self.model.as_mut() else {
                                return end(EndKind::Error(format!("{} before SUBSCRIBED", event.kind)), &self.model);
                            };
                            match model.apply(&event, &self.pids) {
                                Ok(true) => {
                                    dirty_since.get_or_insert_with(Instant::now);
                                }
                                Ok(false) => {}
                                Err(e) => {
                                    warn!(error = %e, "Mesos event not applied; resyncing soon");
                                    resync_at = resync_at.min(Instant::now() + CONFIRM_AFTER);
                                }
                            }
                            if resync.is_some() {
                                during_resync.push(record.clone());
                            }
                        }
                        deadline = Instant::now() + silence;
                    }
                }
                // Nothing more buffered on the stream: publish what the events changed.
                _ = std::future::ready(()), if dirty_since.is_some() => {
                    dirty_since = None;
                    self.publish(false, guard, out).await;
                }
                (read, p) = async { resync.as_mut().expect("guarded").await }, if resync.is_some() => {
                    resync = None;
                    if let Some(view) = self.zk_view.take() {
                        p.follow_zk(&view);
                    }
                    poller = Some(p);
                    resync_at = Instant::now() + resync_every;
                    match read {
                        Ok(read) if read.leader.authority != self.leader.authority => {
                            return end(EndKind::LeaderMoved(read.leader.authority), &self.model);
                        }
                        Ok(read) => {
                            out.metrics.discovery_ok(SOURCE);
                            self.resynced(read.state, &during_resync).await;
                            dirty_since = None;
                            self.publish(true, guard, out).await;
                        }
                        Err(errors) => {
                            out.metrics.discovery_error(SOURCE);
                            warn!(error = %errors, "Mesos resync read failed; the stream goes on");
                        }
                    }
                    during_resync.clear();
                }
                _ = tokio::time::sleep_until(resync_at), if resync.is_none() && self.model.is_some() => {
                    last_resync = Some(Instant::now());
                    if let Some(p) = poller.take() {
                        resync = Some(Box::pin(async move { (p.read_state().await, p) }));
                    }
                }
                _ = rereads.next() => {
                    info!("re-read requested; reading the Mesos master's state now");
                    resync_at = resync_at.min(reread_slot(last_resync, resync_every));
                }
                view = zk_leader.changed() => {
                    // ZooKeeper names another leader: this stream is from the old one.
                    let named = view.leader.as_ref().map(|l| l.advertised.authority());
                    let moved = named.clone().filter(|n| *n != self.leader.authority);
                    match poller.as_mut() {
                        Some(p) => { p.follow_zk(&view); }
                        None => self.zk_view = Some(view),
                    }
                    if let Some(leader) = moved {
                        return end(EndKind::LeaderMoved(leader), &self.model);
                    }
                }
            }
        }
    }

    /// A fresh state replaces the model; events received while it was read apply again.
    async fn resynced(&mut self, state: super::state::MesosState, during: &[Bytes]) {
        self.redirected = false;
        self.pids = v1::pids_of(&state);
        self.leader_pid = state.leader.clone();
        // Every name again: a resync also catches hosts whose addresses changed.
        self.resolved = resolve(hosts_to_resolve(&state, &self.masters)).await;
        self.unresolvable.clear();
        let mut model = Model::from_state(state);
        for record in during {
            if let Ok(event) = v1::decode(record) {
                if event.kind != "SUBSCRIBED" {
                    let _ = model.apply(&event, &self.pids);
                }
            }
        }
        self.model = Some(model);
    }

    /// Publishes the model (`full`: a whole state, which the shrink guard may hold).
    /// Returns whether it was published.
    async fn publish(&mut self, full: bool, guard: &mut ShrinkGuard, out: Output<'_>) -> bool {
        let Some(model) = &self.model else {
            return false;
        };
        let tasks = model.task_count();
        let allowed = if full {
            guard.full(tasks)
        } else {
            guard.events(tasks)
        };
        if !allowed {
            return false;
        }
        let wanted: BTreeSet<String> = hosts_to_resolve(&model.state, &self.masters)
            .into_iter()
            .filter(|h| !self.resolved.contains_key(h) && !self.unresolvable.contains(h))
            .collect();
        if !wanted.is_empty() {
            let found = resolve(wanted.clone()).await;
            for host in wanted {
                if !found.contains_key(&host) {
                    self.unresolvable.insert(host);
                }
            }
            self.resolved.extend(found);
        }
        let Some(model) = &self.model else {
            return false;
        };
        let cluster = convert(&model.state, &self.masters, &self.resolved);
        out.tx.send_replace(Some(Arc::new(MesosSnapshot {
            cluster,
            leader: self.leader.authority.clone(),
        })));
        true
    }
}

/// Subscribes at `master`, following one 307 (protocol-relative `Location`). Returns the
/// master that streams and the open body.
async fn subscribe(
    master: &Master,
    transport: &Transport,
) -> Result<(Master, Incoming), SubscribeError> {
    let (status, location, body) = post_subscribe(master, transport).await?;
    let (at, status, body) = if status == StatusCode::TEMPORARY_REDIRECT {
        let leader = location
            .as_deref()
            .and_then(|l| redirect_target(l, master.tls))
            .ok_or_else(|| PollError::BadRedirect(master.authority.clone(), location.clone()))?;
        debug!(from = %master.authority, to = %leader.authority, "following the leader's redirect to subscribe");
        let (status, _, body) = post_subscribe(&leader, transport).await?;
        (leader, status, body)
    } else {
        (master.clone(), status, body)
    };
    match status {
        StatusCode::OK => Ok((at, body)),
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED => {
            Err(SubscribeError::NoApi(at.authority, status))
        }
        other => Err(status_error(&at.authority, other).into()),
    }
}

/// Why no stream was opened.
#[derive(Debug, thiserror::Error)]
enum SubscribeError {
    /// An old master (before 1.1) or one with the API turned off.
    #[error("{0}: HTTP {1} on /api/v1: no operator API")]
    NoApi(String, StatusCode),
    #[error("{0}")]
    Failed(#[from] PollError),
}

/// `POST /api/v1` `SUBSCRIBE` over a fresh connection: status, `Location`, and the body
/// left unread (the stream). Connect, TLS and the answer's head each within
/// [`REQUEST_TIMEOUT`].
async fn post_subscribe(
    master: &Master,
    transport: &Transport,
) -> Result<(StatusCode, Option<String>, Incoming), PollError> {
    let (post, host) = exchange_with(master, transport, Some(REQUEST_TIMEOUT))?;
    let authority = post.authority;
    let request = Request::post("/api/v1")
        .header(header::HOST, host)
        .header(header::USER_AGENT, "drover")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from_static(SUBSCRIBE_CALL.as_bytes())))
        .map_err(|e| PollError::BadRequest(authority.to_string(), e))?;
    post.send(request, |response| async move {
        let status = response.status();
        let location = location(&response);
        Ok::<_, GetError>((status, location, response.into_body()))
    })
    .await
    .map_err(|e| PollError::Get(authority.to_string(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::masters::FakeMasters;
    use crate::source::mesos::state;

    fn plain() -> Transport {
        Transport {
            tls: None,
            auth: None,
        }
    }

    async fn first_record(body: &mut Incoming) -> String {
        let mut decoder = Decoder::new(1 << 20);
        loop {
            if let Some(record) = decoder.next_record().expect("framed") {
                return String::from_utf8(record.to_vec()).expect("UTF-8");
            }
            let frame = body.frame().await.expect("a frame").expect("no error");
            decoder.push(&frame.into_data().expect("data"));
        }
    }

    /// A follower answers `SUBSCRIBE` with a 307 naming the leader protocol-relative; the
    /// subscribe follows it and streams from the leader.
    #[tokio::test]
    async fn subscribe_follows_a_followers_redirect_and_reads_subscribed() {
        let masters = FakeMasters::builder(2, Some(1))
            .operator_api(serde_json::json!({ "get_tasks": { "tasks": [] } }), &[])
            .start()
            .await;
        let follower = Master::parse(&format!("http://{}", masters.addrs()[0])).unwrap();
        let (at, mut body) = subscribe(&follower, &plain()).await.expect("a stream");
        assert_eq!(at.authority, masters.addrs()[1].to_string());
        let record = first_record(&mut body).await;
        let event = v1::decode(record.as_bytes()).expect("an event");
        assert_eq!(event.label(), "SUBSCRIBED");
        assert_eq!(masters.subscriptions(), 1);

        masters.api_missing(true);
        let leader = Master::parse(&format!("http://{}", masters.addrs()[1])).unwrap();
        assert!(matches!(
            subscribe(&leader, &plain()).await,
            Err(SubscribeError::NoApi(_, StatusCode::NOT_FOUND))
        ));
        masters.api_missing(false);
        masters.set_leader(None);
        assert!(matches!(
            subscribe(&leader, &plain()).await,
            Err(SubscribeError::Failed(PollError::NoLeader(_)))
        ));
    }

    /// A resync's state may predate events that arrived while it was read: they apply
    /// again on top of it, and those it already holds change nothing.
    #[tokio::test]
    async fn events_received_during_a_resync_apply_again_on_its_state() {
        let agent = state::Agent {
            id: "S1".into(),
            pid: "slave(1)@127.0.0.31:5051".into(),
            hostname: "127.0.0.31".into(),
        };
        let task = |id: &str, st: &str| state::Task {
            id: id.into(),
            name: "web".into(),
            framework_id: "F".into(),
            slave_id: "S1".into(),
            state: st.into(),
            ..state::Task::default()
        };
        let read = LeaderState {
            state: state::MesosState {
                leader: "master@127.0.0.1:5050".into(),
                frameworks: vec![state::Framework {
                    id: "F".into(),
                    name: "marathon".into(),
                    pid: Some("scheduler@127.0.0.21:1".into()),
                    tasks: vec![task("old", "TASK_RUNNING"), task("gone", "TASK_RUNNING")],
                    ..state::Framework::default()
                }],
                agents: vec![agent],
                ..state::MesosState::default()
            },
            leader: Master::parse("http://127.0.0.1:5050").unwrap(),
            transport: plain(),
        };
        let mut session = Session::new(&read, read.leader.clone(), vec![], Duration::from_secs(60));
        let ids = |v: &str| format!(r#"{{"value":"{v}"}}"#);
        let added = format!(
            r#"{{"type":"TASK_ADDED","task_added":{{"task":{{"name":"web","task_id":{},"framework_id":{},"agent_id":{},"state":"TASK_STAGING"}}}}}}"#,
            ids("new"),
            ids("F"),
            ids("S1")
        );
        let update = |id: &str, st: &str| {
            format!(
                r#"{{"type":"TASK_UPDATED","task_updated":{{"framework_id":{},"status":{{"task_id":{},"state":"{st}","timestamp":5.0}},"state":"{st}"}}}}"#,
                ids("F"),
                ids(id)
            )
        };
        // "gone" was killed before the state was taken, "new" added and run after.
        let during: Vec<Bytes> = [
            update("gone", "TASK_KILLED"),
            added,
            update("new", "TASK_RUNNING"),
        ]
        .into_iter()
        .map(Bytes::from)
        .collect();
        let mut state = read.state.clone();
        state.frameworks[0].tasks.pop();
        session.resynced(state, &during).await;
        let model = session.model.as_ref().expect("a model");
        let tasks: Vec<(&str, &str)> = model.state.frameworks[0]
            .tasks
            .iter()
            .map(|t| (t.id.as_str(), t.state.as_str()))
            .collect();
        assert_eq!(tasks, [("old", "TASK_RUNNING"), ("new", "TASK_RUNNING")]);
        assert_eq!(
            session.pids.get("F").map(String::as_str),
            Some("scheduler@127.0.0.21:1")
        );
    }

    #[test]
    fn the_shrink_guard_holds_whole_states_but_lets_events_through() {
        let mut guard = ShrinkGuard::default();
        assert!(guard.full(10));
        assert!(guard.events(9), "a kill is real");
        assert!(
            !guard.full(3),
            "a whole state with a third of the tasks waits"
        );
        assert!(
            !guard.events(4),
            "events on the held state: still under half"
        );
        assert!(guard.events(5), "events brought it back to half");
        assert!(!guard.full(2));
        assert!(guard.full(2), "the next whole state confirms it");
    }

    #[test]
    fn a_stream_is_dead_after_its_heartbeat_interval_and_a_margin() {
        assert_eq!(silence_limit(15.0), Duration::from_secs(30));
        assert_eq!(silence_limit(0.2), Duration::from_millis(1200));
        // A nonsense interval falls back to Mesos's default.
        assert_eq!(silence_limit(f64::NAN), Duration::from_secs(30));
    }
}
