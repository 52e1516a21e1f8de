//! The admin port on real sockets: health, readiness, the Prometheus text (checked by
//! `promtool`), and the `/debug/routes` JSON for vhosts, TCP ports and conflicts.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use serde_json::Value;

use crate::support::{self, app, eventually, free_port, get, Answer, Backend, Drover};

/// GET `path` on the admin port.
async fn admin(drover: &Drover, path: &str) -> Answer {
    get(drover.admin(), "admin.test", path).await
}

/// The current `/metrics` text.
async fn metrics(drover: &Drover) -> String {
    let a = admin(drover, "/metrics").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body
}

/// The current `/debug/routes` document.
async fn routes(drover: &Drover) -> Value {
    let a = admin(drover, "/debug/routes").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.header("content-type"), Some("application/json"));
    serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", a.body))
}

/// The element of the array `list` whose `key` equals `value`.
fn find<'a>(list: &'a Value, key: &str, value: &Value) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .find(|v| &v[key] == value)
        .unwrap_or_else(|| panic!("no {key} = {value} in {list:#}"))
}

fn addrs(backends: &Value) -> Vec<String> {
    backends
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {backends}"))
        .iter()
        .map(|b| b["addr"].as_str().expect("addr is a string").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_ok() {
    let drover = Drover::start("", "");
    let a = admin(&drover, "/healthz").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_200_once_the_first_table_is_stored() {
    let drover = Drover::start("", "");
    drover.ready().await;
    let a = admin(&drover, "/readyz").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body, "ready\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_stays_503_while_the_catalog_file_is_broken() {
    let drover = Drover::start("", "[[app]\nid = \"/web\"\nthis is not TOML\n");
    // The refused read is counted; after that nothing else can make a table appear.
    let wanted = r#"drover_discovery_syncs_total{result="error",source="file"} 1"#;
    let m = eventually("the refused catalog read in /metrics", || async {
        let m = metrics(&drover).await;
        m.contains(wanted).then_some(m)
    })
    .await;
    assert!(
        !m.contains(r#"drover_discovery_syncs_total{result="ok""#),
        "{m}"
    );
    let a = admin(&drover, "/readyz").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert!(a.body.starts_with("not ready"), "{}", a.body);
    assert!(!drover.server().view().routes.is_ready());
    // Alive, though not ready.
    assert_eq!(admin(&drover, "/healthz").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_get_404_and_other_methods_405() {
    let drover = Drover::start("", "");
    let a = admin(&drover, "/nope").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(
        a.body.contains("/metrics") && a.body.contains("/debug/routes"),
        "{}",
        a.body
    );

    let post = Request::post(format!("http://{}/metrics", drover.admin()))
        .body(Full::new(Bytes::from_static(b"x")))
        .expect("request");
    let a = support::send(post).await.expect("answered");
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.header("allow"), Some("GET, HEAD"));

    let head = Request::head(format!("http://{}/healthz", drover.admin()))
        .body(Full::default())
        .expect("request");
    let a = support::send(head).await.expect("answered");
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "");
}

/// A catalog with an HTTP vhost, a TCP service port in `[tcp] ports`, and two apps that
/// claim one vhost. Returns the Drover, the web backend's address and the TCP port.
fn routed_drover() -> (Drover, SocketAddr, u16) {
    let web_backend: SocketAddr = "127.0.0.1:18081".parse().expect("addr");
    let tcp_port = free_port();
    let mut catalog = app("/web", "web.example.com", 10001, &[web_backend]);
    catalog += &app("/dup/a", "dup.example.com", 10002, &[]);
    catalog += &app("/dup/b", "dup.example.com", 10003, &[]);
    catalog += &app(
        "/db",
        "",
        tcp_port,
        &["127.0.0.1:15432".parse().expect("addr")],
    );
    let extra = format!("[tcp]\nbind = \"127.0.0.1\"\nports = \"{tcp_port}-{tcp_port}\"\n");
    (Drover::start(&extra, &catalog), web_backend, tcp_port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_routes_lists_vhosts_ports_and_conflicts() {
    let (drover, web_backend, tcp_port) = routed_drover();
    drover.ready().await;
    let doc = routes(&drover).await;
    assert_eq!(doc["version"].as_u64(), Some(drover.version()), "{doc:#}");
    assert_eq!(doc["ready"], true);

    // The vhost, its one path route and its backend.
    let web = find(&doc["vhosts"], "host", &"web.example.com".into());
    let path = &web["paths"][0];
    assert_eq!(path["route"], "web_10001", "{web:#}");
    assert_eq!(path["app_id"], "/web");
    assert_eq!(path["mode"], "http");
    assert_eq!(path["path"], Value::Null);
    assert_eq!(addrs(&path["backends"]), [web_backend.to_string()]);
    assert_eq!(path["backends"][0]["state"], "up");
    assert_eq!(path["backends"][0]["in_flight"], 0);
    assert_eq!(path["backends"][0]["failures"], 0);

    // The TCP service port, listened on; the HTTP ones (outside [tcp] ports) are not.
    let listen = format!("127.0.0.1:{tcp_port}");
    let port = find(&doc["ports"], "port", &tcp_port.into());
    assert_eq!(port["route"], format!("db_{tcp_port}"), "{port:#}");
    assert_eq!(port["mode"], "tcp");
    assert_eq!(port["listen"], listen.as_str());
    assert_eq!(addrs(&port["backends"]), ["127.0.0.1:15432"]);
    assert_eq!(doc["ports"].as_array().map(Vec::len), Some(1), "{doc:#}");

    let db = find(&doc["routes"], "name", &format!("db_{tcp_port}").into());
    assert_eq!(db["app_id"], "/db");
    assert_eq!(db["index"], 0);
    assert_eq!(db["port"], tcp_port);
    assert_eq!(db["mode"], "tcp");
    assert_eq!(db["balance"], "roundrobin");
    assert_eq!(db["listen"], listen.as_str());
    assert_eq!(db["vhosts"], serde_json::json!([]));
    let web = find(&doc["routes"], "name", &"web_10001".into());
    assert_eq!(web["listen"], Value::Null, "{web:#}");
    assert_eq!(web["vhosts"], serde_json::json!(["web.example.com"]));
    assert_eq!(web["path"], Value::Null);
    assert_eq!(doc["routes"].as_array().map(Vec::len), Some(4), "{doc:#}");

    // One conflict for the shared vhost, naming both claimants.
    let conflicts = doc["conflicts"].as_array().expect("conflicts");
    assert_eq!(conflicts.len(), 1, "{doc:#}");
    let c = &conflicts[0];
    assert_eq!(c["claim"], "vhost dup.example.com");
    assert_eq!(c["kind"], "vhost");
    assert_eq!(c["kept"], "dup_a_10002");
    assert_eq!(c["refused"], serde_json::json!(["dup_b_10003"]));
    let message = c["message"].as_str().expect("message");
    assert!(
        message.contains("dup_a_10002") && message.contains("dup_b_10003"),
        "{message}"
    );
    // The kept claimant serves the vhost.
    let dup = find(&doc["vhosts"], "host", &"dup.example.com".into());
    assert_eq!(dup["paths"][0]["route"], "dup_a_10002");
    assert_eq!(dup["paths"].as_array().map(Vec::len), Some(1));
    assert_eq!(doc["problems"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_routes_shows_the_tcp_listener_state() {
    let (drover, _, tcp_port) = routed_drover();
    drover.ready().await;
    let listen = format!("127.0.0.1:{tcp_port}");
    eventually("the service-port listener in /debug/routes", || async {
        let doc = routes(&drover).await;
        let open = doc["tcp_listeners"].as_array().is_some_and(|l| {
            l.iter()
                .any(|e| e["addr"] == listen.as_str() && e["state"] == "open")
        });
        open.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_routes_lists_app_problems() {
    let catalog = "[[app]]\nid = \"/bad\"\nlabels = { HAPROXY_0_BALANCE = \"fastest\" }\n\
                   ports = [10001]\n\n"
        .to_string()
        + &app("/good", "good.example.com", 10002, &[]);
    let drover = Drover::start("", &catalog);
    drover.ready().await;
    let doc = routes(&drover).await;
    let p = find(&doc["problems"], "app_id", &"/bad".into());
    assert!(
        p["message"]
            .as_str()
            .is_some_and(|m| m.contains("HAPROXY_0_BALANCE")),
        "{p:#}"
    );
    find(&doc["routes"], "name", &"good_10002".into());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_build_info_table_version_and_backends() {
    let (drover, _, _) = routed_drover();
    drover.ready().await;
    let a = admin(&drover, "/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let m = a.body;
    let build = format!(
        "drover_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(m.contains(&build), "{m}");
    let version = format!("drover_route_table_version {}", drover.version());
    assert!(m.contains(&version), "{m}");
    assert!(
        m.contains(r#"drover_backends{route="web_10001",state="up"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"drover_backends{route="dup_a_10002",state="up"} 0"#),
        "{m}"
    );
    assert!(m.contains("drover_route_conflicts 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_http_requests_per_route() {
    let backend = Backend::start("web").await;
    let port = 10001;
    let drover = Drover::start("", &app("/web", "web.example.com", port, &[backend.addr]));
    drover.ready().await;
    for _ in 0..3 {
        let a = get(drover.http(), "web.example.com", "/").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.body, "web");
    }
    let wanted = format!("drover_http_requests_total{{code=\"200\",route=\"web_{port}\"}} 3");
    eventually("three requests counted in /metrics", || async {
        metrics(&drover).await.contains(&wanted).then_some(())
    })
    .await;
    assert_eq!(backend.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics_text() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let (drover, _, _) = routed_drover();
    drover.ready().await;
    // Some traffic first, so the per-route counters and the histogram are in the text too
    // (nothing listens behind web.example.com: a 502 and an upstream error).
    get(drover.http(), "web.example.com", "/").await;
    get(drover.http(), "unknown.example.com", "/").await;
    let text = eventually("request metrics in /metrics", || async {
        let m = metrics(&drover).await;
        m.contains("drover_http_request_duration_seconds_bucket")
            .then_some(m)
    })
    .await;

    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not on PATH: install the Debian package `prometheus` \
             (apt-get install prometheus); CI does this in .ci/run"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("write the metrics to promtool");
    let out = child.wait_with_output().expect("promtool finishes");
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- metrics ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}
