//! The Mesos source's states named as Mesos-DNS names them: a state decoded and converted
//! (`state`, `cluster`), then compiled into a zone (`dns`), against `tests/fixtures/mesos/`: the complete record sets of every variant in
//! `mesos-dns-fake.records.json`, the [U] and [D] rows of `EXPECTED.md`, and all 338
//! answers of `mesos-dns-fake.dns-answers.json`, each compared with the [Q] choices below.
//!
//! [Q] choices (where this zone deliberately differs from Mesos-DNS):
//! - legacy names from unsanitized discovery names (`liquor.store.marathon.mesos`) are off by
//!   default: they may hold characters no host name may; `legacy_discovery_names` brings
//!   them back and the full sets are compared with it on;
//! - the apex answers SOA, NS and ANY in the answer section (RFC 1034), not in authority;
//! - SOA and NS below the apex are NODATA (name exists) or NXDOMAIN, not a SOA/NS in
//!   authority: only the apex holds them;
//! - a name that does not exist is NXDOMAIN for SRV too (Mesos-DNS: NOERROR, no SOA), and
//!   an existing name without SRV is NODATA;
//! - the apex and empty non-terminals exist (NODATA, not NXDOMAIN): RFC 8020 resolvers with
//!   QNAME minimisation would otherwise give up on every name below them;
//! - negative answers carry the SOA with the apex as owner (RFC 2308), not the question
//!   name (`Zone::soa`; put in place by the server, so not compared here).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde_json::Value;

use super::cluster::{self, convert, hosts_to_resolve, pid_endpoint, ResolvedHosts};
use super::state::{self, MesosState, Task};
use crate::catalog::cluster::{Cluster, MarathonOnlyApp, MarathonOnlyTask};
use crate::dns::api::{hosts, services, HostEntry, ServiceEntry};
use crate::dns::name::LabelRules;
use crate::dns::records::{generate, HostRecord, IpSource, RecordOptions, RecordSets};
use crate::dns::zone::{Lookup, QueryType, Record, RecordData, Zone, ZoneInput, ZoneOptions};

// === fixtures ===

fn fixture(rel: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/mesos/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

fn fixture_json(rel: &str) -> Value {
    serde_json::from_slice(&fixture(rel)).expect("fixture is JSON")
}

fn fixture_state() -> MesosState {
    state::decode(&fixture("mesos-dns-fake-state.json")).expect("fixture decodes")
}

/// The fixture's `no pid` framework is named at host `localhost`; the fixture files were
/// made where that resolved to 127.0.0.1.
fn resolved() -> ResolvedHosts {
    HashMap::from([("localhost".to_string(), vec!["127.0.0.1".parse().unwrap()])])
}

/// A `records.json` variant (see its `config`): the zone's options, and the masters and
/// leader its cluster gets.
struct Variant {
    options: ZoneOptions,
    masters: Vec<String>,
    /// A leader other than the state's own.
    leader: Option<String>,
}

fn variant_options(config: &Value, legacy: bool) -> Variant {
    let strings = |key: &str| -> Vec<String> {
        config[key]
            .as_array()
            .expect(key)
            .iter()
            .map(|v| v.as_str().expect("string").to_string())
            .collect()
    };
    let leader = config["leader"].as_str().expect("leader");
    let mut options = ZoneOptions::mesos_dns_defaults(config["domain"].as_str().unwrap());
    options.records = RecordOptions {
        domain: config["domain"].as_str().unwrap().to_string(),
        ip_sources: strings("ipSources")
            .iter()
            .filter_map(|s| IpSource::from_name(s))
            .collect(),
        labels: LabelRules::from_name(config["spec"].as_str().unwrap()).expect("spec"),
        name_server: Some(HostRecord {
            name: config["ns"].as_str().unwrap().to_string(),
            ips: vec![config["listener"].as_str().unwrap().parse().unwrap()],
        }),
        legacy_discovery_names: legacy,
        healthy_only: false,
    };
    Variant {
        options,
        masters: strings("masters"),
        // The state's own leader comes with the state; others replace it.
        leader: (leader != "master@1.2.3.4:5050").then(|| leader.to_string()),
    }
}

impl Variant {
    /// Mesos-DNS's defaults for `domain`, no masters, the state's leader.
    fn defaults(domain: &str) -> Variant {
        Variant {
            options: ZoneOptions::mesos_dns_defaults(domain),
            masters: Vec::new(),
            leader: None,
        }
    }
}

/// `state` as the Mesos source converts it, with the variant's masters and leader.
fn cluster_of(state: &MesosState, variant: &Variant, resolved: &ResolvedHosts) -> Cluster {
    let mut cluster = convert(state, &variant.masters, resolved);
    if let Some(leader) = &variant.leader {
        cluster.leader = pid_endpoint(leader, resolved);
    }
    cluster
}

/// Short names of EXPECTED.md §0 -> variants of `records.json`.
fn variant_id(config: &str) -> &'static str {
    match config {
        "R" => "resolver-fakedns",
        "G" => "gen-rfc952-all",
        "G-host" => "gen-rfc952-host",
        "G-mesos" => "gen-rfc952-mesos-host",
        "G-docker" => "gen-rfc952-docker-host",
        "G-netinfo" => "gen-rfc952-netinfo",
        "default-rfc1123" => "default-rfc1123",
        other => panic!("unknown configuration {other}"),
    }
}

fn records_json() -> Value {
    fixture_json("mesos-dns-fake.records.json")
}

fn config_options(config: &str, legacy: bool) -> Variant {
    let variants = records_json();
    variant_options(&variants["variants"][variant_id(config)]["config"], legacy)
}

fn zone_for(state: &MesosState, variant: &Variant) -> Zone {
    Zone::compile(&ZoneInput {
        cluster: Some(&cluster_of(state, variant, &resolved())),
        marathon_apps: &[],
        options: &variant.options,
        checked_down: &std::collections::BTreeSet::new(),
        serial: 0,
    })
}

fn zone(config: &str) -> Zone {
    zone_for(&fixture_state(), &config_options(config, false))
}

/// Type -> name -> sorted values (`ip` or `target:port`), the shape of `records.json`.
type Sets = BTreeMap<&'static str, BTreeMap<String, BTreeSet<String>>>;

fn sets_of_generator(sets: &RecordSets) -> Sets {
    let mut out = Sets::new();
    for r in &sets.records {
        let (t, v) = match &r.data {
            RecordData::A(ip) => ("A", ip.to_string()),
            RecordData::Aaaa(ip) => ("AAAA", ip.to_string()),
            RecordData::Srv(srv) => (
                "SRV",
                format!("{}:{}", sets.names.name(srv.target), srv.port),
            ),
            RecordData::Ns(_) | RecordData::Soa => panic!("the generator makes no {r:?}"),
        };
        out.entry(t)
            .or_default()
            .entry(sets.names.name(r.owner).to_string())
            .or_default()
            .insert(v);
    }
    out
}

fn sets_of_zone(zone: &Zone) -> Sets {
    let mut out = Sets::new();
    for record in zone.records() {
        let (t, v) = match &record.data {
            RecordData::A(ip) => ("A", ip.to_string()),
            RecordData::Aaaa(ip) => ("AAAA", ip.to_string()),
            RecordData::Srv(srv) => ("SRV", format!("{}:{}", zone.name(srv.target), srv.port)),
            RecordData::Ns(_) | RecordData::Soa => continue,
        };
        out.entry(t)
            .or_default()
            .entry(zone.name(record.owner).to_string())
            .or_default()
            .insert(v);
    }
    out
}

fn sets_of_json(variant: &Value) -> Sets {
    let mut out = Sets::new();
    for t in ["A", "AAAA", "SRV"] {
        for (name, values) in variant[t].as_object().expect(t) {
            out.entry(t).or_default().insert(
                name.clone(),
                values
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect(),
            );
        }
    }
    out
}

/// Names Mesos-DNS builds from the unsanitized discovery names of the fixture.
fn is_legacy_name(name: &str) -> bool {
    name.contains("liquor.store") || name.contains("big.dog")
}

fn diff(got: &Sets, want: &Sets) -> Vec<String> {
    let mut problems = Vec::new();
    for t in ["A", "AAAA", "SRV"] {
        let empty = BTreeMap::new();
        let (g, w) = (got.get(t).unwrap_or(&empty), want.get(t).unwrap_or(&empty));
        for (name, values) in w {
            match g.get(name) {
                None => problems.push(format!("{t} {name}: missing, want {values:?}")),
                Some(v) if v != values => {
                    problems.push(format!("{t} {name}: got {v:?}, want {values:?}"))
                }
                Some(_) => {}
            }
        }
        for name in g.keys().filter(|n| !w.contains_key(*n)) {
            problems.push(format!("{t} {name}: extra {:?}", g[name]));
        }
    }
    problems
}

// === records.json: the complete sets ===

/// Every variant, with legacy names on: exactly Mesos-DNS's sets, from the generator and
/// from the compiled zone. With them off (the default): the same minus the legacy names.
#[test]
fn complete_record_sets_of_every_variant() {
    let all = records_json();
    let state = fixture_state();
    let variants = all["variants"].as_object().unwrap();
    assert_eq!(variants.len(), 7);
    for (id, variant) in variants {
        let want = sets_of_json(variant);
        for legacy in [true, false] {
            let options = variant_options(&variant["config"], legacy);
            let cluster = cluster_of(&state, &options, &resolved());
            let generated = generate(
                Some(&cluster),
                &[],
                &options.options.records,
                &BTreeSet::new(),
            );
            let zone = zone_for(&state, &options);
            let mut want = want.clone();
            if !legacy {
                for names in want.values_mut() {
                    names.retain(|name, _| !is_legacy_name(name));
                }
            }
            let problems = diff(&sets_of_generator(&generated), &want);
            assert!(
                problems.is_empty(),
                "{id} legacy={legacy}:\n{}",
                problems.join("\n")
            );
            let problems = diff(&sets_of_zone(&zone), &want);
            assert!(
                problems.is_empty(),
                "{id} zone legacy={legacy}:\n{}",
                problems.join("\n")
            );
            assert!(
                zone.dropped_names().is_empty(),
                "{:?}",
                zone.dropped_names()
            );
        }
    }
}

// === lookups as sets ===

/// The answer values of a lookup as strings, `None` for anything but NOERROR with answers.
fn answer_set(zone: &Zone, name: &str, qtype: QueryType) -> Option<BTreeSet<String>> {
    match zone.lookup(name, qtype) {
        Lookup::Found { answers, .. } => Some(answers.iter().map(|r| value(zone, r)).collect()),
        _ => None,
    }
}

fn value(zone: &Zone, record: &Record) -> String {
    match &record.data {
        RecordData::A(ip) => ip.to_string(),
        RecordData::Aaaa(ip) => ip.to_string(),
        RecordData::Srv(srv) => format!("{}:{}", zone.name(srv.target), srv.port),
        RecordData::Ns(target) => zone.name(*target).to_string(),
        RecordData::Soa => {
            let soa = zone.soa_fields();
            format!(
                "{} {} {} {} {} {} {}",
                zone.name(soa.mname),
                soa.rname,
                soa.serial,
                soa.refresh,
                soa.retry,
                soa.expire,
                soa.minimum
            )
        }
    }
}

/// The values of the additional records of `name`'s SRV answer, in order.
fn srv_additional(zone: &Zone, name: &str) -> Vec<String> {
    let Lookup::Found { additional, .. } = zone.lookup(name, QueryType::SRV) else {
        panic!("{name}: no SRV answer")
    };
    additional.iter().map(|r| value(zone, r)).collect()
}

fn qtype(name: &str) -> QueryType {
    match name {
        "A" => QueryType::A,
        "AAAA" => QueryType::AAAA,
        "SRV" => QueryType::SRV,
        "SOA" => QueryType::SOA,
        "NS" => QueryType::NS,
        "ANY" => QueryType::Any,
        "MX" => QueryType::from_code(15),
        "TXT" => QueryType::from_code(16),
        "PTR" => QueryType::from_code(12),
        other => panic!("type {other}"),
    }
}

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|s| s.to_string()).collect()
}

/// EXPECTED.md §2 ([U], `TestInsertState`): config, name, type, expected set ("none" =
/// empty: the name has no record of that type).
const INSERT_STATE_ROWS: &[(&str, &str, &str, &[&str])] = &[
    ("G", "big-dog.marathon.mesos.", "A", &["10.3.0.1"]),
    (
        "G",
        "liquor-store.marathon.mesos.",
        "A",
        &["10.3.0.1", "10.3.0.2"],
    ),
    (
        "G",
        "liquor-store.marathon.slave.mesos.",
        "A",
        &["1.2.3.11", "1.2.3.12"],
    ),
    ("G", "car-store.marathon.slave.mesos.", "A", &["1.2.3.11"]),
    ("G", "nginx.marathon.mesos.", "A", &["10.3.0.3"]),
    ("G", "poseidon.marathon.mesos.", "A", &[]),
    ("G", "poseidon.marathon.slave.mesos.", "A", &[]),
    ("G", "master.mesos.", "A", &["144.76.157.37"]),
    ("G", "master0.mesos.", "A", &["144.76.157.37"]),
    ("G", "leader.mesos.", "A", &["144.76.157.37"]),
    (
        "G",
        "slave.mesos.",
        "A",
        &["1.2.3.10", "1.2.3.11", "1.2.3.12"],
    ),
    (
        "G",
        "some-box.chronoswithaspaceandmixe.mesos.",
        "A",
        &["1.2.3.11"],
    ),
    ("G", "marathon.mesos.", "A", &["1.2.3.11"]),
    (
        "G",
        "toy-store.ipv6-framework.mesos.",
        "AAAA",
        &["fd01:b::1:8000:2"],
    ),
    (
        "G",
        "toy-store.ipv6-framework.slave.mesos.",
        "AAAA",
        &["2001:db8::1"],
    ),
    ("G", "ipv6-framework.mesos.", "AAAA", &["2001:db8::1"]),
    ("G", "slave.mesos.", "AAAA", &["2001:db8::1"]),
    (
        "G",
        "_big-dog._tcp.marathon.mesos.",
        "SRV",
        &[
            "big-dog-4dfjd-0.marathon.mesos.:80",
            "big-dog-4dfjd-0.marathon.mesos.:443",
        ],
    ),
    ("G", "_poseidon._tcp.marathon.mesos.", "SRV", &[]),
    ("G", "_leader._tcp.mesos.", "SRV", &["leader.mesos.:5050"]),
    (
        "G",
        "_liquor-store._tcp.marathon.mesos.",
        "SRV",
        &[
            "liquor-store-4dfjd-0.marathon.mesos.:80",
            "liquor-store-4dfjd-0.marathon.mesos.:443",
            "liquor-store-zasmd-1.marathon.mesos.:80",
            "liquor-store-zasmd-1.marathon.mesos.:443",
        ],
    ),
    ("G", "_liquor-store._udp.marathon.mesos.", "SRV", &[]),
    ("G", "_liquor-store.marathon.mesos.", "SRV", &[]),
    (
        "G",
        "_https._liquor-store._tcp.marathon.mesos.",
        "SRV",
        &[
            "liquor-store-4dfjd-0.marathon.mesos.:443",
            "liquor-store-zasmd-1.marathon.mesos.:443",
        ],
    ),
    (
        "G",
        "_http._liquor-store._tcp.marathon.mesos.",
        "SRV",
        &[
            "liquor-store-4dfjd-0.marathon.mesos.:80",
            "liquor-store-zasmd-1.marathon.mesos.:80",
        ],
    ),
    (
        "G",
        "_car-store._tcp.marathon.mesos.",
        "SRV",
        &[
            "car-store-zinaz-0.marathon.slave.mesos.:31364",
            "car-store-zinaz-0.marathon.slave.mesos.:31365",
        ],
    ),
    (
        "G",
        "_car-store._udp.marathon.mesos.",
        "SRV",
        &[
            "car-store-zinaz-0.marathon.slave.mesos.:31364",
            "car-store-zinaz-0.marathon.slave.mesos.:31365",
        ],
    ),
    ("G", "_slave._tcp.mesos.", "SRV", &["slave.mesos.:5051"]),
    (
        "G",
        "_framework._tcp.marathon.mesos.",
        "SRV",
        &["marathon.mesos.:25501"],
    ),
    (
        "G-host",
        "liquor-store.marathon.mesos.",
        "A",
        &["1.2.3.11", "1.2.3.12"],
    ),
    (
        "G-host",
        "liquor-store.marathon.slave.mesos.",
        "A",
        &["1.2.3.11", "1.2.3.12"],
    ),
    ("G-host", "nginx.marathon.mesos.", "A", &["1.2.3.11"]),
    (
        "G-host",
        "car-store.marathon.slave.mesos.",
        "A",
        &["1.2.3.11"],
    ),
    (
        "G-host",
        "toy-store.ipv6-framework.mesos.",
        "AAAA",
        &["2001:db8::1"],
    ),
    (
        "G-host",
        "toy-store.ipv6-framework.slave.mesos.",
        "AAAA",
        &["2001:db8::1"],
    ),
    (
        "G-mesos",
        "liquor-store.marathon.mesos.",
        "A",
        &["1.2.3.11", "1.2.3.12"],
    ),
    (
        "G-mesos",
        "liquor-store.marathon.slave.mesos.",
        "A",
        &["1.2.3.11", "1.2.3.12"],
    ),
    ("G-mesos", "nginx.marathon.mesos.", "A", &["10.3.0.3"]),
    (
        "G-mesos",
        "car-store.marathon.slave.mesos.",
        "A",
        &["1.2.3.11"],
    ),
    (
        "G-mesos",
        "toy-store.ipv6-framework.mesos.",
        "AAAA",
        &["2001:db8::1"],
    ),
    (
        "G-mesos",
        "toy-store.ipv6-framework.slave.mesos.",
        "AAAA",
        &["2001:db8::1"],
    ),
    (
        "G-netinfo",
        "toy-store.ipv6-framework.mesos.",
        "A",
        &["12.0.1.3", "12.0.1.2"],
    ),
    (
        "G-netinfo",
        "toy-store.ipv6-framework.mesos.",
        "AAAA",
        &["fd01:b::1:8000:2"],
    ),
    (
        "G-netinfo",
        "toy-store.ipv6-framework.slave.mesos.",
        "AAAA",
        &["2001:db8::1"],
    ),
    (
        "G-docker",
        "liquor-store.marathon.mesos.",
        "A",
        &["10.3.0.1", "10.3.0.2"],
    ),
    (
        "G-docker",
        "liquor-store.marathon.slave.mesos.",
        "A",
        &["1.2.3.11", "1.2.3.12"],
    ),
    ("G-docker", "nginx.marathon.mesos.", "A", &["1.2.3.11"]),
    (
        "G-docker",
        "car-store.marathon.slave.mesos.",
        "A",
        &["1.2.3.11"],
    ),
    (
        "G-docker",
        "toy-store.ipv6-framework.mesos.",
        "AAAA",
        &["2001:db8::1"],
    ),
    (
        "G-docker",
        "toy-store.ipv6-framework.slave.mesos.",
        "AAAA",
        &["2001:db8::1"],
    ),
];

#[test]
fn insert_state_rows() {
    let mut zones: HashMap<&str, Zone> = HashMap::new();
    for &(config, name, t, want) in INSERT_STATE_ROWS {
        let zone = zones.entry(config).or_insert_with(|| zone(config));
        let got = answer_set(zone, name, qtype(t)).unwrap_or_default();
        assert_eq!(got, set(want), "{config} {name} {t}");
    }
}

/// EXPECTED.md §2, last paragraph: with netinfo as the only source, a task without netinfo
/// has no `task.fw.mesos` name but keeps `task.fw.slave.mesos`.
#[test]
fn netinfo_only_tasks_without_netinfo_keep_only_agent_names() {
    let zone = zone("G-netinfo");
    assert_eq!(
        zone.lookup("car-store.marathon.mesos.", QueryType::A),
        Lookup::NxDomain
    );
    assert_eq!(
        answer_set(&zone, "car-store.marathon.slave.mesos.", QueryType::A),
        Some(set(&["1.2.3.11"]))
    );
}

// === DNS answers (config R) ===

/// Our answer to a question as (rcode, answers as `owner TYPE value`, additional).
fn respond(zone: &Zone, name: &str, t: QueryType) -> (&'static str, BTreeSet<String>, Vec<Record>) {
    let line = |r: &Record| {
        format!(
            "{} {:?} {}",
            zone.name(r.owner),
            r.data.record_type(),
            value(zone, r)
        )
    };
    match zone.lookup(name, t) {
        Lookup::Found {
            answers,
            additional,
        } => (
            "NOERROR",
            answers.iter().map(line).collect(),
            additional.to_vec(),
        ),
        Lookup::NoData => ("NOERROR", BTreeSet::new(), Vec::new()),
        Lookup::NxDomain => ("NXDOMAIN", BTreeSet::new(), Vec::new()),
        Lookup::OutsideZone => ("OUTSIDE", BTreeSet::new(), Vec::new()),
    }
}

/// EXPECTED.md §3 ([U], `runHandlers`), rows 1-11; row 12 is forwarding, the server's.
#[test]
fn resolver_rows() {
    let zone = zone("R");
    let a = |n: &str, ip: &str| format!("{n} A {ip}");
    let srv = |n: &str, target: &str| format!("{n} Srv {target}");

    // 1, 2: owner lower-cased.
    for q in ["chronos.marathon.mesos.", "cHrOnOs.MARATHON.mesoS."] {
        let (rcode, answers, _) = respond(&zone, q, QueryType::A);
        assert_eq!(rcode, "NOERROR");
        assert_eq!(
            answers,
            BTreeSet::from([a("chronos.marathon.mesos.", "1.2.3.11")])
        );
        assert!(matches!(zone.lookup(q, QueryType::A), Lookup::Found { .. }));
        assert_eq!(zone.ttl(), 60);
    }
    // 3
    let (rcode, answers, _) = respond(&zone, "toy-store.ipv6-framework.mesos.", QueryType::AAAA);
    assert_eq!(rcode, "NOERROR");
    assert_eq!(
        answers,
        BTreeSet::from(["toy-store.ipv6-framework.mesos. Aaaa fd01:b::1:8000:2".to_string()])
    );
    // 4: SRV with one A per target in additional.
    let n = "_liquor-store._tcp.marathon.mesos.";
    let (rcode, answers, additional) = respond(&zone, n, QueryType::SRV);
    assert_eq!(rcode, "NOERROR");
    assert_eq!(
        answers,
        BTreeSet::from([
            srv(n, "liquor-store-4dfjd-0.marathon.mesos.:443"),
            srv(n, "liquor-store-4dfjd-0.marathon.mesos.:80"),
            srv(n, "liquor-store-zasmd-1.marathon.mesos.:80"),
            srv(n, "liquor-store-zasmd-1.marathon.mesos.:443"),
        ])
    );
    let additional: BTreeSet<String> = additional
        .iter()
        .map(|r| format!("{} {}", zone.name(r.owner), value(&zone, r)))
        .collect();
    assert_eq!(
        additional,
        set(&[
            "liquor-store-4dfjd-0.marathon.mesos. 10.3.0.1",
            "liquor-store-zasmd-1.marathon.mesos. 10.3.0.2"
        ])
    );
    let Lookup::Found { answers, .. } = zone.lookup(n, QueryType::SRV) else {
        panic!()
    };
    assert!(answers.iter().all(|r| matches!(r.data, RecordData::Srv(_))));
    assert_eq!((zone.srv_priority(), zone.srv_weight()), (0, 1));
    // 5
    let n = "_car-store._udp.marathon.mesos.";
    let (rcode, answers, additional) = respond(&zone, n, QueryType::SRV);
    assert_eq!(rcode, "NOERROR");
    assert_eq!(
        answers,
        BTreeSet::from([
            srv(n, "car-store-zinaz-0.marathon.slave.mesos.:31364"),
            srv(n, "car-store-zinaz-0.marathon.slave.mesos.:31365"),
        ])
    );
    assert_eq!(additional.len(), 1);
    assert_eq!(
        (zone.name(additional[0].owner), value(&zone, &additional[0])),
        (
            "car-store-zinaz-0.marathon.slave.mesos.",
            "1.2.3.11".to_string()
        )
    );
    // 6: NODATA, the name exists as SRV.
    assert_eq!(zone.lookup(n, QueryType::A), Lookup::NoData);
    // 7, 8 [Q]: SOA/NS exist only at the apex; below it, a missing name is NXDOMAIN.
    assert_eq!(
        zone.lookup("non-existing.mesos.", QueryType::SOA),
        Lookup::NxDomain
    );
    assert_eq!(
        zone.lookup("non-existing.mesos.", QueryType::NS),
        Lookup::NxDomain
    );
    // 9, 11
    assert_eq!(
        zone.lookup("missing.mesos.", QueryType::A),
        Lookup::NxDomain
    );
    assert_eq!(
        zone.lookup("missing.mesos.", QueryType::AAAA),
        Lookup::NxDomain
    );
    // 10
    assert_eq!(
        zone.lookup("chronos.marathon.mesos.", QueryType::AAAA),
        Lookup::NoData
    );
    // 12: outside the domain, for the server to refuse or forward.
    assert_eq!(
        zone.lookup("google.com.", QueryType::A),
        Lookup::OutsideZone
    );
    assert_eq!(zone.lookup("notmesos.", QueryType::A), Lookup::OutsideZone);
    assert_eq!(zone.lookup(".", QueryType::NS), Lookup::OutsideZone);

    // The SOA negative answers carry.
    assert_eq!(zone.name(zone.soa().owner), "mesos.");
    assert_eq!(
        value(&zone, zone.soa()),
        "ns1.mesos. root.ns1.mesos. 0 60 600 86400 60"
    );
    assert_eq!(zone.ttl(), 60);
}

/// All 338 answers of `mesos-dns-fake.dns-answers.json` (config R, legacy names on, as
/// Mesos-DNS has them), with the [Q] choices of the module doc applied to the expectation.
#[test]
fn every_recorded_dns_answer() {
    let zone = zone_for(&fixture_state(), &config_options("R", true));
    let answers = fixture_json("mesos-dns-fake.dns-answers.json");
    let questions = answers["dns"].as_array().unwrap();
    assert_eq!(questions.len(), 338);
    let mut checked = 0;
    for q in questions {
        let qname = q["qname"].as_str().unwrap();
        let t = q["qtype"].as_str().unwrap();
        let key = qname.to_ascii_lowercase().replace(".*", "");
        let exists = zone.node(&key).is_some();
        let apex = key == "mesos.";

        let line = |r: &Value| {
            let rdata = r["rdata"].as_str().unwrap();
            let rtype = r["type"].as_str().unwrap();
            let rdata = match rtype {
                // `0 1 443 target.` -> `target.:443`
                "SRV" => {
                    let parts: Vec<&str> = rdata.split(' ').collect();
                    format!("{}:{}", parts[3], parts[2])
                }
                _ => rdata.to_string(),
            };
            let rtype = match rtype {
                "AAAA" => "Aaaa",
                "SRV" => "Srv",
                "SOA" => "Soa",
                "NS" => "Ns",
                other => other,
            };
            format!("{} {rtype} {rdata}", r["name"].as_str().unwrap())
        };
        let mut want_rcode = q["rcode"].as_str().unwrap();
        let mut want_answers: BTreeSet<String> =
            q["answer"].as_array().unwrap().iter().map(line).collect();
        match (t, apex) {
            // [Q] the apex answers its SOA and NS (and both for ANY).
            ("SOA" | "NS" | "ANY", true) => {
                want_rcode = "NOERROR";
                want_answers = set(&[
                    "mesos. Ns ns1.mesos.",
                    "mesos. Soa ns1.mesos. root.ns1.mesos. 0 60 600 86400 60",
                ]);
                if t != "ANY" {
                    let ours = if t == "NS" { "Ns" } else { "Soa" };
                    want_answers.retain(|l| l.split(' ').nth(1) == Some(ours));
                }
            }
            // [Q] the apex exists: other types are NODATA.
            (_, true) => want_rcode = "NOERROR",
            // [Q] SOA/NS only at the apex; SRV of a missing name is NXDOMAIN.
            ("SOA" | "NS" | "SRV", false) if !exists => want_rcode = "NXDOMAIN",
            _ => {}
        }
        let (rcode, got_answers, got_additional) = respond(&zone, qname, qtype(t));
        assert_eq!(rcode, want_rcode, "{qname} {t}");
        assert_eq!(got_answers, want_answers, "{qname} {t}");

        // Additional: one A and one AAAA per target, "one of the target's addresses".
        let want_additional: Vec<(&str, &str)> = q["additional"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["name"].as_str().unwrap(), r["type"].as_str().unwrap()))
            .collect();
        let got_pairs: Vec<(String, String)> = got_additional
            .iter()
            .map(|r| {
                let t = match r.data {
                    RecordData::A(_) => "A",
                    _ => "AAAA",
                };
                (zone.name(r.owner).to_string(), t.to_string())
            })
            .collect();
        let want_pairs: BTreeSet<(String, String)> = want_additional
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(
            got_pairs.iter().cloned().collect::<BTreeSet<_>>(),
            want_pairs,
            "additional of {qname} {t}"
        );
        assert_eq!(
            got_pairs.len(),
            want_pairs.len(),
            "additional of {qname} {t}"
        );
        for r in &got_additional {
            let addresses = answer_set(&zone, zone.name(r.owner), QueryType::Any).unwrap();
            let record_value = value(&zone, r);
            assert!(
                addresses.iter().any(|a| *a == record_value),
                "{qname}: {r:?}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 338);
}

/// EXPECTED.md §6 ([D], config R): rows about names and types, as sets.
#[test]
fn further_answers_of_config_r() {
    let zone = zone("R");
    let legacy_zone = zone_for(&fixture_state(), &config_options("R", true));
    let found = |n: &str, t: QueryType| answer_set(&zone, n, t);
    let some = |v: &[&str]| Some(set(v));

    assert_eq!(found("leader.mesos.", QueryType::A), some(&["1.2.3.4"]));
    assert_eq!(
        zone.lookup("leader.mesos.", QueryType::AAAA),
        Lookup::NoData
    );
    assert_eq!(
        found("master.mesos.", QueryType::A),
        some(&["1.2.3.4", "144.76.157.37"])
    );
    assert_eq!(
        found("master0.mesos.", QueryType::A),
        some(&["144.76.157.37"])
    );
    assert_eq!(found("master1.mesos.", QueryType::A), some(&["1.2.3.4"]));
    for n in ["_leader._tcp.mesos.", "_leader._udp.mesos."] {
        assert_eq!(found(n, QueryType::SRV), some(&["leader.mesos.:5050"]));
        assert_eq!(srv_additional(&zone, n), ["1.2.3.4"]);
    }
    assert_eq!(
        found("slave.mesos.", QueryType::A),
        some(&["1.2.3.10", "1.2.3.11", "1.2.3.12"])
    );
    assert_eq!(
        found("slave.mesos.", QueryType::AAAA),
        some(&["2001:db8::1"])
    );
    assert_eq!(
        found("_slave._tcp.mesos.", QueryType::SRV),
        some(&["slave.mesos.:5051"])
    );
    let additional = srv_additional(&zone, "_slave._tcp.mesos.");
    // One A (any of the three) and the AAAA.
    assert_eq!(additional.len(), 2);
    assert!(["1.2.3.10", "1.2.3.11", "1.2.3.12"].contains(&additional[0].as_str()));
    assert_eq!(additional[1], "2001:db8::1");

    assert_eq!(found("marathon.mesos.", QueryType::A), some(&["1.2.3.11"]));
    assert_eq!(
        found("_framework._tcp.marathon.mesos.", QueryType::SRV),
        some(&["marathon.mesos.:25501"])
    );
    assert_eq!(
        found("ipv6-framework.mesos.", QueryType::AAAA),
        some(&["2001:db8::1"])
    );
    let n = "_framework._tcp.ipv6-framework.mesos.";
    assert_eq!(
        found(n, QueryType::SRV),
        some(&["ipv6-framework.mesos.:25501"])
    );
    assert_eq!(srv_additional(&zone, n), ["2001:db8::1"]);
    assert_eq!(
        found("chronoswithaspaceandmixe.mesos.", QueryType::A),
        some(&["1.2.3.12"])
    );
    assert_eq!(
        found("mesos-dns.mesos.", QueryType::A),
        some(&["127.0.0.1"])
    );

    // [Q] legacy names: on request only.
    assert_eq!(
        answer_set(&legacy_zone, "liquor.store.marathon.mesos.", QueryType::A),
        some(&["10.3.0.1", "10.3.0.2"])
    );
    assert_eq!(
        zone.lookup("liquor.store.marathon.mesos.", QueryType::A),
        Lookup::NxDomain
    );
    // `store.marathon.mesos.` is an empty non-terminal of the legacy names only.
    assert_eq!(
        legacy_zone.lookup("store.marathon.mesos.", QueryType::A),
        Lookup::NoData
    );
    assert_eq!(
        zone.lookup("store.marathon.mesos.", QueryType::A),
        Lookup::NxDomain
    );

    assert_eq!(
        zone.lookup("big-dog2.marathon.mesos.", QueryType::A),
        Lookup::NxDomain
    );
    assert_eq!(
        found("liquor-store-4dfjd-0.marathon.mesos.", QueryType::A),
        some(&["10.3.0.1"])
    );
    assert_eq!(
        found("liquor-store-zasmd-1.marathon.mesos.", QueryType::A),
        some(&["10.3.0.2"])
    );
    for p in ["tcp", "udp"] {
        let n = format!("_liquor-store._{p}.marathon.slave.mesos.");
        assert_eq!(
            found(&n, QueryType::SRV),
            some(&[
                "liquor-store-4dfjd-0.marathon.slave.mesos.:31354",
                "liquor-store-4dfjd-0.marathon.slave.mesos.:31355",
                "liquor-store-zasmd-1.marathon.slave.mesos.:31737",
                "liquor-store-zasmd-1.marathon.slave.mesos.:31738",
            ])
        );
        assert_eq!(
            srv_additional(&zone, &n)
                .into_iter()
                .collect::<BTreeSet<_>>(),
            set(&["1.2.3.11", "1.2.3.12"])
        );
    }
    // [Q] SRV of a name that does not exist: NXDOMAIN.
    assert_eq!(
        zone.lookup("_liquor-store._udp.marathon.mesos.", QueryType::SRV),
        Lookup::NxDomain
    );
    let n = "_http._liquor-store._tcp.marathon.mesos.";
    assert_eq!(
        found(n, QueryType::SRV),
        some(&[
            "liquor-store-4dfjd-0.marathon.mesos.:80",
            "liquor-store-zasmd-1.marathon.mesos.:80"
        ])
    );
    for n in [
        "_chronos._tcp.marathon.mesos.",
        "_chronos._udp.marathon.mesos.",
        "_chronos._tcp.marathon.slave.mesos.",
        "_chronos._udp.marathon.slave.mesos.",
    ] {
        assert_eq!(
            found(n, QueryType::SRV),
            some(&["chronos-rx8q6-0.marathon.slave.mesos.:31332"]),
            "{n}"
        );
        assert_eq!(srv_additional(&zone, n), ["1.2.3.11"]);
    }
    // nginx has no ports: no SRV name at all.
    assert_eq!(
        zone.lookup("_nginx._tcp.marathon.mesos.", QueryType::SRV),
        Lookup::NxDomain
    );
    assert_eq!(
        found("toy-store.ipv6-framework.mesos.", QueryType::A),
        some(&["12.0.1.2", "12.0.1.3"])
    );
    assert_eq!(
        found("toy-store.ipv6-framework.mesos.", QueryType::AAAA),
        some(&["fd01:b::1:8000:2"])
    );
    assert_eq!(
        zone.lookup("toy-store.ipv6-framework.slave.mesos.", QueryType::A),
        Lookup::NoData
    );
    assert_eq!(
        found("toy-store.ipv6-framework.slave.mesos.", QueryType::AAAA),
        some(&["2001:db8::1"])
    );
    let n = "_toy-store._tcp.ipv6-framework.mesos.";
    assert_eq!(
        found(n, QueryType::SRV),
        some(&[
            "toy-store-go588-3.ipv6-framework.slave.mesos.:31354",
            "toy-store-go588-3.ipv6-framework.slave.mesos.:31355"
        ])
    );
    assert_eq!(srv_additional(&zone, n), ["2001:db8::1"]);
    assert_eq!(
        found("some-box.chronoswithaspaceandmixe.mesos.", QueryType::A),
        some(&["1.2.3.11"])
    );
    assert_eq!(
        zone.lookup("poseidon.marathon.mesos.", QueryType::A),
        Lookup::NxDomain
    );
    for q in [
        "LIQUOR-STORE.Marathon.MESOS.",
        "liquor-store.*.marathon.mesos.",
    ] {
        let Lookup::Found { answers, .. } = zone.lookup(q, QueryType::A) else {
            panic!("{q}")
        };
        assert!(answers
            .iter()
            .all(|r| zone.name(r.owner) == "liquor-store.marathon.mesos."));
        assert_eq!(
            answers
                .iter()
                .map(|r| value(&zone, r))
                .collect::<BTreeSet<_>>(),
            set(&["10.3.0.1", "10.3.0.2"])
        );
    }
    for t in [12, 16] {
        assert_eq!(
            zone.lookup("leader.mesos.", QueryType::from_code(t)),
            Lookup::NoData
        );
    }
    assert_eq!(found("leader.mesos.", QueryType::Any), some(&["1.2.3.4"]));
    // [Q] the apex.
    assert_eq!(
        found("mesos.", QueryType::SOA),
        some(&["ns1.mesos. root.ns1.mesos. 0 60 600 86400 60"])
    );
    assert_eq!(found("mesos.", QueryType::NS), some(&["ns1.mesos."]));
    assert_eq!(
        found("mesos.", QueryType::Any),
        some(&["ns1.mesos.", "ns1.mesos. root.ns1.mesos. 0 60 600 86400 60"])
    );
    assert_eq!(
        zone.lookup("mesos.", QueryType::from_code(15)),
        Lookup::NoData
    );
    assert_eq!(
        zone.lookup("mesos", QueryType::from_code(16)),
        Lookup::NoData
    );
    assert_eq!(
        zone.lookup("missing.mesos.", QueryType::SRV),
        Lookup::NxDomain
    );
    // [Q] empty non-terminals exist.
    for n in [
        "marathon.slave.mesos.",
        "_tcp.marathon.mesos.",
        "_liquor-store._tcp.marathon.mesos",
    ] {
        let node = zone.node(n).unwrap_or_else(|| panic!("{n}"));
        if node.records().is_empty() {
            assert_eq!(zone.lookup(n, QueryType::A), Lookup::NoData, "{n}");
        }
    }
    assert_eq!(
        zone.lookup("marathon.slave.mesos.", QueryType::SRV),
        Lookup::NoData
    );
}

// === HTTP API ===

fn host_entries(pairs: &[(&str, &str)]) -> Vec<HostEntry> {
    pairs
        .iter()
        .map(|(h, ip)| HostEntry {
            host: h.to_string(),
            ip: ip.to_string(),
        })
        .collect()
}

/// EXPECTED.md §4 ([U], `TestHTTP`) and the recorded HTTP answers (lists compared sorted).
#[test]
fn http_api() {
    let zone = zone("R");
    assert_eq!(
        hosts(&zone, "leader.mesos"),
        host_entries(&[("leader.mesos.", "1.2.3.4")])
    );
    assert_eq!(hosts(&zone, "missing.mesos"), vec![HostEntry::default()]);
    assert_eq!(
        serde_json::to_string(&services(&zone, "_leader._tcp.mesos.")).unwrap(),
        r#"[{"service":"_leader._tcp.mesos.","host":"leader.mesos.","ip":"1.2.3.4","port":"5050"}]"#
    );
    assert_eq!(
        serde_json::to_string(&services(&zone, "_myservice._tcp.mesos.")).unwrap(),
        r#"[{"service":"","host":"","ip":"","port":""}]"#
    );
    assert_eq!(
        serde_json::to_string(&hosts(&zone, "leader.mesos")).unwrap(),
        r#"[{"host":"leader.mesos.","ip":"1.2.3.4"}]"#
    );

    let recorded = fixture_json("mesos-dns-fake.dns-answers.json");
    let mut checked = 0;
    for request in recorded["http"].as_array().unwrap() {
        let path = request["path"].as_str().unwrap();
        let body = &request["body"];
        if let Some(host) = path.strip_prefix("/v1/hosts/").filter(|h| !h.contains('/')) {
            let mut want: Vec<HostEntry> = serde_json::from_value(body.clone()).unwrap();
            let mut got = hosts(&zone, host);
            want.sort_by(|a, b| a.ip.cmp(&b.ip));
            got.sort_by(|a, b| a.ip.cmp(&b.ip));
            assert_eq!(got, want, "{path}");
            checked += 1;
        } else if let Some(service) = path.strip_prefix("/v1/services/") {
            let mut want: Vec<ServiceEntry> = serde_json::from_value(body.clone()).unwrap();
            let mut got = services(&zone, service);
            let key = |e: &ServiceEntry| (e.host.clone(), e.ip.clone(), e.port.clone());
            want.sort_by_key(key);
            got.sort_by_key(key);
            assert_eq!(got, want, "{path}");
            checked += 1;
        }
    }
    // Of 11: version and `/v1/hosts/x/ports` (501) are the admin server's.
    assert_eq!(checked, 9);
}

/// A service target with both families gives one entry per family (first address of each).
#[test]
fn services_give_one_entry_per_family() {
    let state = MesosState {
        leader: "master@[2001:db8::5]:5050".into(),
        ..Default::default()
    };
    let mut options = Variant::defaults("mesos");
    options.masters = vec!["[2001:db8::5]:5050".into()];
    let zone = zone_for(&state, &options);
    let entries = services(&zone, "_leader._udp.mesos");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].ip, "2001:db8::5");
    assert_eq!(entries[0].service, "_leader._udp.mesos");
}

// === masters (EXPECTED.md §5.1, `TestMasterRecord`) ===

/// The complete record map for a leader and masters list, domain `foo.com`, as
/// `TYPE name value` lines (SOA/NS of the apex left out).
fn master_records(leader: &str, masters: &[&str]) -> BTreeSet<String> {
    let options = RecordOptions {
        domain: "foo.com".into(),
        ..RecordOptions::default()
    };
    let state = MesosState {
        leader: leader.to_string(),
        ..MesosState::default()
    };
    let masters: Vec<String> = masters.iter().map(|m| m.to_string()).collect();
    let cluster = convert(&state, &masters, &ResolvedHosts::new());
    let sets = generate(Some(&cluster), &[], &options, &BTreeSet::new());
    let mut lines = BTreeSet::new();
    for (t, names) in sets_of_generator(&sets) {
        for (name, values) in names {
            for v in values {
                lines.insert(format!("{t} {name} {v}"));
            }
        }
    }
    lines
}

#[test]
fn master_and_leader_records() {
    for leader in ["", "@", "1@", "@2", "3@4"] {
        assert!(master_records(leader, &[]).is_empty(), "{leader:?}");
        assert!(
            master_records(leader, &["0.0.0.8:9"]).is_empty(),
            "{leader:?}"
        );
    }
    let srvs = [
        "SRV _leader._tcp.foo.com. leader.foo.com.:7",
        "SRV _leader._udp.foo.com. leader.foo.com.:7",
    ];
    let with_srvs = |lines: &[&str]| -> BTreeSet<String> {
        lines
            .iter()
            .chain(srvs.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let alone = with_srvs(&[
        "A leader.foo.com. 0.0.0.6",
        "A master.foo.com. 0.0.0.6",
        "A master0.foo.com. 0.0.0.6",
    ]);
    assert_eq!(master_records("5@0.0.0.6:7", &[]), alone);
    assert_eq!(master_records("5@0.0.0.6:7", &["0.0.0.6:7"]), alone);
    assert_eq!(
        master_records("5@[2001:db8::1]:7", &[]),
        with_srvs(&[
            "AAAA leader.foo.com. 2001:db8::1",
            "AAAA master.foo.com. 2001:db8::1",
            "AAAA master0.foo.com. 2001:db8::1"
        ])
    );
    let two = with_srvs(&[
        "A leader.foo.com. 0.0.0.6",
        "A master.foo.com. 0.0.0.6",
        "A master.foo.com. 0.0.0.8",
        "A master0.foo.com. 0.0.0.8",
        "A master1.foo.com. 0.0.0.6",
    ]);
    for masters in [
        &["0.0.0.8:9"][..],
        &["0.0.0.8:9", "0.0.0.8:9"],
        &["0.0.0.8:9", "0.0.0.6:7"],
        &["0.0.0.8:9", "0.0.0.6:7", "0.0.0.6:7"],
    ] {
        assert_eq!(master_records("5@0.0.0.6:7", masters), two, "{masters:?}");
    }
    assert_eq!(
        master_records("5@0.0.0.6:7", &["0.0.0.8:9", "0.0.0.6:7", "0.0.0.7:0"]),
        with_srvs(&[
            "A leader.foo.com. 0.0.0.6",
            "A master.foo.com. 0.0.0.6",
            "A master.foo.com. 0.0.0.7",
            "A master.foo.com. 0.0.0.8",
            "A master0.foo.com. 0.0.0.8",
            "A master1.foo.com. 0.0.0.6",
            "A master2.foo.com. 0.0.0.7",
        ])
    );
    assert_eq!(
        master_records(
            "5@0.0.0.6:7",
            &["0.0.0.8:9", "0.0.0.6:7", "[2001:db8::1]:0"]
        ),
        with_srvs(&[
            "A leader.foo.com. 0.0.0.6",
            "A master.foo.com. 0.0.0.6",
            "A master.foo.com. 0.0.0.8",
            "AAAA master.foo.com. 2001:db8::1",
            "A master0.foo.com. 0.0.0.8",
            "A master1.foo.com. 0.0.0.6",
            "AAAA master2.foo.com. 2001:db8::1",
        ])
    );
}

/// A cluster's leader replaced (as a test sets it); a master given by host name needs the
/// source's resolution.
#[test]
fn replaced_leader_and_resolved_masters() {
    let state = fixture_state();
    let mut options = Variant::defaults("mesos");
    options.leader = Some("master@10.0.0.9:5050".into());
    options.masters = vec!["m1.example.com:5050".into(), "10.0.0.9:5050".into()];
    let wanted = hosts_to_resolve(&state, &options.masters);
    assert_eq!(
        wanted,
        BTreeSet::from(["localhost".to_string(), "m1.example.com".to_string()])
    );
    let mut resolved = resolved();
    resolved.insert("m1.example.com".into(), vec!["10.0.0.1".parse().unwrap()]);
    let zone = Zone::compile(&ZoneInput {
        cluster: Some(&cluster_of(&state, &options, &resolved)),
        marathon_apps: &[],
        options: &options.options,
        checked_down: &std::collections::BTreeSet::new(),
        serial: 7,
    });
    assert_eq!(
        answer_set(&zone, "leader.mesos", QueryType::A),
        Some(set(&["10.0.0.9"]))
    );
    assert_eq!(
        answer_set(&zone, "master0.mesos", QueryType::A),
        Some(set(&["10.0.0.1"]))
    );
    assert_eq!(
        answer_set(&zone, "master1.mesos", QueryType::A),
        Some(set(&["10.0.0.9"]))
    );
    assert_eq!(zone.lookup("master2.mesos", QueryType::A), Lookup::NxDomain);
    assert_eq!(zone.soa().data, RecordData::Soa);
    assert_eq!(zone.soa_fields().serial, 7);
}

// === name server (EXPECTED.md §5.2) ===

#[test]
fn name_server_record() {
    for (name, ip, t) in [
        ("jdef123.mesos.", "4.5.6.7", QueryType::A),
        ("ack456.mesos.", "2001:db8::1", QueryType::AAAA),
    ] {
        let mut options = Variant::defaults("mesos");
        options.options.soa.mname = name.into();
        options.options.records.name_server = Some(HostRecord {
            name: name.into(),
            ips: vec![ip.parse().unwrap()],
        });
        let zone = zone_for(&fixture_state(), &options);
        assert_eq!(answer_set(&zone, name, t), Some(set(&[ip])));
        // The NS answer carries its target's address.
        let Lookup::Found {
            answers,
            additional,
        } = zone.lookup("mesos.", QueryType::NS)
        else {
            panic!()
        };
        assert_eq!(
            answers.iter().map(|r| value(&zone, r)).collect::<Vec<_>>(),
            [name]
        );
        assert_eq!(
            additional
                .iter()
                .map(|r| value(&zone, r))
                .collect::<Vec<_>>(),
            [ip]
        );
    }
}

// === task IPs (EXPECTED.md §5.4, `TestTask_IPs`) ===

fn task_json(statuses: &str) -> Task {
    serde_json::from_str(&format!(r#"{{"statuses": {statuses}}}"#)).expect("task JSON")
}

fn netinfo_status(state: &str, timestamp: f64, infos: &str) -> String {
    format!(
        r#"{{"state": "{state}", "timestamp": {timestamp}, "container_status": {{"network_infos": {infos}}}}}"#
    )
}

fn docker_status(timestamp: f64, ips: &[&str]) -> String {
    let labels: Vec<String> = ips
        .iter()
        .map(|ip| format!(r#"{{"key": "Docker.NetworkSettings.IPAddress", "value": "{ip}"}}"#))
        .collect();
    format!(
        r#"{{"state": "TASK_RUNNING", "timestamp": {timestamp}, "labels": [{}]}}"#,
        labels.join(",")
    )
}

fn infos(lists: &[&[&str]]) -> String {
    let infos: Vec<String> = lists
        .iter()
        .map(|ips| {
            let addrs: Vec<String> = ips
                .iter()
                .map(|ip| format!(r#"{{"ip_address": "{ip}"}}"#))
                .collect();
            format!(r#"{{"ip_addresses": [{}]}}"#, addrs.join(","))
        })
        .collect();
    format!("[{}]", infos.join(","))
}

fn sources(names: &[&str]) -> Vec<IpSource> {
    names
        .iter()
        .filter_map(|n| IpSource::from_name(n))
        .collect()
}

/// The task's addresses as the source reads them, then as DNS picks them.
fn task_ips(task: &Task, agent_ips: &[IpAddr], sources: &[IpSource]) -> Vec<IpAddr> {
    crate::dns::records::task_ips(&cluster::task_ips(task), agent_ips, sources).to_vec()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|ip| ip.parse().unwrap()).collect()
}

#[test]
fn task_ip_selection() {
    let running = |infos: String| {
        task_json(&format!(
            "[{}]",
            netinfo_status("TASK_RUNNING", 0.0, &infos)
        ))
    };
    let one = running(infos(&[&["1.2.3.4"]]));
    assert_eq!(task_ips(&one, &[], &sources(&[])), ips(&[]));
    assert_eq!(task_ips(&one, &[], &sources(&["host", "mesos"])), ips(&[]));
    assert_eq!(
        task_ips(&one, &[], &sources(&["foo", "netinfo", "bar"])),
        ips(&["1.2.3.4"])
    );
    let two_infos = running(infos(&[&["1.2.3.4"], &["2.3.4.5"]]));
    assert_eq!(
        task_ips(&two_infos, &[], &sources(&["netinfo"])),
        ips(&["1.2.3.4", "2.3.4.5"])
    );
    let two_addresses = running(infos(&[&["1.2.3.4", "2.3.4.5"]]));
    assert_eq!(
        task_ips(&two_addresses, &[], &sources(&["netinfo"])),
        ips(&["1.2.3.4", "2.3.4.5"])
    );
    let old = running(r#"[{"ip_address": "1.2.3.4"}]"#.into());
    assert_eq!(
        task_ips(&old, &[], &sources(&["netinfo"])),
        ips(&["1.2.3.4"])
    );
    let old_empty_and_new =
        running(r#"[{"ip_address": ""}, {"ip_addresses": [{"ip_address": "1.2.3.4"}]}]"#.into());
    assert_eq!(
        task_ips(&old_empty_and_new, &[], &sources(&["netinfo"])),
        ips(&["1.2.3.4"])
    );
    let old_and_new = running(
        r#"[{"ip_address": "1.2.3.4", "ip_addresses": [{"ip_address": "1.2.4.8"}]}]"#.into(),
    );
    assert_eq!(
        task_ips(&old_and_new, &[], &sources(&["netinfo"])),
        ips(&["1.2.4.8"])
    );

    let agent = ips(&["2.3.4.5"]);
    let v4_v6 = running(infos(&[&["1.2.3.4", "fd01:b::1:8000:2"]]));
    assert_eq!(
        task_ips(&v4_v6, &agent, &sources(&["host", "netinfo"])),
        ips(&["2.3.4.5"])
    );
    assert_eq!(
        task_ips(&v4_v6, &agent, &sources(&["netinfo", "host"])),
        ips(&["1.2.3.4", "fd01:b::1:8000:2"])
    );

    let stopped = task_json(&format!(
        "[{}, {}]",
        netinfo_status("TASK_RUNNING", 0.0, &infos(&[&["1.2.3.4"]])),
        netinfo_status("TASK_STOPPED", 0.0, &infos(&[&["2.3.4.5"]]))
    ));
    assert_eq!(
        task_ips(&stopped, &[], &sources(&["netinfo"])),
        ips(&["1.2.3.4"])
    );

    let ordering = task_json(&format!(
        "[{}, {}, {}, {}, {}]",
        netinfo_status("TASK_RUNNING", 1.0, &infos(&[&["1.2.3.4"]])),
        netinfo_status("TASK_RUNNING", 4.0, &infos(&[&["1.3.5.7"]])),
        docker_status(3.0, &["2.3.4.5"]),
        docker_status(5.0, &["2.4.6.8"]),
        docker_status(2.0, &["2.5.8.1"]),
    ));
    assert_eq!(
        task_ips(&ordering, &[], &sources(&["docker", "netinfo"])),
        ips(&["2.4.6.8"])
    );

    let two_labels = task_json(&format!(
        "[{}]",
        docker_status(0.0, &["1.2.3.4", "2.3.4.5"])
    ));
    assert_eq!(
        task_ips(&two_labels, &[], &sources(&["docker"])),
        ips(&["1.2.3.4", "2.3.4.5"])
    );
}

// === small rules (EXPECTED.md §5.5) and Marathon-only apps ===

#[test]
fn health_comes_from_the_newest_running_status() {
    let health = |statuses: &str| cluster::task_health(&task_json(statuses));
    let status = |state: &str, timestamp: f64, healthy: &str| {
        format!(r#"{{"state": "{state}", "timestamp": {timestamp}{healthy}}}"#)
    };
    // No statuses, or no health on the newest running one: unknown.
    assert_eq!(health("[]"), None);
    assert_eq!(
        health(&format!("[{}]", status("TASK_RUNNING", 1.0, ""))),
        None
    );
    assert_eq!(
        health(&format!(
            "[{}]",
            status("TASK_RUNNING", 1.0, r#", "healthy": null"#)
        )),
        None
    );
    // The newest running status wins, wherever it is in the list.
    let flip = format!(
        "[{}, {}, {}]",
        status("TASK_RUNNING", 3.0, r#", "healthy": false"#),
        status("TASK_RUNNING", 1.0, r#", "healthy": true"#),
        status("TASK_RUNNING", 2.0, r#", "healthy": true"#),
    );
    assert_eq!(health(&flip), Some(false));
    let back = format!(
        "[{}, {}]",
        status("TASK_RUNNING", 1.0, r#", "healthy": false"#),
        status("TASK_RUNNING", 2.0, r#", "healthy": true"#),
    );
    assert_eq!(health(&back), Some(true));
    // A newer status of another state does not count.
    let staged = format!(
        "[{}, {}]",
        status("TASK_RUNNING", 1.0, r#", "healthy": true"#),
        status("TASK_STAGING", 2.0, r#", "healthy": false"#),
    );
    assert_eq!(health(&staged), Some(true));
    // And the converted cluster carries it.
    let state = state::decode(
        format!(
            r#"{{"leader": "master@10.0.0.1:5050", "frameworks": [{{"name": "marathon",
                "tasks": [{{"id": "t1", "name": "web", "state": "TASK_RUNNING",
                "slave_id": "s1", "statuses": {flip}}}]}}]}}"#
        )
        .as_bytes(),
    )
    .expect("state decodes");
    let cluster = convert(&state, &[], &ResolvedHosts::new());
    assert_eq!(cluster.frameworks[0].tasks[0].healthy, Some(false));
}

#[test]
fn wildcards_case_and_duplicates() {
    let zone = zone("R");
    assert_eq!(
        zone.lookup("bob.*.mesos", QueryType::A),
        zone.lookup("bob.mesos.", QueryType::A)
    );
    assert_eq!(
        answer_set(&zone, "chronos.*.marathon.*.mesos", QueryType::A),
        Some(set(&["1.2.3.11"]))
    );
    // big.dog2 and liquor.store share a task id: one record each for the shared names.
    let Lookup::Found { answers, .. } = zone.lookup("liquor-store.marathon.mesos", QueryType::A)
    else {
        panic!()
    };
    assert_eq!(answers.len(), 2);
    // A question longer than any name takes the slow path and is still answered.
    let long = format!("{}.mesos.", "a".repeat(300));
    assert_eq!(zone.lookup(&long, QueryType::A), Lookup::NxDomain);
    assert_eq!(
        zone.lookup(
            &long.to_uppercase().replace(".MESOS.", ".com."),
            QueryType::A
        ),
        Lookup::OutsideZone
    );
    assert_eq!(zone.lookup("", QueryType::A), Lookup::OutsideZone);
    assert_eq!(zone.lookup("ÄÖ.mesos", QueryType::A), Lookup::NxDomain);
}

#[test]
fn marathon_only_apps() {
    let apps = [MarathonOnlyApp {
        id: "/shop/web".into(),
        tasks: vec![
            MarathonOnlyTask {
                id: "shop_web.1".into(),
                host: "10.0.0.5".parse().unwrap(),
                ip_addresses: vec![],
                ports: vec![31000, 31001],
                agent_id: Some("abc-S3".into()),
                healthy: None,
            },
            MarathonOnlyTask {
                id: "shop_web.2".into(),
                host: "10.0.0.6".parse().unwrap(),
                ip_addresses: vec!["9.9.9.9".parse().unwrap()],
                ports: vec![31002],
                agent_id: None,
                healthy: None,
            },
        ],
    }];
    let options = ZoneOptions::mesos_dns_defaults("mesos");
    let zone = Zone::compile(&ZoneInput {
        cluster: None,
        marathon_apps: &apps,
        options: &options,
        checked_down: &std::collections::BTreeSet::new(),
        serial: 1,
    });
    // netinfo first: the second task's own address; the first has none, then host.
    assert_eq!(
        answer_set(&zone, "web-shop.marathon.mesos", QueryType::A),
        Some(set(&["10.0.0.5", "9.9.9.9"]))
    );
    assert_eq!(
        answer_set(&zone, "web-shop.marathon.slave.mesos", QueryType::A),
        Some(set(&["10.0.0.5", "10.0.0.6"]))
    );
    let h1 = crate::dns::name::hash5("shop_web.1");
    let h2 = crate::dns::name::hash5("shop_web.2");
    assert_eq!(
        answer_set(&zone, "_web-shop._tcp.marathon.mesos", QueryType::SRV),
        Some(set(&[
            &format!("web-shop-{h1}-s3.marathon.slave.mesos.:31000"),
            &format!("web-shop-{h1}-s3.marathon.slave.mesos.:31001"),
            &format!("web-shop-{h2}.marathon.slave.mesos.:31002"),
        ]))
    );
    assert_eq!(
        answer_set(
            &zone,
            &format!("web-shop-{h2}.marathon.mesos"),
            QueryType::A
        ),
        Some(set(&["9.9.9.9"]))
    );
    // No Mesos state and no leader: no master names, but the apex is there.
    assert_eq!(zone.lookup("leader.mesos", QueryType::A), Lookup::NxDomain);
    assert!(matches!(
        zone.lookup("mesos", QueryType::SOA),
        Lookup::Found { .. }
    ));
}

/// Names that cannot be published are left out and listed, never served.
#[test]
fn unpublishable_names_are_dropped() {
    let body = r#"{
        "leader": "master@1.2.3.4:5050",
        "frameworks": [{"name": "fw", "pid": "scheduler(1)@1.2.3.5:1", "tasks": [
            {"id": "t1", "name": "ok", "slave_id": "a-0", "state": "TASK_RUNNING"},
            {"id": "t2", "name": "x", "slave_id": "a-0", "state": "TASK_RUNNING",
             "discovery": {"name": "Weird Name!"}},
            {"id": "t3", "name": "---", "slave_id": "a-0", "state": "TASK_RUNNING"}
        ]}, {"name": "$$$", "pid": "scheduler(1)@1.2.3.6:1"}],
        "slaves": [{"id": "a-0", "pid": "slave(1)@1.2.3.7:5051"}]
    }"#;
    let state = state::decode(body.as_bytes()).unwrap();
    let mut options = Variant::defaults("mesos");
    options.options.records.legacy_discovery_names = true;
    options.options.records.name_server = Some(HostRecord {
        name: "ns.elsewhere.org".into(),
        ips: ips(&["1.1.1.1"]),
    });
    let zone = zone_for(&state, &options);
    // No container IPs: the `host` source (a default) gives the agent's.
    assert!(matches!(
        zone.lookup("ok.fw.mesos", QueryType::A),
        Lookup::Found { .. }
    ));
    assert!(matches!(
        zone.lookup("ok.fw.slave.mesos", QueryType::A),
        Lookup::Found { .. }
    ));
    assert!(matches!(
        zone.lookup("weirdname.fw.slave.mesos", QueryType::A),
        Lookup::Found { .. }
    ));
    let dropped = zone.dropped_names();
    assert!(
        dropped.contains(&"ns.elsewhere.org.".to_string()),
        "{dropped:?}"
    );
    assert!(
        dropped.iter().any(|n| n.starts_with("weird name!")),
        "{dropped:?}"
    );
    // Empty labels never become names.
    assert!(zone
        .nodes()
        .all(|n| !n.name().starts_with('.') && !n.name().contains("..")));
    assert!(zone.nodes().all(|n| !n.name().starts_with("-")));
}

/// Record counts for the metric, and compile time (informal; printed with --nocapture).
#[test]
#[allow(clippy::disallowed_methods)] // times real CPU work, outside any runtime
fn record_count_and_compile_time() {
    let state = fixture_state();
    let options = config_options("R", false);
    let started = std::time::Instant::now();
    let zone = zone_for(&state, &options);
    let elapsed = started.elapsed();
    assert_eq!(zone.record_count(), zone.records().count());
    // 2 for the apex SOA and NS.
    let generated: usize = sets_of_zone(&zone)
        .values()
        .flat_map(|names| names.values())
        .map(BTreeSet::len)
        .sum();
    assert_eq!(zone.record_count(), generated + 2);
    println!(
        "fixture zone: {} records, compiled in {elapsed:?}",
        zone.record_count()
    );
}
