//! Marathon discovery end to end, against the in-test fake Marathon: routes follow the
//! event stream within a second, never empty by mistake, and survive a stalled stream, a
//! dead instance, a standby's redirect and missing credentials.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::support::marathon::{self, FakeMarathon, FakeTask};
use crate::support::*;

/// Drover following `urls`, every group, a short stream idle timeout.
fn drover_on(urls: &[String], more: &str) -> Drover {
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    Drover::start(
        &format!(
            "[marathon]\nurls = [{}]\ngroups = [\"*\"]\nidle_timeout = \"700ms\"\n{more}",
            urls.join(", ")
        ),
        "",
    )
}

/// The backends of route `name` in the table in use (empty if there is no such route).
fn pool(drover: &Drover, name: &str) -> Vec<SocketAddr> {
    let table = drover.server().view().routes.load();
    let mut addrs: Vec<SocketAddr> = table
        .routes
        .iter()
        .filter(|r| r.name == name)
        .flat_map(|r| r.pool.backends().iter().map(|b| b.addr))
        .collect();
    addrs.sort();
    addrs
}

/// Waits until route `name` has exactly `want` as backends; returns how long it took.
async fn pool_becomes(drover: &Drover, name: &str, want: &[SocketAddr]) -> Duration {
    let start = Instant::now();
    let mut want = want.to_vec();
    want.sort();
    eventually(&format!("{name} to be {want:?}"), || {
        let now = pool(drover, name);
        let done = now == want;
        async move { done.then_some(()) }
    })
    .await;
    start.elapsed()
}

/// Waits until `fake` has served `n` event streams.
async fn subscribed(fake: &FakeMarathon, n: usize) {
    eventually(&format!("{n} event stream(s)"), || {
        let now = fake.subscriptions();
        async move { (now >= n).then_some(()) }
    })
    .await
}

/// Waits until `fake` has answered more than `reads` `/v2/apps` requests.
async fn read_after(fake: &FakeMarathon, reads: usize) {
    eventually(&format!("/v2/apps read number {}", reads + 1), || {
        let now = fake.apps_queries().len();
        async move { (now > reads).then_some(()) }
    })
    .await
}

fn web(tasks: &[FakeTask]) -> serde_json::Value {
    marathon::apps_json(&[marathon::app(
        "/web",
        &[("HAPROXY_0_VHOST", "web.example.com")],
        10001,
        tasks,
    )])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_added_killed_and_health_flipped_apply_within_a_second() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let fake = FakeMarathon::start().await;
    let ta = marathon::task_id("/web", 1);
    let tb = marathon::task_id("/web", 2);
    fake.set_apps(web(&[FakeTask::new(&ta, a.addr)]));
    let drover = drover_on(&[fake.url()], "");
    drover.ready().await;
    pool_becomes(&drover, "web_10001", &[a.addr]).await;
    assert_eq!(get(drover.http(), "web.example.com", "/").await.body, "a");
    assert!(fake
        .apps_queries()
        .iter()
        .any(|q| q.contains("embed=apps.tasks")));
    subscribed(&fake, 1).await;

    // Added: the snapshot grows and a status update announces it.
    fake.set_apps(web(&[
        FakeTask::new(&ta, a.addr),
        FakeTask::new(&tb, b.addr),
    ]));
    fake.push(marathon::status_update(
        "/web",
        &tb,
        "TASK_RUNNING",
        "127.0.0.1",
        b.addr.port(),
    ));
    let took = pool_becomes(&drover, "web_10001", &[a.addr, b.addr]).await;
    assert!(took < Duration::from_secs(1), "added after {took:?}");

    // Killed: the event alone removes the task, before any re-read could.
    fake.push(marathon::status_update(
        "/web",
        &ta,
        "TASK_KILLED",
        "127.0.0.1",
        a.addr.port(),
    ));
    let took = pool_becomes(&drover, "web_10001", &[b.addr]).await;
    assert!(took < Duration::from_secs(1), "killed after {took:?}");
    fake.set_apps(web(&[FakeTask::new(&tb, b.addr)]));

    // Health flipped: the app has a check and a new task (ids are never reused) turns
    // unhealthy.
    let tc = marathon::task_id("/web", 3);
    let checked = |alive: bool| {
        marathon::apps_json(&[marathon::with_health_check(
            marathon::app(
                "/web",
                &[("HAPROXY_0_VHOST", "web.example.com")],
                10001,
                &[
                    FakeTask::new(&tb, b.addr).alive(true),
                    FakeTask::new(&tc, a.addr).alive(alive),
                ],
            ),
            "TCP",
            "",
        )])
    };
    fake.set_apps(checked(true));
    fake.push(marathon::health_status_changed("/web", &tc, true));
    pool_becomes(&drover, "web_10001", &[a.addr, b.addr]).await;
    fake.set_apps(checked(false));
    fake.push(marathon::health_status_changed("/web", &tc, false));
    let took = pool_becomes(&drover, "web_10001", &[b.addr]).await;
    assert!(took < Duration::from_secs(1), "health flip after {took:?}");
    let text = drover.server().view().metrics.render();
    assert!(
        text.contains("drover_discovery_event_stream_up{source=\"marathon\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "drover_discovery_events_total{source=\"marathon\",type=\"status_update_event\"}"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_snapshot_does_not_empty_the_pools() {
    let a = Backend::start("a").await;
    let fake = FakeMarathon::start().await;
    let ta = marathon::task_id("/web", 1);
    fake.set_apps(web(&[FakeTask::new(&ta, a.addr)]));
    let drover = drover_on(&[fake.url()], "");
    drover.ready().await;
    pool_becomes(&drover, "web_10001", &[a.addr]).await;
    subscribed(&fake, 1).await;

    // Marathon mid-failover: one read answers with no apps at all.
    let reads = fake.apps_queries().len();
    fake.set_apps(marathon::apps_json(&[]));
    // A deployment whose plan names no app: every app is read again.
    fake.push(marathon::deployment_success("d1"));
    read_after(&fake, reads).await;
    // Then it recovers before the confirming read.
    fake.set_apps(web(&[FakeTask::new(&ta, a.addr)]));
    let confirm = fake.apps_queries().len();
    read_after(&fake, confirm).await;
    assert_eq!(
        pool(&drover, "web_10001"),
        [a.addr],
        "the pool never emptied"
    );
    assert_eq!(get(drover.http(), "web.example.com", "/").await.body, "a");

    // A malformed answer keeps the last good apps too.
    fake.set_apps_body_raw(b"{\"apps\": [ {\"id\": ");
    fake.push(marathon::deployment_success("d2"));
    let metrics = drover.server().view().metrics.clone();
    eventually("the refused read", || {
        let n = metrics
            .discovery_syncs
            .with_label_values(&["marathon", "error"])
            .get();
        async move { (n >= 1).then_some(()) }
    })
    .await;
    assert_eq!(pool(&drover, "web_10001"), [a.addr]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_is_reopened_and_routes_converge() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let fake = FakeMarathon::start().await;
    let ta = marathon::task_id("/web", 1);
    fake.set_apps(web(&[FakeTask::new(&ta, a.addr)]));
    let drover = drover_on(&[fake.url()], "");
    drover.ready().await;
    pool_becomes(&drover, "web_10001", &[a.addr]).await;
    subscribed(&fake, 1).await;

    // Every stream (re)connect is followed by a re-read; let the first one pass.
    read_after(&fake, 1).await;

    // The stream goes silent; a change happens that no event announces.
    fake.stall_stream();
    let tb = marathon::task_id("/web", 2);
    fake.set_apps(web(&[FakeTask::new(&tb, b.addr)]));
    fake.resume_streams();
    // The idle timeout (700 ms) reopens the stream, and the reconnect re-reads.
    subscribed(&fake, 2).await;
    pool_becomes(&drover, "web_10001", &[b.addr]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_url_is_used_when_the_first_is_down() {
    let a = Backend::start("a").await;
    let down = FakeMarathon::start().await;
    down.set_down(true);
    let fake = FakeMarathon::start().await;
    fake.set_apps(web(&[FakeTask::new(&marathon::task_id("/web", 1), a.addr)]));
    let drover = drover_on(&[down.url(), fake.url()], "");
    drover.ready().await;
    pool_becomes(&drover, "web_10001", &[a.addr]).await;
    assert_eq!(get(drover.http(), "web.example.com", "/").await.body, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standbys_redirect_of_the_event_stream_is_followed() {
    let a = Backend::start("a").await;
    let leader = FakeMarathon::start().await;
    let standby = FakeMarathon::start().await;
    let apps = web(&[FakeTask::new(&marathon::task_id("/web", 1), a.addr)]);
    leader.set_apps(apps.clone());
    standby.set_apps(apps);
    standby.set_standby(Some(leader.url()));
    standby.redirect_events_to(Some(leader.url()));
    let drover = drover_on(&[standby.url()], "");
    drover.ready().await;
    subscribed(&leader, 1).await;
    let filters = leader.event_filters();
    assert!(
        filters[0].iter().any(|f| f == "status_update_event"),
        "the redirect kept the event_type filter: {filters:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_give_a_clear_error_naming_the_url() {
    let a = Backend::start("a").await;
    let fake = FakeMarathon::start().await;
    fake.require_basic_auth("drover", "s3cret");
    fake.set_apps(web(&[FakeTask::new(&marathon::task_id("/web", 1), a.addr)]));
    let drover = drover_on(&[fake.url()], "");
    let view = drover.server().view().clone();
    let error = eventually("the source error", || {
        let e = view.sources.snapshot().remove("marathon");
        async move { e }
    })
    .await;
    assert!(error.contains(&fake.url()), "{error}");
    assert!(error.contains("401"), "{error}");
    assert!(
        !drover.server().view().routes.is_ready(),
        "no table without Marathon's first read"
    );

    // With the password in a file, the same Marathon is read.
    let authed = FakeMarathon::start().await;
    authed.require_basic_auth("drover", "s3cret");
    authed.set_apps(web(&[FakeTask::new(&marathon::task_id("/web", 1), a.addr)]));
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("marathon.pass");
    std::fs::write(&pass, "s3cret\n").unwrap();
    let drover = drover_on(
        &[authed.url()],
        &format!(
            "user = \"drover\"\npassword_file = \"{}\"\n",
            pass.display()
        ),
    );
    drover.ready().await;
    pool_becomes(&drover, "web_10001", &[a.addr]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_id_listener_routes_by_x_marathon_app_id() {
    let a = Backend::start("a").await;
    let tcp_only = Backend::start("tcp-only").await;
    let fake = FakeMarathon::start().await;
    fake.set_apps(marathon::apps_json(&[
        marathon::app(
            "/web",
            &[("HAPROXY_0_VHOST", "web.example.com")],
            10001,
            &[FakeTask::new(&marathon::task_id("/web", 1), a.addr)],
        ),
        marathon::app(
            "/db",
            &[],
            10002,
            &[FakeTask::new(&marathon::task_id("/db", 1), tcp_only.addr)],
        ),
    ]));
    let drover = Drover::start_with(
        "appid_listen = \"127.0.0.1:0\"",
        &format!(
            "[marathon]\nurls = [\"{}\"]\ngroups = [\"*\"]\n",
            fake.url()
        ),
        "",
    );
    drover.ready().await;
    let appid = drover.server().appid_addr().expect("appid listener");
    let ask = |id: &'static str| {
        hyper::Request::get(format!("http://{appid}/"))
            .header("host", "anything")
            .header("x-marathon-app-id", id)
            .body(http_body_util::Full::default())
            .unwrap()
    };
    assert_eq!(send(ask("/web")).await.unwrap().body, "a");
    // Only http-mode services are reachable this way, as with marathon-lb's :9091.
    assert_eq!(send(ask("/db")).await.unwrap().status, 404);
    assert_eq!(send(ask("/nope")).await.unwrap().status, 404);
}

/// Writes `pem` to `ca.pem` in a new temp dir; returns the dir (keep it) and the
/// `ca_file = "..."` line.
fn ca_file(pem: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, pem).unwrap();
    let line = format!("ca_file = \"{}\"\n", path.display());
    (dir, line)
}

/// The `source_errors["marathon"]` entry, once there is one.
async fn marathon_error(drover: &Drover) -> String {
    let view = drover.server().view().clone();
    eventually("the marathon source error", || {
        let e = view.sources.snapshot().remove("marathon");
        async move { e }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_marathon_is_followed_with_its_ca_file() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let (fake, ca) = FakeMarathon::start_tls().await;
    assert!(
        fake.url().starts_with("https://127.0.0.1:"),
        "{}",
        fake.url()
    );
    let ta = marathon::task_id("/web", 1);
    let tb = marathon::task_id("/web", 2);
    fake.set_apps(web(&[FakeTask::new(&ta, a.addr)]));
    let (_ca_dir, ca_line) = ca_file(&ca);
    let drover = drover_on(&[fake.url()], &ca_line);
    drover.ready().await;
    pool_becomes(&drover, "web_10001", &[a.addr]).await;
    assert_eq!(get(drover.http(), "web.example.com", "/").await.body, "a");

    // The event stream runs over TLS too: an event moves the routes.
    subscribed(&fake, 1).await;
    fake.set_apps(web(&[
        FakeTask::new(&ta, a.addr),
        FakeTask::new(&tb, b.addr),
    ]));
    fake.push(marathon::status_update(
        "/web",
        &tb,
        "TASK_RUNNING",
        "127.0.0.1",
        b.addr.port(),
    ));
    pool_becomes(&drover, "web_10001", &[a.addr, b.addr]).await;
    assert!(!drover
        .server()
        .view()
        .sources
        .snapshot()
        .contains_key("marathon"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused_naming_the_url() {
    let a = Backend::start("a").await;
    let (fake, _right_ca) = FakeMarathon::start_tls().await;
    fake.set_apps(web(&[FakeTask::new(&marathon::task_id("/web", 1), a.addr)]));
    let (_ca_dir, ca_line) = ca_file(&marathon::unrelated_ca_pem());
    let drover = drover_on(&[fake.url()], &ca_line);
    let error = marathon_error(&drover).await;
    assert!(error.contains(&fake.url()), "{error}");
    assert!(error.contains("certificate"), "{error}");
    assert!(
        !drover.server().view().routes.is_ready(),
        "no table without Marathon's first read"
    );
    assert_eq!(
        fake.requests(),
        Vec::<String>::new(),
        "no request got through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ca_file_is_a_source_error_naming_the_file() {
    let (fake, _ca) = FakeMarathon::start_tls().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let drover = drover_on(
        &[fake.url()],
        &format!("ca_file = \"{}\"\n", missing.display()),
    );
    let error = marathon_error(&drover).await;
    assert!(error.contains(&missing.display().to_string()), "{error}");
    assert!(!drover.server().view().routes.is_ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_over_https_reads_the_password_file() {
    let a = Backend::start("a").await;
    let (fake, ca) = FakeMarathon::start_tls().await;
    fake.require_basic_auth("drover", "s3cret");
    fake.set_apps(web(&[FakeTask::new(&marathon::task_id("/web", 1), a.addr)]));
    let (ca_dir, ca_line) = ca_file(&ca);
    let pass = ca_dir.path().join("marathon.pass");
    std::fs::write(&pass, "s3cret\n").unwrap();
    let drover = drover_on(
        &[fake.url()],
        &format!(
            "{ca_line}user = \"drover\"\npassword_file = \"{}\"\n",
            pass.display()
        ),
    );
    drover.ready().await;
    pool_becomes(&drover, "web_10001", &[a.addr]).await;
    assert_eq!(get(drover.http(), "web.example.com", "/").await.body, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_task_stays_out_even_if_a_read_still_lists_it() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let fake = FakeMarathon::start().await;
    let (ta, tb) = (marathon::task_id("/web", 1), marathon::task_id("/web", 2));
    fake.set_apps(web(&[
        FakeTask::new(&ta, a.addr),
        FakeTask::new(&tb, b.addr),
    ]));
    let drover = drover_on(&[fake.url()], "");
    drover.ready().await;
    pool_becomes(&drover, "web_10001", &[a.addr, b.addr]).await;
    subscribed(&fake, 1).await;
    // The read that follows the stream's opening is done: later reads are the events'.
    read_after(&fake, 1).await;
    // Marathon's task list lags its kill event: the app and the list still have the task.
    fake.push(marathon::status_update(
        "/web",
        &ta,
        "TASK_KILLED",
        "127.0.0.1",
        a.addr.port(),
    ));
    pool_becomes(&drover, "web_10001", &[b.addr]).await;
    // A read of the app alone...
    let app_reads = fake.app_reads().len();
    fake.push(marathon::health_status_changed("/web", &tb, true));
    eventually("a read of /web alone", || {
        let n = fake.app_reads().len();
        async move { (n > app_reads).then_some(()) }
    })
    .await;
    let version = drover.version();
    // ...and a read of every app (a deployment whose plan names none).
    let reads = fake.apps_queries().len();
    fake.push(marathon::deployment_success("d1"));
    read_after(&fake, reads).await;
    assert_eq!(
        pool(&drover, "web_10001"),
        [b.addr],
        "the killed task did not come back"
    );
    assert!(drover.version() >= version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_false_routes_to_tasks_whatever_their_results() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let fake = FakeMarathon::start().await;
    fake.set_apps(marathon::apps_json(&[marathon::with_health_check(
        marathon::app(
            "/web",
            &[("HAPROXY_0_VHOST", "web.example.com")],
            10001,
            &[
                FakeTask::new(&marathon::task_id("/web", 1), a.addr).alive(true),
                FakeTask::new(&marathon::task_id("/web", 2), b.addr).alive(false),
            ],
        ),
        "TCP",
        "",
    )]));
    // marathon-lb without --health-check: results do not filter tasks.
    let drover = drover_on(&[fake.url()], "health_check = false\n");
    drover.ready().await;
    pool_becomes(&drover, "web_10001", &[a.addr, b.addr]).await;
    // And with the default, the failing task is left out.
    let checked = drover_on(&[fake.url()], "");
    checked.ready().await;
    pool_becomes(&checked, "web_10001", &[a.addr]).await;
}

/// A steady stream of events (one every 20 ms, as a busy cluster sends) never puts off the
/// re-read: a change made while it goes on is routed within half a second, and the reads
/// stay rate-limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_event_stream_does_not_put_off_the_reads() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let fake = Arc::new(FakeMarathon::start().await);
    let ta = marathon::task_id("/web", 1);
    let tb = marathon::task_id("/web", 2);
    fake.set_apps(web(&[FakeTask::new(&ta, a.addr)]));
    let drover = drover_on(&[fake.url()], "");
    drover.ready().await;
    pool_becomes(&drover, "web_10001", &[a.addr]).await;
    subscribed(&fake, 1).await;

    let stop = Arc::new(AtomicBool::new(false));
    let pusher = tokio::spawn({
        let (fake, stop, ta) = (fake.clone(), stop.clone(), ta.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                let event = marathon::health_status_changed("/web", &ta, true);
                fake.push(event);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Each event names /web: it is read alone, debounced per app.
    let reads_before = fake.app_reads().len();
    fake.set_apps(web(&[
        FakeTask::new(&ta, a.addr),
        FakeTask::new(&tb, b.addr),
    ]));
    let took = pool_becomes(&drover, "web_10001", &[a.addr, b.addr]).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let reads = fake.app_reads().len() - reads_before;
    stop.store(true, Ordering::Relaxed);
    pusher.await.expect("pusher");
    assert!(took < Duration::from_millis(500), "applied after {took:?}");
    // About one read per 100 ms window while events keep coming, not one per event.
    assert!((5..=20).contains(&reads), "{reads} reads in about 1 s");
}
