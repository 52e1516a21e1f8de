//! Self-tests of the fake Marathon (`drover::sim::marathon`, through `support::marathon`):
//! the JSON and headers it serves, leader and standby answers, the SSE stream and each
//! failure mode, checked with a plain hyper client so the Drover tests can trust what the
//! fake says it does.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use crate::support::marathon::{self, FakeMarathon, FakeTask};
use crate::support::{send, Answer, DEADLINE};

/// How long a silent stream must stay silent to count as silent. Absence can only be shown
/// by waiting; this bounds the wait.
const QUIET: Duration = Duration::from_millis(150);

async fn get(fake: &FakeMarathon, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::get(format!("{}{path}", fake.url()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::default()).expect("request"))
        .await
        .expect("answered")
}

/// Opens `/v2/events?query` as an SSE client and returns the response head and body.
async fn open_events(fake: &FakeMarathon, query: &str) -> (hyper::http::response::Parts, Incoming) {
    let req = Request::get(format!("{}/v2/events?{query}", fake.url()))
        .header("accept", "text/event-stream")
        .body(Full::<Bytes>::default())
        .expect("request");
    let resp = tokio::time::timeout(DEADLINE, crate::support::client().request(req))
        .await
        .expect("stream head in time")
        .expect("stream opens");
    resp.into_parts()
}

/// Reads body chunks into `buf` until it contains `needle`.
async fn read_until(body: &mut Incoming, buf: &mut String, needle: &str) {
    let read = async {
        while !buf.contains(needle) {
            let frame = body
                .frame()
                .await
                .expect("stream still open")
                .expect("frame");
            if let Ok(data) = frame.into_data() {
                buf.push_str(std::str::from_utf8(&data).expect("utf-8"));
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .unwrap_or_else(|_| panic!("no {needle:?} on the stream; got {buf:?}"));
}

/// Whether the stream sends nothing (and stays open) for `QUIET`.
async fn stays_silent(body: &mut Incoming) -> bool {
    tokio::time::timeout(QUIET, body.frame()).await.is_err()
}

fn web_app(fake_port: u16) -> Value {
    let tasks = [
        FakeTask::new(
            &marathon::task_id("/web", 1),
            ([127, 0, 0, 1], fake_port).into(),
        )
        .alive(true),
        FakeTask::new(
            &marathon::task_id("/web", 2),
            ([127, 0, 0, 2], fake_port).into(),
        )
        .state("TASK_STAGING"),
    ];
    marathon::app(
        "/web",
        &[
            ("HAPROXY_GROUP", "external"),
            ("HAPROXY_0_VHOST", "web.example.com"),
        ],
        10001,
        &tasks,
    )
}

#[tokio::test]
async fn serves_apps_json_as_the_leader() {
    let fake = FakeMarathon::start().await;
    fake.set_apps(marathon::apps_json(&[web_app(31001)]));

    let a = get(&fake, "/v2/apps?embed=apps.tasks&embed=apps.readiness", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.header("x-marathon-leader"), Some(fake.url().as_str()));
    assert_eq!(a.header("x-marathon-via"), None);
    let v: Value = serde_json::from_str(&a.body).expect("JSON");
    let app = &v["apps"][0];
    assert_eq!(app["id"], "/web");
    assert_eq!(app["portDefinitions"][0]["port"], 10001);
    assert_eq!(app["labels"]["HAPROXY_0_VHOST"], "web.example.com");
    assert_eq!(app["healthChecks"][0]["protocol"], "TCP");
    let t = &app["tasks"][0];
    assert_eq!(t["host"], "127.0.0.1");
    assert_eq!(t["ports"], json!([31001]));
    assert_eq!(t["state"], "TASK_RUNNING");
    assert_eq!(t["healthCheckResults"][0]["alive"], true);
    assert_eq!(
        t["healthCheckResults"][0]["instanceId"],
        "web.marathon-0a000000-0000-0000-0000-000000000001"
    );
    assert!(t.get("startedAt").is_some());
    let staging = &app["tasks"][1];
    assert!(staging.get("startedAt").is_none());
    assert!(staging.get("healthCheckResults").is_none());

    // Without embed=apps.tasks Marathon leaves the tasks out.
    let bare = get(&fake, "/v2/apps", &[]).await;
    let v: Value = serde_json::from_str(&bare.body).expect("JSON");
    assert!(v["apps"][0].get("tasks").is_none());

    assert_eq!(
        fake.apps_queries(),
        ["embed=apps.tasks&embed=apps.readiness", ""]
    );
    assert_eq!(
        fake.requests(),
        [
            "GET /v2/apps?embed=apps.tasks&embed=apps.readiness",
            "GET /v2/apps"
        ]
    );
}

/// Reads with tasks are answered from bytes encoded when the apps are set: after
/// `set_app` (a change and an addition) and `remove_app`, the list and each app read alone
/// still say what the JSON says, with a `Content-Length` as Marathon sends.
#[tokio::test]
async fn encoded_answers_follow_every_change() {
    let fake = FakeMarathon::start().await;
    let other = |id: &str, port: u16| {
        let task = FakeTask::new(&marathon::task_id(id, 1), ([127, 0, 0, 3], port).into());
        marathon::app(id, &[("HAPROXY_GROUP", "external")], 10002, &[task])
    };
    fake.set_apps(marathon::apps_json(&[web_app(31001), other("/api", 31002)]));
    fake.set_app(web_app(31009));
    fake.set_app(other("/db", 31003));
    fake.remove_app("/api");
    fake.set_app(other("/db", 31004));

    let expected = fake.apps().expect("a JSON list");
    let ids: Vec<&str> = expected["apps"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["/web", "/db"]);
    let whole = get(&fake, "/v2/apps?embed=apps.tasks", &[]).await;
    assert_eq!(
        whole.header("content-length"),
        Some(whole.body.len().to_string().as_str())
    );
    let v: Value = serde_json::from_str(&whole.body).expect("JSON");
    assert_eq!(v, expected);
    assert_eq!(v["apps"][1]["tasks"][0]["ports"], json!([31004]));

    let one = get(&fake, "/v2/apps/web?embed=app.tasks", &[]).await;
    let v: Value = serde_json::from_str(&one.body).expect("JSON");
    assert_eq!(v["app"], expected["apps"][0]);
    assert_eq!(v["app"]["tasks"][0]["ports"], json!([31009]));
    let bare = get(&fake, "/v2/apps/db", &[]).await;
    let v: Value = serde_json::from_str(&bare.body).expect("JSON");
    assert_eq!(v["app"]["id"], "/db");
    assert!(v["app"].get("tasks").is_none());
    let gone = get(&fake, "/v2/apps/api?embed=app.tasks", &[]).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn raw_and_empty_apps_bodies() {
    let fake = FakeMarathon::start().await;
    assert_eq!(get(&fake, "/v2/apps", &[]).await.body, r#"{"apps":[]}"#);
    fake.set_apps_body_raw(b"{\"apps\": [ {\"id\": ");
    let a = get(&fake, "/v2/apps?embed=apps.tasks", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.body, "{\"apps\": [ {\"id\": ");
    assert_eq!(fake.apps(), None);
}

#[tokio::test]
async fn leader_standby_and_leaderless_answers() {
    let fake = FakeMarathon::start().await;
    let own = fake.addr().to_string();

    let ping = get(&fake, "/ping", &[]).await;
    assert_eq!(
        (ping.status, ping.body.as_str()),
        (StatusCode::OK, "pong\n")
    );
    assert_eq!(ping.header("x-marathon-leader"), Some(fake.url().as_str()));
    assert_eq!(ping.header("x-marathon-via"), None);
    let leader = get(&fake, "/v2/leader", &[]).await;
    assert_eq!(
        serde_json::from_str::<Value>(&leader.body).unwrap(),
        json!({ "leader": own })
    );

    fake.set_standby(Some("http://127.0.0.1:1".into()));
    for path in ["/ping", "/v2/apps"] {
        let a = get(&fake, path, &[]).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(
            a.header("x-marathon-via"),
            Some(format!("1.1 {own}").as_str())
        );
        assert_eq!(a.header("x-marathon-leader"), Some("http://127.0.0.1:1"));
    }
    let leader = get(&fake, "/v2/leader", &[]).await;
    assert_eq!(
        serde_json::from_str::<Value>(&leader.body).unwrap(),
        json!({ "leader": "127.0.0.1:1" })
    );

    fake.set_leaderless(true);
    let none = get(&fake, "/v2/leader", &[]).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<Value>(&none.body).unwrap(),
        json!({ "message": "There is no leader" })
    );
    let apps = get(&fake, "/v2/apps", &[]).await;
    assert_eq!(apps.status, StatusCode::BAD_GATEWAY);
    assert_eq!(apps.header("x-marathon-leader"), None);

    fake.set_leaderless(false);
    fake.set_standby(None);
    let ping = get(&fake, "/ping", &[]).await;
    assert_eq!(ping.header("x-marathon-via"), None);
    assert_eq!(ping.header("x-marathon-leader"), Some(fake.url().as_str()));
}

#[tokio::test]
async fn sse_frames_arrive_in_order_and_crlf_framed() {
    let fake = FakeMarathon::start().await;
    let (head, mut body) = open_events(
        &fake,
        "event_type=status_update_event&event_type=health_status_changed_event",
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["content-type"], "text/event-stream");
    assert_eq!(head.headers["transfer-encoding"], "chunked");
    assert_eq!(head.headers["x-marathon-leader"], fake.url().as_str());
    assert_eq!(fake.subscriptions(), 1);
    assert_eq!(
        fake.event_filters(),
        [["status_update_event", "health_status_changed_event"]]
    );

    let mut buf = String::new();
    read_until(&mut body, &mut buf, "\r\n\r\n").await;
    assert!(
        buf.starts_with("event: event_stream_attached\r\ndata: {"),
        "{buf:?}"
    );
    buf.clear();

    let task = marathon::task_id("/web", 3);
    let up = marathon::status_update("/web", &task, "TASK_RUNNING", "127.0.0.3", 31003);
    let sick = marathon::health_status_changed("/web", &task, false);
    let down = marathon::status_update("/web", &task, "TASK_KILLED", "127.0.0.3", 31003);
    fake.push(up.clone());
    // Not asked for, so the server-side filter drops it, as Marathon does.
    fake.push(marathon::app_terminated("/web"));
    fake.push(sick.clone());
    fake.push_event("status_update_event", down.clone());
    let expected = format!(
        "event: status_update_event\r\ndata: {up}\r\n\r\n\
         event: health_status_changed_event\r\ndata: {sick}\r\n\r\n\
         event: status_update_event\r\ndata: {down}\r\n\r\n"
    );
    read_until(&mut body, &mut buf, "TASK_KILLED").await;
    read_until(&mut body, &mut buf, "\r\n\r\n").await;
    while buf.len() < expected.len() {
        read_until(&mut body, &mut buf, "\r\n\r\n").await;
    }
    assert_eq!(buf, expected);
    assert_eq!(up["ports"], json!([31003]));
    assert_eq!(
        sick["instanceId"],
        "web.marathon-0a000000-0000-0000-0000-000000000003"
    );
}

#[tokio::test]
async fn raw_bytes_and_keepalives_pass_through() {
    let fake = FakeMarathon::start().await;
    let (_, mut body) = open_events(&fake, "").await;
    let mut buf = String::new();
    read_until(&mut body, &mut buf, "event_stream_attached").await;
    read_until(&mut body, &mut buf, "\r\n\r\n").await;
    buf.clear();

    // The captured stream, as Marathon framed it, in one chunk.
    let capture = marathon::fixture_text("api/own/events_stream_crlf.txt");
    fake.push_raw(capture.as_bytes());
    read_until(&mut body, &mut buf, "pod_created_event").await;
    while buf.len() < capture.len() {
        read_until(&mut body, &mut buf, "\r\n").await;
    }
    assert_eq!(buf, capture);
    buf.clear();

    fake.set_keepalive(Some(Duration::from_millis(10)));
    read_until(&mut body, &mut buf, "\r\n\r\n").await;
    assert!(buf.chars().all(|c| c == '\r' || c == '\n'), "{buf:?}");
}

#[tokio::test]
async fn events_need_the_sse_accept_header() {
    let fake = FakeMarathon::start().await;
    let a = get(&fake, "/v2/events", &[]).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(fake.subscriptions(), 0);
}

#[tokio::test]
async fn standby_redirects_events_keeping_the_query() {
    let leader = FakeMarathon::start().await;
    let standby = FakeMarathon::start().await;
    standby.set_standby(Some(leader.url()));
    standby.redirect_events_to(Some(leader.url()));

    let query = "event_type=status_update_event&plan-format=light";
    let a = get(
        &standby,
        &format!("/v2/events?{query}"),
        &[("accept", "text/event-stream")],
    )
    .await;
    assert_eq!(a.status, StatusCode::FOUND);
    let location = format!("{}/v2/events?{query}", leader.url());
    assert_eq!(a.header("location"), Some(location.as_str()));
    assert_eq!(standby.subscriptions(), 0);

    // Following it lands on a real stream at the leader.
    let (head, mut body) = open_events(&leader, query).await;
    assert_eq!(head.status, StatusCode::OK);
    let mut buf = String::new();
    read_until(&mut body, &mut buf, "event_stream_attached").await;
    assert_eq!(leader.event_filters(), [["status_update_event"]]);
}

#[tokio::test]
async fn basic_auth_is_enforced() {
    let fake = FakeMarathon::start().await;
    fake.require_basic_auth("drover", "s3cret");

    let none = get(&fake, "/v2/apps", &[]).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Basic realm=\"Marathon\"")
    );
    let wrong = marathon::basic_auth("drover", "nope");
    let bad = get(&fake, "/v2/apps", &[("authorization", &wrong)]).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);

    // base64("drover:s3cret"), written out so the check does not lean on `basic_auth`.
    let right = "Basic ZHJvdmVyOnMzY3JldA==";
    let ok = get(&fake, "/v2/apps", &[("authorization", right)]).await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test]
async fn stalled_streams_go_silent_and_close_ends_them() {
    let fake = FakeMarathon::start().await;
    fake.set_keepalive(Some(Duration::from_millis(10)));
    let (_, mut open) = open_events(&fake, "").await;
    let mut buf = String::new();
    read_until(&mut open, &mut buf, "event_stream_attached").await;

    fake.stall_stream();
    // Drain what was queued before the stall, then nothing more may come.
    while !stays_silent(&mut open).await {}
    fake.push(marathon::deployment_success("d1"));
    assert!(stays_silent(&mut open).await);

    // A stream opened while stalled gets its head and no bytes at all.
    let (head, mut late) = open_events(&fake, "").await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(stays_silent(&mut late).await);
    assert_eq!((fake.subscriptions(), fake.open_streams()), (2, 2));

    // Once resumed, new streams talk again while the stalled ones stay silent.
    fake.resume_streams();
    let (_, mut fresh) = open_events(&fake, "").await;
    let mut fresh_buf = String::new();
    read_until(&mut fresh, &mut fresh_buf, "event_stream_attached").await;

    fake.close_streams();
    for body in [&mut open, &mut late, &mut fresh] {
        let end = async {
            while let Some(frame) = body.frame().await {
                frame.expect("clean end");
            }
        };
        tokio::time::timeout(DEADLINE, end)
            .await
            .expect("stream ends");
    }
    assert_eq!(fake.open_streams(), 0);
}

#[tokio::test]
async fn down_refuses_then_recovers() {
    let fake = FakeMarathon::start().await;
    let (_, mut stream) = open_events(&fake, "").await;
    fake.set_down(true);

    let req = || {
        Request::get(format!("{}/v2/apps", fake.url()))
            .body(Full::default())
            .expect("request")
    };
    assert!(
        send(req()).await.is_err(),
        "a down Marathon answers nothing"
    );
    let end = async { while let Some(Ok(_)) = stream.frame().await {} };
    tokio::time::timeout(DEADLINE, end)
        .await
        .expect("open streams end when down");

    fake.set_down(false);
    assert_eq!(send(req()).await.expect("up again").status, StatusCode::OK);
}

#[tokio::test]
async fn dropping_the_fake_stops_everything() {
    let fake = FakeMarathon::start().await;
    let addr = fake.addr();
    let (_, mut stream) = open_events(&fake, "").await;
    drop(fake);

    let end = async { while let Some(Ok(_)) = stream.frame().await {} };
    tokio::time::timeout(DEADLINE, end)
        .await
        .expect("the stream ends");
    crate::support::eventually("the listener to close", || async move {
        tokio::net::TcpStream::connect(addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
}

#[test]
fn fixtures_load_with_loopback_hosts_only() {
    for rel in [
        "own/apps_vhost_routing.json",
        "own/apps_task_states.json",
        "own/apps_ip_per_task.json",
        "own/apps_groups.json",
        "own/apps_strict_mode.json",
        "upstream-marathon-lb/tests/marathon15_apps.json",
        "upstream-marathon-lb/tests/zdd_apps.json",
        "upstream-marathon-lb/tests/zdd_app_blue.json",
        "upstream-marathon-lb/tests/zdd_app_blue_marathon1.5.json",
    ] {
        let v = marathon::load_fixture(rel);
        for app in v["apps"].as_array().expect("apps") {
            for t in app["tasks"].as_array().into_iter().flatten() {
                let host = t["host"].as_str().expect("host");
                assert!(host.is_empty() || host.starts_with("127."), "{rel}: {host}");
                for ip in t["ipAddresses"].as_array().into_iter().flatten() {
                    let ip = ip["ipAddress"].as_str().expect("ipAddress");
                    assert!(ip.starts_with("127."), "{rel}: {ip}");
                }
            }
        }
        // Distinct addresses stay distinct, so every backend keeps its identity.
        let map = marathon::fixture_addresses(rel);
        let mut after: Vec<&String> = map.values().collect();
        after.sort();
        after.dedup();
        assert_eq!(after.len(), map.len(), "{rel}: {map:?}");
    }

    let v = marathon::load_fixture("own/apps_vhost_routing.json");
    let redis = v["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "/redis")
        .expect("/redis");
    assert_eq!(redis["labels"]["HAPROXY_0_BIND_ADDR"], "127.0.0.5");
    assert_eq!(redis["tasks"][0]["host"], "127.0.2.31");
    assert_eq!(marathon::to_loopback("198.51.100.7"), "127.51.100.7");
}
