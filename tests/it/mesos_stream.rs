//! The Mesos operator API stream end to end: fake masters serving `POST /api/v1`
//! `SUBSCRIBE` (RecordIO, heartbeats, 307 from followers, leadership moves that close the
//! stream), Drover subscribed with `poll` far longer than any test, and DNS checked over UDP
//! with a real client. Every change here reaches DNS through the stream alone.

use std::time::Duration;

use serde_json::Value;

use drover::sim::masters::FakeMasters;

use crate::support::{self, eventually, Drover};

const MARATHON: &str = "5e1ad2a1-3c6b-4f0e-8d1e-3b4a7c0e2f10-0000";
const WEB_1: &str = "shop_web.6f1c6f0e-1b0e-11ef-9a3b-0242ac110002";

/// A task change must reach DNS within this (the bound).
const EVENT_TO_DNS: Duration = Duration::from_secs(1);

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/mesos/operator-api/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// `n` masters with the operator API on 127.0.0.`i+1`, serving the fixture's cluster.
async fn masters(n: usize, leader: Option<usize>) -> FakeMasters {
    FakeMasters::builder(n, leader)
        .own_ips()
        .operator_api(
            fixture("subscribed.json"),
            &[(MARATHON, "scheduler-1@127.0.0.21:40001")],
        )
        .start()
        .await
}

/// Drover on `masters`, resyncing only every `poll`.
fn drover(masters: &FakeMasters, poll: &str) -> Drover {
    Drover::start(
        &format!(
            "[mesos]\nmasters = {}\npoll = \"{poll}\"\n\n[dns]\nlisten = \"127.0.0.1:0\"\ndomain = \"mesos\"\n",
            masters.masters_toml()
        ),
        "",
    )
}

/// The A addresses of `name` in Drover's DNS over UDP, sorted.
async fn a(d: &Drover, name: &str) -> Vec<String> {
    support::dns::drover_a(d, name).await.1
}

/// Waits until `name` answers `want`, and says how long that took.
async fn answers(d: &Drover, name: &str, want: &[&str]) -> Duration {
    let start = tokio::time::Instant::now();
    loop {
        if a(d, name).await == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < support::DEADLINE,
            "{name} never answered {want:?}; last {:?}",
            a(d, name).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The fixture event of `kind` (the first one).
fn event(kind: &str) -> Value {
    let events = fixture("events.json");
    events
        .as_array()
        .expect("a list")
        .iter()
        .find(|e| e["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in the fixture"))
        .clone()
}

/// The fixture's TASK_UPDATED for `task_id` to `state` (its network address kept).
fn task_updated(task_id: &str, state: &str) -> Value {
    let mut e = fixture("events.json")[2].clone();
    e["task_updated"]["status"]["task_id"]["value"] = Value::from(task_id);
    e["task_updated"]["status"]["state"] = Value::from(state);
    e["task_updated"]["state"] = Value::from(state);
    e
}

async fn metric(d: &Drover, line_start: &str) -> f64 {
    let body = support::get(d.admin(), "admin", "/metrics").await.body;
    body.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn task_added_killed_and_agent_removed_reach_dns_within_a_second() {
    let mesos = masters(3, Some(0)).await;
    let d = drover(&mesos, "600s");
    d.ready().await;
    answers(&d, "web-shop.marathon.mesos.", &["127.0.0.11"]).await;
    assert_eq!(a(&d, "leader.mesos.").await, ["127.0.0.1"]);
    assert_eq!(
        a(&d, "marathon.mesos.").await,
        ["127.0.0.21"],
        "pid from the state read"
    );
    let state_reads = mesos.probes(0);

    // Added, then running: a second address.
    mesos.push_event(event("TASK_ADDED"));
    mesos.push_event(fixture("events.json")[2].clone());
    let took = answers(
        &d,
        "web-shop.marathon.mesos.",
        &["127.0.0.11", "127.0.0.12"],
    )
    .await;
    assert!(took < EVENT_TO_DNS, "task added: {took:?}");

    // Killed: gone.
    mesos.push_event(task_updated(WEB_1, "TASK_KILLED"));
    let took = answers(&d, "web-shop.marathon.mesos.", &["127.0.0.12"]).await;
    assert!(took < EVENT_TO_DNS, "task killed: {took:?}");

    // Its agent removed: the task on it has no name any more, the others keep theirs.
    assert_eq!(a(&d, "db-shop.marathon.mesos.").await, ["127.0.0.32"]);
    mesos.push_event(event("AGENT_REMOVED"));
    let took = answers(&d, "db-shop.marathon.mesos.", &[]).await;
    assert!(took < EVENT_TO_DNS, "agent removed: {took:?}");
    assert_eq!(a(&d, "slave.mesos.").await, ["127.0.0.31"]);

    // All of it came over the one stream: no state was read again, no second subscribe.
    assert_eq!(mesos.probes(0), state_reads);
    assert_eq!(mesos.subscriptions(), 1);
    assert!(
        metric(
            &d,
            "drover_discovery_events_total{source=\"mesos\",type=\"TASK_UPDATED\"}"
        )
        .await
            >= 2.0
    );
    assert_eq!(
        metric(&d, "drover_discovery_event_stream_up{source=\"mesos\"}").await,
        1.0
    );
}

#[tokio::test]
async fn a_silent_stream_is_detected_by_its_heartbeat_and_resubscribed() {
    let mesos = masters(1, Some(0)).await;
    mesos.set_heartbeat(Duration::from_millis(200));
    let d = drover(&mesos, "600s");
    d.ready().await;
    answers(&d, "web-shop.marathon.mesos.", &["127.0.0.11"]).await;
    // Heartbeats keep a quiet stream alive well past its limit (200 ms + 1 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(mesos.subscriptions(), 1);

    // Silent with the connection open: given up after the limit and subscribed again.
    mesos.go_silent(true);
    eventually("a second subscription", || async {
        (mesos.subscriptions() >= 2).then_some(())
    })
    .await;
    mesos.go_silent(false);
    let silent = "drover_discovery_stream_reconnects_total{reason=\"silent\",source=\"mesos\"}";
    assert!(metric(&d, silent).await >= 1.0, "counted as silent");
    // The records stayed meanwhile, and the new stream carries events.
    assert_eq!(a(&d, "web-shop.marathon.mesos.").await, ["127.0.0.11"]);
    eventually("one stream open", || async {
        (mesos.open_streams() == 1).then_some(())
    })
    .await;
    mesos.push_event(task_updated(WEB_1, "TASK_FINISHED"));
    answers(&d, "web-shop.marathon.mesos.", &[]).await;
}

#[tokio::test]
async fn a_leadership_move_resubscribes_to_the_new_leader() {
    let mesos = masters(3, Some(0)).await;
    mesos.set_heartbeat(Duration::from_millis(500));
    let d = drover(&mesos, "600s");
    d.ready().await;
    answers(&d, "leader.mesos.", &["127.0.0.1"]).await;

    // The old leader closes its stream; Drover finds master 2 (followers redirect to it)
    // and subscribes there.
    mesos.set_leader(Some(2));
    answers(&d, "leader.mesos.", &["127.0.0.3"]).await;
    eventually("a stream on the new leader", || async {
        (mesos.subscriptions() >= 2 && mesos.open_streams() == 1).then_some(())
    })
    .await;
    assert_eq!(a(&d, "web-shop.marathon.mesos.").await, ["127.0.0.11"]);
    mesos.push_event(event("AGENT_ADDED"));
    answers(
        &d,
        "slave.mesos.",
        &["127.0.0.31", "127.0.0.32", "127.0.0.33"],
    )
    .await;

    // Nobody leads: the stream closes, no leader is found, and the last records stay.
    mesos.set_leader(None);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(a(&d, "leader.mesos.").await, ["127.0.0.3"]);
    assert_eq!(a(&d, "web-shop.marathon.mesos.").await, ["127.0.0.11"]);
    let routes = support::get(d.admin(), "admin", "/debug/routes").await.body;
    assert!(routes.contains("no leader is elected"), "{routes}");
}

#[tokio::test]
async fn a_master_without_the_operator_api_is_polled() {
    let mesos = masters(1, Some(0)).await;
    mesos.api_missing(true);
    let d = drover(&mesos, "200ms");
    d.ready().await;
    answers(&d, "web-shop.marathon.mesos.", &["127.0.0.11"]).await;
    // Changes are seen by the polls of /master/state (rendered from the same cluster).
    mesos.push_event(task_updated(WEB_1, "TASK_KILLED"));
    answers(&d, "web-shop.marathon.mesos.", &[]).await;
    assert_eq!(mesos.subscriptions(), 0);
    // The API appears (an upgraded master): a later round subscribes.
    mesos.api_missing(false);
    eventually("a subscription", || async {
        (mesos.subscriptions() >= 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn stream_false_only_polls() {
    let mesos = masters(1, Some(0)).await;
    let d = Drover::start(
        &format!(
            "[mesos]\nmasters = {}\npoll = \"200ms\"\nstream = false\n\n[dns]\nlisten = \"127.0.0.1:0\"\ndomain = \"mesos\"\n",
            mesos.masters_toml()
        ),
        "",
    );
    d.ready().await;
    answers(&d, "web-shop.marathon.mesos.", &["127.0.0.11"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mesos.subscriptions(), 0);
}

#[tokio::test]
async fn resyncs_bring_framework_pids_and_the_stream_goes_on() {
    const JENKINS: &str = "5e1ad2a1-3c6b-4f0e-8d1e-3b4a7c0e2f10-0002";
    let mesos = FakeMasters::builder(1, Some(0))
        .own_ips()
        .operator_api(
            fixture("subscribed.json"),
            &[
                (MARATHON, "scheduler-1@127.0.0.21:40001"),
                (JENKINS, "scheduler-2@127.0.0.24:40002"),
            ],
        )
        .start()
        .await;
    let d = drover(&mesos, "300ms");
    d.ready().await;
    answers(&d, "web-shop.marathon.mesos.", &["127.0.0.11"]).await;
    let reads = mesos.probes(0);
    // The v1 framework info has no pid: the event alone names jenkins at its hostname
    // (127.0.0.23); a resync's state read brings its pid's address.
    mesos.push_event(event("FRAMEWORK_ADDED"));
    answers(&d, "jenkins.mesos.", &["127.0.0.24"]).await;
    assert!(mesos.probes(0) > reads, "state read again");
    // Events still apply between resyncs, on the same stream.
    mesos.push_event(event("TASK_ADDED"));
    mesos.push_event(fixture("events.json")[2].clone());
    answers(
        &d,
        "web-shop.marathon.mesos.",
        &["127.0.0.11", "127.0.0.12"],
    )
    .await;
    assert_eq!(mesos.subscriptions(), 1);
}

#[tokio::test]
async fn the_stream_runs_over_https_with_basic_auth() {
    let (ca, tls) = drover::sim::pki::server_with_new_ca();
    let mesos = FakeMasters::builder(1, Some(0))
        .own_ips()
        .tls(tls)
        .basic_auth("dns", "s3cret-value")
        .operator_api(
            fixture("subscribed.json"),
            &[(MARATHON, "scheduler-1@127.0.0.21:40001")],
        )
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let secret_file = dir.path().join("mesos.secret");
    std::fs::write(&secret_file, "s3cret-value\n").unwrap();
    let d = Drover::start(
        &format!(
            "[mesos]\nmasters = {}\npoll = \"600s\"\nprincipal = \"dns\"\nsecret_file = \"{}\"\n\
             ca_file = \"{}\"\n\n[dns]\nlisten = \"127.0.0.1:0\"\ndomain = \"mesos\"\n",
            mesos.masters_toml(),
            secret_file.display(),
            ca_file.display()
        ),
        "",
    );
    d.ready().await;
    answers(&d, "web-shop.marathon.mesos.", &["127.0.0.11"]).await;
    assert_eq!(mesos.subscriptions(), 1);
    mesos.push_event(task_updated(WEB_1, "TASK_KILLED"));
    answers(&d, "web-shop.marathon.mesos.", &[]).await;
}

#[tokio::test]
async fn a_stream_that_is_no_recordio_falls_back_to_the_state_read() {
    let mesos = masters(1, Some(0)).await;
    mesos.garble_stream(true);
    let d = drover(&mesos, "200ms");
    d.ready().await;
    // The stream never gives its state; each round's /master/state read is used instead.
    answers(&d, "web-shop.marathon.mesos.", &["127.0.0.11"]).await;
    let error = "drover_discovery_stream_reconnects_total{reason=\"error\",source=\"mesos\"}";
    eventually("a framing error counted", || async {
        (metric(&d, error).await >= 1.0).then_some(())
    })
    .await;
    let routes = support::get(d.admin(), "admin", "/debug/routes").await.body;
    assert!(routes.contains("is not a decimal number"), "{routes}");
    // Mended: the next round subscribes for real.
    mesos.garble_stream(false);
    eventually("a subscription", || async {
        (mesos.subscriptions() >= 1).then_some(())
    })
    .await;
}
