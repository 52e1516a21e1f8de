//! ZooKeeper leader detection end to end, against a real ZooKeeper (Debian's `zookeeper`
//! package, started on 127.0.0.1 by `drover::sim::zookeeper`): leadership is moved the way
//! masters move it, by ephemeral sequential znodes with their real payloads, and
//! `leader.<domain>` (over UDP DNS) and `zk` aliases (HTTP through Drover) follow at once,
//! with polls and probes far apart (60 s), so only the watch can explain it.
//! ZooKeeper stopped: the last leader is kept and said to be kept, the masters are
//! polled as a fallback, and everything recovers when ZooKeeper is back.

use std::net::SocketAddr;
use std::time::Duration;

use drover::sim::masters::{FakeMasters, Page};
use drover::sim::zookeeper::{Election, ZooKeeper};
use serde_json::Value;
use tokio::time::Instant;

use crate::support::{self, eventually, Drover};

/// Longest a ZooKeeper change may take to reach DNS or an alias here. The goal is under
/// 500 ms (see `bench/zk_failover.rs` for the figure); this bound leaves room for a loaded
/// test machine and is still far below the 60 s poll and probe intervals.
const FOLLOWED_WITHIN: Duration = Duration::from_secs(1);

async fn zookeeper() -> ZooKeeper {
    ZooKeeper::start().await.unwrap_or_else(|e| panic!("{e}"))
}

/// The A addresses of `name` in Drover's DNS over UDP, sorted.
async fn dns_a(d: &Drover, name: &str) -> Vec<String> {
    support::dns::drover_a(d, name).await.1
}

/// The page of the master that answered a request for alias `host` through Drover
/// (`None`: no master's page, e.g. a 503).
async fn served_by(d: &Drover, host: &str) -> Option<Page> {
    let a = support::get(d.http(), host, "/master/tasks").await;
    Page::parse(&a.body).filter(|_| a.status == 200)
}

/// Which master, saying it leads, answered a request for alias `host` through Drover.
async fn answered_by(d: &Drover, host: &str) -> Option<usize> {
    served_by(d, host)
        .await
        .filter(|p| p.leads)
        .map(|p| p.index)
}

async fn routes(d: &Drover) -> Value {
    let body = support::get(d.admin(), "admin", "/debug/routes").await.body;
    serde_json::from_str(&body).expect("routes JSON")
}

/// The `/debug/routes` entry of the election at `path`.
async fn election(d: &Drover, path: &str) -> Value {
    let r = routes(d).await;
    r["zookeeper"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|z| z["url"].as_str().is_some_and(|u| u.ends_with(path)))
        })
        .cloned()
        .unwrap_or(Value::Null)
}

async fn metrics(d: &Drover) -> String {
    support::get(d.admin(), "admin", "/metrics").await.body
}

/// Waits until `check` holds and returns how long that took from `since`.
async fn followed<F, Fut>(what: &str, since: Instant, check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    eventually(what, check).await;
    let took = since.elapsed();
    assert!(took < FOLLOWED_WITHIN, "{what}: took {took:?}");
    took
}

fn authority(a: SocketAddr) -> String {
    a.to_string()
}

#[tokio::test]
async fn leader_dot_domain_and_zk_aliases_follow_the_election() {
    let zk = zookeeper().await;
    let mesos = support::mesos::start(3, Some(0)).await;
    let marathon = FakeMasters::start(2, Some(0)).await;
    let masters = Election::open(zk.addr(), "/mesos")
        .await
        .expect("ZooKeeper");
    let latch = Election::open(zk.addr(), "/marathon/leader-curator")
        .await
        .expect("ZooKeeper");
    let mut nodes = Vec::new();
    for a in mesos.addrs() {
        nodes.push(masters.join_mesos(*a).await.expect("json.info node"));
    }
    let mut latches = Vec::new();
    for a in marathon.addrs() {
        latches.push(latch.join_marathon(&a.to_string()).await.expect("latch"));
    }
    let config = format!(
        r#"
[mesos]
zk = "{mesos_zk}"
poll = "60s"

[dns]
listen = "127.0.0.1:0"
domain = "mesos"

[[alias]]
host = "mesos.test"
zk = "{mesos_zk}"

[[alias]]
host = "confirmed.test"
zk = "{mesos_zk}"
backends = {backends}
check = "mesos"
interval = "60s"

[[alias]]
host = "marathon.test"
zk = "{marathon_zk}"
"#,
        mesos_zk = zk.url("/mesos"),
        marathon_zk = zk.url("/marathon/leader-curator"),
        backends = mesos.backends_toml(),
    );
    let d = Drover::start(&config, "");
    d.ready().await;

    // Found: master 0 (the lowest json.info_) leads everywhere; the masters are those in
    // ZooKeeper, in sequence order.
    eventually("leader.mesos from ZooKeeper", || async {
        (dns_a(&d, "leader.mesos.").await == ["127.0.0.1"]).then_some(())
    })
    .await;
    assert_eq!(dns_a(&d, "master2.mesos.").await, ["127.0.0.3"]);
    for host in ["mesos.test", "confirmed.test", "marathon.test"] {
        eventually(&format!("{host} reaches leader 0"), || async {
            (answered_by(&d, host).await == Some(0)).then_some(())
        })
        .await;
    }
    let z = election(&d, "/mesos").await;
    assert_eq!(z["connected"], true, "{z}");
    assert_eq!(z["leader"], authority(mesos.addrs()[0]));
    assert_eq!(z["leader_node"], nodes[0].as_str());

    // Moved: master 1 is elected (it reports so), master 0's node goes.
    for to in [1usize, 2] {
        mesos.set_leader(Some(to));
        let moved = Instant::now();
        masters.leave(&nodes[to - 1]).await.expect("delete");
        let ip = format!("127.0.0.{}", to + 1);
        let dns = followed("leader.mesos follows", moved, || async {
            (dns_a(&d, "leader.mesos.").await == [ip.as_str()]).then_some(())
        })
        .await;
        let mut took = vec![("leader.mesos", dns)];
        for host in ["mesos.test", "confirmed.test"] {
            let t = followed(&format!("{host} follows to {to}"), moved, || async {
                (answered_by(&d, host).await == Some(to)).then_some(())
            })
            .await;
            took.push((host, t));
        }
        println!("ZooKeeper move to master {to} followed after {took:?}");
    }
    let m = metrics(&d).await;
    assert!(
        m.contains("drover_zk_leader_changes_total{path=\"/mesos\"}"),
        "{m}"
    );
    assert!(m.contains("drover_zk_connected{path=\"/mesos\"} 1"), "{m}");
    let line = format!(
        "drover_alias_leader{{alias=\"mesos.test\",backend=\"{}\"}} 1",
        mesos.addrs()[2]
    );
    assert!(m.contains(&line), "{line} not in\n{m}");

    // Marathon's latch: the lowest `-latch-N` leads, whatever the UUID before it.
    marathon.set_leader(Some(1));
    let moved = Instant::now();
    latch.leave(&latches[0]).await.expect("delete");
    followed("marathon.test follows to 1", moved, || async {
        (answered_by(&d, "marathon.test").await == Some(1)).then_some(())
    })
    .await;

    // Confirmation: the ZooKeeper leader must pass its probe. Named in ZooKeeper while it
    // says it is not elected, the confirmed alias answers 503; the other follows ZooKeeper.
    mesos.set_leader(None);
    let back = masters.join_mesos(mesos.addrs()[0]).await.expect("join");
    masters.leave(&nodes[2]).await.expect("delete");
    eventually("mesos.test follows ZooKeeper to master 0", || async {
        let page = served_by(&d, "mesos.test").await;
        (page.map(|p| p.index) == Some(0)).then_some(())
    })
    .await;
    eventually("confirmed.test fails closed", || async {
        let a = support::get(d.http(), "confirmed.test", "/").await;
        (a.status == 503).then_some(())
    })
    .await;

    // A bad payload at the head of the election: a clear error, and no leader change.
    mesos.set_leader(Some(0));
    masters
        .join("json.info_", b"\x08\x01 a protobuf MasterInfo, not JSON")
        .await
        .expect("join");
    masters.leave(&back).await.expect("delete");
    eventually("the bad payload reported", || async {
        let z = election(&d, "/mesos").await;
        let error = z["error"].as_str().unwrap_or("").to_string();
        error.contains("not MasterInfo JSON").then_some(())
    })
    .await;
    let z = election(&d, "/mesos").await;
    assert_eq!(z["leader"], authority(mesos.addrs()[0]), "{z}");
    assert_eq!(answered_by(&d, "mesos.test").await, Some(0));
}

#[tokio::test]
async fn zookeeper_down_keeps_the_last_leader_and_recovers() {
    let mut zk = zookeeper().await;
    let mesos = support::mesos::start(3, Some(0)).await;
    let masters = Election::open(zk.addr(), "/mesos")
        .await
        .expect("ZooKeeper");
    for a in mesos.addrs() {
        masters.join_mesos(*a).await.expect("json.info node");
    }
    let config = format!(
        r#"
[mesos]
masters = {list}
zk = "{url}"
poll = "300ms"

[dns]
listen = "127.0.0.1:0"
domain = "mesos"

[[alias]]
host = "mesos.test"
zk = "{url}"
"#,
        list = mesos.masters_toml(),
        url = zk.url("/mesos"),
    );
    let d = Drover::start(&config, "");
    d.ready().await;
    eventually("mesos.test reaches master 0", || async {
        (answered_by(&d, "mesos.test").await == Some(0)).then_some(())
    })
    .await;
    assert_eq!(dns_a(&d, "leader.mesos.").await, ["127.0.0.1"]);

    zk.stop();
    drop(masters);
    eventually("the session loss reported", || async {
        (election(&d, "/mesos").await["connected"] == false).then_some(())
    })
    .await;
    let z = election(&d, "/mesos").await;
    assert_eq!(z["leader"], authority(mesos.addrs()[0]), "kept: {z}");
    assert!(z["error"].as_str().is_some_and(|e| !e.is_empty()), "{z}");
    let m = metrics(&d).await;
    assert!(m.contains("drover_zk_connected{path=\"/mesos\"} 0"), "{m}");
    let ready = support::get(d.admin(), "admin", "/readyz").await;
    assert_eq!(ready.status, 200, "still serving: {}", ready.body);
    let kept = format!("disconnected, keeping the last leader {}", mesos.addrs()[0]);
    assert!(ready.body.contains(&kept), "{}", ready.body);
    for _ in 0..20 {
        assert_eq!(answered_by(&d, "mesos.test").await, Some(0));
    }
    assert_eq!(dns_a(&d, "leader.mesos.").await, ["127.0.0.1"]);

    // The configured masters are still polled: a move is followed without ZooKeeper.
    mesos.set_leader(Some(2));
    eventually("leader.mesos follows by polling", || async {
        (dns_a(&d, "leader.mesos.").await == ["127.0.0.3"]).then_some(())
    })
    .await;

    // ZooKeeper is back, naming master 2 (the others' sessions are gone).
    zk.restart().await.unwrap_or_else(|e| panic!("{e}"));
    let masters = Election::open(zk.addr(), "/mesos")
        .await
        .expect("ZooKeeper");
    masters.clear().await.expect("clear");
    masters.join_mesos(mesos.addrs()[2]).await.expect("join");
    eventually("the session back", || async {
        let z = election(&d, "/mesos").await;
        (z["connected"] == true && z["leader"] == authority(mesos.addrs()[2])).then_some(())
    })
    .await;
    eventually("mesos.test reaches master 2", || async {
        (answered_by(&d, "mesos.test").await == Some(2)).then_some(())
    })
    .await;
    let m = metrics(&d).await;
    assert!(m.contains("drover_zk_connected{path=\"/mesos\"} 1"), "{m}");
    let ready = support::get(d.admin(), "admin", "/readyz").await;
    assert_eq!(ready.body, "ready\n");
}

/// With the operator API stream on, a ZooKeeper move ends the stream from the old leader at
/// once, even while that master keeps it open (one that has not noticed it lost, say), and
/// Drover reads and subscribes again starting with the master ZooKeeper names.
#[tokio::test]
async fn a_zookeeper_move_ends_the_operator_api_stream_and_resubscribes() {
    let zk = zookeeper().await;
    let path = format!(
        "{}/tests/fixtures/mesos/operator-api/subscribed.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let subscribed: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let framework = "5e1ad2a1-3c6b-4f0e-8d1e-3b4a7c0e2f10-0000";
    let mesos = FakeMasters::builder(2, Some(0))
        .own_ips()
        .operator_api(subscribed, &[(framework, "scheduler-1@127.0.0.21:40001")])
        .start()
        .await;
    let election = Election::open(zk.addr(), "/mesos")
        .await
        .expect("ZooKeeper");
    let first = election.join_mesos(mesos.addrs()[0]).await.expect("node");
    election.join_mesos(mesos.addrs()[1]).await.expect("node");
    let config = format!(
        "[mesos]\nzk = \"{}\"\nmasters = {}\npoll = \"600s\"\n\n[dns]\nlisten = \"127.0.0.1:0\"\ndomain = \"mesos\"\n",
        zk.url("/mesos"),
        mesos.masters_toml()
    );
    let d = Drover::start(&config, "");
    d.ready().await;
    eventually("subscribed to master 0", || async {
        (mesos.open_streams() == 1).then_some(())
    })
    .await;
    let before = mesos.subscriptions();
    // ZooKeeper names master 1; master 0 still streams (its cell says it leads).
    election.leave(&first).await.expect("delete");
    let line =
        "drover_discovery_stream_reconnects_total{reason=\"leader_moved\",source=\"mesos\"} 1";
    eventually(
        "the stream ended for the move and subscribed again",
        || async {
            let m = metrics(&d).await;
            (m.contains(line) && mesos.subscriptions() > before).then_some(())
        },
    )
    .await;
}
