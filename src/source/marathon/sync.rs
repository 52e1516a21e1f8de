//! Keeping Drover's view of Marathon current: a full snapshot at start, after a stream
//! reconnect, on a re-read request (SIGHUP, `/_mlb_signal/hup`), on an event that names no
//! app, and every `resync`. An event that names its app re-reads that app alone
//! (`/v2/apps/{id}`), coalesced per app over `DEBOUNCE`; a 404 removes the app. Kill events
//! remove their task at once, without a read. An app whose conversion depends on others (a
//! deployment group, auto-assigned service ports) is always read with all the others, and
//! a per-app read that fails, does not decode or looks implausible is followed by a full
//! read.
//!
//! Each published snapshot shares every unchanged app (`Arc`) with the one before and says
//! which apps changed (`Changes`), so `control` can patch its table instead of rebuilding.
//!
//! Nothing read here can empty a pool by mistake: a failed or undecodable read keeps the last
//! good apps, and a snapshot that is empty, or drops more than half of any app's tasks
//! without kill events to explain it, is held until the next read confirms it (a Marathon
//! in the middle of a leader election answers with few or no tasks).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::apps::{self, ConvertOptions, HealthMemory, OneApp};
use super::client::{Client, SetupError};
use super::events::{self, Effect, SseParser};
use crate::catalog::{AppProblem, RawApp};
use crate::config::{Config, MarathonConfig};
use crate::handles::SourceStatus;
use crate::logfmt;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::source::{Changes, Snapshot};

/// The label value of `source` in discovery metrics.
pub const SOURCE: &str = "marathon";

/// At most one re-read per this window: an isolated event is read at once, a burst
/// coalesces into one more read at the end of the window.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// How long a killed task stays filtered out of reads (Marathon's list can lag its events).
const TOMBSTONE_TTL: Duration = Duration::from_secs(60);
/// A held (implausible) snapshot is re-read this soon to confirm or refute it.
const CONFIRM_AFTER: Duration = Duration::from_secs(1);
/// Per-request timeout towards Marathon.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Retry delays after failures, doubled per failure up to the max, with jitter.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Follows Marathon as `[marathon]` in the current config says, publishing each accepted
/// snapshot on `tx` (`None` until the first good read) and each read's error on `status`.
/// Restarts when `[marathon]` changes; reads the whole app list again on each `reread`.
pub async fn run(
    mut config: watch::Receiver<Arc<Config>>,
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    metrics: Metrics,
    status: SourceStatus,
    mut reread: watch::Receiver<()>,
    shutdown: Shutdown,
) {
    loop {
        let current = config.borrow_and_update().marathon.clone();
        let followed = current.clone();
        let follow = async {
            match followed {
                Some(cfg) => follow(cfg, &tx, &metrics, &status, &mut reread).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = follow => return,
            _ = shutdown.triggered() => return,
            changed = wait_for_change(&mut config, current) => if !changed { return },
        }
        info!("[marathon] changed; reconnecting");
        // The old cluster's apps must not stand in for the new one's: control keeps the
        // running table until the first read of the new configuration.
        tx.send_replace(None);
        metrics
            .discovery_stream_up
            .with_label_values(&[SOURCE])
            .set(0);
    }
}

/// Resolves when `[marathon]` differs from `current` (true) or the config channel closes.
async fn wait_for_change(
    config: &mut watch::Receiver<Arc<Config>>,
    current: Option<MarathonConfig>,
) -> bool {
    loop {
        if config.changed().await.is_err() {
            return false;
        }
        if config.borrow_and_update().marathon != current {
            return true;
        }
    }
}

/// What the sync loop remembers between reads; it starts empty.
#[derive(Default)]
struct State {
    /// The snapshot last published; its apps are sorted by id.
    published: Option<Arc<Snapshot>>,
    /// This run's `Changes::origin`.
    origin: u64,
    /// Marathon app ids that cannot be read alone (from the last full read).
    linked: HashSet<String>,
    /// Apps to read alone, with when each read may start.
    pending_apps: BTreeMap<String, Instant>,
    /// When each app was last read alone, for the per-app debounce.
    app_reads: HashMap<String, Instant>,
    /// A snapshot held back as implausible, waiting for a confirming read.
    held: bool,
    /// Tasks removed by kill events since the last publish: a re-read without them is
    /// explained.
    killed: HashSet<String>,
    /// Every task a kill event removed, with when: task ids are never reused, so a read
    /// that still lists one (Marathon's task list can lag its own events) must not bring it
    /// back. Forgotten after `TOMBSTONE_TTL`.
    tombstones: HashMap<String, Instant>,
    /// When the last snapshot read started, for the debounce.
    last_read: Option<Instant>,
    health: HealthMemory,
    failures: u32,
}

impl State {
    /// When a read asked for now may start: at once for an isolated event, else one
    /// `DEBOUNCE` after the previous read, so a burst of events costs one more read.
    fn read_slot(&self) -> Instant {
        let now = Instant::now();
        self.last_read.map_or(now, |last| now.max(last + DEBOUNCE))
    }

    /// Queues a read of app `id` alone: at once for an isolated event, else one `DEBOUNCE`
    /// after that app's previous read; an app already queued keeps its slot.
    fn queue_app(&mut self, id: String) {
        let now = Instant::now();
        if self.app_reads.len() > 1024 {
            self.app_reads
                .retain(|_, at| now.duration_since(*at) < DEBOUNCE);
        }
        let slot = self
            .app_reads
            .get(&id)
            .map_or(now, |last| now.max(*last + DEBOUNCE));
        self.pending_apps.entry(id).or_insert(slot);
    }

    /// The earliest queued per-app read.
    fn next_app_read(&self) -> Option<Instant> {
        self.pending_apps.values().min().copied()
    }

    /// The apps of the last published snapshot (none before the first).
    fn apps(&self) -> &[Arc<RawApp>] {
        self.published.as_deref().map_or(&[], |s| &s.apps[..])
    }
}

async fn follow(
    cfg: MarathonConfig,
    tx: &watch::Sender<Option<Arc<Snapshot>>>,
    metrics: &Metrics,
    status: &SourceStatus,
    reread: &mut watch::Receiver<()>,
) {
    // A follow starts with a read anyway: requests made before it are answered by that.
    reread.borrow_and_update();
    let mut reread_open = true;
    let setup = read_credentials(&cfg)
        .and_then(|auth| Client::new(&cfg.urls, auth, cfg.ca_file.as_deref(), REQUEST_TIMEOUT));
    let client = match setup {
        Ok(client) => client,
        Err(e) => {
            warn!("[marathon] {e}; not following Marathon until the config changes");
            status.failed(e.to_string());
            return std::future::pending().await;
        }
    };
    // The stream gets its own preference; the clone shares the TLS setup.
    let stream_client = client.clone();
    let (effects_tx, mut effects) = mpsc::channel(1024);
    let stream = tokio::spawn(stream_events(
        stream_client,
        cfg.idle_timeout,
        effects_tx,
        metrics.clone(),
    ));
    let _stream_guard = AbortOnDrop(stream);

    let mut client = client;
    let options = ConvertOptions {
        health_check: cfg.health_check,
        active_checks: cfg.active_checks,
        min_ip_per_task_port: cfg.ip_per_task_ports.first,
        max_ip_per_task_port: cfg.ip_per_task_ports.last,
    };
    let mut state = State {
        origin: crate::source::new_origin(),
        ..State::default()
    };
    let mut next_read = Some(Instant::now());
    let mut resync_at = Instant::now() + cfg.resync;
    loop {
        let read_due = due(next_read);
        let app_read_due = due(state.next_app_read());
        tokio::select! {
            _ = read_due => {
                state.last_read = Some(Instant::now());
                // The whole list answers every app queued so far.
                state.pending_apps.clear();
                next_read = read_once(&mut client, &mut state, &options, tx, metrics, status).await;
            }
            _ = app_read_due => {
                let now = Instant::now();
                let due: Vec<String> = state
                    .pending_apps
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in due {
                    state.pending_apps.remove(&id);
                    // A full read is coming anyway (a failure's backoff, a hold): it
                    // answers for this app too.
                    if next_read.is_some() {
                        continue;
                    }
                    state.app_reads.insert(id.clone(), now);
                    let read = AppRead { client: &mut client, options: &options, tx, metrics, status };
                    if let Err(why) = read_app(read, &mut state, &id).await {
                        debug!(app = %id, "reading every app instead: {why}");
                        next_read = Some(state.read_slot());
                    }
                }
            }
            _ = tokio::time::sleep_until(resync_at) => {
                resync_at = Instant::now() + cfg.resync;
                next_read.get_or_insert_with(Instant::now);
            }
            r = reread.changed(), if reread_open => {
                if r.is_err() {
                    reread_open = false;
                    continue;
                }
                info!("re-read requested; reading every Marathon app now");
                // Sooner than a pending backoff or confirmation read (the operator asked),
                // but never inside the debounce window: a loop of requests is one read per
                // window. It counts as the resync.
                let slot = state.read_slot();
                next_read = Some(next_read.map_or(slot, |at| at.min(slot)));
                resync_at = Instant::now() + cfg.resync;
            }
            effect = effects.recv() => match effect {
                None => return,
                Some(Effect::Ignore) => {}
                Some(Effect::Refetch) => {
                    next_read.get_or_insert(state.read_slot());
                }
                Some(Effect::RefetchApps(ids)) => {
                    for id in ids {
                        if state.linked.contains(&id) {
                            next_read.get_or_insert(state.read_slot());
                        } else {
                            state.queue_app(id);
                        }
                    }
                }
                Some(Effect::KillTask { app_id, task_id }) => {
                    // The event says all there is: no read follows (later events of the
                    // app, and the resync, still do).
                    kill(&mut state, &app_id, &task_id, tx);
                }
            }
        }
    }
}

/// Resolves at `at` (never for `None`); at once when `at` has passed, without a timer:
/// tokio's timers round up to the next millisecond tick, which an event read at once
/// should not wait for.
async fn due(at: Option<Instant>) {
    match at {
        Some(at) if at <= Instant::now() => {}
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One snapshot read. Returns when to read next (`None`: wait for events or the resync).
async fn read_once(
    client: &mut Client,
    state: &mut State,
    options: &ConvertOptions,
    tx: &watch::Sender<Option<Arc<Snapshot>>>,
    metrics: &Metrics,
    status: &SourceStatus,
) -> Option<Instant> {
    let fetched = client
        .apps()
        .await
        .map_err(|e| e.to_string())
        .and_then(|(url, body)| {
            apps::decode(&body).map_err(|e| format!("{url}: undecodable /v2/apps answer: {e}"))
        });
    let decoded = match fetched {
        Ok(apps) => apps,
        Err(e) => {
            metrics.discovery_error(SOURCE);
            state.failures += 1;
            let delay = backoff(state.failures);
            warn!(error = %e, retry_in = %logfmt::duration(delay), "Marathon read failed; keeping the last good apps");
            status.failed(e);
            return Some(Instant::now() + delay);
        }
    };
    state.failures = 0;
    status.ok();
    metrics.discovery_ok(SOURCE);
    let apps::Conversion {
        apps: mut raw,
        problems,
        linked,
    } = apps::convert_all(&decoded, &mut state.health, options);
    drop(decoded);
    crate::source::resolve_hosts(&mut raw).await;
    let now = Instant::now();
    state
        .tombstones
        .retain(|_, killed_at| now.duration_since(*killed_at) < TOMBSTONE_TTL);
    if !state.tombstones.is_empty() {
        for app in &mut raw {
            app.tasks.retain(|t| !state.tombstones.contains_key(&t.id));
        }
    }
    if let Some(old) = &state.published {
        if let Err(why) = plausible(&old.apps, &raw, &state.killed) {
            if !state.held {
                state.held = true;
                warn!("holding a Marathon snapshot back until the next read confirms it: {why}");
                return Some(Instant::now() + CONFIRM_AFTER);
            }
            warn!("the next read confirmed the snapshot; applying it: {why}");
        }
    }
    state.held = false;
    state.killed.clear();
    state.linked = linked;
    raw.sort_by(|a, b| a.id.cmp(&b.id));
    let (apps, changed) = share_unchanged(state.apps(), raw);
    publish(state, apps, problems, Some(changed), tx);
    None
}

/// `new` (sorted by id) as shared apps: each app equal to its old version keeps the old
/// `Arc` (the previous snapshot's memory), and the ids that differ either way are listed.
fn share_unchanged(old: &[Arc<RawApp>], new: Vec<RawApp>) -> (Vec<Arc<RawApp>>, Vec<String>) {
    let mut changed = Vec::new();
    let mut apps = Vec::with_capacity(new.len());
    let mut old_iter = old.iter().peekable();
    for app in new {
        while let Some(gone) = old_iter.next_if(|o| o.id < app.id) {
            changed.push(gone.id.clone());
        }
        match old_iter.next_if(|o| o.id == app.id) {
            Some(o) if **o == app => apps.push(o.clone()),
            _ => {
                changed.push(app.id.clone());
                apps.push(Arc::new(app));
            }
        }
    }
    changed.extend(old_iter.map(|gone| gone.id.clone()));
    (apps, changed)
}

/// Publishes `apps` (sorted by id) unless nothing changed. `changed`: the app ids that
/// differ from the last published snapshot (`None`: unknown).
fn publish(
    state: &mut State,
    apps: Vec<Arc<RawApp>>,
    problems: Vec<AppProblem>,
    changed: Option<Vec<String>>,
    tx: &watch::Sender<Option<Arc<Snapshot>>>,
) {
    let changes = match &state.published {
        None => Changes::first(state.origin),
        Some(old) => {
            let same = changed.as_ref().is_some_and(Vec::is_empty) && old.problems == problems;
            if same {
                return;
            }
            old.changes.next(changed)
        }
    };
    let snapshot = Arc::new(Snapshot {
        apps,
        problems,
        changes,
    });
    debug!(
        apps = snapshot.apps.len(),
        generation = snapshot.changes.generation,
        "Marathon snapshot applied"
    );
    state.published = Some(snapshot.clone());
    tx.send_replace(Some(snapshot));
}

/// What a per-app read uses besides the loop's state.
struct AppRead<'a> {
    client: &'a mut Client,
    options: &'a ConvertOptions,
    tx: &'a watch::Sender<Option<Arc<Snapshot>>>,
    metrics: &'a Metrics,
    status: &'a SourceStatus,
}

/// Reads app `id` alone and publishes the change. `Err(why)`: the read could not settle
/// the app (failed, undecodable, linked to other apps, implausible); the last good apps
/// stay and the caller reads them all.
async fn read_app(read: AppRead<'_>, state: &mut State, id: &str) -> Result<(), String> {
    let AppRead {
        client,
        options,
        tx,
        metrics,
        status,
    } = read;
    let fetched = client.app(id).await.map_err(|e| e.to_string());
    let decoded = fetched.and_then(|answer| match answer {
        None => Ok(None),
        Some((url, body)) => match apps::decode_app(&body) {
            Ok(app) if app.id == id => Ok(Some(app)),
            Ok(app) => Err(format!("{url}: asked for app {id}, got {}", app.id)),
            Err(e) => Err(format!("{url}: undecodable /v2/apps{id} answer: {e}")),
        },
    });
    let decoded = match decoded {
        Ok(app) => app,
        Err(e) => {
            metrics.discovery_error(SOURCE);
            warn!(app = id, error = %e, "Marathon app read failed; keeping the last good apps");
            status.failed(e.clone());
            return Err(e);
        }
    };
    status.ok();
    metrics.discovery_ok(SOURCE);
    let (app, problems) = match decoded {
        // 404: Marathon no longer knows the app.
        None => (None, Vec::new()),
        Some(app) => match apps::to_raw_app(&app, &mut state.health, options) {
            OneApp::Linked => return Err("its conversion depends on other apps".into()),
            OneApp::Alone { app, problems } => (app, problems),
        },
    };
    let app = match app {
        Some(mut app) => {
            crate::source::resolve_hosts(std::slice::from_mut(&mut app)).await;
            let now = Instant::now();
            state
                .tombstones
                .retain(|_, killed_at| now.duration_since(*killed_at) < TOMBSTONE_TTL);
            app.tasks.retain(|t| !state.tombstones.contains_key(&t.id));
            Some(app)
        }
        None => None,
    };
    let apps = state.apps();
    let at = apps.binary_search_by(|a| a.id.as_str().cmp(id));
    let old = at.ok().map(|i| &apps[i]);
    let old_slice: &[Arc<RawApp>] = old.map_or(&[], std::slice::from_ref);
    let new_slice: &[RawApp] = app.as_slice();
    // Only the shrink rule applies to one app: "no tasks at all" is about the whole list
    // (one app may well lose its last task).
    if let Err(why @ Implausible::Shrinks { .. }) = plausible(old_slice, new_slice, &state.killed) {
        return Err(why.to_string());
    }
    let unchanged = old.map(|a| &**a) == app.as_ref();
    let published = state
        .published
        .as_deref()
        .map_or(&[][..], |s| &s.problems[..]);
    let same_problems = published
        .iter()
        .filter(|p| p.app_id == id)
        .eq(problems.iter());
    if unchanged && same_problems {
        return Ok(());
    }
    let mut apps = apps.to_vec();
    if !unchanged {
        match (at, app) {
            (Ok(i), Some(app)) => apps[i] = Arc::new(app),
            (Ok(i), None) => {
                apps.remove(i);
            }
            (Err(i), Some(app)) => apps.insert(i, Arc::new(app)),
            (Err(_), None) => {}
        }
    }
    let problems = if same_problems {
        published.to_vec()
    } else {
        replace_problems(state, id, problems)
    };
    debug!(app = id, unchanged, "Marathon app read alone");
    let changed = if unchanged {
        vec![]
    } else {
        vec![id.to_string()]
    };
    publish(state, apps, problems, Some(changed), tx);
    Ok(())
}

/// The published problems with app `id`'s replaced by `new`.
fn replace_problems(state: &State, id: &str, new: Vec<AppProblem>) -> Vec<AppProblem> {
    let old = state
        .published
        .as_deref()
        .map_or(&[][..], |s| &s.problems[..]);
    let mut problems: Vec<AppProblem> = old.iter().filter(|p| p.app_id != id).cloned().collect();
    problems.extend(new);
    problems
}

/// A kill event: the task leaves its pool now.
fn kill(state: &mut State, app_id: &str, task_id: &str, tx: &watch::Sender<Option<Arc<Snapshot>>>) {
    state.killed.insert(task_id.to_string());
    state.tombstones.insert(task_id.to_string(), Instant::now());
    let apps = state.apps();
    let Ok(i) = apps.binary_search_by(|a| a.id.as_str().cmp(app_id)) else {
        return;
    };
    if !apps[i].tasks.iter().any(|t| t.id == task_id) {
        return;
    }
    // Only this app is copied; every other one is shared with the last snapshot.
    let mut app = (*apps[i]).clone();
    app.tasks.retain(|t| t.id != task_id);
    let mut apps = apps.to_vec();
    apps[i] = Arc::new(app);
    info!(
        app = app_id,
        task = task_id,
        "task killed; removed from its pool"
    );
    let problems = state
        .published
        .as_deref()
        .map(|s| s.problems.clone())
        .unwrap_or_default();
    publish(state, apps, problems, Some(vec![app_id.to_string()]), tx);
}

/// Why a snapshot looks like a Marathon mid-failover; it is held for one read, not refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Implausible {
    #[error("it has no tasks at all (the last one had {before})")]
    NoTasks { before: usize },
    #[error("app {app} would go from {from} to {to} tasks")]
    Shrinks { app: String, from: usize, to: usize },
}

/// Why `new` looks like a Marathon mid-failover rather than the truth, if it does: it is
/// empty while `old` was not, or it drops more than half of an app's tasks that no kill
/// event explains.
pub fn plausible<O: std::borrow::Borrow<RawApp>>(
    old: &[O],
    new: &[RawApp],
    killed: &HashSet<String>,
) -> Result<(), Implausible> {
    let old_tasks = old.iter().map(|a| a.borrow().tasks.len()).sum::<usize>();
    let new_tasks = new.iter().map(|a| a.tasks.len()).sum::<usize>();
    if old_tasks > 0 && new_tasks == 0 {
        return Err(Implausible::NoTasks { before: old_tasks });
    }
    let new_by_id: BTreeMap<&str, &RawApp> = new.iter().map(|a| (a.id.as_str(), a)).collect();
    for app in old.iter().map(|a| a.borrow()) {
        let kept = new_by_id.get(app.id.as_str()).map_or(0, |a| a.tasks.len());
        let unexplained = app.tasks.iter().filter(|t| !killed.contains(&t.id)).count();
        if unexplained >= 2 && kept * 2 < unexplained {
            return Err(Implausible::Shrinks {
                app: app.id.clone(),
                from: app.tasks.len(),
                to: kept,
            });
        }
    }
    Ok(())
}

/// Reads the event stream for as long as the source runs: reconnects with backoff after an
/// error, an end, or `idle_timeout` of silence, and asks for a re-read after every
/// (re)connect since events may have been missed meanwhile.
async fn stream_events(
    mut client: Client,
    idle_timeout: Duration,
    effects: mpsc::Sender<Effect>,
    metrics: Metrics,
) {
    use http_body_util::BodyExt;
    let up = metrics.discovery_stream_up.with_label_values(&[SOURCE]);
    let mut failures = 0u32;
    loop {
        let answer = match client.events(&events::events_path()).await {
            Ok(a) => a,
            Err(e) => {
                up.set(0);
                failures += 1;
                let delay = backoff(failures);
                warn!(error = %e, retry_in = %logfmt::duration(delay), "cannot open the Marathon event stream");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        info!(url = %answer.url, "Marathon event stream open");
        up.set(1);
        failures = 0;
        if effects.send(Effect::Refetch).await.is_err() {
            return;
        }
        let mut body = answer.response.into_body();
        let mut parser = SseParser::default();
        let ended = loop {
            match tokio::time::timeout(idle_timeout, body.frame()).await {
                Err(_) => break format!("silent for {idle_timeout:?}"),
                Ok(None) => break "closed by Marathon".to_string(),
                Ok(Some(Err(e))) => break format!("read error: {e}"),
                Ok(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    for sse in parser.push(&data) {
                        let effect = match sse
                            .map_err(|e| e.to_string())
                            .and_then(|f| events::decode(&f).map_err(|e| e.to_string()))
                        {
                            Ok(event) => {
                                metrics
                                    .discovery_events
                                    .with_label_values(&[SOURCE, event_label(&event)])
                                    .inc();
                                events::effect(&event)
                            }
                            Err(e) => {
                                debug!(error = %e, "undecodable Marathon event; re-reading to be safe");
                                Effect::Refetch
                            }
                        };
                        if effects.send(effect).await.is_err() {
                            return;
                        }
                    }
                }
            }
        };
        up.set(0);
        warn!(url = %answer.url, "Marathon event stream ended ({ended}); reconnecting");
        failures += 1;
        tokio::time::sleep(backoff(failures).min(Duration::from_secs(2))).await;
    }
}

/// The metric label of an event: its type when it is one we subscribe to, else "other"
/// (labels stay a small fixed set whatever a stream sends).
fn event_label(event: &events::Event) -> &'static str {
    let name = event.event_type();
    events::EVENT_TYPES
        .iter()
        .copied()
        .find(|t| *t == name)
        .unwrap_or("other")
}

/// The `n`th retry delay: doubling from `BACKOFF_FIRST` to `BACKOFF_MAX`, with ±25% jitter so
/// many Drovers do not hit a recovering Marathon at the same instant.
fn backoff(n: u32) -> Duration {
    let base = BACKOFF_FIRST
        .saturating_mul(1 << n.saturating_sub(1).min(16))
        .min(BACKOFF_MAX);
    let jitter = 0.75 + rand::random::<f64>() * 0.5;
    base.mul_f64(jitter)
}

fn read_credentials(cfg: &MarathonConfig) -> Result<Option<(String, String)>, SetupError> {
    let (Some(user), Some(file)) = (&cfg.user, &cfg.password_file) else {
        return Ok(None);
    };
    let password = std::fs::read_to_string(file).map_err(|source| SetupError::PasswordFile {
        file: file.clone(),
        source,
    })?;
    Ok(Some((
        user.clone(),
        password.trim_end_matches(['\r', '\n']).to_string(),
    )))
}

/// Aborts the event-stream task when the sync loop ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::RawTask;

    fn app(id: &str, tasks: usize) -> RawApp {
        RawApp {
            id: id.into(),
            ports: vec![10001],
            tasks: (0..tasks)
                .map(|i| RawTask {
                    id: format!("{id}.{i}"),
                    host: "127.0.0.1".into(),
                    ports: vec![31000 + i as u16],
                    state: "TASK_RUNNING".into(),
                    healthy: None,
                })
                .collect(),
            ..RawApp::default()
        }
    }

    #[test]
    fn an_empty_snapshot_is_implausible() {
        let none = HashSet::new();
        assert_eq!(
            plausible(&[app("/a", 3)], &[], &none),
            Err(Implausible::NoTasks { before: 3 })
        );
        assert!(plausible(&[app("/a", 3)], &[app("/a", 0)], &none).is_err());
        assert!(plausible::<RawApp>(&[], &[], &none).is_ok());
    }

    #[test]
    fn dropping_more_than_half_needs_kills_to_explain_it() {
        let none = HashSet::new();
        let e = plausible(&[app("/a", 4)], &[app("/a", 1)], &none).unwrap_err();
        assert_eq!(e.to_string(), "app /a would go from 4 to 1 tasks");
        assert!(plausible(&[app("/a", 4)], &[app("/a", 2)], &none).is_ok());
        assert!(plausible(&[app("/a", 1)], &[app("/a", 0), app("/b", 1)], &none).is_ok());
        let killed: HashSet<String> = ["/a.0", "/a.1", "/a.2"].map(String::from).into();
        assert!(plausible(&[app("/a", 4)], &[app("/a", 1)], &killed).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn isolated_events_read_at_once_and_bursts_coalesce() {
        let mut state = State::default();
        let start = Instant::now();
        assert_eq!(state.read_slot(), start, "nothing read yet: read now");
        state.last_read = Some(start);
        tokio::time::advance(Duration::from_millis(30)).await;
        assert_eq!(
            state.read_slot(),
            start + DEBOUNCE,
            "inside the window: wait for its end"
        );
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(
            state.read_slot(),
            Instant::now(),
            "after the window: read now"
        );
    }

    #[test]
    fn a_full_read_shares_the_apps_that_did_not_change() {
        let old: Vec<Arc<RawApp>> = [app("/a", 1), app("/b", 2), app("/c", 1)]
            .into_iter()
            .map(Arc::new)
            .collect();
        let new = vec![app("/a", 1), app("/b", 3), app("/d", 1)];
        let (apps, changed) = share_unchanged(&old, new);
        assert_eq!(changed, ["/b", "/c", "/d"]);
        let ids: Vec<&str> = apps.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["/a", "/b", "/d"]);
        assert!(Arc::ptr_eq(&apps[0], &old[0]), "/a is the old app");
        assert!(!Arc::ptr_eq(&apps[1], &old[1]));
    }

    /// A read due now starts without a timer (tokio's round up to the next millisecond);
    /// one due later waits for it.
    #[tokio::test(start_paused = true)]
    async fn a_read_due_now_starts_without_a_timer() {
        use std::future::Future;
        use std::pin::pin;
        use std::task::{Context, Poll};
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let now = pin!(due(Some(Instant::now())));
        assert_eq!(now.poll(&mut cx), Poll::Ready(()), "due now: at once");
        let later = Instant::now() + Duration::from_millis(5);
        let mut later = pin!(due(Some(later)));
        assert_eq!(later.as_mut().poll(&mut cx), Poll::Pending);
        let mut never = pin!(due(None));
        assert_eq!(never.as_mut().poll(&mut cx), Poll::Pending);
        tokio::time::advance(Duration::from_millis(5)).await;
        assert_eq!(later.poll(&mut cx), Poll::Ready(()), "its time came");
        assert_eq!(never.poll(&mut cx), Poll::Pending);
    }

    #[tokio::test(start_paused = true)]
    async fn per_app_reads_are_debounced_per_app() {
        let mut state = State::default();
        let start = Instant::now();
        state.queue_app("/a".into());
        assert_eq!(state.next_app_read(), Some(start), "an isolated event: now");
        state.pending_apps.clear();
        state.app_reads.insert("/a".into(), start);
        tokio::time::advance(Duration::from_millis(30)).await;
        state.queue_app("/a".into());
        state.queue_app("/b".into());
        assert_eq!(
            state.pending_apps["/a"],
            start + DEBOUNCE,
            "/a read 30 ms ago"
        );
        assert_eq!(
            state.pending_apps["/b"],
            Instant::now(),
            "/b waits for nobody"
        );
        state.queue_app("/a".into());
        assert_eq!(state.pending_apps["/a"], start + DEBOUNCE, "queued once");
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        assert!(backoff(1) <= Duration::from_millis(625));
        assert!(backoff(40) <= BACKOFF_MAX.mul_f64(1.25));
        assert!(backoff(4) > backoff(1));
    }
}
