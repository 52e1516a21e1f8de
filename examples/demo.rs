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
//! - The status page at the admin port's `/` (the URL is printed) shows all of it live:
//!   routes and backends, the aliases' leaders, the sources, the last upstream errors.
//!
//! The simulated Marathon and masters are `drover::sim`'s, the same ones the integration
//! tests and the benches run against (feature `sim`, on for examples without a flag); this
//! file only drives them: the scheduler and the elections below.
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
use std::time::Duration;

use bytes::Bytes;
use drover::config::Config;
use drover::server::{Options, Server};
use drover::sim::marathon::{self, FakeMarathon, FakeTask};
use drover::sim::masters::FakeMasters;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

/// The simulated Marathon's one app, its service port (clear of the catalog's) and vhost.
const BLOG_APP: &str = "/blog";
const BLOG_SERVICE_PORT: u16 = 10003;
const BLOG_VHOST: &str = "blog.localhost";
/// How often the simulated scheduler starts or kills a task.
const SCALE_EVERY: Duration = Duration::from_secs(4);
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
    let marathon = backends_rt.block_on(FakeMarathon::start());
    let marathon_url = marathon.url();
    let mut blog = Blog::new(blog);
    for slot in 0..2 {
        blog.launch(slot);
    }
    marathon.set_apps(blog.apps());
    let masters = backends_rt.block_on(FakeMasters::start(MASTERS, Some(0)));
    let masters_list = masters.backends_toml();
    let masters_banner = masters
        .addrs()
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    // The scheduler, the simulated Marathon, the masters and the backends run on their own
    // thread for as long as the demo does (the thread ends with the process).
    backends_rt.spawn(scheduler(marathon, blog));
    backends_rt.spawn(elections(masters));
    std::thread::spawn(move || backends_rt.block_on(std::future::pending::<()>()));

    let http = port_or_any(8080);
    let admin = port_or_any(9090);
    let tcp = port_or_any(10001);
    let mesos_port = port_or_any(15050);
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
            marathon_url
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
        "\nDrover is running (config {}, catalog {}).\
         \nStatus page (live, in a browser): http://127.0.0.1:{admin}/\nTry:\n\
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
        marathon_url,
        SCALE_EVERY.as_secs(),
        masters_banner,
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

/// Every `LEAD_EVERY`: leadership moves to the next master, as after a failover. Each
/// master answers the leader checks the way the real ones do, so the three aliases of the
/// demo config (mesos, marathon, custom) can all point at the same three addresses.
async fn elections(masters: FakeMasters) {
    let addrs = masters.addrs().to_vec();
    loop {
        tokio::time::sleep(LEAD_EVERY).await;
        let from = masters.leader().unwrap_or(0);
        let to = (from + 1) % addrs.len();
        masters.set_leader(Some(to));
        println!(
            "[masters] leadership moves: master {} ({}) -> master {} ({})",
            from + 1,
            addrs[from],
            to + 1,
            addrs[to]
        );
    }
}

// === the simulated Marathon ===

/// The simulated scheduler's view of `/blog`: one app whose tasks are the `blog-N`
/// backends.
struct Blog {
    /// `blog-1`..`blog-3`: where a task in slot N listens.
    backends: Vec<SocketAddr>,
    /// Running tasks as (slot, task id), oldest first (the oldest is killed first, so the
    /// set keeps moving).
    running: Vec<(usize, String)>,
    /// Tasks launched so far; numbers the task ids, which Marathon never reuses.
    launches: u32,
    /// Scaling up (towards 3) or down (towards 1).
    growing: bool,
}

impl Blog {
    fn new(backends: Vec<SocketAddr>) -> Blog {
        Blog {
            backends,
            running: Vec::new(),
            launches: 0,
            growing: true,
        }
    }

    /// Starts a task in `slot`, with a fresh Marathon-style id.
    fn launch(&mut self, slot: usize) -> String {
        self.launches += 1;
        let id = marathon::task_id(BLOG_APP, self.launches);
        self.running.push((slot, id.clone()));
        id
    }

    /// One task more or one fewer: (slot, task id, the task's new status, what happened).
    fn step(&mut self) -> (usize, String, &'static str, &'static str) {
        match self.running.len() {
            0 | 1 => self.growing = true,
            n if n >= self.backends.len() => self.growing = false,
            _ => {}
        }
        if self.growing {
            let slot = (0..self.backends.len())
                .find(|s| self.running.iter().all(|(t, _)| t != s))
                .expect("a free slot while growing");
            (slot, self.launch(slot), "TASK_RUNNING", "started")
        } else {
            let (slot, id) = self.running.remove(0);
            (slot, id, "TASK_KILLED", "killed")
        }
    }

    /// The `/v2/apps` body: `/blog` on `blog.localhost`, in group `external`.
    fn apps(&self) -> Value {
        let tasks: Vec<FakeTask> = self
            .running
            .iter()
            .map(|(slot, id)| FakeTask::new(id, self.backends[*slot]))
            .collect();
        let labels = [
            ("HAPROXY_GROUP", "external"),
            ("HAPROXY_0_VHOST", BLOG_VHOST),
        ];
        marathon::apps_json(&[marathon::app(BLOG_APP, &labels, BLOG_SERVICE_PORT, &tasks)])
    }
}

/// Every `SCALE_EVERY`: one task more or one fewer, the snapshot first, then the
/// `status_update_event` (as Marathon does: a client that re-reads on the event sees the
/// new state).
async fn scheduler(marathon: FakeMarathon, mut blog: Blog) {
    loop {
        tokio::time::sleep(SCALE_EVERY).await;
        let (slot, id, status, verb) = blog.step();
        marathon.set_apps(blog.apps());
        let addr = blog.backends[slot];
        let host = addr.ip().to_string();
        marathon.push(marathon::status_update(
            BLOG_APP,
            &id,
            status,
            &host,
            addr.port(),
        ));
        println!(
            "[marathon] {BLOG_APP}: task blog-{} {verb} ({} running)",
            slot + 1,
            blog.running.len()
        );
    }
}
