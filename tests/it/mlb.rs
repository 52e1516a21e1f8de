//! marathon-lb's admin endpoints on real sockets: the health check through a drain, the
//! vhost and app maps of a catalog, the effective config as TOML, and the signal endpoints
//! making Marathon and Mesos read again at once.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::support::marathon::{self, FakeMarathon, FakeTask};
use crate::support::{self, eventually, free_port, get, Answer, Drover, DEADLINE};

/// `method path` on the admin port, on a connection of its own.
async fn admin(drover: &Drover, method: Method, path: &str) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", drover.admin()))
        .body(Full::<Bytes>::default())
        .expect("request");
    support::send(req).await.expect("answered")
}

/// A backend that takes one request and answers it only when the returned sender fires
/// (or is dropped); the first receiver resolves once the request has arrived.
async fn held_backend() -> (SocketAddr, oneshot::Receiver<()>, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (arrived_tx, arrived) = oneshot::channel();
    let (release, released) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        // A GET without a body: the head ends the request.
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = arrived_tx.send(());
        let _ = released.await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nheld")
            .await;
    });
    (addr, arrived, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_is_200_while_serving_and_503_while_draining() {
    let (backend, arrived, release) = held_backend().await;
    let drover = Drover::start(
        "",
        &support::app("/web", "web.example.com", 10001, &[backend]),
    );
    drover.ready().await;
    let a = admin(&drover, Method::GET, "/_haproxy_health_check").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body, "ok\n");
    assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
    let head = admin(&drover, Method::HEAD, "/_haproxy_health_check").await;
    assert_eq!((head.status, head.body.as_str()), (StatusCode::OK, ""));

    // A request in flight keeps the drain going while the health check is asked.
    let http = drover.http();
    let in_flight = tokio::spawn(async move { get(http, "web.example.com", "/").await });
    tokio::time::timeout(DEADLINE, arrived)
        .await
        .expect("the request reaches the backend in time")
        .expect("backend alive");
    drover.server().shutdown();
    let a = admin(&drover, Method::GET, "/_haproxy_health_check").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert_eq!(a.body, "draining\n");
    // /readyz agrees, on the same listener.
    let a = admin(&drover, Method::GET, "/readyz").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);

    let _ = release.send(());
    let answer = tokio::time::timeout(DEADLINE, in_flight)
        .await
        .expect("the held request finishes in time")
        .expect("join");
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "held")
    );
    assert!(
        drover.stop().await,
        "the drain finished before its deadline"
    );
}

/// Vhosts routed whole, a vhost on two names, a path route on a shared vhost, a second
/// http port, a TCP-only app, and an alias.
const MAPPED: &str = r#"
[[app]]
id = "/web"
labels = { HAPROXY_0_VHOST = "web.example.com" }
ports = [10001]
tasks = [{ host = "127.0.0.1", ports = [31001] }]

[[app]]
id = "/shop/api"
labels = { HAPROXY_0_VHOST = "Shop.Example.com, api.example.com", HAPROXY_1_MODE = "http" }
ports = [10002, 10003]
tasks = [{ host = "127.0.0.1", ports = [31002, 31003] }]

[[app]]
id = "/web-api"
labels = { HAPROXY_0_VHOST = "web.example.com", HAPROXY_0_PATH = "/api" }
ports = [10004]
tasks = [{ host = "127.0.0.1", ports = [31004] }]

[[app]]
id = "/db"
ports = [10005]
tasks = [{ host = "127.0.0.1", ports = [31005] }]
"#;

const ALIAS: &str =
    "[[alias]]\nhost = \"mesos.example.com\"\nbackends = [\"127.0.0.1:9\"]\ncheck = \"mesos\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maps_list_every_vhost_and_app_with_its_backend() {
    let drover = Drover::start(ALIAS, MAPPED);
    drover.ready().await;

    let a = admin(&drover, Method::GET, "/_haproxy_getvhostmap").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
    // By host; the /api path route of web.example.com is not a map line (as in marathon-lb).
    assert_eq!(
        a.body,
        "api.example.com shop_api_10002\n\
         mesos.example.com alias:mesos.example.com\n\
         shop.example.com shop_api_10002\n\
         web.example.com web_10001\n"
    );

    let a = admin(&drover, Method::GET, "/_haproxy_getappmap").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    // By app id; each app's first http port; /db is TCP only.
    assert_eq!(
        a.body,
        "/shop/api shop_api_10002\n/web web_10001\n/web-api web-api_10004\n"
    );

    let head = admin(&drover, Method::HEAD, "/_haproxy_getappmap").await;
    assert_eq!((head.status, head.body.as_str()), (StatusCode::OK, ""));
    let post = admin(&drover, Method::POST, "/_haproxy_getvhostmap").await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    let a = admin(&drover, Method::GET, "/_haproxy_nothing").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.body.contains("/_haproxy_getvhostmap"), "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn getconfig_is_the_effective_config_as_toml_with_secret_paths_redacted() {
    // Sources that cannot be reached: only their config matters here.
    let extra = "[marathon]\nurls = [\"http://127.0.0.1:9\"]\nuser = \"drover\"\n\
                 password_file = \"private/marathon.pass\"\n\n\
                 [mesos]\nmasters = [\"http://127.0.0.1:9\"]\npoll = \"1h\"\n\
                 principal = \"drover\"\nsecret_file = \"private/mesos.secret\"\n";
    let drover = Drover::start(extra, "");
    let a = admin(&drover, Method::GET, "/_haproxy_getconfig").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
    let toml: toml::Table = a
        .body
        .parse()
        .unwrap_or_else(|e| panic!("not TOML ({e}):\n{}", a.body));
    // Defaults nobody set, and paths resolved from the config file's directory.
    assert_eq!(
        toml["http"]["header_timeout"].as_str(),
        Some("10s"),
        "{}",
        a.body
    );
    assert_eq!(
        toml["marathon"]["resync"].as_str(),
        Some("5m"),
        "{}",
        a.body
    );
    let catalog = drover.path("catalog.toml");
    assert_eq!(toml["catalog"]["file"].as_str(), catalog.to_str());
    // The secret files' paths are not shown; who authenticates is.
    assert_eq!(
        toml["marathon"]["password_file"].as_str(),
        Some("<redacted>")
    );
    assert_eq!(toml["mesos"]["secret_file"].as_str(), Some("<redacted>"));
    assert_eq!(toml["mesos"]["principal"].as_str(), Some("drover"));
    for secret in ["private", "marathon.pass", "mesos.secret"] {
        assert!(!a.body.contains(secret), "{secret} shown:\n{}", a.body);
    }
    // And it is a config Drover takes.
    let back = drover::config::Config::parse(&a.body, std::path::Path::new("/"))
        .unwrap_or_else(|p| panic!("{p:?}\n{}", a.body));
    assert_eq!(back.runtime.workers, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_make_marathon_read_again_at_once() {
    let fake = FakeMarathon::start().await;
    let (a, b, c) = (
        "127.0.0.1:31001".parse().expect("addr"),
        "127.0.0.1:31002".parse().expect("addr"),
        "127.0.0.1:31003".parse().expect("addr"),
    );
    let web = |addr: SocketAddr, n: u32| {
        marathon::apps_json(&[marathon::app(
            "/web",
            &[("HAPROXY_0_VHOST", "web.example.com")],
            10001,
            &[FakeTask::new(&marathon::task_id("/web", n), addr)],
        )])
    };
    fake.set_apps(web(a, 1));
    // Nothing but a signal reads again within the test: no resync, and no event stream (it
    // is sent to a closed port), so neither events nor the read that follows a stream's
    // opening.
    fake.redirect_events_to(Some(format!("http://127.0.0.1:{}", free_port())));
    let drover = Drover::start(
        &format!(
            "[marathon]\nurls = [\"{}\"]\ngroups = [\"*\"]\nresync = \"1h\"\n",
            fake.url()
        ),
        "",
    );
    pool_becomes(&drover, &[a]).await;

    for (signal, method, next, n) in [("hup", Method::GET, b, 2), ("usr1", Method::POST, c, 3)] {
        fake.set_apps(web(next, n));
        let reads = fake.apps_queries().len();
        let path = format!("/_mlb_signal/{signal}");
        let answer = admin(&drover, method, &path).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        pool_becomes(&drover, &[next]).await;
        assert!(fake.apps_queries().len() > reads, "{signal}: read again");
    }

    let head = admin(&drover, Method::HEAD, "/_mlb_signal/hup").await;
    assert_eq!(head.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(head.header("allow"), Some("GET, POST"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_polls_mesos_at_once() {
    let masters = crate::support::mesos::start(1, Some(0)).await;
    let drover = Drover::start(
        &format!(
            "[mesos]\nmasters = {}\npoll = \"1h\"\n",
            masters.masters_toml()
        ),
        "",
    );
    // `/master/state` is a check path to the fake: counted as a probe. No alias probes.
    eventually("the first poll", || {
        let n = masters.probes(0);
        async move { (n >= 1).then_some(()) }
    })
    .await;
    let before = masters.probes(0);
    let a = admin(&drover, Method::GET, "/_mlb_signal/hup").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    eventually("a poll after the signal", || {
        let n = masters.probes(0);
        async move { (n > before).then_some(()) }
    })
    .await;
}

/// Waits until route `web_10001` has exactly `want` as backends.
async fn pool_becomes(drover: &Drover, want: &[SocketAddr]) {
    let routes = drover.server().view().routes.clone();
    eventually(&format!("web_10001 to be {want:?}"), || {
        let table = routes.load();
        let now: Vec<SocketAddr> = table
            .routes
            .iter()
            .filter(|r| r.name == "web_10001")
            .flat_map(|r| r.pool.backends().iter().map(|b| b.addr))
            .collect();
        let done = now == want;
        async move { done.then_some(()) }
    })
    .await
}
