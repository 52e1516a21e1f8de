//! The fake masters' operator API (`POST /api/v1`, Mesos 1.1+), for masters built with
//! [`super::masters::MastersBuilder::operator_api`]. The cluster is kept as the v1 state
//! (`Response.GetState`, as in `SUBSCRIBED`), and the test changes it by pushing events:
//! each is applied to that state and sent to every open stream. `/master/state` is rendered
//! from the same state, so a client's re-read agrees with what it streamed.
//!
//! - `SUBSCRIBE` on the leader: `200`, `Content-Type: application/json`, chunked, no length;
//!   `SUBSCRIBED` (the state, `heartbeat_interval_seconds`) then the pushed events, each in
//!   RecordIO framing (`len\n` + JSON), and `HEARTBEAT` every interval.
//! - Faults: go silent (no heartbeats, no events, the connection stays open); close every
//!   stream (the masters do when leadership moves); answer `404` like a master before 1.1;
//!   answer `200` with a page that is no RecordIO (a proxy in the way).
//!
//! The caller's JSON is trusted: it is a test's own fixture.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::RespBody;

/// Task states after which Mesos moves a task to `completed_tasks`.
const TERMINAL: [&str; 7] = [
    "TASK_FINISHED",
    "TASK_FAILED",
    "TASK_KILLED",
    "TASK_ERROR",
    "TASK_DROPPED",
    "TASK_GONE",
    "TASK_GONE_BY_OPERATOR",
];

/// The operator API of one set of masters.
pub(super) struct Api {
    inner: Mutex<Inner>,
    /// Milliseconds between heartbeats.
    heartbeat_ms: AtomicU64,
    /// No heartbeats and no events on open streams.
    silent: AtomicBool,
    /// Answer `404` on `/api/v1`, as a master without the API.
    missing: AtomicBool,
    /// Answer `SUBSCRIBE` with `200` and a page that is not RecordIO, then close.
    garbled: AtomicBool,
    /// `SUBSCRIBE` calls answered with a stream.
    subscriptions: AtomicUsize,
}

struct Inner {
    /// `Response.GetState` JSON.
    state: Value,
    /// Framework id -> scheduler pid, for `/master/state` (the v1 state has none).
    pids: HashMap<String, String>,
    streams: Vec<Stream>,
    next_id: u64,
}

struct Stream {
    id: u64,
    tx: mpsc::UnboundedSender<Bytes>,
}

// === impl Api ===

impl Api {
    /// `subscribed` is a whole `SUBSCRIBED` event (its `get_state` is the cluster) or a bare
    /// `get_state`.
    pub(super) fn new(subscribed: Value, pids: &[(&str, &str)], heartbeat: Duration) -> Api {
        let state = match subscribed.pointer("/subscribed/get_state") {
            Some(state) => state.clone(),
            None => subscribed,
        };
        Api {
            inner: Mutex::new(Inner {
                state,
                pids: pids
                    .iter()
                    .map(|(id, pid)| (id.to_string(), pid.to_string()))
                    .collect(),
                streams: Vec::new(),
                next_id: 0,
            }),
            heartbeat_ms: AtomicU64::new(heartbeat.as_millis() as u64),
            silent: AtomicBool::new(false),
            missing: AtomicBool::new(false),
            garbled: AtomicBool::new(false),
            subscriptions: AtomicUsize::new(0),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn missing(&self) -> bool {
        self.missing.load(Ordering::SeqCst)
    }

    pub(super) fn set_missing(&self, on: bool) {
        self.missing.store(on, Ordering::SeqCst);
    }

    pub(super) fn set_garbled(&self, on: bool) {
        self.garbled.store(on, Ordering::SeqCst);
    }

    pub(super) fn set_silent(&self, on: bool) {
        self.silent.store(on, Ordering::SeqCst);
    }

    pub(super) fn set_heartbeat(&self, every: Duration) {
        self.heartbeat_ms
            .store(every.as_millis().max(1) as u64, Ordering::SeqCst);
    }

    pub(super) fn subscriptions(&self) -> usize {
        self.subscriptions.load(Ordering::SeqCst)
    }

    /// Streams open now.
    pub(super) fn open_streams(&self) -> usize {
        let mut inner = self.inner();
        inner.streams.retain(|s| !s.tx.is_closed());
        inner.streams.len()
    }

    /// Ends every open stream (leadership moved, or the master died).
    pub(super) fn close_streams(&self) {
        self.inner().streams.clear();
    }

    /// Applies `event` to the state and sends it to every open stream (unless silent).
    pub(super) fn push(&self, event: &Value) {
        let mut inner = self.inner();
        apply(&mut inner, event);
        if self.silent.load(Ordering::SeqCst) {
            return;
        }
        let record = record(event);
        inner.streams.retain(|s| s.tx.send(record.clone()).is_ok());
    }

    /// The answer to `POST /api/v1` on the leader: a stream that starts once the call has
    /// been read and is a `SUBSCRIBE`; any other call gets an empty stream.
    pub(super) fn subscribe(self: &Arc<Api>, body: Incoming) -> Response<RespBody> {
        let (tx, rx) = mpsc::unbounded_channel();
        if self.garbled.load(Ordering::SeqCst) {
            let _ = tx.send(Bytes::from_static(
                b"<html><body>Service Unavailable</body></html>\n",
            ));
            return Response::new(RecordIoBody(rx).boxed());
        }
        let api = self.clone();
        tokio::spawn(async move {
            let Ok(call) = body.collect().await else {
                return;
            };
            let call: Value = serde_json::from_slice(&call.to_bytes()).unwrap_or_default();
            if call["type"] != "SUBSCRIBE" {
                return;
            }
            let id = {
                let mut inner = api.inner();
                let heartbeat = api.heartbeat_ms.load(Ordering::SeqCst) as f64 / 1000.0;
                let subscribed = json!({
                    "type": "SUBSCRIBED",
                    "subscribed": {
                        "get_state": inner.state,
                        "heartbeat_interval_seconds": heartbeat,
                    },
                });
                if tx.send(record(&subscribed)).is_err() {
                    return;
                }
                inner.next_id += 1;
                let id = inner.next_id;
                inner.streams.push(Stream { id, tx });
                id
            };
            api.subscriptions.fetch_add(1, Ordering::SeqCst);
            api.heartbeats(id).await;
        });
        let mut resp = Response::new(RecordIoBody(rx).boxed());
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp
    }

    /// Sends `HEARTBEAT` on stream `id` every interval until the stream is closed (by the
    /// client, by `close_streams`, or by the set being dropped).
    async fn heartbeats(&self, id: u64) {
        let heartbeat = record(&json!({ "type": "HEARTBEAT" }));
        loop {
            let every = Duration::from_millis(self.heartbeat_ms.load(Ordering::SeqCst));
            tokio::time::sleep(every).await;
            let mut inner = self.inner();
            let Some(i) = inner.streams.iter().position(|s| s.id == id) else {
                return;
            };
            if inner.streams[i].tx.is_closed() {
                inner.streams.remove(i);
                return;
            }
            if !self.silent.load(Ordering::SeqCst) {
                let _ = inner.streams[i].tx.send(heartbeat.clone());
            }
        }
    }

    /// `/master/state` (v0) rendered from the v1 state, naming `pid` as leader and itself.
    pub(super) fn master_state(&self, pid: &str) -> Value {
        let inner = self.inner();
        let s = &inner.state;
        let list = |path: &str| s.pointer(path).and_then(Value::as_array).cloned();
        let tasks = list("/get_tasks/tasks").unwrap_or_default();
        let frameworks: Vec<Value> = list("/get_frameworks/frameworks")
            .unwrap_or_default()
            .iter()
            .map(|f| {
                let info = &f["framework_info"];
                let id = info["id"]["value"].as_str().unwrap_or_default();
                let mut v0 = json!({
                    "id": id,
                    "name": info["name"],
                    "hostname": info["hostname"],
                    "tasks": tasks
                        .iter()
                        .filter(|t| t["framework_id"]["value"] == id)
                        .map(v0_task)
                        .collect::<Vec<_>>(),
                });
                if let Some(pid) = inner.pids.get(id) {
                    v0["pid"] = Value::from(pid.as_str());
                }
                v0
            })
            .collect();
        let slaves: Vec<Value> = list("/get_agents/agents")
            .unwrap_or_default()
            .iter()
            .map(|a| {
                json!({
                    "id": a["agent_info"]["id"]["value"],
                    "pid": a["pid"],
                    "hostname": a["agent_info"]["hostname"],
                })
            })
            .collect();
        json!({
            "version": "1.11.0", "start_time": 1.0, "elected_time": 2.0,
            "leader": pid, "pid": pid,
            "frameworks": frameworks, "slaves": slaves,
        })
    }
}

/// One RecordIO record: the length in decimal, `\n`, the JSON.
fn record(event: &Value) -> Bytes {
    let json = event.to_string();
    Bytes::from(format!("{}\n{json}", json.len()))
}

/// What Mesos does to its state for `event`, on the JSON.
fn apply(inner: &mut Inner, event: &Value) {
    let state = &mut inner.state;
    let id_of = |v: &Value, path: &str| v.pointer(path).cloned().unwrap_or(Value::Null);
    let list = |state: &mut Value, path: &str| -> Vec<Value> {
        state
            .pointer(path)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let set = |state: &mut Value, section: &str, key: &str, items: Vec<Value>| {
        if !state[section].is_object() {
            state[section] = json!({});
        }
        state[section][key] = Value::Array(items);
    };
    match event["type"].as_str().unwrap_or_default() {
        "TASK_ADDED" => {
            let task = event["task_added"]["task"].clone();
            let id = id_of(&task, "/task_id/value");
            let mut tasks = list(state, "/get_tasks/tasks");
            tasks.retain(|t| id_of(t, "/task_id/value") != id);
            tasks.push(task);
            set(state, "get_tasks", "tasks", tasks);
        }
        "TASK_UPDATED" => {
            let u = &event["task_updated"];
            let id = id_of(u, "/status/task_id/value");
            let new_state = u["state"].clone();
            let mut tasks = list(state, "/get_tasks/tasks");
            let mut completed = list(state, "/get_tasks/completed_tasks");
            if let Some(i) = tasks.iter().position(|t| id_of(t, "/task_id/value") == id) {
                let task = &mut tasks[i];
                task["state"] = new_state.clone();
                if !task["statuses"].is_array() {
                    task["statuses"] = json!([]);
                }
                if let Some(statuses) = task["statuses"].as_array_mut() {
                    statuses.push(u["status"].clone());
                }
                if TERMINAL.iter().any(|t| new_state == *t) {
                    completed.push(tasks.remove(i));
                }
            }
            set(state, "get_tasks", "tasks", tasks);
            set(state, "get_tasks", "completed_tasks", completed);
        }
        "AGENT_ADDED" => {
            let agent = event["agent_added"]["agent"].clone();
            let id = id_of(&agent, "/agent_info/id/value");
            let mut agents = list(state, "/get_agents/agents");
            agents.retain(|a| id_of(a, "/agent_info/id/value") != id);
            agents.push(agent);
            set(state, "get_agents", "agents", agents);
        }
        "AGENT_REMOVED" => {
            let id = id_of(event, "/agent_removed/agent_id/value");
            let mut agents = list(state, "/get_agents/agents");
            agents.retain(|a| id_of(a, "/agent_info/id/value") != id);
            set(state, "get_agents", "agents", agents);
        }
        kind @ ("FRAMEWORK_ADDED" | "FRAMEWORK_UPDATED") => {
            let field = kind.to_ascii_lowercase();
            let framework = event[field.as_str()]["framework"].clone();
            let id = id_of(&framework, "/framework_info/id/value");
            let mut frameworks = list(state, "/get_frameworks/frameworks");
            frameworks.retain(|f| id_of(f, "/framework_info/id/value") != id);
            frameworks.push(framework);
            set(state, "get_frameworks", "frameworks", frameworks);
        }
        "FRAMEWORK_REMOVED" => {
            let id = id_of(event, "/framework_removed/framework_info/id/value");
            let mut frameworks = list(state, "/get_frameworks/frameworks");
            frameworks.retain(|f| id_of(f, "/framework_info/id/value") != id);
            set(state, "get_frameworks", "frameworks", frameworks);
            let mut tasks = list(state, "/get_tasks/tasks");
            tasks.retain(|t| id_of(t, "/framework_id/value") != id);
            set(state, "get_tasks", "tasks", tasks);
        }
        _ => {}
    }
}

/// A v1 `Task` as `/master/state` writes it.
fn v0_task(t: &Value) -> Value {
    let labels = |v: &Value| v["labels"]["labels"].clone();
    let ports: Vec<String> = t["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["name"] == "ports")
        .flat_map(|r| r["ranges"]["range"].as_array().cloned().unwrap_or_default())
        .map(|r| format!("{}-{}", r["begin"], r["end"]))
        .collect();
    let statuses: Vec<Value> = t["statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            json!({
                "state": s["state"],
                "timestamp": s["timestamp"],
                "labels": labels(s),
                "container_status": s["container_status"],
                "healthy": s["healthy"],
            })
        })
        .collect();
    json!({
        "id": t["task_id"]["value"],
        "name": t["name"],
        "framework_id": t["framework_id"]["value"],
        "slave_id": t["agent_id"]["value"],
        "state": t["state"],
        "statuses": statuses,
        "resources": { "ports": format!("[{}]", ports.join(", ")) },
        "discovery": t["discovery"],
        "labels": labels(t),
    })
}

/// The stream's body: one chunk per record sent; ends when every sender is gone.
struct RecordIoBody(mpsc::UnboundedReceiver<Bytes>);

impl Body for RecordIoBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// The `404` of a master without the API.
pub(super) fn not_found() -> Response<RespBody> {
    let mut resp = Response::new(super::full(""));
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp
}
