//! Self-tests of the fake masters (`drover::sim::masters`): each leader check answered as
//! the real masters answer it, from the leader, a standby and while nobody leads, checked
//! with a plain hyper client so the alias, Mesos and demo runs can trust them.

use drover::sim::masters::{FakeMasters, Page};
use hyper::StatusCode;

use crate::support::{get, Answer};

async fn ask(masters: &FakeMasters, i: usize, path: &str) -> Answer {
    get(masters.addrs()[i], "master", path).await
}

#[tokio::test]
async fn leader_and_standby_answer_every_check() {
    let masters = FakeMasters::start(3, Some(1)).await;
    let [standby, leader] = [masters.addrs()[0], masters.addrs()[1]];

    let elected = |a: &Answer| {
        let v: serde_json::Value = serde_json::from_str(&a.body).expect("JSON");
        v["master/elected"].as_f64()
    };
    assert_eq!(
        elected(&ask(&masters, 1, "/metrics/snapshot").await),
        Some(1.0)
    );
    assert_eq!(
        elected(&ask(&masters, 0, "/metrics/snapshot").await),
        Some(0.0)
    );

    let state = ask(&masters, 1, "/master/state").await;
    assert_eq!(state.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&state.body).expect("JSON");
    assert_eq!(v["leader"], format!("master@{leader}"));
    assert!(v["elected_time"].is_number(), "{v}");
    let moved = ask(&masters, 0, "/master/state").await;
    assert_eq!(moved.status, StatusCode::TEMPORARY_REDIRECT);
    let location = format!("//{leader}/master/state");
    assert_eq!(moved.header("location"), Some(location.as_str()));

    let ping = ask(&masters, 1, "/ping").await;
    assert_eq!(
        (ping.status, ping.body.as_str()),
        (StatusCode::OK, "pong\n")
    );
    assert_eq!(ping.header("x-marathon-via"), None);
    let ping = ask(&masters, 0, "/ping").await;
    assert_eq!(ping.status, StatusCode::OK);
    let via = format!("1.1 {standby}");
    assert_eq!(ping.header("x-marathon-via"), Some(via.as_str()));
    let named = ask(&masters, 2, "/v2/leader").await;
    assert_eq!(named.body, format!("{{\"leader\":\"{leader}\"}}"));

    assert_eq!(
        ask(&masters, 1, "/scheduler/jobs").await.status,
        StatusCode::OK
    );
    let jobs = ask(&masters, 2, "/scheduler/jobs").await;
    assert_eq!(jobs.status, StatusCode::TEMPORARY_REDIRECT);
    let location = format!("http://{leader}/scheduler/jobs");
    assert_eq!(jobs.header("location"), Some(location.as_str()));

    // Every request so far was on a check path: probes, none served.
    assert_eq!(
        (0..3).map(|i| masters.probes(i)).collect::<Vec<_>>(),
        [3, 4, 2]
    );
    assert_eq!((0..3).map(|i| masters.served(i)).sum::<usize>(), 0);
}

#[tokio::test]
async fn pages_name_the_master_and_follow_leadership() {
    let masters = FakeMasters::start(3, Some(0)).await;
    let page = ask(&masters, 2, "/master/tasks").await;
    assert_eq!(page.body, "master 3 of 3 (standby): GET /master/tasks\n");
    let who = |a: Answer| Page::parse(&a.body);
    let leads = |index| Some(Page { index, leads: true });
    assert_eq!(who(ask(&masters, 0, "/").await), leads(0));

    masters.set_leader(Some(2));
    assert_eq!(masters.leader(), Some(2));
    assert_eq!(who(ask(&masters, 2, "/").await), leads(2));
    masters.also_claim(1, true);
    assert_eq!(who(ask(&masters, 1, "/").await), leads(1));
    assert_eq!(masters.served(1), 1);

    masters.set_leader(None);
    masters.also_claim(1, false);
    assert_eq!(masters.leader(), None);
    assert_eq!(ask(&masters, 0, "/master/state").await.status, 503);
    assert_eq!(ask(&masters, 0, "/scheduler/jobs").await.status, 503);
    let none = ask(&masters, 0, "/v2/leader").await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    assert_eq!(none.body, r#"{"message":"There is no leader"}"#);
    assert!(ask(&masters, 0, "/ping")
        .await
        .header("x-marathon-via")
        .is_some());
}
