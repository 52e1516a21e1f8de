//! Drover on an embedded default, no cluster needed.
//!
//! Starts six small HTTP backends on 127.0.0.1, a simulated Marathon and three simulated
//! masters beside them, writes a config and a catalog file into a temporary directory, runs
//! Drover on them in this process, and prints `curl` lines to try.
//!
//! - The catalog file holds `/shop/web` and `/shop/api` (backends `blue-1`, `blue-2`,
//!   `green-1`). Edit the printed file while it runs and the routes change within a moment.
//! - The simulated Marathon serves `/v2/apps` and the `/v2/events` stream in Marathon's JSON
//!   shapes, as the leader, with one app: `/blog` on `blog.localhost` (group `external`).
//!   Every few seconds its "scheduler" starts or kills a task (backends `blog-1`..`blog-3`,
//!   between 1 and 3 running), prints `[marathon] ...`, and pushes the matching
//!   `status_update_event`; Drover's `route table stored` log line follows.
//! - Three simulated masters (`master 1`..`master 3`) stand in for a Mesos/Marathon/Chronos
//!   control plane; leadership moves to the next one every 10 s (`[masters] ...` lines).
//!   The leader answers `GET /metrics/snapshot` with `"master/elected": 1.0` (0.0 elsewhere),
//!   every master answers `GET /ping` with 200 `pong` as Marathon does (a standby adds
//!   `X-Marathon-Via`), `GET /scheduler/jobs` is 200 on the leader and a 307 to it elsewhere
//!   (a redirecting Chronos), and every other path is a one-line page naming the master.
//!   Three master aliases front them: `mesos.localhost` (check `mesos`, also on a TCP port),
//!   `marathon.localhost` (check `marathon`) and `chronos.localhost` (a custom check).
//!   Drover's `alias leader changed` lines follow each move within a probe interval.
//!
//! Ctrl-C drains and exits.
//!
//! ```sh
//! cargo run --release --example demo
//! ```
//!
//! Ports: the HTTP router on 127.0.0.1:8080, admin on 127.0.0.1:9090, a TCP service port
//! on 127.0.0.1:10001 and the `mesos.localhost` alias port on 127.0.0.1:15050 when free
//! (otherwise any free port, as printed); the simulated Marathon, the masters and the
//! backends on free loopback ports.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use drover::config::Config;
use drover::server::{Options, Server};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The simulated Marathon's one app, its service port (clear of the catalog's) and vhost.
const BLOG_APP: &str = "/blog";
const BLOG_SERVICE_PORT: u16 = 10003;
const BLOG_VHOST: &str = "blog.localhost";
/// How often the simulated scheduler starts or kills a task.
const SCALE_EVERY: Duration = Duration::from_secs(4);
/// The app `version` (a real Marathon changes it only on a config change, not on scaling).
const VERSION: &str = "2024-05-01T10:00:00.000Z";
/// How many simulated masters, and how often leadership moves to the next one.
const MASTERS: usize = 3;
const LEAD_EVERY: Duration = Duration::from_secs(10);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // Plain text when the output goes to a file or a pipe, as drover's own logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let backends_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let blue1 = backends_rt.block_on(backend("blue-1"))?;
    let blue2 = backends_rt.block_on(backend("blue-2"))?;
    let green = backends_rt.block_on(backend("green-1"))?;
    let mut blog = Vec::new();
    for name in ["blog-1", "blog-2", "blog-3"] {
        blog.push(backends_rt.block_on(backend(name))?);
    }
    let marathon = backends_rt.block_on(SimMarathon::start(blog))?;
    let masters = backends_rt.block_on(SimMasters::start(MASTERS))?;
    // The scheduler, the simulated Marathon, the masters and the backends run on their own
    // thread for as long as the demo does (the thread ends with the process).
    backends_rt.spawn(marathon.clone().scheduler());
    backends_rt.spawn(masters.clone().elections());
    std::thread::spawn(move || backends_rt.block_on(std::future::pending::<()>()));

    let http = port_or_any(8080);
    let admin = port_or_any(9090);
    let tcp = port_or_any(10001);
    let mesos_port = port_or_any(15050);
    let masters_list = masters.backends_toml();
    let dir = std::env::temp_dir().join(format!("drover-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config_path = dir.join("drover.toml");
    let catalog_path = dir.join("services.toml");
    std::fs::write(
        &config_path,
        format!(
            "# Written by examples/demo.rs\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n\n\
             [tcp]\nbind = \"127.0.0.1\"\nports = \"{tcp}-{tcp}\"\n\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\n\n\
             [catalog]\nfile = \"services.toml\"\n\n\
             [marathon]\nurls = [\"{}\"]\ngroups = [\"external\"]\n\n\
             [runtime]\nworkers = 1\ndrain_timeout = \"5s\"\n\n\
             # Master aliases: each reaches only the master its check proves leader.\n\
             [[alias]]\nhost = \"mesos.localhost\"\nport = {mesos_port}\n\
             backends = {masters_list}\ncheck = \"mesos\"\ninterval = \"1s\"\n\n\
             [[alias]]\nhost = \"marathon.localhost\"\nbackends = {masters_list}\n\
             check = \"marathon\"\n\n\
             [[alias]]\nhost = \"chronos.localhost\"\nbackends = {masters_list}\n\
             check = {{ path = \"/scheduler/jobs\", expect_status = 200 }}\n\
             interval = \"2s\"\n",
            marathon.url
        ),
    )?;
    std::fs::write(
        &catalog_path,
        format!(
            "# Written by examples/demo.rs; edit me while the demo runs.\n\n\
             [[app]]\nid = \"/shop/web\"\n\
             labels = {{ HAPROXY_0_VHOST = \"shop.localhost\" }}\n\
             ports = [{tcp}]\n\
             tasks = [ {{ host = \"127.0.0.1\", ports = [{}] }}, {{ host = \"127.0.0.1\", ports = [{}] }} ]\n\n\
             [[app]]\nid = \"/shop/api\"\n\
             labels = {{ HAPROXY_0_VHOST = \"shop.localhost\", HAPROXY_0_PATH = \"/api\" }}\n\
             ports = [10002]\n\
             tasks = [ {{ host = \"127.0.0.1\", ports = [{}] }} ]\n",
            blue1.port(),
            blue2.port(),
            green.port()
        ),
    )?;

    let config = Config::load(&config_path)?;
    let server = Server::start(
        config,
        Options {
            config_path: Some(config_path.clone()),
            handle_signals: true,
        },
    )?;
    println!(
        "\nDrover is running (config {}, catalog {}).\nTry:\n\
         \n  curl -H 'Host: shop.localhost' http://127.0.0.1:{http}/        # blue-1 and blue-2 in turn\
         \n  curl -H 'Host: shop.localhost' http://127.0.0.1:{http}/api/x   # green-1: longest path prefix wins\
         \n  curl -H 'Host: blog.localhost' http://127.0.0.1:{http}/        # the /blog tasks Marathon runs now\
         \n  curl -H 'Host: nope.localhost' http://127.0.0.1:{http}/        # 404: unknown host\
         \n  curl http://127.0.0.1:{tcp}/                                # the TCP service port of /shop/web\
         \n  curl http://127.0.0.1:{admin}/debug/routes                     # the route table as JSON\
         \n  curl -s http://127.0.0.1:{admin}/metrics | grep drover_http     # Prometheus metrics\
         \n\nEdit {} (say, remove a task) and the routes follow within a second.\
         \n\nA simulated Marathon at {} runs {BLOG_APP} and starts or kills one of its tasks every\
         \n{}s (between 1 and 3 running; watch for `[marathon]` lines). Watch the answers follow:\
         \n\n  watch -n1 \"curl -s -H 'Host: blog.localhost' http://127.0.0.1:{http}/\"\
         \n  curl http://127.0.0.1:{admin}/debug/routes                     # /blog's backends now\
         \n\nThree simulated masters ({}) hand leadership to the next one\
         \nevery {}s (watch for `[masters]` lines); the aliases follow within a probe interval:\
         \n\n  curl -H 'Host: mesos.localhost' http://127.0.0.1:{http}/       # the Mesos leader (check mesos, 1s)\
         \n  curl -H 'Host: marathon.localhost' http://127.0.0.1:{http}/    # the Marathon leader (check marathon)\
         \n  curl -H 'Host: chronos.localhost' http://127.0.0.1:{http}/     # custom check: 200 on /scheduler/jobs\
         \n  curl http://127.0.0.1:{mesos_port}/                                # mesos.localhost's TCP port\
         \n  watch -n1 \"curl -s -H 'Host: mesos.localhost' http://127.0.0.1:{http}/\"\
         \n  curl http://127.0.0.1:{admin}/debug/routes                     # \"aliases\": leader and probes\
         \n  curl -s http://127.0.0.1:{admin}/metrics | grep -E 'drover_(alias_leader|leader_)'\
         \n\nCtrl-C stops.\n",
        config_path.display(),
        catalog_path.display(),
        catalog_path.display(),
        marathon.url,
        SCALE_EVERY.as_secs(),
        masters.list(),
        LEAD_EVERY.as_secs(),
    );
    server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `preferred` if it is free on 127.0.0.1, else any free port.
fn port_or_any(preferred: u16) -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", preferred))
        .or_else(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(preferred)
}

/// An HTTP backend answering `hello from NAME` to everything.
async fn backend(name: &'static str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        let body = format!(
                            "hello from {name} ({} {})\n",
                            req.method(),
                            req.uri().path()
                        );
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

// === the simulated masters ===

/// Three masters behind one "who leads" cell that `elections` moves on every `LEAD_EVERY`.
/// Each master answers the leader checks the way the real ones do, so the three aliases of
/// the demo config (mesos, marathon, custom) can all point at the same three addresses.
struct SimMasters {
    addrs: Vec<SocketAddr>,
    /// Index of the leader.
    leader: AtomicUsize,
}

impl SimMasters {
    /// Binds `n` free loopback ports and serves them; master 1 leads at first.
    async fn start(n: usize) -> std::io::Result<Arc<SimMasters>> {
        let mut listeners = Vec::with_capacity(n);
        for _ in 0..n {
            listeners.push(TcpListener::bind("127.0.0.1:0").await?);
        }
        let addrs = listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<std::io::Result<Vec<_>>>()?;
        let sim = Arc::new(SimMasters {
            addrs,
            leader: AtomicUsize::new(0),
        });
        for (index, listener) in listeners.into_iter().enumerate() {
            let sim = sim.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let sim = sim.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let resp = sim.handle(index, &req);
                            async move { Ok::<_, Infallible>(resp) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        }
        Ok(sim)
    }

    /// `["127.0.0.1:a", "127.0.0.1:b", ...]`, for an alias's `backends`.
    fn backends_toml(&self) -> String {
        let quoted: Vec<String> = self.addrs.iter().map(|a| format!("\"{a}\"")).collect();
        format!("[{}]", quoted.join(", "))
    }

    /// `127.0.0.1:a, 127.0.0.1:b, ...`, for the banner.
    fn list(&self) -> String {
        let addrs: Vec<String> = self.addrs.iter().map(|a| a.to_string()).collect();
        addrs.join(", ")
    }

    /// Every `LEAD_EVERY`: leadership moves to the next master, as after a failover.
    async fn elections(self: Arc<Self>) {
        let n = self.addrs.len();
        loop {
            tokio::time::sleep(LEAD_EVERY).await;
            let from = self.leader.load(Ordering::SeqCst);
            let to = (from + 1) % n;
            self.leader.store(to, Ordering::SeqCst);
            println!(
                "[masters] leadership moves: master {} ({}) -> master {} ({})",
                from + 1,
                self.addrs[from],
                to + 1,
                self.addrs[to]
            );
        }
    }

    fn handle(&self, index: usize, req: &Request<Incoming>) -> Response<RespBody> {
        let leader = self.leader.load(Ordering::SeqCst);
        let leads = leader == index;
        let text = |body: String| Full::new(Bytes::from(body)).boxed();
        let resp = match req.uri().path() {
            // Mesos: the `mesos` check reads `master/elected`.
            "/metrics/snapshot" => {
                let elected = if leads { "1.0" } else { "0.0" };
                Response::builder()
                    .header("content-type", "application/json")
                    .body(text(format!(
                        "{{\"master/elected\": {elected}, \"master/uptime_secs\": 100.0}}"
                    )))
            }
            // Marathon: 200 everywhere; a standby proxies to the leader and says so.
            "/ping" => {
                let mut b = Response::builder().header("content-type", "text/plain");
                if !leads {
                    b = b.header("x-marathon-via", format!("1.1 {}", self.addrs[index]));
                }
                b.body(text("pong\n".to_string()))
            }
            // A Chronos that redirects: 200 on the leader, a 307 to it elsewhere (probes
            // never follow redirects, so only the leader passes the custom check).
            "/scheduler/jobs" if !leads => Response::builder()
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header(
                    "location",
                    format!("http://{}/scheduler/jobs", self.addrs[leader]),
                )
                .body(text(String::new())),
            "/scheduler/jobs" => Response::builder()
                .header("content-type", "application/json")
                .body(text("[]\n".to_string())),
            path => Response::builder()
                .header("content-type", "text/plain")
                .body(text(format!(
                    "master {} of {} ({}): {} {path}\n",
                    index + 1,
                    self.addrs.len(),
                    if leads { "leader" } else { "standby" },
                    req.method(),
                ))),
        };
        resp.expect("static response parts")
    }
}

// === the simulated Marathon ===

type RespBody = BoxBody<Bytes, Infallible>;

/// A pocket Marathon: one app whose tasks are the `blog-N` backends, the leader of itself.
struct SimMarathon {
    /// `http://127.0.0.1:PORT`, also what `X-Marathon-Leader` names.
    url: String,
    /// `blog-1`..`blog-3`: where a task in slot N listens.
    backends: Vec<SocketAddr>,
    state: Mutex<SimState>,
}

struct SimState {
    /// Running tasks, oldest first (the oldest is killed first, so the set keeps moving).
    running: Vec<SimTask>,
    /// Tasks launched so far; numbers the task ids, which Marathon never reuses.
    launches: u32,
    /// Scaling up (towards 3) or down (towards 1).
    growing: bool,
    /// Open `/v2/events` responses; a send fails once the client has gone.
    streams: Vec<mpsc::UnboundedSender<Bytes>>,
}

#[derive(Clone)]
struct SimTask {
    /// Index into `backends`.
    slot: usize,
    id: String,
    started_at: String,
}

impl SimMarathon {
    /// Binds a free loopback port and serves with `blog-1` and `blog-2` running.
    async fn start(backends: Vec<SocketAddr>) -> std::io::Result<Arc<SimMarathon>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let mut state = SimState {
            running: Vec::new(),
            launches: 0,
            growing: true,
            streams: Vec::new(),
        };
        for slot in 0..2 {
            state.launch(slot);
        }
        let sim = Arc::new(SimMarathon {
            url: format!("http://{}", listener.local_addr()?),
            backends,
            state: Mutex::new(state),
        });
        let accepting = sim.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let sim = accepting.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let resp = sim.handle(&req);
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(sim)
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handle(&self, req: &Request<Incoming>) -> Response<RespBody> {
        let get = req.method() == Method::GET;
        let mut resp = match req.uri().path() {
            "/v2/apps" if get => {
                let body = self.apps_json(&self.lock()).to_string();
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)).boxed())
            }
            "/v2/events" if get => {
                let (tx, rx) = mpsc::unbounded_channel();
                self.lock().streams.push(tx);
                // No content length: hyper sends the body chunked, one chunk per frame.
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .header("cache-control", "no-cache")
                    .body(SseBody(rx).boxed())
            }
            _ => Response::builder()
                .status(StatusCode::NOT_FOUND)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(r#"{"message":"Not found"}"#)).boxed()),
        }
        .expect("static response parts");
        // The leader names itself, and no `X-Marathon-Via`: a standby would add that.
        resp.headers_mut().insert(
            "x-marathon-leader",
            self.url.parse().expect("url is a header value"),
        );
        resp
    }

    /// The `/v2/apps?embed=apps.tasks` body, in the Marathon 1.5+ shape (host networking).
    fn apps_json(&self, st: &SimState) -> Value {
        let n = st.running.len();
        let tasks: Vec<Value> = st
            .running
            .iter()
            .map(|t| {
                let port = self.backends[t.slot].port();
                json!({
                    "id": t.id, "appId": BLOG_APP, "host": "127.0.0.1",
                    "slaveId": "demo-agent-0", "state": "TASK_RUNNING",
                    "ports": [port], "servicePorts": [BLOG_SERVICE_PORT],
                    "ipAddresses": [{ "ipAddress": "127.0.0.1", "protocol": "IPv4" }],
                    "stagedAt": t.started_at, "startedAt": t.started_at, "version": VERSION,
                })
            })
            .collect();
        json!({ "apps": [{
            "id": BLOG_APP,
            "cmd": "python3 -m http.server $PORT0",
            "instances": n, "cpus": 0.1, "mem": 32, "disk": 0,
            "networks": [{ "mode": "host" }],
            "portDefinitions": [{ "port": BLOG_SERVICE_PORT, "protocol": "tcp", "name": "http" }],
            "requirePorts": false,
            "labels": { "HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": BLOG_VHOST },
            "healthChecks": [],
            "version": VERSION,
            "versionInfo": { "lastScalingAt": VERSION, "lastConfigChangeAt": VERSION },
            "tasksStaged": 0, "tasksRunning": n, "tasksHealthy": 0, "tasksUnhealthy": 0,
            "deployments": [],
            "tasks": tasks,
        }]})
    }

    /// Every `SCALE_EVERY`: one task more or one fewer, the snapshot first, then the event
    /// (as Marathon does: a client that re-reads on the event sees the new state).
    async fn scheduler(self: Arc<Self>) {
        loop {
            tokio::time::sleep(SCALE_EVERY).await;
            let mut st = self.lock();
            match st.running.len() {
                0 | 1 => st.growing = true,
                n if n >= self.backends.len() => st.growing = false,
                _ => {}
            }
            let (task, status, verb) = if st.growing {
                let slot = (0..self.backends.len())
                    .find(|s| st.running.iter().all(|t| t.slot != *s))
                    .expect("a free slot while growing");
                (st.launch(slot), "TASK_RUNNING", "started")
            } else {
                (st.running.remove(0), "TASK_KILLED", "killed")
            };
            let event = self.status_update(&task, status);
            let frame = Bytes::from(format!(
                "event: status_update_event\r\ndata: {event}\r\n\r\n"
            ));
            st.streams.retain(|tx| tx.send(frame.clone()).is_ok());
            println!(
                "[marathon] {BLOG_APP}: task blog-{} {verb} ({} running)",
                task.slot + 1,
                st.running.len()
            );
        }
    }

    /// A `status_update_event` (fixtures/marathon/api/events/status_update_event.json).
    fn status_update(&self, task: &SimTask, status: &str) -> Value {
        json!({
            "eventType": "status_update_event",
            "timestamp": now_iso8601(),
            "slaveId": "demo-agent-0",
            "taskId": task.id,
            "taskStatus": status,
            "message": "",
            "appId": BLOG_APP,
            "host": "127.0.0.1",
            "ipAddresses": [{ "ipAddress": "127.0.0.1", "protocol": "IPv4" }],
            "ports": [self.backends[task.slot].port()],
            "version": VERSION,
        })
    }
}

impl SimState {
    /// Starts a task in `slot`, with a fresh Marathon-style id.
    fn launch(&mut self, slot: usize) -> SimTask {
        self.launches += 1;
        let task = SimTask {
            slot,
            id: format!(
                "blog.instance-0a000000-0000-0000-0000-{:012x}._app.1",
                self.launches
            ),
            started_at: now_iso8601(),
        };
        self.running.push(task.clone());
        task
    }
}

/// An event stream body fed by the scheduler; ends when its sender is dropped.
struct SseBody(mpsc::UnboundedReceiver<Bytes>);

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// Now as Marathon writes times, `2024-05-01T10:00:05.123Z` (UTC).
fn now_iso8601() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}
