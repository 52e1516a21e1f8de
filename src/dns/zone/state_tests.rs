//! `ZoneState` patches against full compiles: after every random change to the
//! Marathon-only apps, the patched zone must answer every name as a fresh `Zone::compile`
//! of the same input does.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use super::*;
use crate::catalog::cluster::{
    Agent, Discovery, DiscoveryPort, Endpoint, Framework, MarathonOnlyTask, Task, TaskIps,
};
use crate::dns::records::HostRecord;

/// A small deterministic generator (xorshift64*): the same run every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// App ids whose labels collide: `/shop/web` and `/web-shop` are both `web-shop`; `/web`
/// is also a Mesos task's name; one id is long enough that its canonical names are dropped.
const APP_IDS: &[&str] = &[
    "/web",
    "/shop/web",
    "/web-shop",
    "/api",
    "/a/b",
    "/b-a",
    "/db",
    "/cache",
    "/x",
    "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

/// Agent ids: one's tail (`b@d`) cannot go on the wire, so its canonical names are dropped.
const AGENTS: &[Option<&str>] = &[None, Some("ag-S1"), Some("ag-S2"), Some("ag-B@D")];

const HOSTS: &[&str] = &["10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::1", "fd00::2"];

fn cluster() -> Cluster {
    let agent = |id: &str, address: &str, ip_text: &str| Agent {
        id: id.into(),
        endpoint: Some(Endpoint {
            address: address.into(),
            ips: vec![ip(ip_text)],
            port: 5051,
        }),
    };
    let task = |id: &str, name: &str, agent: &str, n: u8, healthy| Task {
        id: id.into(),
        name: name.into(),
        agent_id: agent.into(),
        state: "TASK_RUNNING".into(),
        ips: TaskIps {
            netinfo: vec![ip(&format!("10.9.0.{n}"))],
            ..TaskIps::default()
        },
        ports: vec![31000 + u16::from(n)],
        healthy,
        ..Task::default()
    };
    let mut named = task("svc.1", "svc", "m-S1", 9, Some(true));
    named.discovery = Some(Discovery {
        name: "api".into(),
        ports: vec![DiscoveryPort {
            number: 80,
            protocol: "tcp".into(),
            name: "http".into(),
        }],
    });
    Cluster {
        leader: Some(Endpoint {
            address: "10.0.1.1:5050".into(),
            ips: vec![ip("10.0.1.1")],
            port: 5050,
        }),
        masters: vec![],
        agents: vec![
            agent("m-S1", "10.0.2.1:5051", "10.0.2.1"),
            agent("m-S2", "[fd00::9]:5051", "fd00::9"),
        ],
        frameworks: vec![
            Framework {
                name: "marathon".into(),
                ips: vec![ip("10.0.1.2")],
                port: Some(8080),
                tasks: vec![
                    // `web` shares its label with the app `/web`; both of `db`'s fail.
                    task("web.m1", "web", "m-S1", 1, Some(true)),
                    task("web.m2", "web", "m-S2", 2, Some(false)),
                    task("db.m1", "db", "m-S1", 3, Some(false)),
                    task("db.m2", "db", "m-S2", 4, Some(false)),
                    named,
                ],
            },
            Framework {
                name: "chronos".into(),
                tasks: vec![task("web.c1", "web", "m-S1", 5, Some(false))],
                ..Framework::default()
            },
        ],
    }
}

/// Marathon task ids are unique; this counter makes them so.
struct Tasks(u32);

impl Tasks {
    fn task(&mut self, rng: &mut Rng) -> MarathonOnlyTask {
        self.0 += 1;
        let ports: Vec<u16> = (0..rng.below(3))
            .map(|_| 31000 + rng.below(4) as u16)
            .collect();
        MarathonOnlyTask {
            id: format!("task.{}", self.0),
            host: ip(rng.pick::<&str>(HOSTS)),
            ip_addresses: if rng.chance(30) {
                vec![ip(rng.pick::<&str>(HOSTS))]
            } else {
                vec![]
            },
            ports,
            agent_id: rng.pick(AGENTS).map(str::to_string),
            healthy: *rng.pick(&[None, Some(true), Some(false), Some(false)]),
        }
    }

    fn app(&mut self, rng: &mut Rng, id: &str) -> MarathonOnlyApp {
        MarathonOnlyApp {
            id: id.into(),
            tasks: (0..rng.below(4)).map(|_| self.task(rng)).collect(),
        }
    }
}

/// One random change: the ids replaced and the apps that replace them.
fn change(
    rng: &mut Rng,
    tasks: &mut Tasks,
    app_ids: &[&str],
    apps: &BTreeMap<String, MarathonOnlyApp>,
) -> (Vec<String>, Vec<MarathonOnlyApp>) {
    let id = rng.pick(app_ids).to_string();
    let Some(app) = apps.get(&id) else {
        // A new app.
        return (vec![id.clone()], vec![tasks.app(rng, &id)]);
    };
    let mut app = app.clone();
    match rng.below(8) {
        0 => return (vec![id], vec![]),
        1 | 2 => app.tasks.push(tasks.task(rng)),
        3 | 4 if !app.tasks.is_empty() => {
            let i = rng.below(app.tasks.len());
            app.tasks.remove(i);
        }
        5 if !app.tasks.is_empty() => {
            let i = rng.below(app.tasks.len());
            app.tasks[i].ports = vec![31000 + rng.below(4) as u16; rng.below(3)];
        }
        6 if !app.tasks.is_empty() => {
            let i = rng.below(app.tasks.len());
            app.tasks[i].healthy = *rng.pick(&[None, Some(true), Some(false)]);
        }
        _ => {
            // Two apps at once: this one and another, maybe new.
            let other = rng.pick(app_ids).to_string();
            if other != id {
                let replacement = tasks.app(rng, &other);
                return (vec![id, other], vec![app, replacement]);
            }
        }
    }
    (vec![id], vec![app])
}

/// A record as text: owner, type and value (targets by name).
fn text(zone: &Zone, r: &Record) -> String {
    let value = match &r.data {
        RecordData::A(v4) => format!("A {v4}"),
        RecordData::Aaaa(v6) => format!("AAAA {v6}"),
        RecordData::Ns(target) => format!("NS {}", zone.name(*target)),
        RecordData::Soa => "SOA".into(),
        RecordData::Srv(srv) => format!("SRV {} {}", zone.name(srv.target), srv.port),
    };
    format!("{} {value}", zone.name(r.owner))
}

/// What a lookup answers, order aside (SRV order follows name ids, which differ).
fn answer(zone: &Zone, name: &str, qtype: QueryType) -> String {
    match zone.lookup(name, qtype) {
        Lookup::Found {
            answers,
            additional,
        } => {
            let set = |records: &[Record]| -> BTreeSet<String> {
                records.iter().map(|r| text(zone, r)).collect()
            };
            assert_eq!(set(answers).len(), answers.len(), "no duplicates");
            format!("{:?} + {:?}", set(answers), set(additional))
        }
        other => format!("{other:?}"),
    }
}

fn assert_same(patched: &Zone, fresh: &Zone, step: usize) {
    let mut names: BTreeSet<String> = BTreeSet::new();
    for zone in [patched, fresh] {
        for node in zone.nodes() {
            let mut name = node.name();
            names.insert(name.to_string());
            // The parents too, and a name that does not exist below each.
            while let Some((_, parent)) = name.split_once('.') {
                names.insert(parent.to_string());
                name = parent;
            }
            names.insert(format!("nope.{}", node.name()));
        }
        names.extend(zone.dropped_names().iter().cloned());
    }
    // NS, SOA and other types are NODATA below the apex whenever A is.
    let qtypes = [
        QueryType::A,
        QueryType::AAAA,
        QueryType::SRV,
        QueryType::Any,
    ];
    for qtype in [QueryType::NS, QueryType::SOA, QueryType::Other(16)] {
        assert_eq!(
            answer(patched, "mesos.", qtype),
            answer(fresh, "mesos.", qtype),
            "step {step}: the apex, {qtype:?}"
        );
    }
    for name in &names {
        for qtype in qtypes {
            assert_eq!(
                answer(patched, name, qtype),
                answer(fresh, name, qtype),
                "step {step}: {name} {qtype:?}"
            );
        }
    }
    assert_eq!(patched.record_count(), fresh.record_count(), "step {step}");
    assert_eq!(patched.records().count(), patched.record_count());
    assert_eq!(
        patched.nodes().count(),
        fresh.nodes().count(),
        "step {step}"
    );
    assert_eq!(
        patched.dropped_names(),
        fresh.dropped_names(),
        "step {step}"
    );
    assert_eq!(
        patched.all_failing_names(),
        fresh.all_failing_names(),
        "step {step}"
    );
    let soa = |zone: &Zone| {
        let soa = zone.soa_fields().clone();
        (
            zone.name(soa.mname).to_string(),
            Soa {
                mname: NameId::from_index(0),
                ..soa
            },
        )
    };
    assert_eq!(soa(patched), soa(fresh), "step {step}");
    assert_eq!(text(patched, patched.soa()), text(fresh, fresh.soa()));
}

/// Runs `steps` random changes to the apps of `app_ids` from a random start, comparing
/// after each.
fn equivalence(seed: u64, healthy_only: bool, with_cluster: bool, app_ids: &[&str], steps: usize) {
    let mut rng = Rng(seed);
    let mut tasks = Tasks(0);
    let mut options = ZoneOptions::mesos_dns_defaults("mesos");
    options.records.healthy_only = healthy_only;
    options.records.name_server = Some(HostRecord {
        name: "ns1.mesos.".into(),
        ips: vec![ip("10.0.3.1")],
    });
    // The NS target is an app's name: the apex's additional records follow that app.
    options.soa.mname = "web-shop.marathon.mesos.".into();
    let cluster = with_cluster.then(cluster);
    // One task of an app proved down by Drover's own checks.
    let checked_down: BTreeSet<SocketAddr> = ["10.0.0.2:31001".parse().unwrap()].into();
    let mut apps: BTreeMap<String, MarathonOnlyApp> = BTreeMap::new();
    for id in app_ids {
        if rng.chance(60) {
            apps.insert(id.to_string(), tasks.app(&mut rng, id));
        }
    }
    let compile = |apps: &BTreeMap<String, MarathonOnlyApp>, serial| {
        let apps: Vec<MarathonOnlyApp> = apps.values().cloned().collect();
        Zone::compile(&ZoneInput {
            cluster: cluster.as_ref(),
            marathon_apps: &apps,
            options: &options,
            checked_down: &checked_down,
            serial,
        })
    };
    let start: Vec<MarathonOnlyApp> = apps.values().cloned().collect();
    let mut state = ZoneState::compile(&ZoneInput {
        cluster: cluster.as_ref(),
        marathon_apps: &start,
        options: &options,
        checked_down: &checked_down,
        serial: 1,
    });
    assert_same(state.zone(), &compile(&apps, 1), 0);
    for step in 1..=steps {
        let (ids, replacements) = change(&mut rng, &mut tasks, app_ids, &apps);
        for id in &ids {
            apps.remove(id);
        }
        for app in &replacements {
            apps.insert(app.id.clone(), app.clone());
        }
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let serial = 1 + step as u32;
        let patched = state.replace_marathon_apps(&ids, &replacements, serial);
        assert!(Arc::ptr_eq(&patched, state.zone()));
        assert_same(&patched, &compile(&apps, serial), step);
    }
    assert!(!state.should_recompile(), "a few hundred small changes");
}

#[test]
fn patches_answer_as_full_compiles_do() {
    equivalence(0x5eed_0001, false, true, APP_IDS, 150);
}

#[test]
fn patches_answer_as_full_compiles_do_with_healthy_only() {
    equivalence(0x5eed_0002, true, true, APP_IDS, 150);
}

#[test]
fn patches_answer_as_full_compiles_do_as_apps_come_and_go() {
    // Few apps and no cluster: the zone often empties, and names (empty non-terminals
    // such as `_tcp.marathon.mesos` included) appear and go.
    equivalence(0x5eed_0003, true, false, &APP_IDS[..3], 100);
    equivalence(0x5eed_0004, false, false, &APP_IDS[3..6], 100);
}

#[test]
fn a_name_shared_with_the_cluster_rewrites_the_additional_records_pointing_at_it() {
    // The app's task has the id and agent of a Mesos task: the same canonical names. Its
    // agent address sorts first, so the Mesos SRV records' additional A record changes,
    // though the app adds no SRV record (no ports) and the SRV names stay as they are.
    let cluster = cluster();
    let options = ZoneOptions::mesos_dns_defaults("mesos");
    let twin = MarathonOnlyApp {
        id: "/web".into(),
        tasks: vec![MarathonOnlyTask {
            id: "web.m1".into(),
            host: ip("10.0.0.1"),
            ip_addresses: vec![],
            ports: vec![],
            agent_id: Some("m-S1".into()),
            healthy: None,
        }],
    };
    let none = BTreeSet::new();
    let input = |apps: &[MarathonOnlyApp], serial| {
        let input = ZoneInput {
            cluster: Some(&cluster),
            marathon_apps: apps,
            options: &options,
            checked_down: &none,
            serial,
        };
        Zone::compile(&input)
    };
    let mut state = ZoneState::compile(&ZoneInput {
        cluster: Some(&cluster),
        marathon_apps: &[],
        options: &options,
        checked_down: &none,
        serial: 1,
    });
    let srv = "_web._tcp.marathon.slave.mesos.";
    let glue = |zone: &Zone| match zone.lookup(srv, QueryType::SRV) {
        Lookup::Found { additional, .. } => {
            let mut ips: Vec<String> = additional.iter().map(|r| text(zone, r)).collect();
            ips.sort();
            ips
        }
        other => panic!("{other:?}"),
    };
    let before = glue(state.zone());
    let patched = state.replace_marathon_apps(&["/web"], std::slice::from_ref(&twin), 2);
    assert_ne!(glue(&patched), before);
    assert_same(&patched, &input(std::slice::from_ref(&twin), 2), 1);
    let patched = state.replace_marathon_apps(&["/web"], &[], 3);
    assert_eq!(glue(&patched), before);
    assert_same(&patched, &input(&[], 3), 2);
}

#[test]
fn a_patched_zone_shares_the_compiled_storage() {
    let options = ZoneOptions::mesos_dns_defaults("mesos");
    let app = |id: &str, task: &str| MarathonOnlyApp {
        id: id.into(),
        tasks: vec![MarathonOnlyTask {
            id: task.into(),
            host: ip("10.0.0.1"),
            ip_addresses: vec![],
            ports: vec![31000],
            agent_id: None,
            healthy: None,
        }],
    };
    let apps = [app("/web", "web.1"), app("/api", "api.1")];
    let mut state = ZoneState::compile(&ZoneInput {
        cluster: None,
        marathon_apps: &apps,
        options: &options,
        checked_down: &BTreeSet::new(),
        serial: 1,
    });
    let before = state.zone().clone();
    let after = state.replace_marathon_apps(&["/web"], &[app("/web", "web.2")], 2);
    // The compile's names and records are shared; one segment was added.
    assert!(Arc::ptr_eq(&before.names.compiled, &after.names.compiled));
    assert!(Arc::ptr_eq(&before.segments[0], &after.segments[0]));
    assert_eq!(after.segments.len(), 2);
    // The old zone still answers as it did.
    let canonical = |task: &str| format!("web-{}.marathon.mesos.", crate::dns::name::hash5(task));
    assert!(matches!(
        before.lookup(&canonical("web.1"), QueryType::A),
        Lookup::Found { .. }
    ));
    assert_eq!(
        after.lookup(&canonical("web.1"), QueryType::A),
        Lookup::NxDomain
    );
    assert!(matches!(
        after.lookup(&canonical("web.2"), QueryType::A),
        Lookup::Found { .. }
    ));
    assert_eq!(after.soa_fields().serial, 2);
    // Removing the last app takes `marathon.mesos` (an empty non-terminal) with it.
    assert_eq!(
        before.lookup("marathon.mesos.", QueryType::A),
        Lookup::NoData
    );
    let empty = state.replace_marathon_apps(&["/web", "/api"], &[], 3);
    assert_eq!(
        empty.lookup("marathon.mesos.", QueryType::A),
        Lookup::NxDomain
    );
    assert_eq!(empty.record_count(), 2, "the apex's SOA and NS");
}
