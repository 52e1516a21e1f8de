//! Master aliases end to end: fake masters on real sockets, Drover probing them, requests
//! through the HTTP router (and an alias's TCP port) reaching only the proven leader.

use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;

use drover::sim::masters::{FakeMasters, Page};

use crate::support::{self, eventually, free_port, Drover};

/// The probe interval these tests run with.
const INTERVAL: Duration = Duration::from_millis(200);

fn alias(host: &str, masters: &FakeMasters, check: &str, extra: &str) -> String {
    format!(
        "[[alias]]\nhost = \"{host}\"\nbackends = {}\ncheck = {check}\ninterval = \"{}ms\"\n{extra}\n",
        masters.backends_toml(),
        INTERVAL.as_millis()
    )
}

/// One request on the shared keep-alive client: (status, body).
type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

async fn ask(client: &Client, drover: &Drover, host: &str) -> (u16, String) {
    let req = Request::get(format!("http://{}/master/tasks", drover.http()))
        .header("host", host)
        .body(Full::default())
        .expect("request");
    let resp = client.request(req).await.expect("answered");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// What master `i` says on its page while it leads.
fn leader_page(i: usize) -> Option<Page> {
    Some(Page {
        index: i,
        leads: true,
    })
}

/// Waits until requests for `host` are answered by master `i`, as the leader.
async fn answered_by(client: &Client, drover: &Drover, host: &str, i: usize) {
    eventually(&format!("{host} answered by master {i}"), || async {
        (Page::parse(&ask(client, drover, host).await.1) == leader_page(i)).then_some(())
    })
    .await;
}

/// Asserts the next `n` requests for `host` get 200 from master `i`, as the leader.
async fn only_from(client: &Client, drover: &Drover, host: &str, i: usize, n: usize) {
    for _ in 0..n {
        let (status, body) = ask(client, drover, host).await;
        assert_eq!(
            (status, Page::parse(&body)),
            (200, leader_page(i)),
            "{body}"
        );
    }
}

async fn metrics(drover: &Drover) -> String {
    support::get(drover.admin(), "admin", "/metrics").await.body
}

#[tokio::test]
async fn requests_follow_the_leader_within_one_interval() {
    let masters = FakeMasters::start(3, Some(0)).await;
    let d = Drover::start(&alias("mesos.test", &masters, "\"mesos\"", ""), "");
    d.ready().await;
    let client = support::client();
    answered_by(&client, &d, "mesos.test", 0).await;

    for (round, to) in [1usize, 2, 0, 2].into_iter().enumerate() {
        masters.set_leader(Some(to));
        let moved = Instant::now();
        // Poll on the same kept-alive connection until the new leader answers ...
        let bound = INTERVAL + Duration::from_secs(1);
        loop {
            let (_, body) = ask(&client, &d, "mesos.test").await;
            if Page::parse(&body) == leader_page(to) {
                break;
            }
            assert!(
                moved.elapsed() < bound,
                "round {round}: still {body:?} after {:?}",
                moved.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // ... then every request goes there.
        only_from(&client, &d, "mesos.test", to, 50).await;
    }
    let m = metrics(&d).await;
    let line = format!(
        "drover_alias_leader{{alias=\"mesos.test\",backend=\"{}\"}} 1",
        masters.addrs()[2]
    );
    assert!(m.contains(&line), "{line} not in metrics:\n{m}");
    assert!(
        m.contains("drover_leader_changes_total{alias=\"mesos.test\"}"),
        "{m}"
    );
    for (state, n) in [("leader", 1), ("standby", 2)] {
        let line = format!("drover_backends{{route=\"alias:mesos.test\",state=\"{state}\"}} {n}");
        assert!(m.contains(&line), "{line} not in metrics:\n{m}");
    }
}

#[tokio::test]
async fn no_leader_answers_503_and_no_request_reaches_a_follower() {
    let masters = FakeMasters::start(3, None).await;
    let d = Drover::start(&alias("mesos.test", &masters, "\"mesos\"", ""), "");
    d.ready().await;
    // Let every master be probed a few times first.
    eventually("every master probed twice", || async {
        (0..3).all(|i| masters.probes(i) >= 2).then_some(())
    })
    .await;
    let client = support::client();
    for _ in 0..1000 {
        let (status, body) = ask(&client, &d, "mesos.test").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("no elected leader for mesos.test"), "{body}");
    }
    assert_eq!(
        (0..3).map(|i| masters.served(i)).sum::<usize>(),
        0,
        "a follower was reached"
    );

    // A leader appears: it alone gets the traffic.
    masters.set_leader(Some(1));
    answered_by(&client, &d, "mesos.test", 1).await;
    assert_eq!(masters.served(0) + masters.served(2), 0);
}

#[tokio::test]
async fn the_classic_elected_time_rule_does_not_follow_307s() {
    let masters = FakeMasters::start(3, Some(2)).await;
    let check = r#"{ path = "/master/state", expect_status = 200, expect_body = "elected_time" }"#;
    let d = Drover::start(&alias("mesos.test", &masters, check, ""), "");
    d.ready().await;
    let client = support::client();
    answered_by(&client, &d, "mesos.test", 2).await;
    only_from(&client, &d, "mesos.test", 2, 20).await;
    // The followers answered with 307s naming the leader; had those been followed, they
    // would have passed too and the debug dump would show two leaders.
    let want = [
        ("standby", "HTTP 307"),
        ("standby", "HTTP 307"),
        ("leader", "HTTP 200"),
    ];
    let alias = eventually("the dump shows every master's verdict", || async {
        let routes = support::get(d.admin(), "admin", "/debug/routes").await.body;
        let dump: serde_json::Value = serde_json::from_str(&routes).expect("json");
        let alias = dump["aliases"][0].clone();
        let states: Vec<(String, String)> = alias["masters"]
            .as_array()?
            .iter()
            .map(|m| {
                (
                    m["state"].as_str().unwrap_or("").to_string(),
                    m["last_probe"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let same = states
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .eq(want.iter().copied());
        same.then_some(alias)
    })
    .await;
    assert_eq!(alias["leader"], masters.addrs()[2].to_string(), "{alias}");
    assert_eq!(alias["host"], "mesos.test");
    // One word for one state: `routes` calls each master what `aliases` does.
    let routes = support::get(d.admin(), "admin", "/debug/routes").await.body;
    let dump: serde_json::Value = serde_json::from_str(&routes).expect("json");
    let route = dump["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .find(|r| r["name"] == alias["route"])
        .expect("the alias route");
    let words = |list: &serde_json::Value| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = list
            .as_array()
            .expect("a list")
            .iter()
            .map(|m| (m["addr"].to_string(), m["state"].to_string()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(words(&route["backends"]), words(&alias["masters"]));
    assert_eq!(masters.served(0) + masters.served(1), 0);
}

#[tokio::test]
async fn a_marathon_standby_that_forwards_is_never_chosen() {
    let masters = FakeMasters::start(3, Some(1)).await;
    let d = Drover::start(&alias("marathon.test", &masters, "\"marathon\"", ""), "");
    d.ready().await;
    let client = support::client();
    answered_by(&client, &d, "marathon.test", 1).await;
    only_from(&client, &d, "marathon.test", 1, 50).await;
    assert_eq!(
        masters.served(0) + masters.served(2),
        0,
        "a standby was used"
    );
}

#[tokio::test]
async fn a_second_claimant_does_not_displace_the_incumbent() {
    let masters = FakeMasters::start(3, Some(0)).await;
    let d = Drover::start(&alias("mesos.test", &masters, "\"mesos\"", ""), "");
    d.ready().await;
    let client = support::client();
    answered_by(&client, &d, "mesos.test", 0).await;
    masters.also_claim(2, true);
    eventually("the conflict is counted", || async {
        metrics(&d)
            .await
            .contains("drover_leader_conflicts_total{alias=\"mesos.test\"} 1")
            .then_some(())
    })
    .await;
    only_from(&client, &d, "mesos.test", 0, 50).await;
    // The incumbent stops claiming: the other claimant is now the only one.
    masters.set_leader(None);
    answered_by(&client, &d, "mesos.test", 2).await;
}

#[tokio::test]
async fn a_hanging_master_does_not_delay_the_others() {
    let masters = FakeMasters::start(3, Some(0)).await;
    masters.hang(1, true);
    let d = Drover::start(&alias("mesos.test", &masters, "\"mesos\"", ""), "");
    d.ready().await;
    let client = support::client();
    answered_by(&client, &d, "mesos.test", 0).await;
    let moved = Instant::now();
    masters.set_leader(Some(2));
    answered_by(&client, &d, "mesos.test", 2).await;
    assert!(
        moved.elapsed() < INTERVAL + Duration::from_secs(1),
        "failover took {:?} with a hanging master",
        moved.elapsed()
    );
    assert!(masters.probes(1) >= 1, "the hanging master was probed");
}

#[tokio::test]
async fn an_alias_port_is_a_tcp_listener_to_the_leader() {
    let masters = FakeMasters::start(3, Some(1)).await;
    let port = free_port();
    let tcp = "[tcp]\nbind = \"127.0.0.1\"\nports = \"1-2\"\n";
    let d = Drover::start(
        &format!(
            "{tcp}\n{}",
            alias(
                "mesos.test",
                &masters,
                "\"mesos\"",
                &format!("port = {port}")
            )
        ),
        "",
    );
    d.ready().await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let answer = eventually("the alias port answers from master 1", || async {
        let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
            return None;
        };
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET /x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out).into_owned();
        let (_, body) = text.split_once("\r\n\r\n")?;
        (Page::parse(body) == leader_page(1)).then_some(text)
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
