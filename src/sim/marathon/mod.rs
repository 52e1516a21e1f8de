//! A fake Marathon on 127.0.0.1:0: `/v2/apps`, `/v2/apps/{id}`, `/v2/events` (SSE),
//! `/v2/leader` and
//! `/ping` in the real JSON shapes and with the real leader headers, plus the failure modes
//! a client must survive (standby, redirect, basic auth, down, stalled or closed streams,
//! bad bodies). `start_tls` serves the same over https with a CA made at start.
//!
//! The caller mutates the state behind a `std::sync::Mutex`; every request reads it. The
//! fake keeps no history of events: a frame reaches only the streams open when it is pushed,
//! so wait for `subscriptions()` before pushing. It leaves every judgement (filtering tasks,
//! choosing a leader) to the client under test, and scheduling (which tasks run) to its
//! caller. The builders below produce the Marathon 1.5+ shapes of
//! `tests/fixtures/marathon/`, with loopback hosts only.
//!
//! Reads with tasks are answered from bytes encoded when the apps are set (each app apart,
//! so `set_app` re-encodes one app): a real Marathon is another machine, and what a bench
//! measures must be the client's reading and decoding, not the fake's serializing.

mod json;

pub use json::*;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::{full, RespBody};

/// The app and task `version` the builders write.
pub const VERSION: &str = "2024-05-01T10:00:00.000Z";
/// The `timestamp` of every event the helpers build.
pub const TIMESTAMP: &str = "2024-05-01T10:00:05.000Z";

/// A running fake Marathon. Dropping it stops the accept loop, every connection and every
/// open event stream.
pub struct FakeMarathon {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    keepalive: JoinHandle<()>,
}

/// What the connection tasks and the test share.
struct Shared {
    state: Mutex<State>,
    /// Wakes the keep-alive task when its interval changes.
    keepalive_changed: Notify,
    /// `http://127.0.0.1:PORT` (`https://` with TLS), what `X-Marathon-Leader` says when
    /// we lead.
    url: String,
    /// `127.0.0.1:PORT`, what `X-Marathon-Via` and `/v2/leader` say.
    host_port: String,
}

#[derive(Default)]
struct State {
    apps: AppsBody,
    /// `apps` (when JSON) encoded app by app, with tasks.
    encoded: Encoded,
    /// `Some(leader url)`: we are a standby proxying to that leader.
    standby_of: Option<String>,
    /// No leader elected anywhere: 404 on `/v2/leader`, 502 elsewhere.
    leaderless: bool,
    down: bool,
    events_redirect: Option<String>,
    /// The whole expected `Authorization` value.
    auth: Option<String>,
    keepalive: Option<Duration>,
    /// New streams start silent while set.
    stalled: bool,
    streams: Vec<Stream>,
    subscriptions: usize,
    event_filters: Vec<Vec<String>>,
    apps_queries: Vec<String>,
    /// The id of each `/v2/apps/{id}` request, in order.
    app_reads: Vec<String>,
    /// Per-app bodies served verbatim instead of the app from `apps`.
    app_bodies: std::collections::HashMap<String, Bytes>,
    requests: Vec<String>,
}

enum AppsBody {
    Json(Value),
    Raw(Bytes),
}

impl Default for AppsBody {
    fn default() -> Self {
        AppsBody::Json(json!({ "apps": [] }))
    }
}

/// The JSON app list as bytes, one entry per app in list order: what reads with tasks
/// (`embed=apps.tasks`, `embed=app.tasks`) are answered from, without serializing.
#[derive(Default)]
struct Encoded {
    /// App id -> its position in the list (and in `apps`).
    index: std::collections::HashMap<String, usize>,
    /// Each app, with its tasks, as JSON text.
    apps: Vec<Bytes>,
}

// === impl Encoded ===

impl Encoded {
    /// Encodes every app of `{"apps": [...]}` (nothing when the list is missing).
    fn of(body: &Value) -> Encoded {
        let list = body["apps"].as_array().map_or(&[][..], |l| &l[..]);
        let mut encoded = Encoded::default();
        for app in list {
            encoded.push(app);
        }
        encoded
    }

    fn push(&mut self, app: &Value) {
        let id = app["id"].as_str().unwrap_or_default().to_string();
        self.index.entry(id).or_insert(self.apps.len());
        self.apps.push(Bytes::from(app.to_string()));
    }

    /// The whole `{"apps":[...]}` body, its parts shared with this encoding.
    fn body(&self) -> PartsBody {
        let mut parts = Vec::with_capacity(self.apps.len() * 2 + 1);
        parts.push(Bytes::from_static(b"{\"apps\":["));
        for (i, app) in self.apps.iter().enumerate() {
            if i > 0 {
                parts.push(Bytes::from_static(b","));
            }
            parts.push(app.clone());
        }
        parts.push(Bytes::from_static(b"]}"));
        PartsBody::new(parts)
    }
}

/// One open `/v2/events` response.
struct Stream {
    tx: mpsc::UnboundedSender<Bytes>,
    /// The `event_type` values asked for; empty means every type (as in Marathon).
    filter: Vec<String>,
    /// A stalled stream gets no bytes at all until it is closed.
    stalled: bool,
}

// === impl FakeMarathon ===

impl FakeMarathon {
    /// Binds 127.0.0.1:0 and serves with an empty app list, as the leader.
    pub async fn start() -> FakeMarathon {
        FakeMarathon::serve(None).await
    }

    /// As `start`, over https: a CA made now signs a certificate for `127.0.0.1` and
    /// `localhost`. Returns the CA certificate in PEM, for the client's `ca_file`.
    pub async fn start_tls() -> (FakeMarathon, String) {
        let (ca_pem, server) = super::pki::server_with_new_ca();
        let acceptor = TlsAcceptor::from(Arc::new(server));
        (FakeMarathon::serve(Some(acceptor)).await, ca_pem)
    }

    async fn serve(tls: Option<TlsAcceptor>) -> FakeMarathon {
        let listener = super::bind("127.0.0.1", "fake Marathon").await;
        let addr = listener.local_addr().expect("bound address");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            keepalive_changed: Notify::new(),
            url: format!("{scheme}://{addr}"),
            host_port: addr.to_string(),
        });
        let admit = {
            let shared = shared.clone();
            // Down: a new connection is closed at once without a byte.
            move |stream: TcpStream| (!shared.lock().down).then_some(stream)
        };
        let handle = {
            let shared = shared.clone();
            move |peer: SocketAddr, req: Request<Incoming>| handle(&shared, peer, req)
        };
        let accept = tokio::spawn(super::accept_loop(listener, tls, admit, handle));
        let keepalive = tokio::spawn(keepalive_loop(shared.clone()));
        FakeMarathon {
            addr,
            shared,
            accept,
            keepalive,
        }
    }

    /// `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` from `start_tls`.
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Replaces the whole `/v2/apps` body (`{"apps":[...]}`).
    pub fn set_apps(&self, apps: Value) {
        let encoded = Encoded::of(&apps);
        let mut st = self.state();
        st.apps = AppsBody::Json(apps);
        st.encoded = encoded;
    }

    /// The current `/v2/apps` body, if it is JSON (not set with `set_apps_body_raw`).
    pub fn apps(&self) -> Option<Value> {
        match &self.state().apps {
            AppsBody::Json(v) => Some(v.clone()),
            AppsBody::Raw(_) => None,
        }
    }

    /// Replaces the app with `app`'s id in the `/v2/apps` list, or appends it: one app
    /// changes without rebuilding the whole list.
    pub fn set_app(&self, app: Value) {
        let text = Bytes::from(app.to_string());
        let id = app["id"].as_str().unwrap_or_default().to_string();
        let mut st = self.state();
        let st = &mut *st;
        let AppsBody::Json(body) = &mut st.apps else {
            panic!("set_app needs a JSON apps body");
        };
        let list = body["apps"].as_array_mut().expect("apps is a list");
        match st.encoded.index.get(&id) {
            Some(&at) => {
                list[at] = app;
                st.encoded.apps[at] = text;
            }
            None => {
                st.encoded.index.insert(id, list.len());
                st.encoded.apps.push(text);
                list.push(app);
            }
        }
    }

    /// Removes app `id` from the `/v2/apps` list (its `/v2/apps/{id}` answers 404).
    pub fn remove_app(&self, id: &str) {
        let mut st = self.state();
        if let AppsBody::Json(body) = &mut st.apps {
            if let Some(list) = body["apps"].as_array_mut() {
                list.retain(|a| a["id"] != id);
            }
            st.encoded = Encoded::of(body);
        }
    }

    /// Serves these bytes verbatim on `/v2/apps/{id}` (`None`: the app from the list again).
    pub fn set_app_body_raw(&self, id: &str, body: Option<&[u8]>) {
        let mut st = self.state();
        match body {
            Some(b) => st
                .app_bodies
                .insert(id.to_string(), Bytes::copy_from_slice(b)),
            None => st.app_bodies.remove(id),
        };
    }

    /// How many times the whole list (`/v2/apps`) was read.
    pub fn full_reads(&self) -> usize {
        self.state().apps_queries.len()
    }

    /// The app id of each `/v2/apps/{id}` read, in order.
    pub fn app_reads(&self) -> Vec<String> {
        self.state().app_reads.clone()
    }

    /// Serves these bytes verbatim on `/v2/apps` (malformed JSON, odd shapes).
    pub fn set_apps_body_raw(&self, body: &[u8]) {
        let mut st = self.state();
        st.apps = AppsBody::Raw(Bytes::copy_from_slice(body));
        st.encoded = Encoded::default();
    }

    /// `Some(leader url)`: answer as a standby of that leader (`X-Marathon-Via` plus
    /// `X-Marathon-Leader: <leader>`). `None`: lead again. Does not redirect `/v2/events`;
    /// use `redirect_events_to` for that, as a real standby would.
    pub fn set_standby(&self, leader_url: Option<String>) {
        self.state().standby_of = leader_url;
    }

    /// No leader elected: `/v2/leader` answers 404 `{"message":"There is no leader"}` and
    /// every other API path 502, with no leader headers.
    pub fn set_leaderless(&self, leaderless: bool) {
        self.state().leaderless = leaderless;
    }

    /// Down: new connections are closed at once without a byte, requests on connections
    /// already open get 503 with `Connection: close`, and open streams end.
    pub fn set_down(&self, down: bool) {
        let mut st = self.state();
        st.down = down;
        if down {
            st.streams.clear();
        }
    }

    /// Answer `/v2/events` with `302 Found` and `Location: <leader>/v2/events?<same query>`.
    pub fn redirect_events_to(&self, leader_url: Option<String>) {
        self.state().events_redirect = leader_url;
    }

    /// Every request must carry `Authorization: Basic base64(user:password)`; others get
    /// 401 with `WWW-Authenticate: Basic realm="Marathon"`.
    pub fn require_basic_auth(&self, user: &str, password: &str) {
        self.state().auth = Some(super::basic_auth(user, password));
    }

    /// Sends a bare `\r\n` on every live stream this often (`None`: never, the default).
    pub fn set_keepalive(&self, every: Option<Duration>) {
        self.state().keepalive = every;
        self.shared.keepalive_changed.notify_one();
    }

    /// Sends `event: TYPE\r\ndata: JSON\r\n\r\n` to every live stream whose `event_type`
    /// filter admits `event_type`.
    pub fn push_event(&self, event_type: &str, json: Value) {
        let frame = Bytes::from(sse_frame(event_type, &json));
        let mut st = self.state();
        st.streams.retain(|s| !s.tx.is_closed());
        for s in st.streams.iter().filter(|s| !s.stalled) {
            if s.filter.is_empty() || s.filter.iter().any(|f| f == event_type) {
                let _ = s.tx.send(frame.clone());
            }
        }
    }

    /// `push_event` with the type read from the JSON's `eventType`.
    pub fn push(&self, event: Value) {
        let event_type = event["eventType"]
            .as_str()
            .expect("event has an eventType")
            .to_string();
        self.push_event(&event_type, event);
    }

    /// Sends these bytes as they are to every live stream, ignoring filters.
    pub fn push_raw(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return; // an empty chunk would end a chunked body
        }
        let bytes = Bytes::copy_from_slice(bytes);
        let mut st = self.state();
        st.streams.retain(|s| !s.tx.is_closed());
        for s in st.streams.iter().filter(|s| !s.stalled) {
            let _ = s.tx.send(bytes.clone());
        }
    }

    /// Open streams, and streams opened from now on, go silent: no frames, no keep-alives,
    /// the connection stays open. New streams still get their 200 and headers.
    pub fn stall_stream(&self) {
        let mut st = self.state();
        st.stalled = true;
        for s in &mut st.streams {
            s.stalled = true;
        }
    }

    /// Streams opened from now on are live again; streams already stalled stay silent
    /// until they are closed (by the client, `close_streams` or `set_down`).
    pub fn resume_streams(&self) {
        self.state().stalled = false;
    }

    /// Ends every open stream (the chunked body finishes cleanly).
    pub fn close_streams(&self) {
        self.state().streams.clear();
    }

    /// `/v2/events` requests answered with a stream so far.
    pub fn subscriptions(&self) -> usize {
        self.state().subscriptions
    }

    /// Streams whose client is still connected.
    pub fn open_streams(&self) -> usize {
        self.state()
            .streams
            .iter()
            .filter(|s| !s.tx.is_closed())
            .count()
    }

    /// The `event_type` values of each subscription, in order.
    pub fn event_filters(&self) -> Vec<Vec<String>> {
        self.state().event_filters.clone()
    }

    /// The query string of each `/v2/apps` request, in order.
    pub fn apps_queries(&self) -> Vec<String> {
        self.state().apps_queries.clone()
    }

    /// Every request seen, as `"GET /v2/apps?embed=apps.tasks"`.
    pub fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }
}

impl Drop for FakeMarathon {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a JoinSet), so they go with it.
        self.accept.abort();
        self.keepalive.abort();
        self.state().streams.clear();
    }
}

// === impl Shared ===

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock must not hide its own failure.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn keepalive_loop(shared: Arc<Shared>) {
    loop {
        let every = shared.lock().keepalive;
        let Some(every) = every else {
            shared.keepalive_changed.notified().await;
            continue;
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {
                let mut st = shared.lock();
                st.streams.retain(|s| !s.tx.is_closed());
                for s in st.streams.iter().filter(|s| !s.stalled) {
                    let _ = s.tx.send(Bytes::from_static(b"\r\n"));
                }
            }
            _ = shared.keepalive_changed.notified() => {}
        }
    }
}

fn handle(shared: &Shared, peer: SocketAddr, req: Request<Incoming>) -> Response<RespBody> {
    let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut st = shared.lock();
    st.requests
        .push(format!("{} {path_and_query}", req.method()));

    if st.down {
        let mut resp = message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
        resp.headers_mut()
            .insert("connection", "close".parse().expect("header"));
        return resp;
    }
    if let Some(expected) = &st.auth {
        let given = req.headers().get("authorization").map(|v| v.as_bytes());
        if given != Some(expected.as_bytes()) {
            let mut resp = message(StatusCode::UNAUTHORIZED, "Invalid username or password.");
            resp.headers_mut().insert(
                "www-authenticate",
                "Basic realm=\"Marathon\"".parse().expect("header"),
            );
            return resp;
        }
    }

    let query = req.uri().query().unwrap_or("").to_string();
    let path = req.uri().path();
    let one_app = path.strip_prefix("/v2/apps/").map(|id| format!("/{id}"));
    let known =
        one_app.is_some() || matches!(path, "/ping" | "/v2/leader" | "/v2/apps" | "/v2/events");
    let mut resp = if !known {
        message(StatusCode::NOT_FOUND, "Not found")
    } else if req.method() != Method::GET {
        message(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
    } else if path == "/v2/leader" {
        leader(&st, shared)
    } else if st.leaderless {
        message(
            StatusCode::BAD_GATEWAY,
            "Could not determine the current leader",
        )
    } else if path == "/ping" {
        Response::builder()
            .header("content-type", "text/plain")
            .body(full("pong\n"))
            .expect("response")
    } else if path == "/v2/apps" {
        st.apps_queries.push(query.clone());
        apps(&st, &query)
    } else if let Some(id) = one_app {
        st.app_reads.push(id.clone());
        one_app_response(&st, &id, &query)
    } else {
        let accept = req
            .headers()
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        events(&mut st, peer, &query, accept)
    };

    // What tells a leader from a standby (api/own/leader_semantics.json).
    if !st.leaderless {
        let headers = resp.headers_mut();
        match &st.standby_of {
            Some(leader) => {
                let via = format!("1.1 {}", shared.host_port);
                headers.insert("x-marathon-via", via.parse().expect("header"));
                headers.insert("x-marathon-leader", leader.parse().expect("leader url"));
            }
            None => {
                headers.insert("x-marathon-leader", shared.url.parse().expect("header"));
            }
        }
    }
    resp
}

fn leader(st: &State, shared: &Shared) -> Response<RespBody> {
    if st.leaderless {
        return message(StatusCode::NOT_FOUND, "There is no leader");
    }
    // The value is host:port, without a scheme (api/own/leader_ok.json).
    let leader = match &st.standby_of {
        Some(url) => url
            .split_once("://")
            .map_or(url.as_str(), |(_, rest)| rest)
            .trim_end_matches('/')
            .to_string(),
        None => shared.host_port.clone(),
    };
    json_response(StatusCode::OK, &json!({ "leader": leader }))
}

fn apps(st: &State, query: &str) -> Response<RespBody> {
    let tasks = query_values(query, "embed").any(|e| e == "apps.tasks");
    let body = match &st.apps {
        AppsBody::Raw(raw) => Full::new(raw.clone()).boxed(),
        AppsBody::Json(_) if tasks => st.encoded.body().boxed(),
        AppsBody::Json(v) => {
            // Marathon embeds tasks only when asked (api/docs-examples/app_list.json).
            let mut v = v.clone();
            if let Some(list) = v.get_mut("apps").and_then(Value::as_array_mut) {
                for app in list.iter_mut().filter_map(Value::as_object_mut) {
                    app.remove("tasks");
                }
            }
            full(serde_json::to_vec(&v).expect("apps serialise"))
        }
    };
    Response::builder()
        .header("content-type", "application/json")
        .body(body)
        .expect("response")
}

/// `/v2/apps/{id}`: `{"app": {...}}` with its tasks when `embed=app.tasks` (or the older
/// `apps.tasks`) asks for them, 404 with Marathon's message when there is no such app.
fn one_app_response(st: &State, id: &str, query: &str) -> Response<RespBody> {
    if let Some(raw) = st.app_bodies.get(id) {
        return Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(raw.clone()).boxed())
            .expect("response");
    }
    let at = match &st.apps {
        AppsBody::Json(_) => st.encoded.index.get(id).copied(),
        AppsBody::Raw(_) => None,
    };
    let (Some(at), AppsBody::Json(v)) = (at, &st.apps) else {
        return message(StatusCode::NOT_FOUND, &format!("App '{id}' does not exist"));
    };
    let tasks = query_values(query, "embed").any(|e| e == "app.tasks" || e == "apps.tasks");
    if tasks {
        let parts = vec![
            Bytes::from_static(b"{\"app\":"),
            st.encoded.apps[at].clone(),
            Bytes::from_static(b"}"),
        ];
        return Response::builder()
            .header("content-type", "application/json")
            .body(PartsBody::new(parts).boxed())
            .expect("response");
    }
    let mut app = v["apps"][at].clone();
    if let Some(obj) = app.as_object_mut() {
        obj.remove("tasks");
    }
    json_response(StatusCode::OK, &json!({ "app": app }))
}

fn events(st: &mut State, peer: SocketAddr, query: &str, accept: &str) -> Response<RespBody> {
    if let Some(leader) = &st.events_redirect {
        let mut location = format!("{}/v2/events", leader.trim_end_matches('/'));
        if !query.is_empty() {
            location = format!("{location}?{query}");
        }
        return Response::builder()
            .status(StatusCode::FOUND)
            .header("location", location)
            .body(full(""))
            .expect("response");
    }
    if !accept.contains("text/event-stream") {
        return message(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let filter: Vec<String> = query_values(query, "event_type")
        .map(str::to_string)
        .collect();
    st.subscriptions += 1;
    st.event_filters.push(filter.clone());
    if !st.stalled {
        let attached = json!({
            "remoteAddress": peer.ip().to_string(),
            "timestamp": TIMESTAMP,
            "eventType": "event_stream_attached",
        });
        let _ = tx.send(Bytes::from(sse_frame("event_stream_attached", &attached)));
    }
    st.streams.push(Stream {
        tx,
        filter,
        stalled: st.stalled,
    });
    // No content length: hyper sends the body chunked, one chunk per frame.
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(SseBody(rx).boxed())
        .expect("response")
}

/// The values of `key` in a query string (no percent-decoding: the names need none).
fn query_values<'a>(query: &'a str, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(move |(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn sse_frame(event_type: &str, json: &Value) -> String {
    format!("event: {event_type}\r\ndata: {json}\r\n\r\n")
}

fn message(status: StatusCode, text: &str) -> Response<RespBody> {
    json_response(status, &json!({ "message": text }))
}

fn json_response(status: StatusCode, v: &Value) -> Response<RespBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(v.to_string()))
        .expect("response")
}

/// A body sent as the concatenation of its parts, with its length known up front (so it
/// goes out with `Content-Length`, as Marathon's answers do, not chunked).
struct PartsBody {
    parts: std::vec::IntoIter<Bytes>,
    left: u64,
}

impl PartsBody {
    fn new(parts: Vec<Bytes>) -> PartsBody {
        let left = parts.iter().map(|p| p.len() as u64).sum();
        PartsBody {
            parts: parts.into_iter(),
            left,
        }
    }
}

impl Body for PartsBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let next = self.parts.next();
        if let Some(part) = &next {
            self.left -= part.len() as u64;
        }
        Poll::Ready(next.map(|p| Ok(Frame::data(p))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0 && self.parts.len() == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

/// The `/v2/events` body: one chunk per frame the caller pushes (`push_*`, keep-alives);
/// ends when the sender is dropped.
struct SseBody(mpsc::UnboundedReceiver<Bytes>);

impl Body for SseBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

// === app builders ===
