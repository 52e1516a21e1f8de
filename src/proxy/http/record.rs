//! What one request leaves behind: the in-flight gauge while it runs, and, while the access
//! log is on, its entry. The record is made when the head arrives, filled as the request is
//! routed and forwarded, rides on the response body, and is logged when that body is done
//! (or when the request is abandoned: the client left before the answer).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Uri, Version};
use prometheus::IntGauge;
use tokio::time::Instant;

use super::grpc::StatusCell;
use super::Conn;
use crate::access_log::{FaultNote, HttpLine};
use crate::proxy::Fault;
use crate::routing::Route;

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
    /// Where a gRPC call's `grpc-status` is put once known (set for gRPC calls while the
    /// log is on; see `grpc::StatusCell`).
    pub grpc_status: Option<StatusCell>,
}

/// One request's record.
pub(super) struct Record {
    in_flight: IntGauge,
    pub exchange: Exchange,
    /// Boxed: the record rides on every response and is moved with it, and the log's
    /// side is most of its size.
    logged: Option<Box<Logged>>,
}

/// The access-log side, present only while the log is on. What the request said is kept
/// as cheap clones (shared buffers), and the line is formatted once, when it is done.
struct Logged {
    conn: Arc<Conn>,
    start: SystemTime,
    started: Instant,
    method: Method,
    uri: Uri,
    host: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    referer: Option<HeaderValue>,
    version: Version,
    /// Request body bytes, counted as the body streams to the backend; `None` for a
    /// request without a body.
    body_in: Option<Arc<AtomicU64>>,
    bytes_out: u64,
    status: Option<u16>,
    route: Option<Arc<Route>>,
    fault: Option<FaultNote>,
}

impl Record {
    pub fn start(conn: &Arc<Conn>, req: &Request<Incoming>) -> Record {
        let in_flight = conn.plane.metrics.http_in_flight.clone();
        in_flight.inc();
        let logged = conn.plane.access_log.enabled().then(|| {
            let headers = req.headers();
            Box::new(Logged {
                conn: conn.clone(),
                start: SystemTime::now(),
                started: Instant::now(),
                method: req.method().clone(),
                uri: req.uri().clone(),
                host: headers.get(header::HOST).cloned(),
                user_agent: headers.get(header::USER_AGENT).cloned(),
                referer: headers.get(header::REFERER).cloned(),
                version: req.version(),
                body_in: (!req.body().is_end_stream()).then(|| Arc::new(AtomicU64::new(0))),
                bytes_out: 0,
                status: None,
                route: None,
                fault: None,
            })
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
        self.logged.as_ref().and_then(|l| l.body_in.clone())
    }

    /// The answer is decided: its status, the route (if any), and whose fault a failure was.
    pub fn answered(&mut self, status: u16, route: Option<&Arc<Route>>, fault: Option<FaultNote>) {
        if let Some(logged) = &mut self.logged {
            logged.status = Some(status);
            logged.route = route.cloned();
            logged.fault = fault;
        }
    }

    /// `bytes` of the answer's body went to the client.
    pub fn sent(&mut self, bytes: usize) {
        if let Some(logged) = &mut self.logged {
            logged.bytes_out += bytes as u64;
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.in_flight.dec();
        let Some(logged) = self.logged.take() else {
            return;
        };
        let gone;
        let (status, fault) = match logged.status {
            Some(status) => (status, logged.fault.as_ref()),
            None => {
                // The client went away before the answer: nginx's 499.
                gone = FaultNote {
                    kind: Fault::Client,
                    reason: "client closed the connection before the answer".into(),
                };
                (499, Some(&gone))
            }
        };
        let host = match &logged.host {
            Some(h) => text(h),
            None => Cow::Borrowed(logged.uri.authority().map_or("", |a| a.as_str())),
        };
        let path = logged
            .uri
            .path_and_query()
            .map_or_else(|| logged.uri.path(), |p| p.as_str());
        let user_agent = logged.user_agent.as_ref().map(text);
        let referer = logged.referer.as_ref().map(text);
        let conn = &logged.conn;
        let exchange = &self.exchange;
        conn.plane.access_log.http(&HttpLine {
            start: logged.start,
            client: conn.client,
            method: logged.method.as_str(),
            host: &host,
            path,
            version: logged.version,
            status,
            upstream_status: exchange.upstream_status,
            grpc_status: exchange.grpc_status.as_ref().and_then(StatusCell::get),
            bytes_in: logged
                .body_in
                .as_ref()
                .map_or(0, |n| n.load(Ordering::Relaxed)),
            bytes_out: logged.bytes_out,
            duration: logged.started.elapsed(),
            upstream_time: exchange.upstream_time,
            route: logged.route.as_ref().map_or("", |r| r.log_name.as_str()),
            upstream: exchange.upstream,
            retries: exchange.retries,
            fault,
            tls: conn.tls.as_ref(),
            user_agent: user_agent.as_deref().unwrap_or(""),
            referer: referer.as_deref().unwrap_or(""),
        });
    }
}

/// A header's text; bytes that are not UTF-8 (obs-text) as replacement characters.
fn text(value: &HeaderValue) -> Cow<'_, str> {
    String::from_utf8_lossy(value.as_bytes())
}
