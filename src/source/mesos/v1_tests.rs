//! The operator API's events applied to the stream's model, from the repository's
//! `operator-api` fixture, and checked through the one converter and the zone, as DNS
//! answers them.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::dns::zone::{Lookup, QueryType, RecordData, Zone, ZoneInput, ZoneOptions};
use crate::source::mesos::cluster::{convert, ResolvedHosts};

const MARATHON: &str = "5e1ad2a1-3c6b-4f0e-8d1e-3b4a7c0e2f10-0000";
const CHRONOS: &str = "5e1ad2a1-3c6b-4f0e-8d1e-3b4a7c0e2f10-0001";
const LEADER: &str = "master@127.0.0.1:5050";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/mesos/operator-api/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// The fixture's events, each as its own record.
fn events() -> Vec<Vec<u8>> {
    let list: Vec<Value> = serde_json::from_slice(&fixture("events.json")).expect("JSON");
    list.iter().map(|e| e.to_string().into_bytes()).collect()
}

/// The event of `kind` in the fixture (the first of that type).
fn event(kind: &str) -> Vec<u8> {
    events()
        .into_iter()
        .find(|e| decode(e).expect("decodes").kind == kind)
        .unwrap_or_else(|| panic!("no {kind} in the fixture"))
}

fn pids() -> Pids {
    [(
        MARATHON.to_string(),
        "scheduler-1@127.0.0.21:40001".to_string(),
    )]
    .into()
}

fn subscribed() -> Model {
    let record = fixture("subscribed.json");
    let event = decode(&record).expect("SUBSCRIBED decodes");
    assert_eq!(event.label(), "SUBSCRIBED");
    assert_eq!(event.heartbeat_secs(), 15.0);
    Model::from_subscribed(&event, LEADER, &pids()).expect("a state")
}

fn apply(model: &mut Model, record: &[u8]) -> bool {
    let event = decode(record).expect("decodes");
    model.apply(&event, &pids()).expect("applies")
}

fn zone(model: &Model) -> Zone {
    let cluster = convert(
        &model.state,
        &["127.0.0.1:5050".to_string()],
        &ResolvedHosts::new(),
    );
    Zone::compile(&ZoneInput {
        cluster: Some(&cluster),
        marathon_apps: &[],
        options: &ZoneOptions::mesos_dns_defaults("mesos"),
        checked_down: &BTreeSet::new(),
        serial: 1,
    })
}

fn a(zone: &Zone, name: &str) -> BTreeSet<String> {
    match zone.lookup(name, QueryType::A) {
        Lookup::Found { answers, .. } => answers
            .iter()
            .filter_map(|r| match r.data {
                RecordData::A(ip) => Some(ip.to_string()),
                _ => None,
            })
            .collect(),
        _ => BTreeSet::new(),
    }
}

fn set(ips: &[&str]) -> BTreeSet<String> {
    ips.iter().map(|s| s.to_string()).collect()
}

#[test]
fn subscribed_becomes_the_state_poll_would_have_read() {
    let model = subscribed();
    let s = &model.state;
    assert_eq!(s.leader, LEADER);
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert_eq!(s.agents.len(), 2);
    assert_eq!(s.agents[0].pid, "slave(1)@127.0.0.31:5051");
    let marathon = &s.frameworks[0];
    assert_eq!(
        (marathon.name.as_str(), marathon.pid.as_deref()),
        ("marathon", Some("scheduler-1@127.0.0.21:40001")),
        "the pid comes from the state read"
    );
    assert_eq!(s.frameworks[1].pid, None, "chronos has no pid in that read");
    let web = &marathon.tasks[0];
    assert_eq!(web.slave_id, "5e1ad2a1-3c6b-4f0e-8d1e-3b4a7c0e2f10-S0");
    assert_eq!(web.resources.ports, "[31001-31002]");
    assert_eq!(web.labels[0].key, "HAPROXY_GROUP");
    assert_eq!(web.discovery.as_ref().map(|d| d.ports.ports.len()), Some(2));
    let zone = zone(&model);
    // Mesos-DNS's default sources: the container's network address first, else the
    // agent's (db has none of its own).
    assert_eq!(a(&zone, "web-shop.marathon.mesos."), set(&["127.0.0.11"]));
    assert_eq!(a(&zone, "db-shop.marathon.mesos."), set(&["127.0.0.32"]));
    assert_eq!(a(&zone, "marathon.mesos."), set(&["127.0.0.21"]));
    assert_eq!(a(&zone, "leader.mesos."), set(&["127.0.0.1"]));
}

#[test]
fn a_task_added_then_running_gets_its_name() {
    let mut model = subscribed();
    assert!(apply(&mut model, &event("TASK_ADDED")));
    // Staging: no name yet.
    assert_eq!(
        a(&zone(&model), "web-shop.marathon.mesos."),
        set(&["127.0.0.11"])
    );
    assert!(apply(&mut model, &events()[2]));
    assert_eq!(
        a(&zone(&model), "web-shop.marathon.mesos."),
        set(&["127.0.0.11", "127.0.0.12"])
    );
}

#[test]
fn task_updated_changes_the_status_only() {
    let mut model = subscribed();
    apply(&mut model, &event("TASK_ADDED"));
    let before = model.state.frameworks[0].tasks[2].clone();
    assert_eq!(before.state, "TASK_STAGING");
    assert!(apply(&mut model, &events()[2]));
    let after = &model.state.frameworks[0].tasks[2];
    assert_eq!(after.state, "TASK_RUNNING");
    assert_eq!(after.statuses.len(), 1);
    assert_eq!(
        after.statuses[0].container_status.network_infos[0].ip_addresses[0].ip_address,
        "127.0.0.12"
    );
    // Everything else is as TASK_ADDED gave it.
    assert_eq!(after.name, before.name);
    assert_eq!(after.slave_id, before.slave_id);
    assert_eq!(after.resources, before.resources);
    assert_eq!(after.discovery, before.discovery);
    assert_eq!(after.labels, before.labels);
    // The same status again adds nothing.
    apply(&mut model, &events()[2]);
    assert_eq!(model.state.frameworks[0].tasks[2].statuses.len(), 1);
    // An update for a task never added changes nothing (a later read will list it).
    let unknown = events()[2].clone().into_iter().collect::<Vec<u8>>();
    let unknown = String::from_utf8(unknown)
        .unwrap()
        .replace("8b3e8a2a", "00000000");
    let snapshot = model.clone();
    assert!(!apply(&mut model, unknown.as_bytes()));
    assert_eq!(model, snapshot);
}

#[test]
fn a_killed_task_leaves() {
    let mut model = subscribed();
    let zone_before = zone(&model);
    assert_eq!(
        a(&zone_before, "web-shop.marathon.mesos."),
        set(&["127.0.0.11"])
    );
    assert!(apply(&mut model, &events()[3]));
    assert_eq!(model.task_count(), 2);
    assert_eq!(a(&zone(&model), "web-shop.marathon.mesos."), set(&[]));
}

#[test]
fn agent_removed_drops_its_tasks_records_as_mesos_dns_does() {
    let mut model = subscribed();
    assert_eq!(
        a(&zone(&model), "db-shop.marathon.mesos."),
        set(&["127.0.0.32"])
    );
    assert!(apply(&mut model, &event("AGENT_REMOVED")));
    assert_eq!(model.state.agents.len(), 1);
    let zone = zone(&model);
    // Its task is not listed under any agent any more: no name (Mesos-DNS skips a task
    // whose agent the state does not list); the other agent's tasks stay.
    assert_eq!(a(&zone, "db-shop.marathon.mesos."), set(&[]));
    assert_eq!(a(&zone, "web-shop.marathon.mesos."), set(&["127.0.0.11"]));
    assert_eq!(a(&zone, "slave.mesos."), set(&["127.0.0.31"]));
    // An agent added is a slave name at once.
    assert!(apply(&mut model, &event("AGENT_ADDED")));
    assert_eq!(
        a(&self::zone(&model), "slave.mesos."),
        set(&["127.0.0.31", "127.0.0.33"])
    );
}

#[test]
fn frameworks_come_and_go() {
    let mut model = subscribed();
    assert!(apply(&mut model, &event("FRAMEWORK_ADDED")));
    assert_eq!(a(&zone(&model), "jenkins.mesos."), set(&["127.0.0.23"]));
    assert_eq!(a(&zone(&model), "chronos.mesos."), set(&["127.0.0.22"]));
    assert!(apply(&mut model, &event("FRAMEWORK_REMOVED")));
    assert!(model.state.frameworks.iter().all(|f| f.id != CHRONOS));
    assert_eq!(a(&zone(&model), "chronos.mesos."), set(&[]));
    // Updated: a new name, its tasks kept, its pid still the one the state read gave.
    let renamed = String::from_utf8(event("FRAMEWORK_ADDED"))
        .unwrap()
        .replace("FRAMEWORK_ADDED", "FRAMEWORK_UPDATED")
        .replace("framework_added", "framework_updated")
        .replace("5e1ad2a1-3c6b-4f0e-8d1e-3b4a7c0e2f10-0002", MARATHON)
        .replace("jenkins", "marathon-two");
    let tasks = model.state.frameworks[0].tasks.len();
    assert!(apply(&mut model, renamed.as_bytes()));
    let m = &model.state.frameworks[0];
    assert_eq!(m.name, "marathon-two");
    assert_eq!(m.tasks.len(), tasks);
    assert_eq!(m.pid.as_deref(), Some("scheduler-1@127.0.0.21:40001"));
}

#[test]
fn a_task_before_its_framework_waits_for_it() {
    let mut model = subscribed();
    let orphan = String::from_utf8(event("TASK_ADDED"))
        .unwrap()
        .replace(MARATHON, "5e1ad2a1-3c6b-4f0e-8d1e-3b4a7c0e2f10-0002");
    assert!(apply(&mut model, orphan.as_bytes()));
    assert_eq!(model.task_count(), 3, "not under any framework yet");
    assert!(apply(&mut model, &event("FRAMEWORK_ADDED")));
    assert_eq!(model.task_count(), 4);
    assert_eq!(model.state.frameworks[2].tasks[0].name, "web.shop");
}

#[test]
fn heartbeats_and_unknown_types_change_nothing_and_bad_events_say_why() {
    let mut model = subscribed();
    let before = model.clone();
    assert!(!apply(&mut model, br#"{"type":"HEARTBEAT"}"#));
    assert!(!apply(
        &mut model,
        br#"{"type":"SOMETHING_NEW","something_new":{}}"#
    ));
    assert_eq!(model, before);
    assert_eq!(
        decode(br#"{"type":"SOMETHING_NEW"}"#).unwrap().label(),
        "other"
    );
    assert!(decode(b"{not json").is_err());
    let e = decode(br#"{"type":"TASK_ADDED"}"#).unwrap();
    assert!(matches!(
        model.apply(&e, &pids()),
        Err(EventError::Missing(..))
    ));
    let e = decode(br#"{"type":"TASK_ADDED","task_added":{"task":{"task_id":7}}}"#).unwrap();
    assert!(matches!(model.apply(&e, &pids()), Err(EventError::Json(_))));
    assert_eq!(model, before);
}

#[test]
fn one_bad_entry_of_subscribed_is_left_out_and_named() {
    let mut v: Value = serde_json::from_slice(&fixture("subscribed.json")).unwrap();
    v["subscribed"]["get_state"]["get_tasks"]["tasks"][1]["statuses"] = Value::from("oops");
    v["subscribed"]["heartbeat_interval_seconds"] = Value::from(2.5);
    let record = v.to_string();
    let event = decode(record.as_bytes()).unwrap();
    assert_eq!(event.heartbeat_secs(), 2.5);
    let model = Model::from_subscribed(&event, LEADER, &pids()).unwrap();
    assert_eq!(model.task_count(), 2);
    assert_eq!(model.state.problems.len(), 1);
    assert_eq!(model.state.problems[0].path, "get_tasks.tasks[1]");
}

#[test]
fn health_updates_keep_the_newest_statuses_only() {
    let mut model = subscribed();
    let web = "shop_web.6f1c6f0e-1b0e-11ef-9a3b-0242ac110002";
    for i in 0..40 {
        let healthy = i % 2 == 0;
        let record = format!(
            r#"{{"type":"TASK_UPDATED","task_updated":{{"framework_id":{{"value":"{MARATHON}"}},"status":{{"task_id":{{"value":"{web}"}},"state":"TASK_RUNNING","timestamp":{},"healthy":{healthy}}},"state":"TASK_RUNNING"}}}}"#,
            1_716_556_000 + i
        );
        assert!(apply(&mut model, record.as_bytes()));
    }
    let task = &model.state.frameworks[0].tasks[0];
    assert_eq!(task.statuses.len(), MAX_STATUSES);
    // The newest (i = 39) said unhealthy; the one from SUBSCRIBED (oldest) is gone.
    assert_eq!(
        crate::source::mesos::cluster::task_health(task),
        Some(false)
    );
    assert!(task.statuses.iter().all(|s| s.timestamp >= 1_716_556_000.0));
}
