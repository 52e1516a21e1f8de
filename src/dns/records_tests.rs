//! `healthy_only`: which tasks a name answers when some fail their health checks.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use super::*;
use crate::catalog::cluster::{Agent, Framework, MarathonOnlyTask};
use crate::dns::name::hash5;

/// No active check proves anything down.
static NONE_DOWN: BTreeSet<SocketAddr> = BTreeSet::new();

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn agent(id: &str, address: &str) -> Agent {
    Agent {
        id: id.into(),
        endpoint: Some(Endpoint {
            address: format!("{address}:5051"),
            ips: vec![ip(address)],
            port: 5051,
        }),
    }
}

/// A running task `name` on agent `s{n}` with its own address `10.1.0.{n}` and host port
/// `3100{n}`.
fn task(id: &str, name: &str, n: u8, healthy: Option<bool>) -> Task {
    Task {
        id: id.into(),
        name: name.into(),
        agent_id: format!("agent-S{n}"),
        state: "TASK_RUNNING".into(),
        ips: TaskIps {
            netinfo: vec![ip(&format!("10.1.0.{n}"))],
            ..TaskIps::default()
        },
        ports: vec![31000 + u16::from(n)],
        healthy,
        ..Task::default()
    }
}

fn cluster(frameworks: Vec<Framework>) -> Cluster {
    Cluster {
        agents: (1..=4)
            .map(|n| agent(&format!("agent-S{n}"), &format!("10.0.0.{n}")))
            .collect(),
        frameworks,
        ..Cluster::default()
    }
}

fn marathon(tasks: Vec<Task>) -> Framework {
    Framework {
        name: "marathon".into(),
        tasks,
        ..Framework::default()
    }
}

fn options(healthy_only: bool) -> RecordOptions {
    RecordOptions {
        healthy_only,
        ..RecordOptions::default()
    }
}

/// Name -> its A records' addresses, and name -> its SRV records as `target:port`.
struct Answers {
    a: BTreeMap<String, BTreeSet<IpAddr>>,
    srv: BTreeMap<String, BTreeSet<String>>,
}

impl Answers {
    fn of(sets: &RecordSets) -> Answers {
        let mut answers = Answers {
            a: BTreeMap::new(),
            srv: BTreeMap::new(),
        };
        for r in &sets.records {
            let owner = sets.names.name(r.owner).to_string();
            match r.data {
                RecordData::A(v4) => {
                    answers.a.entry(owner).or_default().insert(IpAddr::V4(v4));
                }
                RecordData::Srv(srv) => {
                    let target = sets.names.name(srv.target);
                    let value = format!("{target}:{}", srv.port);
                    answers.srv.entry(owner).or_default().insert(value);
                }
                _ => {}
            }
        }
        answers
    }

    fn a(&self, name: &str) -> Vec<IpAddr> {
        self.a.get(name).into_iter().flatten().copied().collect()
    }

    fn srv(&self, name: &str) -> Vec<String> {
        self.srv.get(name).into_iter().flatten().cloned().collect()
    }

    fn has(&self, name: &str) -> bool {
        self.a.contains_key(name) || self.srv.contains_key(name)
    }
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

#[test]
fn a_name_answers_only_its_healthy_tasks() {
    let c = cluster(vec![marathon(vec![
        task("web.1", "web", 1, Some(true)),
        task("web.2", "web", 2, Some(false)),
    ])]);
    let answers = Answers::of(&generate(Some(&c), &[], &options(true), &NONE_DOWN));
    assert_eq!(answers.a("web.marathon.mesos."), ips(&["10.1.0.1"]));
    assert_eq!(answers.a("web.marathon.slave.mesos."), ips(&["10.0.0.1"]));
    let (h1, h2) = (hash5("web.1"), hash5("web.2"));
    // The unhealthy task's canonical names are left out too, and it is no SRV target.
    assert!(answers.has(&format!("web-{h1}-s1.marathon.mesos.")));
    assert!(!answers.has(&format!("web-{h2}-s2.marathon.mesos.")));
    assert!(!answers.has(&format!("web-{h2}-s2.marathon.slave.mesos.")));
    let srv = [format!("web-{h1}-s1.marathon.slave.mesos.:31001")];
    assert_eq!(answers.srv("_web._tcp.marathon.mesos."), srv);
    assert_eq!(answers.srv("_web._udp.marathon.slave.mesos."), srv);
}

#[test]
fn a_name_whose_tasks_all_fail_answers_them_all() {
    let c = cluster(vec![marathon(vec![
        task("web.1", "web", 1, Some(false)),
        task("web.2", "web", 2, Some(false)),
        task("api.1", "api", 3, Some(true)),
        task("api.2", "api", 4, Some(false)),
    ])]);
    let on = generate(Some(&c), &[], &options(true), &NONE_DOWN);
    let off = generate(Some(&c), &[], &options(false), &NONE_DOWN);
    assert_eq!(
        on.all_failing_names, 1,
        "web's tasks all fail; api has a healthy one"
    );
    assert_eq!(off.all_failing_names, 0, "not counted without healthy_only");
    let (on, off) = (Answers::of(&on), Answers::of(&off));
    assert_eq!(on.a("web.marathon.mesos."), ips(&["10.1.0.1", "10.1.0.2"]));
    assert_eq!(on.a, {
        // Everything as without the option, but for api.2's names.
        let mut a = off.a.clone();
        a.retain(|name, _| !name.contains(&hash5("api.2")));
        a.insert("api.marathon.mesos.".into(), [ip("10.1.0.3")].into());
        a.insert("api.marathon.slave.mesos.".into(), [ip("10.0.0.3")].into());
        a
    });
}

#[test]
fn off_by_default_every_task_is_answered() {
    assert!(!RecordOptions::default().healthy_only);
    let c = cluster(vec![marathon(vec![
        task("web.1", "web", 1, Some(true)),
        task("web.2", "web", 2, Some(false)),
    ])]);
    let answers = Answers::of(&generate(
        Some(&c),
        &[],
        &RecordOptions::default(),
        &NONE_DOWN,
    ));
    assert_eq!(
        answers.a("web.marathon.mesos."),
        ips(&["10.1.0.1", "10.1.0.2"])
    );
    assert!(answers.has(&format!("web-{}-s2.marathon.mesos.", hash5("web.2"))));
}

#[test]
fn tasks_without_health_are_always_answered() {
    let c = cluster(vec![marathon(vec![
        // Unknown counts as healthy: the failing task is left out beside it.
        task("web.1", "web", 1, None),
        task("web.2", "web", 2, Some(false)),
        task("api.1", "api", 3, None),
        task("api.2", "api", 4, None),
    ])]);
    let answers = Answers::of(&generate(Some(&c), &[], &options(true), &NONE_DOWN));
    assert_eq!(answers.a("web.marathon.mesos."), ips(&["10.1.0.1"]));
    assert_eq!(
        answers.a("api.marathon.mesos."),
        ips(&["10.1.0.3", "10.1.0.4"])
    );
}

#[test]
fn groups_are_per_framework_and_per_label() {
    let other = Framework {
        name: "chronos".into(),
        tasks: vec![task("web.3", "web", 3, Some(false))],
        ..Framework::default()
    };
    // A discovery name shares the main name of a task named the same.
    let mut named = task("x.4", "something-else", 4, Some(true));
    named.discovery = Some(crate::catalog::cluster::Discovery {
        name: "web".into(),
        ports: vec![],
    });
    let c = cluster(vec![
        marathon(vec![task("web.2", "web", 2, Some(false)), named]),
        other,
    ]);
    let answers = Answers::of(&generate(Some(&c), &[], &options(true), &NONE_DOWN));
    assert_eq!(answers.a("web.marathon.mesos."), ips(&["10.1.0.4"]));
    // chronos's only web task fails: it is answered (its name has no healthy task).
    assert_eq!(answers.a("web.chronos.mesos."), ips(&["10.1.0.3"]));
}

#[test]
fn marathon_only_apps_follow_the_same_rule() {
    let only = |id: &str, n: u8, healthy: Option<bool>| MarathonOnlyTask {
        id: id.into(),
        host: ip(&format!("10.0.0.{n}")),
        ip_addresses: vec![],
        ports: vec![31000],
        agent_id: None,
        healthy,
    };
    let apps = [
        MarathonOnlyApp {
            id: "/shop/web".into(),
            tasks: vec![only("w.1", 1, Some(true)), only("w.2", 2, Some(false))],
        },
        MarathonOnlyApp {
            id: "/shop/api".into(),
            tasks: vec![only("a.1", 3, Some(false)), only("a.2", 4, Some(false))],
        },
    ];
    let answers = Answers::of(&generate(None, &apps, &options(true), &NONE_DOWN));
    assert_eq!(answers.a("web-shop.marathon.mesos."), ips(&["10.0.0.1"]));
    assert!(!answers.has(&format!("web-shop-{}.marathon.mesos.", hash5("w.2"))));
    assert_eq!(
        answers.a("api-shop.marathon.mesos."),
        ips(&["10.0.0.3", "10.0.0.4"])
    );
    let answers = Answers::of(&generate(None, &apps, &options(false), &NONE_DOWN));
    assert_eq!(
        answers.a("web-shop.marathon.mesos."),
        ips(&["10.0.0.1", "10.0.0.2"])
    );
}

fn down(addrs: &[&str]) -> BTreeSet<SocketAddr> {
    addrs.iter().map(|a| a.parse().unwrap()).collect()
}

#[test]
fn a_task_drovers_checks_prove_down_is_left_out() {
    let c = cluster(vec![marathon(vec![
        task("web.1", "web", 1, None),
        task("web.2", "web", 2, None),
        task("api.1", "api", 3, Some(true)),
    ])]);
    // Proved down at its agent's address and host port (how Marathon's tasks are pooled).
    let sets = generate(Some(&c), &[], &options(true), &down(&["10.0.0.2:31002"]));
    let answers = Answers::of(&sets);
    assert_eq!(answers.a("web.marathon.mesos."), ips(&["10.1.0.1"]));
    assert!(!answers.has(&format!("web-{}-s2.marathon.mesos.", hash5("web.2"))));
    // Or at its own address (IP-per-task pools).
    let sets = generate(Some(&c), &[], &options(true), &down(&["10.1.0.1:31001"]));
    assert_eq!(
        Answers::of(&sets).a("web.marathon.mesos."),
        ips(&["10.1.0.2"])
    );
    // A down address of another port or agent changes nothing; unchecked tasks answer.
    let sets = generate(Some(&c), &[], &options(true), &down(&["10.0.0.2:31003"]));
    assert_eq!(
        Answers::of(&sets).a("web.marathon.mesos."),
        ips(&["10.1.0.1", "10.1.0.2"])
    );
}

#[test]
fn checked_down_follows_the_all_failing_rule_and_the_option() {
    let c = cluster(vec![marathon(vec![
        task("web.1", "web", 1, None),
        task("web.2", "web", 2, Some(false)),
    ])]);
    let both = down(&["10.0.0.1:31001"]);
    // web.1 proved down, web.2 unhealthy by Mesos: every task fails, so all answer.
    let sets = generate(Some(&c), &[], &options(true), &both);
    assert_eq!(sets.all_failing_names, 1);
    assert_eq!(
        Answers::of(&sets).a("web.marathon.mesos."),
        ips(&["10.1.0.1", "10.1.0.2"])
    );
    // Without healthy_only the checks change nothing.
    let sets = generate(Some(&c), &[], &options(false), &both);
    assert_eq!(
        Answers::of(&sets).a("web.marathon.mesos."),
        ips(&["10.1.0.1", "10.1.0.2"])
    );
}

#[test]
fn marathon_only_tasks_are_matched_by_host_and_port() {
    let only = |id: &str, n: u8| MarathonOnlyTask {
        id: id.into(),
        host: ip(&format!("10.0.0.{n}")),
        ip_addresses: vec![],
        ports: vec![31000, 31100],
        agent_id: None,
        healthy: None,
    };
    let apps = [MarathonOnlyApp {
        id: "/shop/web".into(),
        tasks: vec![only("w.1", 1), only("w.2", 2)],
    }];
    // The second port of w.2 is checked down.
    let sets = generate(None, &apps, &options(true), &down(&["10.0.0.2:31100"]));
    assert_eq!(
        Answers::of(&sets).a("web-shop.marathon.mesos."),
        ips(&["10.0.0.1"])
    );
}
