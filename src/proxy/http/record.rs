//! What one request leaves behind: the in-flight gauge while it runs, and, while the access
//! log is on, its entry. The record is made when the head arrives, filled as the request is
//! routed and forwarded, rides on the response body, and is logged when that body is done
//! (or when the request is abandoned: the client left before the answer).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::Request;
use prometheus::IntGauge;
use tokio::time::Instant;

use super::Conn;
use crate::access_log::{AccessLog, Entry, FaultNote, HttpEntry};
use crate::proxy::Fault;
use crate::routing::{Route, RouteKind};

/// What forwarding learned of the backend side, for the access log.
#[derive(Debug, Default)]
pub(super) struct Exchange {
    /// Time the upstream side (set while the log is on: one clock read per attempt).
    pub timed: bool,
    /// The backend last tried.
    pub upstream: Option<SocketAddr>,
    pub upstream_status: Option<u16>,
    /// Request sent to response head, of the attempt that answered.
    pub upstream_time: Option<Duration>,
    /// Attempts after the first.
    pub retries: u32,
}

/// One request's record.
pub(super) struct Record {
    in_flight: IntGauge,
    pub exchange: Exchange,
    logged: Option<Logged>,
}

/// The access-log side, present only while the log is on.
struct Logged {
    log: AccessLog,
    entry: Box<HttpEntry>,
    started: Instant,
    /// Request body bytes, counted as the body streams to the backend.
    body_in: Arc<AtomicU64>,
    answered: bool,
}

impl Record {
    pub fn start(conn: &Conn, req: &Request<Incoming>) -> Record {
        let in_flight = conn.plane.metrics.http_in_flight.clone();
        in_flight.inc();
        let log = &conn.plane.access_log;
        let logged = log.enabled().then(|| Logged {
            log: log.clone(),
            entry: Box::new(HttpEntry {
                start: SystemTime::now(),
                client: conn.client,
                method: req.method().clone(),
                host: super::respond::request_host(req)
                    .unwrap_or_default()
                    .to_string(),
                path: req
                    .uri()
                    .path_and_query()
                    .map_or_else(|| req.uri().path().to_string(), |p| p.to_string()),
                version: req.version(),
                status: 0,
                upstream_status: None,
                bytes_in: 0,
                bytes_out: 0,
                duration: Duration::ZERO,
                upstream_time: None,
                route: Arc::from(""),
                upstream: None,
                retries: 0,
                fault: None,
                tls: conn.tls.clone(),
                user_agent: header_text(req.headers(), header::USER_AGENT),
                referer: header_text(req.headers(), header::REFERER),
            }),
            started: Instant::now(),
            body_in: Arc::new(AtomicU64::new(0)),
            answered: false,
        });
        Record {
            in_flight,
            exchange: Exchange {
                timed: logged.is_some(),
                ..Exchange::default()
            },
            logged,
        }
    }

    /// Where the request body's bytes are counted, while the log is on.
    pub fn body_counter(&self) -> Option<Arc<AtomicU64>> {
        self.logged.as_ref().map(|l| l.body_in.clone())
    }

    /// The answer is decided: its status, the route (if any), and whose fault a failure was.
    pub fn answered(&mut self, status: u16, route: Option<&Route>, fault: Option<FaultNote>) {
        let Some(logged) = &mut self.logged else {
            return;
        };
        logged.answered = true;
        let e = &mut logged.entry;
        e.status = status;
        e.route = route.map_or_else(|| Arc::from(""), |r| Arc::from(log_name(r)));
        e.fault = fault;
        e.upstream = self.exchange.upstream;
        e.upstream_status = self.exchange.upstream_status;
        e.upstream_time = self.exchange.upstream_time;
        e.retries = self.exchange.retries;
    }

    /// `bytes` of the answer's body went to the client.
    pub fn sent(&mut self, bytes: usize) {
        if let Some(logged) = &mut self.logged {
            logged.entry.bytes_out += bytes as u64;
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.in_flight.dec();
        let Some(mut logged) = self.logged.take() else {
            return;
        };
        if !logged.answered {
            // The client went away before the answer: nginx's 499.
            logged.entry.status = 499;
            logged.entry.fault = Some(FaultNote {
                kind: Fault::Client,
                reason: "client closed the connection before the answer".into(),
            });
            logged.entry.upstream = self.exchange.upstream;
            logged.entry.retries = self.exchange.retries;
        }
        logged.entry.duration = logged.started.elapsed();
        logged.entry.bytes_in = logged.body_in.load(Ordering::Relaxed);
        logged.log.log(Entry::Http(logged.entry));
    }
}

/// The access log's name of a route: the app id and service port (`/shop/web:10001`), or an
/// alias's own name (`alias:mesos.example.com`).
fn log_name(route: &Route) -> String {
    match route.kind {
        RouteKind::Alias { .. } => route.name.clone(),
        _ => format!("{}:{}", route.app_id, route.port),
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}
