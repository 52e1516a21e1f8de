//! Hostile HTTP/1.1 on raw sockets: smuggling shapes, oversized and slow heads and bodies,
//! half-closes and aborts, and backends that break off. Behind Drover a recording backend
//! shows exactly what was forwarded; after every case a normal request must still work.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// One request as the backend parsed it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A backend that records every request it gets and answers `200 ok`.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let log = log.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = body.collect().await?.to_bytes().to_vec();
                                log.lock().unwrap().push(Seen {
                                    method: parts.method.to_string(),
                                    path: parts.uri.to_string(),
                                    headers: parts
                                        .headers
                                        .iter()
                                        .map(|(n, v)| {
                                            let v = String::from_utf8_lossy(v.as_bytes());
                                            (n.to_string(), v.into_owned())
                                        })
                                        .collect(),
                                    body,
                                });
                                Ok::<_, hyper::Error>(hyper::Response::new(Full::new(
                                    Bytes::from_static(b"ok"),
                                )))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Recorder { addr, seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const HOST: &str = "web.example.com";

async fn drover_with(http_keys: &str, backends: &[SocketAddr]) -> Drover {
    let drover = Drover::start_with(http_keys, "", &app("/web", HOST, 10001, backends));
    drover.ready().await;
    drover
}

/// Sends `parts` on one connection, pausing between them, and reads until the server closes.
async fn send_pieces(addr: SocketAddr, parts: &[&[u8]], pause: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    for part in parts {
        s.write_all(part).await.unwrap();
        tokio::time::sleep(pause).await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A normal request still gets through.
async fn still_serves(drover: &Drover) {
    let a = get(drover.http(), HOST, "/after").await;
    assert_eq!(a.status, 200, "{}", a.body);
}

fn status_of(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_heads_get_their_status_and_never_reach_the_backend() {
    let rec = Recorder::start().await;
    let drover = drover_with("max_header_bytes = 2048", &[rec.addr]).await;
    let h = format!("Host: {HOST}\r\n");
    let cases: Vec<(&str, String, u16)> = vec![
        ("CL+TE", format!("POST / HTTP/1.1\r\n{h}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400),
        ("differing CL", format!("POST / HTTP/1.1\r\n{h}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab"), 400),
        ("duplicate CL", format!("POST / HTTP/1.1\r\n{h}Content-Length: 2\r\nContent-Length: 2\r\n\r\nab"), 400),
        ("CL sign", format!("POST / HTTP/1.1\r\n{h}Content-Length: +2\r\n\r\nab"), 400),
        ("CL non-digit", format!("POST / HTTP/1.1\r\n{h}Content-Length: 2x\r\n\r\nab"), 400),
        ("CL list", format!("POST / HTTP/1.1\r\n{h}Content-Length: 2, 2\r\n\r\nab"), 400),
        ("TE VT", format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n"), 400),
        ("TE identity,chunked", format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n"), 501),
        ("TE last not chunked", format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"), 400),
        ("two TE lines", format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400),
        ("TE in HTTP/1.0", format!("POST / HTTP/1.0\r\n{h}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400),
        ("TE ws before colon", format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"), 400),
        ("TE underscore", format!("POST / HTTP/1.1\r\n{h}Transfer_Encoding: chunked\r\n\r\n0\r\n\r\n"), 400),
        ("obs-fold", format!("GET / HTTP/1.1\r\n{h}X-A: a\r\n b\r\n\r\n"), 400),
        ("bare LF", format!("GET / HTTP/1.1\n{h}\n"), 400),
        ("NUL in value", format!("GET / HTTP/1.1\r\n{h}X-A: a\0b\r\n\r\n"), 400),
        ("CR in value", format!("GET / HTTP/1.1\r\n{h}X-A: a\rb\r\n\r\n"), 400),
        ("two Hosts", format!("GET / HTTP/1.1\r\n{h}{h}\r\n"), 400),
        ("no Host", "GET / HTTP/1.1\r\n\r\n".to_string(), 400),
        ("HTTP/2.0", format!("GET / HTTP/2.0\r\n{h}\r\n"), 505),
        ("CONNECT", format!("CONNECT {HOST}:443 HTTP/1.1\r\n{h}\r\n"), 405),
        ("long request line", format!("GET /{} HTTP/1.1\r\n{h}\r\n", "a".repeat(9000)), 414),
        ("head over the limit in one read", format!("GET / HTTP/1.1\r\n{h}X-Big: {}\r\n\r\n", "a".repeat(3000)), 431),
    ];
    for (name, request, want) in cases {
        let answer = send_pieces(drover.http(), &[request.as_bytes()], Duration::ZERO).await;
        assert_eq!(status_of(&answer), want, "{name}: {answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{name}: {answer}"
        );
        still_serves(&drover).await;
    }
    let forwarded: Vec<String> = rec.seen().iter().map(|s| s.path.clone()).collect();
    assert!(
        forwarded.iter().all(|p| p == "/after"),
        "refused requests reached the backend: {forwarded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_framing_hold_across_reads() {
    let rec = Recorder::start().await;
    let drover = drover_with("max_header_bytes = 2048", &[rec.addr]).await;
    let pause = Duration::from_millis(30);
    // Content-Length and Transfer-Encoding in two reads.
    let answer = send_pieces(
        drover.http(),
        &[
            format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\n").as_bytes(),
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ],
        pause,
    )
    .await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    // A head just over the limit, in small pieces.
    let head = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(2020)
    );
    assert!(head.len() > 2048 && head.len() < 2100);
    let pieces: Vec<&[u8]> = head.as_bytes().chunks(500).collect();
    let answer = send_pieces(drover.http(), &pieces, pause).await;
    assert_eq!(status_of(&answer), 431, "{answer}");
    // The same head just under the limit passes, in pieces too.
    let head = format!(
        "GET /fits HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(1950)
    );
    assert!(head.len() <= 2048);
    let pieces: Vec<&[u8]> = head.as_bytes().chunks(500).collect();
    let answer = send_pieces(drover.http(), &pieces, pause).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let paths: Vec<String> = rec.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(paths, ["/fits"]);
    still_serves(&drover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_hidden_in_a_body_stays_body() {
    let rec = Recorder::start().await;
    let drover = drover_with("", &[rec.addr]).await;
    let hidden = format!("GET /admin HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{hidden}",
        hidden.len()
    );
    let answer = send_pieces(drover.http(), &[request.as_bytes()], Duration::ZERO).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    let seen = rec.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/upload")
    );
    assert_eq!(seen[0].body, hidden.as_bytes());
    // The same with a chunked body.
    let request = format!(
        "POST /chunked HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{hidden}\r\n0\r\n\r\n",
        hidden.len()
    );
    let answer = send_pieces(drover.http(), &[request.as_bytes()], Duration::ZERO).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let seen = rec.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].body, hidden.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_lines_are_joined_and_underscores_follow_the_setting() {
    let rec = Recorder::start().await;
    let drover = drover_with("", &[rec.addr]).await;
    let request = format!(
        "GET /xff HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\nX-Forwarded-For: 10.0.0.1\r\n\
         X-Forwarded-For: 10.0.0.2, 10.0.0.3\r\nX_Auth_User: mallory\r\nX-Auth-User: alice\r\n\r\n"
    );
    let answer = send_pieces(drover.http(), &[request.as_bytes()], Duration::ZERO).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let seen = rec.seen();
    assert_eq!(
        seen[0].header("x-forwarded-for"),
        ["10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1"]
    );
    // Passed by default, as its own field: never merged with the dashed one.
    assert_eq!(seen[0].header("x_auth_user"), ["mallory"]);
    assert_eq!(seen[0].header("x-auth-user"), ["alice"]);
    drop(drover);

    let drover = drover_with("underscore_headers = \"drop\"", &[rec.addr]).await;
    let answer = send_pieces(drover.http(), &[request.as_bytes()], Duration::ZERO).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let last = rec.seen().pop().unwrap();
    assert!(last.header("x_auth_user").is_empty(), "{last:?}");
    assert_eq!(last.header("x-auth-user"), ["alice"]);
    drop(drover);

    let drover = drover_with("underscore_headers = \"reject\"", &[rec.addr]).await;
    let before = rec.seen().len();
    let answer = send_pieces(drover.http(), &[request.as_bytes()], Duration::ZERO).await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert_eq!(rec.seen().len(), before);
    still_serves(&drover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_client_still_gets_its_answer() {
    let web = Backend::start("web").await;
    web.set_delay(200);
    let drover = drover_with("", &[web.addr]).await;
    let mut s = TcpStream::connect(drover.http()).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(answer.ends_with("web"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_and_bodies_are_the_clients_fault() {
    let rec = Recorder::start().await;
    let drover = drover_with(
        "header_timeout = \"300ms\"\nbody_timeout = \"300ms\"",
        &[rec.addr],
    )
    .await;
    // A head that never ends: 408, then the close.
    let started = tokio::time::Instant::now();
    let answer = send_pieces(
        drover.http(),
        &[format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n").as_bytes()],
        Duration::ZERO,
    )
    .await;
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // A body that stalls: 408, not a 504 that blames the backend.
    let answer = send_pieces(
        drover.http(),
        &[
            format!("POST /slow HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 10\r\n\r\nabc")
                .as_bytes(),
        ],
        Duration::ZERO,
    )
    .await;
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(rec.seen().is_empty(), "{:?}", rec.seen());
    still_serves(&drover).await;
    // The backend was not blamed: it is still up in the route dump.
    let routes = get(drover.admin(), "admin", "/debug/routes").await;
    assert!(routes.body.contains("\"failures\": 0"), "{}", routes.body);
}

/// A backend that reads a request and then misbehaves as `act` says.
async fn rude_backend(act: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                match act {
                    "reset" => {}
                    "stale" => loop {
                        // Keep-alive with a 1 s timeout that loses the race: a request that
                        // comes later than that is dropped unanswered.
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")
                            .await;
                        let answered = tokio::time::Instant::now();
                        got.clear();
                        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                            }
                        }
                        if answered.elapsed() >= Duration::from_secs(1) {
                            break;
                        }
                    },
                    "short-length" => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                            .await;
                    }
                    _ => {
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n").await;
                    }
                }
                let _ = s.flush().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                // Reset, not a clean close.
                #[allow(deprecated)]
                let _ = s.set_linger(Some(Duration::ZERO));
                drop(s);
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_resets_before_answering() {
    let (rude, _task) = rude_backend("reset").await;
    let rec = Recorder::start().await;
    let drover = drover_with("", &[rude, rec.addr]).await;
    // Idempotent: the next backend answers, whichever was picked first.
    for _ in 0..4 {
        let a = get(drover.http(), HOST, "/again").await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    // Not idempotent: 502 when the rude one was picked, never a second send.
    let mut codes = Vec::new();
    for _ in 0..4 {
        let answer = send_pieces(
            drover.http(),
            &[format!("POST /once HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi").as_bytes()],
            Duration::ZERO,
        )
        .await;
        codes.push(status_of(&answer));
    }
    assert!(codes.contains(&502) && codes.contains(&200), "{codes:?}");
    let posts = rec.seen().iter().filter(|s| s.method == "POST").count();
    assert_eq!(posts, codes.iter().filter(|&&c| c == 200).count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_dropped_by_the_backend_is_retried_elsewhere() {
    let (stale, _task) = rude_backend("stale").await;
    let rec = Recorder::start().await;
    let drover = drover_with("", &[stale, rec.addr]).await;
    // Connections to both backends go into every worker's pool...
    for _ in 0..10 {
        assert_eq!(get(drover.http(), HOST, "/warm").await.status, 200);
    }
    // ... and after a pause (past a keep-alive timeout) the stale one drops its request.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..10 {
        let a = get(drover.http(), HOST, "/later").await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_resets_mid_body_leaves_the_answer_incomplete() {
    for act in ["short-length", "chunked"] {
        let (rude, _task) = rude_backend(act).await;
        let drover = drover_with("", &[rude]).await;
        let answer = send_pieces(
            drover.http(),
            &[format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes()],
            Duration::ZERO,
        )
        .await;
        assert_eq!(status_of(&answer), 200, "{act}: {answer}");
        let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
        if act == "short-length" {
            assert!(answer.contains("content-length: 100"), "{answer}");
            assert_eq!(body, "0123456789", "{act}: a short body, then the close");
        } else {
            assert!(
                !body.contains("\r\n0\r\n\r\n"),
                "{act}: no clean end: {body:?}"
            );
            assert!(
                body.to_ascii_lowercase().starts_with("a\r\n0123456789"),
                "{act}: {body:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_body_cancels_the_upstream_request() {
    // A backend that reads the whole body it was promised, and says how far it got.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(got);
            });
        }
    });
    let drover = drover_with("", &[backend]).await;
    let mut s = TcpStream::connect(drover.http()).await.unwrap();
    s.write_all(
        format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 1000\r\n\r\n0123456789")
            .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(s);
    // The backend sees its connection end with the body unfinished.
    let got = tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .expect("the upstream request is cancelled")
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("POST / HTTP/1.1"), "{text}");
    assert!(text.ends_with("0123456789"), "{text}");
}
