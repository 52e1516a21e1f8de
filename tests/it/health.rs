//! Health of service pools end to end: passive ejection after failed exchanges (5xx answers,
//! refused connects) with its half-pool cap, and active checks from the catalog file.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::support::{self, app, eventually, Backend, Drover};

const HOST: &str = "web.test";
const ROUTE: &str = "web_10001";

/// Fast ejection so recovery fits in a test.
const EJECTION: &str = "[ejection]\nafter = 2\nbase = \"300ms\"\nmax = \"1s\"\n";

/// The states `/debug/routes` gives the route's backends, by address.
async fn states(d: &Drover) -> HashMap<SocketAddr, String> {
    let body = support::get(d.admin(), "admin", "/debug/routes").await.body;
    let dump: serde_json::Value = serde_json::from_str(&body).expect("json");
    let route = dump["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .find(|r| r["name"] == ROUTE)
        .expect("the route")
        .clone();
    route["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| {
            (
                b["addr"].as_str().unwrap().parse().unwrap(),
                b["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Who answers `n` requests, by `x-backend` name (`-` for no backend).
async fn answers(d: &Drover, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let a = support::get(d.http(), HOST, "/").await;
        let who = a.header("x-backend").unwrap_or("-").to_string();
        *seen.entry(who).or_insert(0) += 1;
    }
    seen
}

async fn metrics(d: &Drover) -> String {
    support::get(d.admin(), "admin", "/metrics").await.body
}

#[tokio::test]
async fn a_backend_answering_5xx_is_ejected_and_comes_back() {
    let (good, bad) = (Backend::start("good").await, Backend::start("bad").await);
    let d = Drover::start(EJECTION, &app("/web", HOST, 10001, &[good.addr, bad.addr]));
    d.ready().await;
    bad.set_status(500);
    // Round robin: "bad" gets every other request; its second 500 in a row ejects it.
    eventually("bad is ejected", || async {
        let _ = support::get(d.http(), HOST, "/").await;
        (states(&d).await[&bad.addr] == "ejected").then_some(())
    })
    .await;
    let seen = answers(&d, 20).await;
    assert_eq!(seen.get("good"), Some(&20), "{seen:?}");
    let m = metrics(&d).await;
    assert!(
        m.contains(&format!(
            "drover_backend_ejections_total{{route=\"{ROUTE}\"}} 1"
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "drover_backend_up{{backend=\"{}\",route=\"{ROUTE}\"}} 0",
            bad.addr
        )),
        "{m}"
    );
    // The pool's states as of the scrape: every state written, zero included.
    for (state, n) in [("up", 1), ("ejected", 1), ("failing", 0), ("down", 0)] {
        let line = format!("drover_backends{{route=\"{ROUTE}\",state=\"{state}\"}} {n}");
        assert!(m.contains(&line), "{line}\n{m}");
    }

    // Healthy again: after the backoff it is back in rotation.
    bad.set_status(200);
    eventually("bad serves again", || async {
        answers(&d, 4).await.contains_key("bad").then_some(())
    })
    .await;
    eventually("its metric says so", || async {
        metrics(&d)
            .await
            .contains(&format!(
                "drover_backend_up{{backend=\"{}\",route=\"{ROUTE}\"}} 1",
                bad.addr
            ))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn refused_connects_eject_and_the_client_never_sees_them() {
    let good = Backend::start("good").await;
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let d = Drover::start(EJECTION, &app("/web", HOST, 10001, &[good.addr, dead]));
    d.ready().await;
    // GET is retried on the next backend, so every answer is good's.
    let seen = answers(&d, 10).await;
    assert_eq!(seen.get("good"), Some(&10), "{seen:?}");
    assert_eq!(states(&d).await[&dead], "ejected");

    // It comes back up on the same address: after the backoff it gets traffic.
    let back = Backend::start_at("back", dead).await;
    eventually("the returned backend serves", || async {
        answers(&d, 4).await.contains_key("back").then_some(())
    })
    .await;
    assert!(back.hits() > 0);
}

#[tokio::test]
async fn never_more_than_half_of_a_pool_is_ejected() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let d = Drover::start(EJECTION, &app("/web", HOST, 10001, &[a.addr, b.addr]));
    d.ready().await;
    a.set_status(503);
    b.set_status(503);
    for _ in 0..20 {
        let _ = support::get(d.http(), HOST, "/").await;
    }
    let s = states(&d).await;
    let ejected = s.values().filter(|v| *v == "ejected").count();
    assert_eq!(ejected, 1, "exactly half of two: {s:?}");
    // The one left in keeps serving (its 503s pass through): the pool is never empty.
    let seen = answers(&d, 6).await;
    assert_eq!(seen.values().sum::<usize>(), 6);
    assert!(!seen.contains_key("-"), "{seen:?}");
}

/// A catalog app whose port 0 is checked with `GET /health` every 100 ms.
fn checked_app(backends: &[SocketAddr]) -> String {
    let mut text = app("/web", HOST, 10001, backends);
    text.push_str(
        "health_checks = [ { path = \"/health\", interval = \"100ms\", timeout = \"500ms\", fall = 1, rise = 1 } ]\n",
    );
    text
}

/// Backends b0, b1, b2 and their addresses.
async fn three_backends() -> (Vec<Backend>, Vec<SocketAddr>) {
    let b = vec![
        Backend::start("b0").await,
        Backend::start("b1").await,
        Backend::start("b2").await,
    ];
    let addrs = b.iter().map(|b| b.addr).collect();
    (b, addrs)
}

#[tokio::test]
async fn an_active_check_takes_a_failing_backend_out_and_back() {
    let (b, addrs) = three_backends().await;
    // Ejection off, so only the active check acts.
    let d = Drover::start("[ejection]\nafter = 0\n", &checked_app(&addrs));
    d.ready().await;
    b[1].set_status(503);
    eventually("b1 is down", || async {
        (states(&d).await[&b[1].addr] == "down").then_some(())
    })
    .await;
    let seen = answers(&d, 30).await;
    assert!(
        !seen.contains_key("b1"),
        "a down backend got traffic: {seen:?}"
    );
    assert_eq!(seen.values().sum::<usize>(), 30);

    let m = metrics(&d).await;
    let line = format!("drover_backends{{route=\"{ROUTE}\",state=\"down\"}} 1");
    assert!(m.contains(&line), "{line}\n{m}");

    b[1].set_status(200);
    eventually("b1 is back", || async {
        answers(&d, 6).await.contains_key("b1").then_some(())
    })
    .await;
    let m = metrics(&d).await;
    let line = format!("drover_backends{{route=\"{ROUTE}\",state=\"up\"}} 3");
    assert!(m.contains(&line), "{line}\n{m}");
    let body = support::get(d.admin(), "admin", "/debug/routes").await.body;
    assert!(body.contains("http GET /health every 100ms"), "{body}");
}

#[tokio::test]
async fn when_most_of_a_pool_fails_its_check_it_routes_to_all() {
    let (b, addrs) = three_backends().await;
    let d = Drover::start("[ejection]\nafter = 0\n", &checked_app(&addrs));
    d.ready().await;
    b[0].set_status(503);
    b[1].set_status(503);
    let route = eventually("the route says it routes to all", || async {
        let body = support::get(d.admin(), "admin", "/debug/routes").await.body;
        let dump: serde_json::Value = serde_json::from_str(&body).expect("json");
        let r = dump["routes"][0].clone();
        (r["routing_to_all"] == true).then_some(r)
    })
    .await;
    let downs = route["probes"]
        .as_array()
        .expect("probes")
        .iter()
        .filter(|p| p["state"] == "down")
        .count();
    assert_eq!(downs, 2, "{route}");
    let seen = answers(&d, 9).await;
    assert_eq!(seen.len(), 3, "every backend gets traffic: {seen:?}");
}

#[tokio::test]
async fn p2c_sends_most_requests_to_the_faster_backend() {
    let (fast, slow) = (Backend::start("fast").await, Backend::start("slow").await);
    slow.set_delay(30);
    let mut catalog = app("/web", HOST, 10001, &[fast.addr, slow.addr]);
    catalog = catalog.replace(
        "labels = { HAPROXY_0_VHOST = \"web.test\" }",
        "labels = { HAPROXY_0_VHOST = \"web.test\", HAPROXY_0_BALANCE = \"p2c\" }",
    );
    let d = Drover::start("", &catalog);
    d.ready().await;
    let seen = answers(&d, 40).await;
    // Each backend is tried once or twice before its latency is known; then the pair
    // (always both, with two backends) goes to the fast one.
    assert!(seen.get("fast").copied().unwrap_or(0) >= 35, "{seen:?}");
}
