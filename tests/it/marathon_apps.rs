//! Marathon changes applied app by app: an event that names its app re-reads that app alone
//! (`/v2/apps/{id}`) and the route table is patched, sharing every other route; a kill needs
//! no read at all; a 404 removes the app; a malformed answer keeps the last good routes; and
//! the periodic resync still reads every app. The fake Marathon's counters of full and
//! per-app reads prove which read happened.

use std::net::SocketAddr;
use std::sync::Arc;

use drover::routing::{Route, RouteTable};

use crate::support::marathon::{self, FakeMarathon, FakeTask};
use crate::support::*;

fn drover_on(fake: &FakeMarathon, more: &str) -> Drover {
    Drover::start(
        &format!(
            "[marathon]\nurls = [\"{}\"]\ngroups = [\"*\"]\n{more}",
            fake.url()
        ),
        "",
    )
}

fn web(tasks: &[FakeTask]) -> serde_json::Value {
    marathon::app(
        "/web",
        &[("HAPROXY_0_VHOST", "web.example.com")],
        10001,
        tasks,
    )
}

fn api(tasks: &[FakeTask]) -> serde_json::Value {
    marathon::app(
        "/api",
        &[("HAPROXY_0_VHOST", "api.example.com")],
        10002,
        tasks,
    )
}

fn table(drover: &Drover) -> Arc<RouteTable> {
    drover.server().view().routes.load_full()
}

fn route(table: &RouteTable, name: &str) -> Option<Arc<Route>> {
    table.routes.iter().find(|r| r.name == name).cloned()
}

fn pool(drover: &Drover, name: &str) -> Option<Vec<SocketAddr>> {
    route(&table(drover), name).map(|r| {
        let mut addrs: Vec<SocketAddr> = r.pool.backends().iter().map(|b| b.addr).collect();
        addrs.sort();
        addrs
    })
}

async fn pool_becomes(drover: &Drover, name: &str, want: Option<&[SocketAddr]>) {
    let mut want = want.map(<[SocketAddr]>::to_vec);
    if let Some(w) = &mut want {
        w.sort();
    }
    eventually(&format!("{name} to be {want:?}"), || {
        let done = pool(drover, name) == want;
        async move { done.then_some(()) }
    })
    .await;
}

/// Drover following `fake` (serving /web on a, /api on b), its event stream open and the
/// read that follows the stream's opening done: from here on, every read counts.
async fn settled(fake: &FakeMarathon, a: SocketAddr, b: SocketAddr, more: &str) -> Drover {
    fake.set_apps(marathon::apps_json(&[
        web(&[FakeTask::new(&marathon::task_id("/web", 1), a)]),
        api(&[FakeTask::new(&marathon::task_id("/api", 1), b)]),
    ]));
    let drover = drover_on(fake, more);
    drover.ready().await;
    pool_becomes(&drover, "web_10001", Some(&[a])).await;
    eventually("the stream open and read after", || {
        let done = fake.subscriptions() >= 1 && fake.full_reads() >= 2;
        async move { done.then_some(()) }
    })
    .await;
    drover
}

/// /web gains task 2 on `b` beside task 1 on `a`: the fake's app changes, then Marathon
/// announces the task running.
fn start_second_web_task(fake: &FakeMarathon, a: SocketAddr, b: SocketAddr) {
    let (t1, t2) = (marathon::task_id("/web", 1), marathon::task_id("/web", 2));
    fake.set_app(web(&[FakeTask::new(&t1, a), FakeTask::new(&t2, b)]));
    fake.push(marathon::status_update(
        "/web",
        &t2,
        "TASK_RUNNING",
        "127.0.0.1",
        b.port(),
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_added_by_an_event_is_routed_after_reading_its_app_alone() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let fake = FakeMarathon::start().await;
    let drover = settled(&fake, a.addr, b.addr, "").await;
    let full = fake.full_reads();
    let before = table(&drover);

    start_second_web_task(&fake, a.addr, b.addr);
    pool_becomes(&drover, "web_10001", Some(&[a.addr, b.addr])).await;
    assert_eq!(fake.app_reads(), ["/web"], "one read of the app alone");
    assert_eq!(fake.full_reads(), full, "no read of every app");
    // The table was patched: counted so, and the other app's route is the very same object.
    let text = drover.server().view().metrics.render();
    assert!(
        text.contains("drover_route_table_builds_total{kind=\"patch\"} 1"),
        "{text}"
    );
    let after = table(&drover);
    let (old_api, new_api) = (route(&before, "api_10002"), route(&after, "api_10002"));
    assert!(
        Arc::ptr_eq(&old_api.expect("api before"), &new_api.expect("api after")),
        "the unchanged app's route is shared"
    );
    // And the new backend serves.
    let mut bodies = Vec::new();
    for _ in 0..4 {
        bodies.push(get(drover.http(), "web.example.com", "/").await.body);
    }
    assert!(bodies.iter().any(|b| b == "b"), "{bodies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_task_leaves_its_pool_without_any_read() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let fake = FakeMarathon::start().await;
    let t1 = marathon::task_id("/web", 1);
    let drover = settled(&fake, a.addr, b.addr, "").await;
    start_second_web_task(&fake, a.addr, b.addr);
    pool_becomes(&drover, "web_10001", Some(&[a.addr, b.addr])).await;
    let (full, alone) = (fake.full_reads(), fake.app_reads().len());

    fake.push(marathon::status_update(
        "/web",
        &t1,
        "TASK_KILLED",
        "127.0.0.1",
        a.addr.port(),
    ));
    pool_becomes(&drover, "web_10001", Some(&[b.addr])).await;
    assert_eq!(
        (fake.full_reads(), fake.app_reads().len()),
        (full, alone),
        "the event alone removed the task"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_marathon_no_longer_knows_is_removed() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let fake = FakeMarathon::start().await;
    let drover = settled(&fake, a.addr, b.addr, "").await;
    let full = fake.full_reads();
    assert!(pool(&drover, "api_10002").is_some());

    fake.remove_app("/api");
    fake.push(marathon::app_terminated("/api"));
    pool_becomes(&drover, "api_10002", None).await;
    assert_eq!(fake.app_reads(), ["/api"], "its read answered 404");
    assert_eq!(fake.full_reads(), full);
    assert_eq!(get(drover.http(), "api.example.com", "/").await.status, 404);
    assert_eq!(pool(&drover, "web_10001"), Some(vec![a.addr]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_app_answer_keeps_the_last_good_routes() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let fake = FakeMarathon::start().await;
    let drover = settled(&fake, a.addr, b.addr, "").await;
    let full = fake.full_reads();
    let metrics = drover.server().view().metrics.clone();
    let errors = || {
        metrics
            .discovery_syncs
            .with_label_values(&["marathon", "error"])
            .get()
    };
    assert_eq!(errors(), 0);

    fake.set_app_body_raw("/web", Some(b"{\"app\": {\"id\": "));
    fake.push(marathon::health_status_changed(
        "/web",
        &marathon::task_id("/web", 1),
        true,
    ));
    // Counted as a failed read, and followed by a read of every app.
    eventually("the refused read and the full read after it", || {
        let done = errors() >= 1 && fake.full_reads() > full;
        async move { done.then_some(()) }
    })
    .await;
    assert_eq!(fake.app_reads(), ["/web"]);
    assert_eq!(pool(&drover, "web_10001"), Some(vec![a.addr]));
    assert_eq!(get(drover.http(), "web.example.com", "/").await.body, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resync_still_reads_every_app() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let fake = FakeMarathon::start().await;
    let drover = settled(&fake, a.addr, b.addr, "resync = \"1s\"\n").await;
    let full = fake.full_reads();
    // A change no event announces.
    let t2 = marathon::task_id("/web", 2);
    fake.set_app(web(&[
        FakeTask::new(&marathon::task_id("/web", 1), a.addr),
        FakeTask::new(&t2, b.addr),
    ]));
    pool_becomes(&drover, "web_10001", Some(&[a.addr, b.addr])).await;
    assert!(fake.full_reads() > full, "a read of every app found it");
    assert!(fake.app_reads().is_empty());
}

/// The SRV ports of `name` in `d`'s DNS server, over UDP, sorted.
async fn srv_ports(d: &Drover, name: &str) -> Vec<u16> {
    let addr = d.server().dns_addr().expect("[dns] is configured");
    let q = crate::support::dns::query(name, hickory_proto::rr::RecordType::SRV, false, None);
    let reply = crate::support::dns::udp(addr, &q).await;
    let mut ports: Vec<u16> = (reply.answers.iter())
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::SRV(srv) => Some(srv.port),
            _ => None,
        })
        .collect();
    ports.sort();
    ports
}

async fn srv_becomes(d: &Drover, name: &str, mut want: Vec<u16>) {
    want.sort();
    eventually(&format!("{name} SRV ports {want:?}"), || {
        let want = want.clone();
        async move { (srv_ports(d, name).await == want).then_some(()) }
    })
    .await;
}

/// With `[dns]`, the zone follows the same per-app changes by patching: the new task's SRV
/// record is answered, the killed one's goes, and neither change compiled the zone again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dns_zone_is_patched_with_the_apps_that_changed() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let fake = FakeMarathon::start().await;
    let dns = "[dns]\nlisten = \"127.0.0.1:0\"\ndomain = \"mesos\"\n";
    let drover = settled(&fake, a.addr, b.addr, dns).await;
    let srv = "_web._tcp.marathon.mesos.";
    srv_becomes(&drover, srv, vec![a.addr.port()]).await;
    let metrics = drover.server().view().metrics.clone();
    let builds = |kind: &str| metrics.dns_zone_builds.with_label_values(&[kind]).get();
    let full = builds("full");

    let t1 = marathon::task_id("/web", 1);
    start_second_web_task(&fake, a.addr, b.addr);
    srv_becomes(&drover, srv, vec![a.addr.port(), b.addr.port()]).await;
    fake.push(marathon::status_update(
        "/web",
        &t1,
        "TASK_KILLED",
        "127.0.0.1",
        a.addr.port(),
    ));
    srv_becomes(&drover, srv, vec![b.addr.port()]).await;
    // The other app is still answered, and no change compiled the zone in full.
    assert_eq!(
        srv_ports(&drover, "_api._tcp.marathon.mesos.").await,
        [b.addr.port()]
    );
    assert!(builds("patch") >= 2, "patched: {}", builds("patch"));
    assert_eq!(builds("full"), full, "no full compile");
}
