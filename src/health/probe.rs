//! One health probe of one target: a TCP connect or an HTTP GET over a fresh connection, with
//! the whole exchange (connect, head, body) under one timeout. Keeps no state: thresholds and
//! the up/down decision live in [`crate::health::Health`], the leader rule in
//! [`crate::health::leader`]. Scheduling probes is the caller's job.
//!
//! Redirects are never followed: a non-leader Mesos master answers `/master/state` with a 307
//! to the leader, and following it would make every master look like the leader.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::LeaderCheck;
use crate::source::https::{self, BodyError, Get, GetError};

/// At most this much of a body is read, to search for `expect_body` or parse metrics JSON.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The Mesos metric that is 1 on the elected leader and 0 elsewhere.
const MESOS_ELECTED: &str = "master/elected";

/// A standby Marathon forwards every request to the leader and adds this header.
const MARATHON_VIA: &str = "x-marathon-via";

/// What one probe checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The target accepts a TCP connection.
    Tcp,
    /// `GET path` answers `expect_status` (redirects are not followed), the first
    /// [`MAX_BODY_BYTES`] of the body contain `expect_body` when set, and the answer has no
    /// `forbid_header` when set.
    Http {
        path: String,
        expect_status: u16,
        expect_body: Option<String>,
        forbid_header: Option<&'static str>,
    },
    /// `GET /metrics/snapshot` answers 200 with a JSON object whose `"master/elected"` is 1:
    /// the Mesos leader.
    MesosElected,
    /// `GET path` answers 200-399 (Marathon's rule for its HTTP health checks).
    HttpAlive { path: String },
}

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub ok: bool,
    /// Why, for logs and /debug/routes: "HTTP 200", "HTTP 307", "connect refused",
    /// "timed out after 1s", "body lacks \"elected_time\"".
    pub detail: String,
    /// From the start of the connect to the verdict.
    pub took: Duration,
}

/// Why a probe failed: the target's answer, or a step that did not complete. Its Display is
/// the `detail` of a failed [`ProbeResult`].
#[derive(Debug, thiserror::Error)]
enum ProbeFailure {
    #[error("timed out after {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error("connect refused")]
    ConnectRefused,
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    /// A step of the GET after the connect.
    #[error(transparent)]
    Get(GetError),
    /// Our side: the configured Host or path cannot be sent.
    #[error("bad Host header {0:?}")]
    BadHost(String),
    #[error("bad probe path {path:?}: {source}")]
    BadPath {
        path: String,
        #[source]
        source: hyper::http::Error,
    },
    #[error("HTTP {0}")]
    Status(u16),
    #[error("HTTP {status} with {name}: {value}")]
    ForbiddenHeader {
        status: u16,
        name: &'static str,
        value: String,
    },
    #[error("body lacks {0:?}")]
    BodyLacks(String),
    #[error("body over {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("body: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("metrics are not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("{} = {}", MESOS_ELECTED, .0)]
    NotElected(f64),
    #[error("no numeric {:?} in the metrics", MESOS_ELECTED)]
    NoElected,
}

impl From<GetError> for ProbeFailure {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Connect(e) => connect_failed(e),
            e => ProbeFailure::Get(e),
        }
    }
}

/// The probe that proves leadership for a configured alias check.
pub fn leader_probe(check: &LeaderCheck) -> Probe {
    match check {
        LeaderCheck::Mesos => Probe::MesosElected,
        LeaderCheck::Marathon => Probe::Http {
            path: "/ping".to_string(),
            expect_status: 200,
            expect_body: None,
            forbid_header: Some(MARATHON_VIA),
        },
        LeaderCheck::Http {
            path,
            expect_status,
            expect_body,
        } => Probe::Http {
            path: path.clone(),
            expect_status: *expect_status,
            expect_body: expect_body.clone(),
            forbid_header: None,
        },
    }
}

/// Runs `probe` against `target`, sending `host_header` as the HTTP Host. Never takes much
/// longer than `timeout`, and never fails except by saying so in the result.
pub async fn run(
    target: SocketAddr,
    probe: &Probe,
    host_header: &str,
    timeout: Duration,
) -> ProbeResult {
    let start = Instant::now();
    let verdict = match tokio::time::timeout(timeout, check(target, probe, host_header)).await {
        Ok(verdict) => verdict,
        Err(_) => Err(ProbeFailure::TimedOut(timeout)),
    };
    let (ok, detail) = match verdict {
        Ok(detail) => (true, detail),
        Err(failure) => (false, failure.to_string()),
    };
    ProbeResult {
        ok,
        detail,
        took: start.elapsed(),
    }
}

/// `Ok(detail)` when the probe passes, `Err` saying why when it fails.
async fn check(
    target: SocketAddr,
    probe: &Probe,
    host_header: &str,
) -> Result<String, ProbeFailure> {
    match probe {
        Probe::Tcp => match TcpStream::connect(target).await {
            Ok(_) => Ok("connected".to_string()),
            Err(e) => Err(connect_failed(e)),
        },
        Probe::Http {
            path,
            expect_status,
            expect_body,
            forbid_header,
        } => {
            get(target, path, host_header, |response| async move {
                let status = response.status().as_u16();
                if status != *expect_status {
                    return Err(ProbeFailure::Status(status));
                }
                if let Some(name) = forbid_header {
                    if let Some(value) = response.headers().get(*name) {
                        return Err(ProbeFailure::ForbiddenHeader {
                            status,
                            name,
                            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
                        });
                    }
                }
                if let Some(needle) = expect_body {
                    if !body_contains(response.into_body(), needle.as_bytes()).await? {
                        return Err(ProbeFailure::BodyLacks(needle.clone()));
                    }
                }
                Ok(format!("HTTP {status}"))
            })
            .await
        }
        Probe::HttpAlive { path } => {
            get(target, path, host_header, |response| async move {
                match response.status().as_u16() {
                    status @ 200..=399 => Ok(format!("HTTP {status}")),
                    status => Err(ProbeFailure::Status(status)),
                }
            })
            .await
        }
        Probe::MesosElected => {
            get(
                target,
                "/metrics/snapshot",
                host_header,
                |response| async move {
                    let status = response.status();
                    if status != StatusCode::OK {
                        return Err(ProbeFailure::Status(status.as_u16()));
                    }
                    let body = read_body(response.into_body()).await?;
                    mesos_elected(&body)
                },
            )
            .await
        }
    }
}

fn connect_failed(e: std::io::Error) -> ProbeFailure {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => ProbeFailure::ConnectRefused,
        _ => ProbeFailure::Connect(e),
    }
}

/// One GET on a fresh connection, its answer judged by `judge`. `Get` drives the connection
/// inside this future while the head and body are read, so a timeout that drops the probe
/// also drops the socket.
async fn get<F, Fut>(
    target: SocketAddr,
    path: &str,
    host_header: &str,
    judge: F,
) -> Result<String, ProbeFailure>
where
    F: FnOnce(Response<Incoming>) -> Fut,
    Fut: Future<Output = Result<String, ProbeFailure>>,
{
    let host = HeaderValue::from_str(host_header)
        .map_err(|_| ProbeFailure::BadHost(host_header.to_string()))?;
    let request = Request::get(path)
        .header(header::HOST, host)
        .header(header::USER_AGENT, "drover-health")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|source| ProbeFailure::BadPath {
            path: path.to_string(),
            source,
        })?;
    let get = Get {
        authority: &target.to_string(),
        tls: None,
        auth: None,
        // `run` bounds the whole probe.
        step_timeout: None,
    };
    get.send(request, judge).await
}

/// Reads the body, refusing more than [`MAX_BODY_BYTES`].
async fn read_body(body: Incoming) -> Result<Bytes, ProbeFailure> {
    https::read_body(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge { limit } => ProbeFailure::BodyTooLarge { limit },
            BodyError::Read(e) => ProbeFailure::Body(e),
        })
}

/// Whether `needle` occurs in the first [`MAX_BODY_BYTES`] of the body. Stops reading as soon
/// as it is found: a Mesos leader's `/master/state` is large, and `elected_time` comes early.
async fn body_contains(mut body: Incoming, needle: &[u8]) -> Result<bool, ProbeFailure> {
    if needle.is_empty() {
        return Ok(true);
    }
    let mut seen: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ProbeFailure::Body(e.into()))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        let room = MAX_BODY_BYTES.saturating_sub(seen.len());
        let take = data.len().min(room);
        // Search only the new bytes plus the tail that a match could straddle.
        let from = seen.len().saturating_sub(needle.len() - 1);
        seen.extend_from_slice(&data[..take]);
        if contains(&seen[from..], needle) {
            return Ok(true);
        }
        if seen.len() >= MAX_BODY_BYTES {
            break;
        }
    }
    Ok(false)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The Mesos rule: a JSON object whose `"master/elected"` is 1 (Mesos writes it as 1.0).
fn mesos_elected(body: &[u8]) -> Result<String, ProbeFailure> {
    let json: serde_json::Value = serde_json::from_slice(body).map_err(ProbeFailure::NotJson)?;
    match json.get(MESOS_ELECTED).and_then(serde_json::Value::as_f64) {
        Some(1.0) => Ok(format!("{MESOS_ELECTED} = 1")),
        Some(v) => Err(ProbeFailure::NotElected(v)),
        None => Err(ProbeFailure::NoElected),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::*;

    /// A fixed answer from a fake server.
    #[derive(Clone)]
    struct Answer {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    /// A tiny HTTP server on 127.0.0.1:0 that gives `answer` on `path` and 404 elsewhere;
    /// returns its address and how many requests reached it.
    async fn serve(path: &'static str, answer: Answer) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let answer = answer.clone();
                let counter = counter.clone();
                let service = service_fn(move |req: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let mut builder = Response::builder();
                    let body = if req.uri().path() == path {
                        builder = builder.status(answer.status);
                        for (name, value) in &answer.headers {
                            builder = builder.header(*name, value.as_str());
                        }
                        answer.body.clone()
                    } else {
                        builder = builder.status(404);
                        "not found".to_string()
                    };
                    let response = builder.body(Full::new(Bytes::from(body))).unwrap();
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, hits)
    }

    /// A server that accepts connections and never answers.
    async fn hang() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        addr
    }

    /// An address with nothing listening (bound, then closed).
    async fn closed_port() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    const T: Duration = Duration::from_secs(2);

    fn elected_time_check() -> Probe {
        leader_probe(&LeaderCheck::Http {
            path: "/master/state".into(),
            expect_status: 200,
            expect_body: Some("elected_time".into()),
        })
    }

    #[tokio::test]
    async fn mesos_leader_has_elected_1() {
        let probe = leader_probe(&LeaderCheck::Mesos);
        let (leader, _) = serve(
            "/metrics/snapshot",
            answer(
                200,
                r#"{"master/elected": 1.0, "master/uptime_secs": 12.5}"#,
            ),
        )
        .await;
        let (leader_int, _) =
            serve("/metrics/snapshot", answer(200, r#"{"master/elected":1}"#)).await;
        let (follower, _) = serve(
            "/metrics/snapshot",
            answer(200, r#"{"master/elected": 0.0}"#),
        )
        .await;
        let (missing, _) = serve("/metrics/snapshot", answer(200, r#"{"other": 1}"#)).await;
        let (garbage, _) = serve("/metrics/snapshot", answer(200, "not json {")).await;

        let r = run(leader, &probe, "m1", T).await;
        assert!(r.ok, "{r:?}");
        assert_eq!(r.detail, "master/elected = 1");
        assert!(run(leader_int, &probe, "m1", T).await.ok);

        let r = run(follower, &probe, "m2", T).await;
        assert!(!r.ok);
        assert_eq!(r.detail, "master/elected = 0");
        let r = run(missing, &probe, "m3", T).await;
        assert!(!r.ok && r.detail.contains("no numeric"), "{r:?}");
        let r = run(garbage, &probe, "m3", T).await;
        assert!(!r.ok && r.detail.contains("not JSON"), "{r:?}");
    }

    #[tokio::test]
    async fn app_check_passes_on_200_to_399() {
        let probe = Probe::HttpAlive {
            path: "/health".into(),
        };
        for (status, ok) in [
            (200, true),
            (302, true),
            (399, true),
            (404, false),
            (503, false),
        ] {
            let (addr, _) = serve("/health", answer(status, "")).await;
            let r = run(addr, &probe, "app", T).await;
            assert_eq!(r.ok, ok, "{status}: {r:?}");
            assert_eq!(r.detail, format!("HTTP {status}"));
        }
    }

    #[tokio::test]
    async fn mesos_metrics_over_the_limit_fail() {
        let big = format!(
            r#"{{"master/elected": 1, "pad": "{}"}}"#,
            "x".repeat(MAX_BODY_BYTES)
        );
        let (addr, _) = serve("/metrics/snapshot", answer(200, &big)).await;
        let r = run(addr, &Probe::MesosElected, "m", T).await;
        assert!(!r.ok && r.detail.contains("body over"), "{r:?}");
    }

    #[tokio::test]
    async fn elected_time_rule_and_redirect_is_not_followed() {
        let probe = elected_time_check();
        let state = r#"{"version":"1.11.0","start_time":1.5,"elected_time":2.5,"id":"x"}"#;
        let (leader, leader_hits) = serve("/master/state", answer(200, state)).await;
        let mut redirect = answer(307, "");
        redirect
            .headers
            .push(("location", format!("http://{leader}/master/state")));
        let (follower, _) = serve("/master/state", redirect).await;
        let (no_field, _) = serve("/master/state", answer(200, r#"{"start_time":1.5}"#)).await;

        let r = run(leader, &probe, "mesos.example.com", T).await;
        assert!(r.ok, "{r:?}");
        assert_eq!(r.detail, "HTTP 200");
        assert_eq!(leader_hits.load(Ordering::SeqCst), 1);

        let r = run(follower, &probe, "mesos.example.com", T).await;
        assert!(!r.ok);
        assert_eq!(r.detail, "HTTP 307");
        // Never followed: the leader saw no second request.
        assert_eq!(leader_hits.load(Ordering::SeqCst), 1);

        let r = run(no_field, &probe, "mesos.example.com", T).await;
        assert!(!r.ok);
        assert_eq!(r.detail, "body lacks \"elected_time\"");
    }

    #[tokio::test]
    async fn expect_body_found_across_a_large_body() {
        // The needle sits past the first chunks hyper delivers, and the body is over the
        // limit: the probe stops at the match instead of failing on size.
        let body = format!(
            "{}elected_time{}",
            "a".repeat(200_000),
            "b".repeat(MAX_BODY_BYTES)
        );
        let (addr, _) = serve("/master/state", answer(200, &body)).await;
        let r = run(addr, &elected_time_check(), "m", T).await;
        assert!(r.ok, "{r:?}");

        let late = format!("{}elected_time", "a".repeat(MAX_BODY_BYTES + 10));
        let (addr, _) = serve("/master/state", answer(200, &late)).await;
        let r = run(addr, &elected_time_check(), "m", T).await;
        assert!(!r.ok, "past the limit is not searched: {r:?}");
    }

    #[tokio::test]
    async fn marathon_standby_with_via_header_fails() {
        let probe = leader_probe(&LeaderCheck::Marathon);
        let (leader, _) = serve("/ping", answer(200, "pong")).await;
        let mut forwarded = answer(200, "pong");
        forwarded
            .headers
            .push(("X-Marathon-Via", "1.1 10.0.0.2:8080".to_string()));
        let (standby, _) = serve("/ping", forwarded).await;
        let (starting, _) = serve("/ping", answer(503, "")).await;

        let r = run(leader, &probe, "marathon.example.com", T).await;
        assert!(r.ok, "{r:?}");
        let r = run(standby, &probe, "marathon.example.com", T).await;
        assert!(!r.ok);
        assert!(r.detail.contains("x-marathon-via"), "{r:?}");
        let r = run(starting, &probe, "marathon.example.com", T).await;
        assert!(!r.ok);
        assert_eq!(r.detail, "HTTP 503");
    }

    #[tokio::test]
    async fn tcp_probe() {
        let open = hang().await;
        let r = run(open, &Probe::Tcp, "x", T).await;
        assert!(r.ok, "{r:?}");
        assert_eq!(r.detail, "connected");

        let closed = closed_port().await;
        let r = run(closed, &Probe::Tcp, "x", T).await;
        assert!(!r.ok);
        assert_eq!(r.detail, "connect refused");
        assert!(r.took < Duration::from_millis(500), "{r:?}");
    }

    #[tokio::test]
    async fn hostile_inputs_fail_without_panicking() {
        let (addr, _) = serve("/ping", answer(200, "")).await;
        let bad_path = Probe::Http {
            path: "no slash and spaces".into(),
            expect_status: 200,
            expect_body: None,
            forbid_header: None,
        };
        let r = run(addr, &bad_path, "x", T).await;
        assert!(!r.ok && r.detail.contains("bad probe path"), "{r:?}");
        let r = run(addr, &Probe::MesosElected, "bad\nhost", T).await;
        assert!(!r.ok && r.detail.contains("bad Host"), "{r:?}");
    }

    #[tokio::test]
    async fn a_hanging_target_times_out_without_delaying_another() {
        let timeout = Duration::from_millis(400);
        let stuck = hang().await;
        let (fast, _) = serve("/ping", answer(200, "pong")).await;
        let probe = leader_probe(&LeaderCheck::Marathon);
        let started = Instant::now();
        let (slow, quick) = tokio::join!(
            run(stuck, &probe, "a", timeout),
            run(fast, &probe, "b", timeout)
        );
        assert!(!slow.ok);
        assert_eq!(slow.detail, "timed out after 400ms");
        assert!(slow.took >= timeout, "{slow:?}");
        assert!(started.elapsed() < timeout * 3, "bounded by the timeout");
        assert!(quick.ok, "{quick:?}");
        assert!(quick.took < Duration::from_millis(200), "{quick:?}");
    }
}
