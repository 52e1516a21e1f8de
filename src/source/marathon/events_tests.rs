//! Tests for the event-stream parser, the event decoder and the effects, against the Marathon
//! fixtures in `tests/fixtures/marathon/api/`.

use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/marathon/api");

fn fixture(rel: &str) -> Vec<u8> {
    let path = format!("{FIXTURES}/{rel}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Feeds `chunks` in order and collects everything the parser returns.
fn feed<'a>(
    parser: &mut SseParser,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<Result<SseFrame, SseError>> {
    chunks.into_iter().flat_map(|c| parser.push(c)).collect()
}

fn parse_whole(input: &[u8]) -> Vec<Result<SseFrame, SseError>> {
    SseParser::new().push(input)
}

fn frames(input: &[u8]) -> Vec<SseFrame> {
    parse_whole(input)
        .into_iter()
        .map(|r| r.expect("no framing error"))
        .collect()
}

fn frame(event: Option<&str>, data: &str) -> SseFrame {
    SseFrame {
        event: event.map(str::to_owned),
        data: data.to_owned(),
    }
}

/// Asserts that every 2-way split and 1-byte chunks give the same result as one push.
fn assert_split_invariant(input: &[u8]) {
    let whole = parse_whole(input);
    for cut in 0..=input.len() {
        let (a, b) = input.split_at(cut);
        let got = feed(&mut SseParser::new(), [a, b]);
        assert_eq!(got, whole, "split at byte {cut}");
    }
    let bytes = feed(&mut SseParser::new(), input.chunks(1));
    assert_eq!(bytes, whole, "1-byte chunks");
}

// === the fixture stream ===

const STREAM: &str = "own/events_stream_crlf.txt";

#[test]
fn crlf_fixture_gives_19_frames_whole_split_and_bytewise() {
    let input = fixture(STREAM);
    let frames = frames(&input);
    assert_eq!(frames.len(), 19);
    for f in &frames {
        // Marathon fills the event line with the JSON's eventType.
        let ev = decode(f).unwrap_or_else(|e| panic!("{f:?}: {e}"));
        assert_eq!(f.event.as_deref(), Some(ev.event_type()));
    }
    assert_split_invariant(&input);
    let mut parser = SseParser::new();
    parser.push(&input);
    assert!(!parser.has_pending());
    assert_eq!(parser.stats().frames, 19);
}

#[test]
fn crlf_fixture_marathon_lb_would_refetch_7_times() {
    let events: Vec<Event> = frames(&fixture(STREAM))
        .iter()
        .map(|f| decode(f).unwrap())
        .collect();
    // marathon-lb subscribes to these three and re-reads on each (EXPECTED.md).
    let count = |ty: &str| events.iter().filter(|e| e.event_type() == ty).count();
    assert_eq!(count("api_post_event"), 1);
    assert_eq!(count("status_update_event"), 4);
    assert_eq!(count("health_status_changed_event"), 2);
    let mlb: usize = [
        "api_post_event",
        "status_update_event",
        "health_status_changed_event",
    ]
    .iter()
    .map(|ty| count(ty))
    .sum();
    assert_eq!(mlb, 7);
}

#[test]
fn crlf_fixture_effects_frame_by_frame() {
    let killed = Effect::KillTask {
        app_id: "/web".into(),
        task_id: "web.instance-0a000001-0000-0000-0000-000000000003._app.1".into(),
    };
    let web = || Effect::RefetchApps(vec!["/web".into()]);
    let expected = [
        ("event_stream_attached", Effect::Ignore),
        ("api_post_event", web()),
        ("group_change_success", Effect::Ignore),
        ("deployment_info", Effect::Ignore),
        ("status_update_event", web()), // TASK_STAGING
        ("instance_changed_event", web()),
        ("status_update_event", web()), // TASK_RUNNING
        ("instance_changed_event", web()),
        ("health_status_changed_event", web()), // alive
        ("instance_health_changed_event", web()),
        ("deployment_step_success", Effect::Ignore),
        ("deployment_success", web()), // its plan acts on /web
        ("failed_health_check_event", Effect::Ignore),
        ("health_status_changed_event", web()), // not alive
        ("unhealthy_instance_kill_event", Effect::Ignore),
        ("status_update_event", killed.clone()), // TASK_KILLING
        ("status_update_event", killed),         // TASK_KILLED
        (
            "app_terminated_event",
            Effect::RefetchApps(vec!["/old-app".into()]),
        ),
        ("pod_created_event", Effect::Ignore),
    ];
    let got: Vec<(String, Effect)> = frames(&fixture(STREAM))
        .iter()
        .map(|f| {
            let ev = decode(f).unwrap();
            (ev.event_type().to_owned(), effect(&ev))
        })
        .collect();
    let expected: Vec<(String, Effect)> = expected
        .into_iter()
        .map(|(ty, eff)| (ty.to_owned(), eff))
        .collect();
    assert_eq!(got, expected);
    let refetches = got
        .iter()
        .filter(|(_, e)| matches!(e, Effect::RefetchApps(_)))
        .count();
    assert_eq!(refetches, 10);
}

#[test]
fn crlf_fixture_status_updates_decode_fully() {
    let frames = frames(&fixture(STREAM));
    let running = decode(&frames[6]).unwrap();
    assert_eq!(
        running,
        Event::StatusUpdate {
            app_id: "/web".into(),
            task_id: "web.instance-0a000001-0000-0000-0000-000000000004._app.1".into(),
            task_status: "TASK_RUNNING".into(),
            host: "192.0.2.14".into(),
            ports: vec![31004],
            ip_addresses: vec!["192.0.2.14".into()],
            slave_id: Some("agent-14".into()),
            version: Some("2024-05-01T10:00:01.000Z".into()),
        }
    );
    let unhealthy = decode(&frames[13]).unwrap();
    assert_eq!(
        unhealthy,
        Event::HealthStatusChanged {
            app_id: "/web".into(),
            instance_id: Some("web.marathon-0a000001-0000-0000-0000-000000000003".into()),
            task_id: None,
            alive: false,
        }
    );
}

#[test]
fn docs_example_stream_parses() {
    let events: Vec<Event> = frames(&fixture("docs-examples/events.txt"))
        .iter()
        .map(|f| decode(f).unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    assert!(matches!(events[0], Event::Attached { ref remote_address }
        if remote_address.as_deref() == Some("0:0:0:0:0:0:0:1")));
    assert_eq!(
        effect(&events[1]),
        Effect::KillTask {
            app_id: "/foo".into(),
            task_id: "foo.0664256e-6771-11e5-94e1-be5b2935a987".into(),
        }
    );
    assert_eq!(
        effect(&events[2]),
        Effect::RefetchApps(vec!["/test-app".into()])
    );
}

// === every documented event body ===

/// Wraps a (multi-line) JSON document as one SSE frame, one `data:` line per JSON line.
fn as_sse(event: &str, json: &str) -> Vec<u8> {
    let mut out = format!("event: {event}\r\n");
    for line in json.lines() {
        out.push_str("data: ");
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

#[test]
fn every_event_fixture_decodes_to_its_variant() {
    let dir = format!("{FIXTURES}/events");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 27, "a new fixture needs a line below");
    for name in names {
        let ty = name.trim_end_matches(".json");
        let json = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
        let frames = frames(&as_sse(ty, &json));
        assert_eq!(frames.len(), 1, "{name}");
        assert_eq!(
            frames[0].data,
            json.trim_end(),
            "{name}: data lines rejoined"
        );
        let ev = decode(&frames[0]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ev.event_type(), ty, "{name}");
        let app = |id: &str| Effect::RefetchApps(vec![id.into()]);
        let (variant, eff) = match &ev {
            Event::StatusUpdate { app_id, .. } => ("StatusUpdate", app(app_id)),
            Event::HealthStatusChanged { app_id, .. } => ("HealthStatusChanged", app(app_id)),
            Event::InstanceChanged { run_spec_id, .. } => ("InstanceChanged", app(run_spec_id)),
            Event::InstanceHealthChanged { run_spec_id, .. } => {
                ("InstanceHealthChanged", app(run_spec_id))
            }
            Event::ApiPost { app_id } => ("ApiPost", app(app_id)),
            Event::AppTerminated { app_id } => ("AppTerminated", app(app_id)),
            // The documented bodies carry no plan: every app is read again.
            Event::DeploymentSuccess { .. } => ("DeploymentSuccess", Effect::Refetch),
            Event::DeploymentFailed { .. } => ("DeploymentFailed", Effect::Refetch),
            Event::Attached { .. } => ("Attached", Effect::Ignore),
            Event::Detached { .. } => ("Detached", Effect::Ignore),
            Event::Other(_) => ("Other", Effect::Ignore),
        };
        let want = match ty {
            "status_update_event" => "StatusUpdate",
            "health_status_changed_event" => "HealthStatusChanged",
            "instance_changed_event" => "InstanceChanged",
            "instance_health_changed_event" => "InstanceHealthChanged",
            "api_post_event" => "ApiPost",
            "app_terminated_event" => "AppTerminated",
            "deployment_success" => "DeploymentSuccess",
            "deployment_failed" => "DeploymentFailed",
            "event_stream_attached" => "Attached",
            "event_stream_detached" => "Detached",
            _ => "Other",
        };
        assert_eq!(variant, want, "{name}");
        assert_eq!(effect(&ev), eff, "{name}");
    }
}

#[test]
fn event_fixture_fields() {
    let read = |name: &str| {
        let json = std::fs::read_to_string(format!("{FIXTURES}/events/{name}.json")).unwrap();
        decode(&frame(None, &json)).unwrap()
    };
    assert_eq!(
        read("status_update_event"),
        Event::StatusUpdate {
            app_id: "/my-app".into(),
            task_id: "my-app_0-1396592784349".into(),
            task_status: "TASK_RUNNING".into(),
            host: "slave-1234.acme.org".into(),
            ports: vec![31372],
            ip_addresses: vec![],
            slave_id: Some("20140909-054127-177048842-5050-1494-0".into()),
            version: Some("2014-04-04T06:26:23.051Z".into()),
        }
    );
    assert_eq!(
        read("health_status_changed_event"),
        Event::HealthStatusChanged {
            app_id: "/my-app".into(),
            instance_id: Some("my-app.instance-c7c311a4-b669-11e6-a48f-0ea4f4b1778c".into()),
            task_id: None,
            alive: true,
        }
    );
    assert_eq!(
        read("instance_changed_event"),
        Event::InstanceChanged {
            instance_id: "my-app.instance-c7c311a4-b669-11e6-a48f-0ea4f4b1778c".into(),
            run_spec_id: "/app-id".into(),
            condition: "Running".into(),
            host: Some("slave-1234.acme.org".into()),
        }
    );
    assert_eq!(
        read("instance_health_changed_event"),
        Event::InstanceHealthChanged {
            instance_id: "my-app.instance-c7c311a4-b669-11e6-a48f-0ea4f4b1778c".into(),
            run_spec_id: "/app-id".into(),
            healthy: Some(true),
        }
    );
    assert_eq!(
        read("api_post_event"),
        Event::ApiPost {
            app_id: "/my-app".into()
        }
    );
    assert_eq!(
        read("app_terminated_event"),
        Event::AppTerminated {
            app_id: "/my-app".into()
        }
    );
    let id = "867ed450-f6a8-4d33-9b0e-e11c5513990b".to_owned();
    assert_eq!(
        read("deployment_success"),
        Event::DeploymentSuccess {
            id: id.clone(),
            apps: vec![]
        }
    );
    assert_eq!(
        read("deployment_failed"),
        Event::DeploymentFailed { id, apps: vec![] }
    );
    assert_eq!(
        read("event_stream_detached"),
        Event::Detached {
            remote_address: Some("1.2.3.4".into())
        }
    );
    assert_eq!(
        read("pod_created_event"),
        Event::Other("pod_created_event".into())
    );
}

// === effects and the subscription ===

#[test]
fn kill_statuses_give_kill_task_and_others_refetch() {
    let update = |status: &str| {
        let json = format!(
            r#"{{"eventType":"status_update_event","appId":"/a","taskId":"a.1","taskStatus":"{status}","host":"h","ports":[1]}}"#
        );
        effect(&decode(&frame(None, &json)).unwrap())
    };
    let kill = Effect::KillTask {
        app_id: "/a".into(),
        task_id: "a.1".into(),
    };
    for status in [
        "TASK_KILLING",
        "TASK_KILLED",
        "TASK_FAILED",
        "TASK_LOST",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
        "TASK_ERROR",
        "TASK_DROPPED",
        "TASK_FINISHED",
    ] {
        assert_eq!(update(status), kill, "{status}");
    }
    for status in [
        "TASK_STAGING",
        "TASK_STARTING",
        "TASK_RUNNING",
        "TASK_UNREACHABLE",
        "TASK_UNKNOWN",
        "TASK_SOMETHING_NEW",
    ] {
        assert_eq!(
            update(status),
            Effect::RefetchApps(vec!["/a".into()]),
            "{status}"
        );
    }
}

#[test]
fn deployment_plans_name_the_apps_to_read_again() {
    let effect_of = |plan: &str| {
        let json = format!(r#"{{"eventType":"deployment_success","id":"d1","plan":{plan}}}"#);
        effect(&decode(&frame(None, &json)).unwrap())
    };
    // Marathon's shape (steps of actions), each app once.
    assert_eq!(
        effect_of(
            r#"{"id":"d1","steps":[{"actions":[{"action":"StartApplication","app":"/a"},{"action":"ScaleApplication","app":"/b"}]},{"actions":[{"action":"ScaleApplication","app":"/a"}]}]}"#
        ),
        Effect::RefetchApps(vec!["/a".into(), "/b".into()])
    );
    // The older docs' shape (one app per step).
    assert_eq!(
        effect_of(r#"{"id":"d1","steps":[{"action":"ScaleApplication","app":"/c"}]}"#),
        Effect::RefetchApps(vec!["/c".into()])
    );
    // A pod, an empty plan, or too many apps: read everything.
    assert_eq!(
        effect_of(r#"{"steps":[{"actions":[{"action":"StartPod","pod":"/p"}]}]}"#),
        Effect::Refetch
    );
    assert_eq!(effect_of(r#"{"steps":[]}"#), Effect::Refetch);
    let many: Vec<String> = (0..=MAX_PLAN_APPS)
        .map(|i| format!(r#"{{"actions":[{{"app":"/a{i}"}}]}}"#))
        .collect();
    assert_eq!(
        effect_of(&format!(r#"{{"steps":[{}]}}"#, many.join(","))),
        Effect::Refetch
    );
}

#[test]
fn subscription_covers_exactly_what_drover_acts_on() {
    assert_eq!(
        events_path(),
        "/v2/events?event_type=status_update_event&event_type=health_status_changed_event\
         &event_type=instance_changed_event&event_type=instance_health_changed_event\
         &event_type=api_post_event&event_type=app_terminated_event\
         &event_type=deployment_success&event_type=deployment_failed&plan-format=light"
    );
    // Every subscribed type is acted on, and every fixture type acted on is subscribed.
    let dir = format!("{FIXTURES}/events");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let ty = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let json = std::fs::read_to_string(&path).unwrap();
        let ev = decode(&frame(Some(&ty), &json)).unwrap();
        let acted = effect(&ev) != Effect::Ignore;
        assert_eq!(acted, EVENT_TYPES.contains(&ty.as_str()), "{ty}");
    }
}

// === framing rules ===

#[test]
fn keep_alives_alone_give_nothing() {
    let mut parser = SseParser::new();
    for _ in 0..100 {
        assert!(parser.push(b"\r\n").is_empty());
    }
    assert!(parser.push(b"\r\n\r\n\n\r\r\n").is_empty());
    assert!(!parser.has_pending());
    assert_eq!(parser.stats(), SseStats::default());
}

#[test]
fn line_endings_crlf_lf_cr_are_equivalent() {
    let want = vec![frame(Some("e"), "a\nb"), frame(None, "c")];
    for nl in ["\r\n", "\n", "\r"] {
        let input = format!("event: e{nl}data: a{nl}data: b{nl}{nl}data: c{nl}{nl}");
        assert_eq!(frames(input.as_bytes()), want, "{nl:?}");
        assert_split_invariant(input.as_bytes());
    }
    // Mixed in one stream, and CR LF split by a chunk boundary.
    let mut parser = SseParser::new();
    let got = feed(&mut parser, [&b"data: x\r"[..], b"\ndata: y\n\r", b"\n"]);
    assert_eq!(got, vec![Ok(frame(None, "x\ny"))]);
}

#[test]
fn cr_then_cr_across_chunks_is_two_line_ends() {
    let got = feed(&mut SseParser::new(), [&b"data: x\r"[..], b"\r"]);
    assert_eq!(got, vec![Ok(frame(None, "x"))]);
}

#[test]
fn field_syntax() {
    let input = b": a comment\r\n\
        data:no space\r\n\
        data:  two spaces\r\n\
        data\r\n\
        unknown: ignored\r\n\
        event:typed\r\n\
        \r\n";
    assert_eq!(
        frames(input),
        vec![frame(Some("typed"), "no space\n two spaces\n")]
    );
    // `data:` with an empty value still dispatches; only an empty data buffer does not.
    assert_eq!(frames(b"data:\r\n\r\n"), vec![frame(None, "")]);
    assert!(frames(b"event: lonely\r\n\r\n").is_empty());
    // The event type does not leak into the next frame.
    assert_eq!(
        frames(b"event: a\r\n\r\ndata: x\r\n\r\n"),
        vec![frame(None, "x")]
    );
    // A colon in the value is kept.
    assert_eq!(
        frames(b"data: {\"a\":1}\r\n\r\n"),
        vec![frame(None, "{\"a\":1}")]
    );
}

#[test]
fn id_and_retry_are_read() {
    let mut parser = SseParser::new();
    parser.push(b"id: 7\r\nretry: 2500\r\ndata: x\r\n\r\nretry: soon\r\nid: a\0b\r\n");
    assert_eq!(parser.last_event_id(), "7");
    assert_eq!(parser.retry_ms(), Some(2500));
}

#[test]
fn leading_bom_is_skipped_once() {
    let input = "\u{feff}data: x\r\n\r\n\u{feff}data: y\r\n\r\n";
    assert_eq!(
        frames(input.as_bytes()),
        vec![frame(None, "x")],
        "a BOM later in the stream is part of a field name, so that line is ignored"
    );
    assert_split_invariant(input.as_bytes());
}

#[test]
fn final_frame_without_blank_line_stays_pending() {
    let mut parser = SseParser::new();
    assert!(parser.push(b"data: {\"eventType\":\"x\"}\r\n").is_empty());
    assert!(parser.has_pending());
    assert_eq!(
        parser.push(b"\r\n"),
        vec![Ok(frame(None, "{\"eventType\":\"x\"}"))]
    );
    assert!(!parser.has_pending());
    // Without even a line end.
    assert!(parser.push(b"data: y").is_empty());
    assert!(parser.has_pending());
    assert_eq!(parser.push(b"\n\n"), vec![Ok(frame(None, "y"))]);
}

#[test]
fn several_frames_in_one_chunk() {
    let input = b"data: 1\r\n\r\ndata: 2\r\n\r\n\r\ndata: 3\r\n\r\ndata: 4";
    let got = frames(input);
    assert_eq!(
        got.iter().map(|f| f.data.as_str()).collect::<Vec<_>>(),
        ["1", "2", "3"]
    );
}

#[test]
fn utf8_split_anywhere_and_invalid_bytes_are_lossy() {
    let input = "event: é\r\ndata: {\"m\":\"héllo 😀 ✓\"}\r\n\r\n";
    assert_eq!(
        frames(input.as_bytes()),
        vec![frame(Some("é"), "{\"m\":\"héllo 😀 ✓\"}")]
    );
    assert_split_invariant(input.as_bytes());

    let mut parser = SseParser::new();
    let got = parser.push(b"data: a\xffb\xe2\x82\r\n\r\n");
    assert_eq!(got, vec![Ok(frame(None, "a\u{fffd}b\u{fffd}"))]);
    assert_eq!(parser.stats().invalid_utf8_lines, 1);
}

// === memory bound ===

#[test]
fn oversized_frame_is_dropped_and_the_stream_goes_on() {
    let limit = 1024;
    let mut parser = SseParser::with_limit(limit);
    let mut got = parser.push(b"data: small\r\n\r\nevent: big\r\n");
    // 10 KiB of data lines, then a long line, fed in odd-sized chunks.
    let mut big = Vec::new();
    for _ in 0..100 {
        big.extend_from_slice(b"data: ");
        big.extend_from_slice(&[b'x'; 100]);
        big.extend_from_slice(b"\r\n");
    }
    big.extend_from_slice(&[b'y'; 5000]);
    big.extend_from_slice(b"\r\n\r\n");
    for chunk in big.chunks(37) {
        got.extend(parser.push(chunk));
        assert!(parser.buffered() <= limit);
    }
    got.extend(parser.push(b"data: after\r\n\r\n"));
    assert_eq!(
        got,
        vec![
            Ok(frame(None, "small")),
            Err(SseError::FrameTooLarge { limit }),
            Ok(frame(None, "after")),
        ]
    );
    assert_eq!(parser.stats().oversized, 1);
    assert_eq!(parser.stats().frames, 2);
}

#[test]
fn one_endless_line_is_dropped_at_the_default_limit() {
    let mut parser = SseParser::new();
    let chunk = vec![b'z'; 1 << 20];
    let mut errors = 0;
    let mut pushed = b"data: ".len();
    errors += parser.push(b"data: ").len();
    while pushed <= MAX_FRAME_BYTES + (2 << 20) {
        errors += parser.push(&chunk).len();
        pushed += chunk.len();
        assert!(parser.buffered() <= MAX_FRAME_BYTES);
    }
    assert_eq!(errors, 1);
    assert_eq!(parser.buffered(), 0, "the dropped frame's memory is freed");
    // The frame ends at the next blank line and the next one parses.
    assert_eq!(
        parser.push(b"\r\n\r\ndata: ok\r\n\r\n"),
        vec![Ok(frame(None, "ok"))]
    );
}

#[test]
fn limit_counts_data_and_event_lines_together() {
    let limit = 64;
    let mut parser = SseParser::with_limit(limit);
    let mut got = Vec::new();
    for _ in 0..10 {
        got.extend(parser.push(b"data: 0123456789\r\n"));
        assert!(parser.buffered() <= limit);
    }
    got.extend(parser.push(b"\r\n"));
    assert_eq!(got, vec![Err(SseError::FrameTooLarge { limit })]);
    assert!(!parser.has_pending());
}

#[test]
fn an_event_line_that_grows_in_lossy_decoding_is_held_to_the_limit() {
    // 40 bytes of line, but each 0xb7 turns into a 3-byte U+FFFD: 99 bytes of event name.
    // Found by the marathon_events fuzz target.
    let limit = 64;
    let mut line = b"event: ".to_vec();
    line.extend_from_slice(&[0xb7; 33]);
    line.push(b'\n');
    assert!(line.len() <= limit);
    let mut parser = SseParser::with_limit(limit);
    let mut got = parser.push(&line);
    assert!(parser.buffered() <= limit, "{} buffered", parser.buffered());
    got.extend(parser.push(b"data: dropped\n\ndata: next\n\n"));
    assert_eq!(
        got,
        vec![
            Err(SseError::FrameTooLarge { limit }),
            Ok(frame(None, "next"))
        ]
    );
}

// === garbage ===

#[test]
fn garbage_json_gives_errors_naming_the_problem() {
    let err = |event: Option<&str>, data: &str| decode(&frame(event, data)).unwrap_err();
    assert!(matches!(err(None, ""), EventError::Json(_)));
    assert!(matches!(
        err(None, r#"{"eventType":"status_upd"#),
        EventError::Json(_)
    ));
    assert_eq!(err(None, "[1,2]"), EventError::NotAnObject);
    assert_eq!(err(None, r#"{"appId":"/a"}"#), EventError::NoEventType);
    assert_eq!(err(None, r#"{"eventType":""}"#), EventError::NoEventType);
    assert_eq!(
        err(None, r#"{"eventType":7}"#),
        EventError::BadField {
            event_type: "event",
            field: "eventType",
            expected: "a string"
        }
    );
    assert_eq!(
        err(
            None,
            r#"{"eventType":"status_update_event","appId":"/a","taskStatus":"TASK_RUNNING","host":"h"}"#
        ),
        EventError::MissingField {
            event_type: "status_update_event",
            field: "taskId"
        }
    );
    assert_eq!(
        err(
            None,
            r#"{"eventType":"status_update_event","appId":"/a","taskId":"t","taskStatus":"TASK_RUNNING","host":"h","ports":[70000]}"#
        ),
        EventError::BadField {
            event_type: "status_update_event",
            field: "ports",
            expected: "an array of port numbers"
        }
    );
    assert_eq!(
        err(
            None,
            r#"{"eventType":"health_status_changed_event","appId":"/a","alive":true}"#
        ),
        EventError::MissingField {
            event_type: "health_status_changed_event",
            field: "instanceId"
        }
    );
    assert_eq!(
        err(
            None,
            r#"{"eventType":"health_status_changed_event","appId":"/a","taskId":"t","alive":"yes"}"#
        ),
        EventError::BadField {
            event_type: "health_status_changed_event",
            field: "alive",
            expected: "a boolean"
        }
    );
    assert_eq!(
        err(None, r#"{"eventType":"api_post_event","appDefinition":{}}"#),
        EventError::MissingField {
            event_type: "api_post_event",
            field: "appDefinition.id"
        }
    );
    assert_eq!(
        err(None, r#"{"eventType":"app_terminated_event"}"#),
        EventError::MissingField {
            event_type: "app_terminated_event",
            field: "appId"
        }
    );
    // The message names the field, for the log line.
    assert_eq!(
        err(None, r#"{"eventType":"deployment_failed"}"#).to_string(),
        "deployment_failed lacks the field id"
    );
}

#[test]
fn event_type_falls_back_to_the_event_line_and_prefers_the_json() {
    let json = r#"{"appId":"/a","timestamp":"t"}"#;
    assert_eq!(
        decode(&frame(Some("app_terminated_event"), json)).unwrap(),
        Event::AppTerminated {
            app_id: "/a".into()
        }
    );
    let json = r#"{"eventType":"app_terminated_event","appId":"/a"}"#;
    assert_eq!(
        decode(&frame(Some("pod_created_event"), json)).unwrap(),
        Event::AppTerminated {
            app_id: "/a".into()
        }
    );
}

#[test]
fn unknown_fields_and_nulls_are_tolerated() {
    let json = r#"{"eventType":"instance_health_changed_event","instanceId":"i","runSpecId":"/a",
        "healthy":null,"extra":{"deep":[1,2,3]}}"#;
    assert_eq!(
        decode(&frame(None, json)).unwrap(),
        Event::InstanceHealthChanged {
            instance_id: "i".into(),
            run_spec_id: "/a".into(),
            healthy: None,
        }
    );
}

/// splitmix64: a fixed-seed generator, so a failure replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn fuzz_parser_and_decoder_never_panic_and_ignore_chunking() {
    // Random input built line by line from pieces that steer the parser into its interesting
    // states (field names, JSON fragments, split UTF-8, BOMs, every line end), plus raw bytes.
    const PREFIXES: &[&[u8]] = &[
        b"data: ",
        b"data: ",
        b"data:",
        b"event: ",
        b"event: status_update_event",
        b": comment",
        b"id: 1",
        b"retry: 10",
        b"",
        b"\xef\xbb\xbf",
    ];
    const CONTENT: &[&[u8]] = &[
        b"{\"eventType\":\"status_update_event\",\"appId\":\"/a\",\"taskId\":\"t\",",
        b"\"taskStatus\":\"TASK_KILLED\",\"host\":\"h\",\"ports\":[1]}",
        b"{\"eventType\":\"api_post_event\",\"appDefinition\":{\"id\":",
        b"{\"eventType\":\"health_status_changed_event\",\"appId\":\"/a\",\"alive\":true}",
        b"{\"eventType\":\"deployment_success\",\"id\":\"d\"}",
        b"{\"eventType\":\"pod_created_event\"}",
        b"{\"appId\":\"/a\"}",
        b"\xf0\x9f\x98",
        b"\xff",
        b"\xc3\xa9",
        b"}",
        b"null",
    ];
    const ENDINGS: &[&[u8]] = &[b"\r\n", b"\n", b"\r", b"\r\n\r\n", b"\n\n", b"\r\r", b""];
    let limit = 160;
    let mut rng = Rng(0x0d20_7e12);
    let (mut decoded, mut undecodable, mut oversized) = (0, 0, 0);
    for _ in 0..2_000 {
        let mut input = Vec::new();
        for _ in 0..rng.below(12) {
            input.extend_from_slice(PREFIXES[rng.below(PREFIXES.len())]);
            for _ in 0..rng.below(3) {
                if rng.below(4) == 0 {
                    for _ in 0..rng.below(20) {
                        input.push(rng.next() as u8);
                    }
                } else {
                    input.extend_from_slice(CONTENT[rng.below(CONTENT.len())]);
                }
            }
            input.extend_from_slice(ENDINGS[rng.below(ENDINGS.len())]);
        }
        let whole = SseParser::with_limit(limit).push(&input);
        let mut parser = SseParser::with_limit(limit);
        let mut chunked = Vec::new();
        let mut rest = &input[..];
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(1 + rng.below(rest.len().min(16)));
            chunked.extend(parser.push(chunk));
            assert!(parser.buffered() <= limit);
            rest = tail;
        }
        assert_eq!(chunked, whole, "input {input:?}");
        for item in whole {
            match item.map(|frame| decode(&frame)) {
                Ok(Ok(ev)) => {
                    decoded += 1;
                    let _ = effect(&ev);
                }
                Ok(Err(_)) => undecodable += 1,
                Err(SseError::FrameTooLarge { .. }) => oversized += 1,
            }
        }
    }
    // Every path was taken, so the loop tested something.
    assert!(decoded > 50, "{decoded} decoded");
    assert!(undecodable > 50, "{undecodable} undecodable");
    assert!(oversized > 50, "{oversized} oversized");
}
