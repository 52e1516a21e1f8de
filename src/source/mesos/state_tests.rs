//! Decoding the Mesos-DNS fixture state, the tolerance rules one at a time, and the
//! pid and port-range parsers (EXPECTED.md §5.5).

use super::*;

/// Reads a fixture of `tests/fixtures/` at run time.
pub(crate) fn fixture(rel: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/mesos/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

#[test]
fn fixture_state_decodes() {
    let state = decode(&fixture("mesos-dns-fake-state.json")).expect("decodes");
    assert_eq!(state.leader, "master@1.2.3.4:5050");
    assert_eq!(state.hostname, "localhost");
    assert!(state.problems.is_empty(), "{:?}", state.problems);

    let names: Vec<&str> = state.frameworks.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ipv6-framework",
            "chronos with a space AND MIXED CASE-2.0.1",
            "no pid",
            "marathon"
        ]
    );
    let no_pid = &state.frameworks[2];
    assert_eq!(no_pid.pid, None);
    assert_eq!(no_pid.hostname, "localhost");
    assert!(no_pid.tasks.is_empty());

    let marathon = &state.frameworks[3];
    assert_eq!(marathon.pid.as_deref(), Some("scheduler(1)@1.2.3.11:25501"));
    // Completed tasks are not read: 8 current tasks, one of them killed.
    assert_eq!(marathon.tasks.len(), 8);
    let liquor = &marathon.tasks[1];
    assert_eq!(
        liquor.id,
        "liquor-store.b8db9f73-562f-11e4-a088-c20493233aa5"
    );
    assert_eq!(liquor.name, "liquor.store");
    assert_eq!(liquor.slave_id, "20140803-125133-3041283216-5050-2410-0");
    assert_eq!(liquor.state, "TASK_RUNNING");
    assert_eq!(liquor.resources.ports, "[31354-31354, 31355-31355]");
    assert_eq!(liquor.statuses.len(), 4);
    assert_eq!(liquor.statuses[1].timestamp, 1413572390.09275);
    assert_eq!(
        liquor.statuses[1].labels[1],
        Label {
            key: "Docker.NetworkSettings.IPAddress".into(),
            value: "10.3.0.1".into()
        }
    );
    let discovery = liquor.discovery.as_ref().expect("discovery");
    assert_eq!(discovery.name, "liquor.store");
    assert_eq!(
        discovery.ports.ports,
        [
            DiscoveryPort {
                number: 80,
                protocol: "tcp".into(),
                name: "http".into()
            },
            DiscoveryPort {
                number: 443,
                protocol: "tcp".into(),
                name: "https".into()
            }
        ]
    );

    let toy = &state.frameworks[0].tasks[0];
    let infos = &toy.statuses[0].container_status.network_infos;
    let ips: Vec<&str> = infos
        .iter()
        .flat_map(|n| n.ip_addresses.iter().map(|a| a.ip_address.as_str()))
        .collect();
    assert_eq!(ips, ["12.0.1.3", "12.0.1.2", "fd01:b::1:8000:2"]);

    let agents: Vec<(&str, &str)> = state
        .agents
        .iter()
        .map(|a| (a.id.as_str(), a.pid.as_str()))
        .collect();
    assert_eq!(
        agents,
        [
            (
                "20140916-194712-631065744-5050-4798-2",
                "slave(1)@1.2.3.10:5051"
            ),
            (
                "20140803-125133-3041283216-5050-2410-0",
                "slave(1)@1.2.3.11:5051"
            ),
            (
                "20140827-000744-3041283216-5050-2116-1",
                "slave(1)@1.2.3.12:5051"
            ),
            (
                "20140803-194712-3041283216-5050-2116-3",
                "slave(1)@[2001:db8::1]:5051"
            ),
        ]
    );
    assert_eq!(state.agents[3].hostname, "2001:db8::1");
}

#[test]
fn malformed_json_is_a_clear_error() {
    let err = decode(b"{\"leader\": \"master@1.2.3.4:5050\", \"frameworks\": [").unwrap_err();
    match &err {
        StateError::Json { line, column, .. } => assert_eq!((*line, *column), (1, 49)),
        other => panic!("expected a JSON error, got {other:?}"),
    }
    assert!(
        err.to_string().starts_with("Mesos state does not decode: "),
        "{err}"
    );

    let err = decode(b"<html>307 Temporary Redirect</html>").unwrap_err();
    assert!(matches!(err, StateError::Json { line: 1, .. }), "{err:?}");

    // The top level has to be an object whose lists are lists.
    assert!(matches!(
        decode(b"42").unwrap_err(),
        StateError::Json { .. }
    ));
    assert!(matches!(
        decode(br#"{"leader": "master@1.2.3.4:5050", "frameworks": {}}"#).unwrap_err(),
        StateError::Json { .. }
    ));
}

#[test]
fn a_state_without_leader_is_refused() {
    for body in [
        r#"{}"#,
        r#"{"leader": ""}"#,
        r#"{"leader": null, "frameworks": []}"#,
        r#"{"leader": "  ", "slaves": []}"#,
    ] {
        assert_eq!(decode(body.as_bytes()), Err(StateError::NoLeader), "{body}");
    }
    assert!(StateError::NoLeader.to_string().contains("no leader"));
}

/// A framework, task or agent that does not decode is left out alone and named.
#[test]
fn one_bad_entry_does_not_reject_the_state() {
    let body = r#"{
        "leader": "master@1.2.3.4:5050",
        "unknown_field": {"deep": [1, 2, 3]},
        "frameworks": [
            {"name": 7, "tasks": []},
            {"name": "marathon", "pid": "scheduler(1)@1.2.3.11:25501", "tasks": [
                {"id": "a.1", "name": "a", "state": "TASK_RUNNING", "slave_id": "S0",
                 "statuses": [{"state": "TASK_RUNNING", "timestamp": "yesterday"}]},
                "not a task",
                {"id": "b.1", "name": "b", "state": "TASK_RUNNING", "slave_id": "S0",
                 "statuses": null, "resources": {"ports": null, "cpus": 1}, "labels": null}
            ]}
        ],
        "slaves": [{"id": "S0", "pid": "slave(1)@1.2.3.11:5051"}, {"id": ["S1"]}]
    }"#;
    let state = decode(body.as_bytes()).expect("decodes");
    assert_eq!(state.frameworks.len(), 1);
    let marathon = &state.frameworks[0];
    assert_eq!(marathon.name, "marathon");
    assert_eq!(marathon.tasks.len(), 1);
    assert_eq!(marathon.tasks[0].id, "b.1");
    assert!(marathon.tasks[0].statuses.is_empty());
    assert_eq!(marathon.tasks[0].resources.ports, "");
    assert_eq!(state.agents.len(), 1);
    let paths: Vec<&str> = state.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "frameworks[0]",
            "frameworks[1].tasks[0]",
            "frameworks[1].tasks[1]",
            "slaves[1]"
        ]
    );
    assert!(
        state.problems[1]
            .to_string()
            .starts_with("frameworks[1].tasks[0] left out: "),
        "{}",
        state.problems[1]
    );
}

#[test]
fn missing_fields_default() {
    let state = decode(br#"{"leader": " master@1.2.3.4:5050 ", "frameworks": [{"tasks": [{}]}]}"#)
        .expect("decodes");
    assert_eq!(state.leader, "master@1.2.3.4:5050");
    assert_eq!(state.frameworks[0].tasks[0], Task::default());
    assert!(state.agents.is_empty());
}

#[test]
fn task_labels_read_in_both_shapes() {
    let list: Task = serde_json::from_str(r#"{"labels": [{"key": "a", "value": "1"}]}"#).unwrap();
    let wrapped: Task =
        serde_json::from_str(r#"{"labels": {"labels": [{"key": "a", "value": "1"}]}}"#).unwrap();
    assert_eq!(list.labels, wrapped.labels);
    assert_eq!(list.labels[0].value, "1");
}

#[test]
fn pids() {
    let pid = |id: &str, host: &str, port: u16| Pid {
        id: id.into(),
        host: host.into(),
        port,
    };
    for (text, want) in [
        (
            "slave(1)@127.0.0.1:5051",
            pid("slave(1)", "127.0.0.1", 5051),
        ),
        (
            "  slave(1)@127.0.0.1:5051  ",
            pid("slave(1)", "127.0.0.1", 5051),
        ),
        (
            "slave(1)@[2001:db8::1]:5051",
            pid("slave(1)", "2001:db8::1", 5051),
        ),
        (
            "  slave(1)@[2001:db8::1]:5051 ",
            pid("slave(1)", "2001:db8::1", 5051),
        ),
        (
            "master@mesos-1.example.com:5050",
            pid("master", "mesos-1.example.com", 5050),
        ),
        ("5@0.0.0.6:7", pid("5", "0.0.0.6", 7)),
        ("@0.0.0.6:0", pid("", "0.0.0.6", 0)),
    ] {
        assert_eq!(Pid::parse(text), Ok(want.clone()), "{text:?}");
        assert_eq!(
            Pid::parse(&want.to_string()),
            Ok(want),
            "{text:?} round trip"
        );
    }
    for (text, want) in [
        ("", PidError::At("".into())),
        ("@", PidError::HostPort("@".into())),
        ("1@", PidError::HostPort("1@".into())),
        ("@2", PidError::HostPort("@2".into())),
        ("3@4", PidError::HostPort("3@4".into())),
        ("a@b@c:1", PidError::At("a@b@c:1".into())),
        (
            "m@2001:db8::1:5050",
            PidError::HostPort("m@2001:db8::1:5050".into()),
        ),
        (
            "m@[2001:db8::1]5050",
            PidError::HostPort("m@[2001:db8::1]5050".into()),
        ),
        ("m@1.2.3.4:65536", PidError::Port("m@1.2.3.4:65536".into())),
        ("m@1.2.3.4:http", PidError::Port("m@1.2.3.4:http".into())),
    ] {
        assert_eq!(Pid::parse(text), Err(want), "{text:?}");
    }
}

#[test]
fn port_ranges() {
    assert_eq!(
        parse_port_ranges("[31111-31111, 31115-31117]"),
        [31111, 31115, 31116, 31117]
    );
    assert_eq!(parse_port_ranges("[31737-31738]"), [31737, 31738]);
    assert_eq!(parse_port_ranges(""), Vec::<u16>::new());
    assert_eq!(parse_port_ranges("[]"), Vec::<u16>::new());
    assert_eq!(parse_port_ranges("[80]"), [80]);
    // Bad parts are skipped, the good ones kept.
    assert_eq!(parse_port_ranges("[x-3, 5-4, 7-8, 99999-1]"), [7, 8]);
    assert_eq!(parse_port_ranges("[65535-65535]"), [65535]);
}
