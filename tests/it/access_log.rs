//! The access log end to end: one JSON line per request (a 200, a 404, a 502 from a refused
//! backend, a 504 from a silent one) and per TCP connection, each with its status, route,
//! upstream and fault; nginx's `combined` format; the new request metrics.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// The log's lines once it holds at least `n` (bounded wait).
async fn lines(drover: &Drover, name: &str, n: usize) -> Vec<String> {
    let path = drover.path(name);
    eventually(&format!("{n} access-log lines"), || {
        let path = path.clone();
        async move {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            (lines.len() >= n).then_some(lines)
        }
    })
    .await
}

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_say_status_route_upstream_and_fault() {
    let web = Backend::start("web").await;
    let dead = dead_addr();
    let catalog = app("/web", "web.test", 10001, &[web.addr])
        + &app("/down", "down.test", 10002, &[dead])
        + &app("/slow", "slow.test", 10003, &[web.addr]);
    let drover = Drover::start_with(
        "response_timeout = \"300ms\"",
        "[access_log]\npath = \"access.log\"\n",
        &catalog,
    );
    drover.ready().await;

    let ok = get(drover.http(), "web.test", "/hello?x=1").await;
    assert_eq!(ok.status.as_u16(), 200);
    let lost = get(drover.http(), "nowhere.test", "/").await;
    assert_eq!(lost.status.as_u16(), 404);
    let refused = get(drover.http(), "down.test", "/").await;
    assert_eq!(refused.status.as_u16(), 502);
    let silent = get(drover.http(), "slow.test", "/hang").await;
    assert_eq!(silent.status.as_u16(), 504);

    let lines = lines(&drover, "access.log", 4).await;
    let by_host = |host: &str| -> Value {
        lines
            .iter()
            .map(|l| json(l))
            .find(|v| v["host"] == host)
            .unwrap_or_else(|| panic!("no line for {host}: {lines:#?}"))
    };
    let v = by_host("web.test");
    assert_eq!(v["type"], "http");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/hello?x=1");
    assert_eq!(v["proto"], "HTTP/1.1");
    assert_eq!(v["status"], 200);
    assert_eq!(v["upstream_status"], 200);
    assert_eq!(v["route"], "/web:10001");
    assert_eq!(v["upstream"], web.addr.to_string());
    assert_eq!(v["fault"], "none");
    assert_eq!(v["bytes_out"], 3, "the body `web`");
    assert!(v["upstream_ms"].as_f64().is_some());
    assert!(v["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(v["ts"].as_str().unwrap().ends_with('Z'));

    let v = by_host("nowhere.test");
    assert_eq!(v["status"], 404);
    assert_eq!(v["route"], "");
    assert_eq!(v["upstream"], "");
    assert_eq!(v["fault"], "client");

    let v = by_host("down.test");
    assert_eq!(v["status"], 502);
    assert_eq!(v["route"], "/down:10002");
    assert_eq!(v["upstream"], dead.to_string());
    assert!(v["upstream_status"].is_null());
    assert_eq!(v["fault"], "upstream");
    assert!(!v["fault_reason"].as_str().unwrap().is_empty());

    let v = by_host("slow.test");
    assert_eq!(v["status"], 504);
    assert_eq!(v["fault"], "upstream");
    assert!(v["duration_ms"].as_f64().unwrap() >= 290.0, "{v}");

    // Request metrics: nothing in flight now; connects were timed.
    let text = drover.server().view().metrics.render();
    assert!(text.contains("drover_http_requests_in_flight 0"), "{text}");
    assert!(
        text.contains("drover_upstream_connect_duration_seconds_count"),
        "{text}"
    );
    assert!(text.contains("drover_process_open_fds"), "{text}");
}

/// The request body's bytes are counted as they go to the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_in_and_out_are_the_bodies() {
    let web = Backend::start("web").await;
    let drover = Drover::start(
        "[access_log]\npath = \"access.log\"\n",
        &app("/web", "web.test", 10001, &[web.addr]),
    );
    drover.ready().await;
    let body = vec![b'x'; 10_000];
    let req = hyper::Request::post(format!("http://{}/echo", drover.http()))
        .header("host", "web.test")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let answer = send(req).await.expect("echo");
    assert_eq!(answer.body.len(), 10_000);
    let v = json(&lines(&drover, "access.log", 1).await[0]);
    assert_eq!(v["method"], "POST");
    assert_eq!(v["bytes_in"], 10_000);
    assert_eq!(v["bytes_out"], 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_lines_match_nginx() {
    let web = Backend::start("web").await;
    let drover = Drover::start(
        "[access_log]\npath = \"access.log\"\nformat = \"combined\"\n",
        &app("/web", "web.test", 10001, &[web.addr]),
    );
    drover.ready().await;
    let req = hyper::Request::get(format!("http://{}/a b%20c", drover.http()).replace(' ', "%20"))
        .header("host", "web.test")
        .header("user-agent", "tester/1.0 \"quoted\"")
        .header("referer", "http://ref.test/")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    send(req).await.expect("answer");
    let line = lines(&drover, "access.log", 1).await.remove(0);
    // 127.0.0.1 - - [07/Dec/2026:13:40:18 +0000] "GET /a%20b%20c HTTP/1.1" 200 3 "http://ref.test/" "tester/1.0 \x22quoted\x22"
    let (addr, rest) = line.split_once(" - - [").expect("addr - - [");
    assert_eq!(addr, "127.0.0.1");
    let (time, rest) = rest.split_once("] ").expect("time]");
    let parts: Vec<&str> = time.split([':', '/', ' ']).collect();
    assert_eq!(parts.len(), 7, "dd/Mon/yyyy:hh:mm:ss +0000: {time}");
    assert_eq!(parts[6], "+0000");
    assert_eq!(
        rest,
        "\"GET /a%20b%20c HTTP/1.1\" 200 3 \"http://ref.test/\" \"tester/1.0 \\x22quoted\\x22\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_connection_is_one_line_with_its_bytes() {
    // A backend that reads one message, answers with twice its length, then closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let backend = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 5];
                if s.read_exact(&mut buf).await.is_ok() {
                    let _ = s.write_all(b"0123456789").await;
                }
            });
        }
    });
    let port = free_port();
    let drover = Drover::start(
        "[tcp]\nbind = \"127.0.0.1\"\nports = \"1024-65535\"\n\n[access_log]\npath = \"access.log\"\n",
        &app("/db", "", port, &[backend]),
    );
    drover.ready().await;
    let mut s = eventually("the service port", || async move {
        TcpStream::connect(("127.0.0.1", port)).await.ok()
    })
    .await;
    s.write_all(b"hello").await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
        .await
        .expect("answer in time")
        .expect("read");
    assert_eq!(answer, b"0123456789");
    drop(s);
    let v = json(&lines(&drover, "access.log", 1).await[0]);
    assert_eq!(v["type"], "tcp");
    assert_eq!(v["port"], port);
    assert_eq!(v["route"], format!("/db:{port}"));
    assert_eq!(v["upstream"], backend.to_string());
    assert_eq!(v["bytes_in"], 5);
    assert_eq!(v["bytes_out"], 10);
    assert_eq!(v["fault"], "none");
    let text = drover.server().view().metrics.render();
    let line = format!("drover_tcp_bytes_total{{direction=\"out\",port=\"{port}\"}} 10");
    assert!(text.contains(&line), "{line} missing:\n{text}");
}

/// Turned on by a config reload, without a restart; off again the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_turns_the_log_on() {
    let web = Backend::start("web").await;
    let drover = Drover::start("", &app("/web", "web.test", 10001, &[web.addr]));
    drover.ready().await;
    get(drover.http(), "web.test", "/before").await;
    let config = std::fs::read_to_string(drover.path("drover.toml")).expect("config");
    drover.write(
        "drover.toml",
        &format!("{config}\n[access_log]\npath = \"access.log\"\n"),
    );
    let path = drover.path("access.log");
    let http = drover.http();
    eventually("the log to be on", || {
        let path = path.clone();
        async move {
            get(http, "web.test", "/after").await;
            std::fs::read_to_string(&path)
                .ok()
                .filter(|t| t.contains("/after"))
        }
    })
    .await;
    let text = std::fs::read_to_string(&path).expect("log");
    assert!(!text.contains("/before"), "{text}");
}
