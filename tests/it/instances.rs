//! Several Drovers on one Marathon (one per public agent) converge on the same routes: two
//! instances follow one fake Marathon through app and task changes and end with equal
//! route tables, and one instance's event stream breaking and reconnecting does not touch
//! the other's.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::marathon::{self, FakeMarathon, FakeTask};
use crate::support::*;

/// A TCP relay in front of the fake Marathon whose connections the test can cut: one
/// instance reaches Marathon through it, so only that instance's stream breaks.
struct Relay {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    async fn start(to: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("addr");
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let kept = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut upstream) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
                kept.lock().unwrap().push(relay);
            }
        });
        Relay {
            addr,
            conns,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts every connection open through the relay (both sides see them close).
    fn cut(&self) {
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

fn instance(url: &str) -> Drover {
    Drover::start(
        &format!("[marathon]\nurls = [\"{url}\"]\ngroups = [\"*\"]\nidle_timeout = \"2s\"\n"),
        "",
    )
}

/// `/debug/routes` without what differs between two correct instances: the table
/// version counts rebuilds, which depend on when events arrived.
async fn routes(drover: &Drover) -> Value {
    let answer = get(drover.admin(), "admin", "/debug/routes").await;
    let mut v: Value = serde_json::from_str(&answer.body).expect("JSON");
    v.as_object_mut().expect("object").remove("version");
    v
}

/// Waits until both instances dump the same routes and those show `done`; returns them.
async fn converged(a: &Drover, b: &Drover, done: impl Fn(&Value) -> bool) -> Value {
    eventually(
        "both instances to have the same, expected routes",
        || async {
            let (ra, rb) = (routes(a).await, routes(b).await);
            (ra == rb && done(&ra)).then_some(ra)
        },
    )
    .await
}

fn backends(dump: &Value, route: &str) -> Vec<String> {
    dump["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] == route)
        .flat_map(|r| r["backends"].as_array().unwrap().iter())
        .map(|b| b["addr"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_converge_and_one_reconnect_leaves_the_other_alone() {
    let fake = FakeMarathon::start().await;
    let relay = Relay::start(fake.addr()).await;
    let (a1, a2, b1) = (
        SocketAddr::from(([127, 0, 0, 2], 31001)),
        SocketAddr::from(([127, 0, 0, 3], 31002)),
        SocketAddr::from(([127, 0, 0, 4], 31003)),
    );
    let web = |tasks: &[FakeTask]| {
        marathon::app(
            "/web",
            &[("HAPROXY_0_VHOST", "web.example.com")],
            10001,
            tasks,
        )
    };
    let api = |vhost: &str, tasks: &[FakeTask]| {
        marathon::app("/api", &[("HAPROXY_0_VHOST", vhost)], 10002, tasks)
    };
    let (tw1, tw2, ta1) = (
        marathon::task_id("/web", 1),
        marathon::task_id("/web", 2),
        marathon::task_id("/api", 1),
    );
    fake.set_apps(marathon::apps_json(&[web(&[FakeTask::new(&tw1, a1)])]));
    let one = instance(&fake.url());
    let two = instance(&relay.url());
    one.ready().await;
    two.ready().await;
    eventually("two event streams", || {
        let n = fake.open_streams();
        async move { (n >= 2).then_some(()) }
    })
    .await;
    converged(&one, &two, |r| backends(r, "web_10001") == [a1.to_string()]).await;

    // A task added, announced by an event.
    fake.set_apps(marathon::apps_json(&[web(&[
        FakeTask::new(&tw1, a1),
        FakeTask::new(&tw2, a2),
    ])]));
    fake.push(marathon::status_update(
        "/web",
        &tw2,
        "TASK_RUNNING",
        "127.0.0.3",
        31002,
    ));
    // A new app, announced by its deployment.
    let api_app = api("api.example.com", &[FakeTask::new(&ta1, b1)]);
    fake.set_apps(marathon::apps_json(&[
        web(&[FakeTask::new(&tw1, a1), FakeTask::new(&tw2, a2)]),
        api_app.clone(),
    ]));
    fake.push(marathon::api_post(&api_app));
    fake.push(marathon::deployment_success("deploy-api"));
    converged(&one, &two, |r| {
        backends(r, "api_10002") == [b1.to_string()]
            && backends(r, "web_10001") == [a1.to_string(), a2.to_string()]
    })
    .await;

    // Instance two's stream breaks; while it reconnects, a task is killed and a label
    // changes. Instance one keeps its stream: still one subscription for it.
    let streams_before = fake.subscriptions();
    relay.cut();
    fake.set_apps(marathon::apps_json(&[
        web(&[FakeTask::new(&tw2, a2)]),
        api("api2.example.com", &[FakeTask::new(&ta1, b1)]),
    ]));
    fake.push(marathon::status_update(
        "/web",
        &tw1,
        "TASK_KILLED",
        "127.0.0.2",
        31001,
    ));
    fake.push(marathon::api_post(&api("api2.example.com", &[])));
    let vhosts = |r: &Value| -> Vec<String> {
        r["vhosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["host"].as_str().unwrap().to_string())
            .collect()
    };
    converged(&one, &two, |r| {
        backends(r, "web_10001") == [a2.to_string()]
            && vhosts(r).contains(&"api2.example.com".to_string())
            && !vhosts(r).contains(&"api.example.com".to_string())
    })
    .await;
    // Only the cut instance subscribed again.
    eventually("instance two to subscribe again", || {
        let n = fake.subscriptions();
        async move { (n == streams_before + 1).then_some(()) }
    })
    .await;
    assert_eq!(fake.open_streams(), 2, "one stream each again");
}
