//! The HTTP router end to end: routing by Host, balancing, the error statuses, forwarded
//! headers, streaming, request hygiene, live catalog edits and the graceful drain.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_ignoring_case_and_port() {
    let web = Backend::start("web").await;
    let api = Backend::start("api").await;
    let catalog = app("/web", "web.example.com", 10001, &[web.addr])
        + &app("/api", "api.example.com", 10002, &[api.addr]);
    let drover = Drover::start("", &catalog);
    drover.ready().await;

    assert_eq!(get(drover.http(), "web.example.com", "/").await.body, "web");
    assert_eq!(
        get(drover.http(), "API.Example.COM:8080", "/").await.body,
        "api"
    );
    assert_eq!(
        get(drover.http(), "web.example.com.", "/x").await.body,
        "web"
    );

    let unknown = get(drover.http(), "nope.example.com", "/").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.body.contains("no route"), "{}", unknown.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_path_prefix_wins() {
    let site = Backend::start("site").await;
    let api = Backend::start("api").await;
    let mut catalog = app("/site", "shop.example.com", 10001, &[site.addr]);
    catalog += &format!(
        "[[app]]\nid = \"/api\"\nlabels = {{ HAPROXY_0_VHOST = \"shop.example.com\", HAPROXY_0_PATH = \"/api\" }}\n\
         ports = [10002]\ntasks = [ {{ host = \"127.0.0.1\", ports = [{}] }} ]\n",
        api.addr.port()
    );
    let drover = Drover::start("", &catalog);
    drover.ready().await;
    assert_eq!(
        get(drover.http(), "shop.example.com", "/api/items")
            .await
            .body,
        "api"
    );
    assert_eq!(
        get(drover.http(), "shop.example.com", "/").await.body,
        "site"
    );
    assert_eq!(
        get(drover.http(), "shop.example.com", "/cart").await.body,
        "site"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_over_three_backends() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let drover = Drover::start("", &app("/web", "web.example.com", 10001, &addrs));
    drover.ready().await;
    for _ in 0..30 {
        assert_eq!(get(drover.http(), "web.example.com", "/").await.status, 200);
    }
    let hits: Vec<usize> = backends.iter().map(Backend::hits).collect();
    assert_eq!(hits, [10, 10, 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_backends_is_503_and_unreachable_backends_502() {
    let catalog = app("/empty", "empty.example.com", 10001, &[])
        + &app("/dead", "dead.example.com", 10002, &[dead_addr()]);
    let drover = Drover::start("", &catalog);
    drover.ready().await;

    let empty = get(drover.http(), "empty.example.com", "/").await;
    assert_eq!(empty.status, StatusCode::SERVICE_UNAVAILABLE);
    let dead = get(drover.http(), "dead.example.com", "/").await;
    assert_eq!(dead.status, StatusCode::BAD_GATEWAY);
    let text = drover.server().view().metrics.render();
    assert!(
        text.contains(r#"drover_upstream_errors_total{kind="connect",route="dead_10002"} 1"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_retries_idempotent_requests_only() {
    let live = Backend::start("live").await;
    let dead = dead_addr();
    // Sorted by address, the dead backend comes first in the pool when its port is lower;
    // make both orders happen by sending several requests.
    let drover = Drover::start(
        "",
        &app("/web", "web.example.com", 10001, &[dead, live.addr]),
    );
    drover.ready().await;
    for _ in 0..4 {
        let a = get(drover.http(), "web.example.com", "/").await;
        assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "live"));
    }
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let req = Request::post(format!("http://{}/", drover.http()))
            .header("host", "web.example.com")
            .body(Full::new(Bytes::from_static(b"x")))
            .unwrap();
        statuses.push(send(req).await.unwrap().status.as_u16());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 502, 502], "a POST is never retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_never_answers_is_504() {
    let slow = Backend::start("slow").await;
    let drover = Drover::start_with(
        "response_timeout = \"300ms\"",
        "",
        &app("/web", "web.example.com", 10001, &[slow.addr]),
    );
    drover.ready().await;
    let a = get(drover.http(), "web.example.com", "/hang").await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT);
    // The route still works afterwards.
    assert_eq!(get(drover.http(), "web.example.com", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_added_and_hop_by_hop_removed() {
    let web = Backend::start("web").await;
    let drover = Drover::start("", &app("/web", "web.example.com", 10001, &[web.addr]));
    drover.ready().await;
    let req = Request::get(format!("http://{}/", drover.http()))
        .header("host", "web.example.com")
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "hop")
        .header("keep-alive", "timeout=5")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-kept", "yes")
        .body(Full::default())
        .unwrap();
    let a = send(req).await.unwrap();
    assert_eq!(
        a.header("x-req-x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(a.header("x-req-x-forwarded-proto"), Some("http"));
    let port = drover.http().port().to_string();
    assert_eq!(a.header("x-req-x-forwarded-port"), Some(port.as_str()));
    assert_eq!(a.header("x-req-host"), Some("web.example.com"));
    assert_eq!(a.header("x-req-x-kept"), Some("yes"));
    assert_eq!(a.header("x-req-x-secret"), None);
    assert_eq!(a.header("x-req-keep-alive"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways_without_buffering() {
    let web = Backend::start("web").await;
    let drover = Drover::start("", &app("/web", "web.example.com", 10001, &[web.addr]));
    drover.ready().await;

    // Send one chunk, and see it come back before the request body is finished: neither
    // direction waits for the whole body.
    let mut s = tokio::net::TcpStream::connect(drover.http()).await.unwrap();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: web.example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("hello") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the first chunk is echoed before the body ends");
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    s.write_all(b"0\r\n\r\n").await.unwrap();

    // A large body arrives intact.
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let req = Request::post(format!("http://{}/echo", drover.http()))
        .header("host", "web.example.com")
        .body(Full::new(Bytes::from(big.clone())))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body.len(), big.len());
    assert!(body == big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shapes_are_refused_with_400() {
    let web = Backend::start("web").await;
    let drover = Drover::start("", &app("/web", "web.example.com", 10001, &[web.addr]));
    drover.ready().await;

    let both = raw(
        drover.http(),
        b"POST / HTTP/1.1\r\nHost: web.example.com\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(both.starts_with("HTTP/1.1 400"), "{both}");
    let two_lengths = raw(
        drover.http(),
        b"POST / HTTP/1.1\r\nHost: web.example.com\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    )
    .await;
    assert!(two_lengths.starts_with("HTTP/1.1 400"), "{two_lengths}");
    let folded = raw(
        drover.http(),
        b"GET / HTTP/1.1\r\nHost: web.example.com\r\nX-Long: a\r\n b\r\n\r\n",
    )
    .await;
    assert!(folded.starts_with("HTTP/1.1 400"), "{folded}");
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: web.example.com\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let huge = raw(drover.http(), huge.as_bytes()).await;
    assert!(
        huge.starts_with("HTTP/1.1 431") || huge.starts_with("HTTP/1.1 400"),
        "{huge}"
    );
    assert_eq!(web.hits(), 0, "nothing refused reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_cut_off() {
    let web = Backend::start("web").await;
    let drover = Drover::start_with(
        "header_timeout = \"300ms\"",
        "",
        &app("/web", "web.example.com", 10001, &[web.addr]),
    );
    drover.ready().await;
    let started = tokio::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(drover.http()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: web.example.com\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(DEADLINE, s.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server must close a connection whose head never ends"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(web.hits(), 0);

    // The limit is on the head only: a response slower than header_timeout is not cut,
    // and the keep-alive connection serves the next request after it.
    let mut s = tokio::net::TcpStream::connect(drover.http()).await.unwrap();
    for path in ["/slow/700", "/"] {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: web.example.com\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        tokio::time::timeout(DEADLINE, async {
            while !seen.ends_with(b"web slow\n") && !seen.ends_with(b"\r\n\r\nweb") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
                seen.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .expect("an answer");
        assert!(seen.starts_with(b"HTTP/1.1 200"));
    }
    // An idle keep-alive connection is closed after header_timeout too.
    let idle = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(DEADLINE, s.read_to_end(&mut rest)).await;
    assert!(n.is_ok() && idle.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_edit_applies_under_load_without_failures() {
    let old = Backend::start("old").await;
    let new = Backend::start("new").await;
    let drover = Drover::start("", &app("/web", "web.example.com", 10001, &[old.addr]));
    drover.ready().await;
    let addr = drover.http();

    let failures = Arc::new(AtomicUsize::new(0));
    let switched = Arc::new(AtomicBool::new(false));
    let load = {
        let (failures, switched) = (failures.clone(), switched.clone());
        tokio::spawn(async move {
            let client = client();
            let mut after_switch = 0;
            // Bounded: stops 200 requests after the switch, or after 20,000 requests.
            for _ in 0..20_000 {
                let req = Request::get(format!("http://{addr}/"))
                    .header("host", "web.example.com")
                    .body(Full::default())
                    .unwrap();
                match client.request(req).await {
                    Ok(resp) if resp.status() == 200 => {
                        let body = http_body_util::BodyExt::collect(resp.into_body())
                            .await
                            .map(|b| b.to_bytes());
                        match body {
                            Ok(b) if b == "new" => switched.store(true, Ordering::Relaxed),
                            Ok(_) => {}
                            Err(_) => {
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if switched.load(Ordering::Relaxed) {
                    after_switch += 1;
                    if after_switch >= 200 {
                        return;
                    }
                }
            }
        })
    };
    // Let the loop get going on the old backend first.
    eventually("requests on the old backend", || {
        let n = old.hits();
        async move { (n >= 50).then_some(()) }
    })
    .await;
    let edited = tokio::time::Instant::now();
    drover.write(
        "catalog.toml",
        &app("/web", "web.example.com", 10001, &[new.addr]),
    );
    eventually("the new backend to answer", || {
        let s = switched.load(Ordering::Relaxed);
        async move { s.then_some(()) }
    })
    .await;
    assert!(
        edited.elapsed() < Duration::from_secs(2),
        "applied after {:?}",
        edited.elapsed()
    );
    load.await.unwrap();
    assert_eq!(failures.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_catalog_file_keeps_the_routes() {
    let web = Backend::start("web").await;
    let drover = Drover::start("", &app("/web", "web.example.com", 10001, &[web.addr]));
    drover.ready().await;
    let version = drover.version();
    drover.write("catalog.toml", "[[app]\nid = \"/web\"\n");
    let metrics = drover.server().view().metrics.clone();
    eventually("the refused read to be counted", || {
        let n = metrics
            .discovery_syncs
            .with_label_values(&["file", "error"])
            .get();
        async move { (n >= 1).then_some(()) }
    })
    .await;
    assert_eq!(drover.version(), version, "no new table from a broken file");
    assert_eq!(get(drover.http(), "web.example.com", "/").await.body, "web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_drain_finishes_an_in_flight_request() {
    let web = Backend::start("web").await;
    let drover = Drover::start("", &app("/web", "web.example.com", 10001, &[web.addr]));
    drover.ready().await;
    let addr = drover.http();
    let slow = tokio::spawn(async move { get(addr, "web.example.com", "/slow/700").await });
    eventually("the slow request to reach the backend", || {
        let n = web.hits();
        async move { (n >= 1).then_some(()) }
    })
    .await;
    let clean = drover.stop().await;
    let answer = slow.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "web slow\n");
    assert!(clean, "the drain finished before its deadline");
    // Once stopped, nothing accepts any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
