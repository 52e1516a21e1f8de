//! gRPC's rules on top of HTTP/2 forwarding: recognising a call (`content-type:
//! application/grpc…`), its deadline (`grpc-timeout`), failures answered the gRPC way (a
//! trailers-only response, HTTP 200 with `grpc-status` and `grpc-message`, instead of an
//! HTTP error page a gRPC client cannot read), a deadline that expires mid-response, and
//! the count of calls by `grpc-status`.
//!
//! Bodies and trailers pass through untouched; this module only watches them.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use prometheus::IntCounterVec;
use tokio::time::{Instant, Sleep};

use super::error::ProxyError;
use super::ProxyBody;

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
const APPLICATION_GRPC: HeaderValue = HeaderValue::from_static("application/grpc");

/// gRPC status codes Drover itself answers with.
pub(super) const UNIMPLEMENTED: u16 = 12;
pub(super) const UNAVAILABLE: u16 = 14;
pub(super) const DEADLINE_EXCEEDED: u16 = 4;
pub(super) const PERMISSION_DENIED: u16 = 7;
pub(super) const UNAUTHENTICATED: u16 = 16;
pub(super) const INTERNAL: u16 = 13;

/// Whether a request is a gRPC call: `application/grpc`, alone or with a `+codec` or
/// parameters. (gRPC-Web, `application/grpc-web…`, is not: it reads HTTP statuses.)
pub(super) fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let ct = ct.as_bytes();
    let Some(rest) = ct.strip_prefix(b"application/grpc") else {
        return false;
    };
    matches!(rest.first(), None | Some(b'+') | Some(b';'))
}

/// The call's deadline from `grpc-timeout`: 1 to 8 digits and a unit (`H`ours,
/// `M`inutes, `S`econds, `m`illi-, `u` micro-, `n`anoseconds). `None` when absent or
/// malformed (a malformed one is the backend's to refuse; Drover adds no deadline).
pub(super) fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get(GRPC_TIMEOUT)?.as_bytes();
    let (&unit, digits) = raw.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The gRPC status for a failure Drover answers itself (gRPC's HTTP-to-status mapping,
/// with a timeout as `DEADLINE_EXCEEDED`).
pub(super) fn status_for(e: &ProxyError) -> u16 {
    match e {
        ProxyError::Timeout | ProxyError::Deadline => DEADLINE_EXCEEDED,
        ProxyError::NoRoute => UNIMPLEMENTED,
        ProxyError::Forbidden => PERMISSION_DENIED,
        ProxyError::Unauthorized(_) => UNAUTHENTICATED,
        ProxyError::NoBackends
        | ProxyError::NoLeader(_)
        | ProxyError::Connect
        | ProxyError::Upstream(_)
        | ProxyError::ToHttps(_) => UNAVAILABLE,
        ProxyError::BadRequest(_) | ProxyError::Refused(_) | ProxyError::Client(_) => INTERNAL,
    }
}

/// A failure as a trailers-only gRPC response: HTTP 200, `content-type:
/// application/grpc`, `grpc-status` and `grpc-message` in the one header block.
pub(super) fn error_response(e: &ProxyError) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::new())));
    *resp.status_mut() = StatusCode::OK;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, APPLICATION_GRPC);
    headers.insert(GRPC_STATUS, HeaderValue::from(status_for(e)));
    headers.insert(GRPC_MESSAGE, message(&e.to_string()));
    resp
}

/// `grpc-message`: percent-encoded UTF-8, as the gRPC spec has it (bytes outside
/// printable ASCII, and `%`).
fn message(text: &str) -> HeaderValue {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).expect("printable ASCII is a valid header value")
}

/// The `grpc-status` a header block carries, if any.
pub(super) fn status_in(headers: &HeaderMap) -> Option<&str> {
    headers.get(GRPC_STATUS).and_then(|v| v.to_str().ok())
}

/// Records one gRPC answer's status: counted under its route, and put in `cell` for the
/// access log.
pub(super) fn record(
    statuses: &IntCounterVec,
    route: &str,
    cell: Option<&StatusCell>,
    status: &str,
) {
    count(statuses, route, status);
    if let Some(cell) = cell {
        cell.set(status);
    }
}

/// Counts one gRPC answer under its route.
fn count(statuses: &IntCounterVec, route: &str, status: &str) {
    // Only gRPC's 17 codes become labels; anything else is one "other".
    let status = match status.parse::<u8>() {
        Ok(n) if n <= 16 => STATUS_LABELS[n as usize],
        _ => "other",
    };
    statuses.with_label_values(&[route, status]).inc();
}

const STATUS_LABELS: [&str; 17] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
];

/// A gRPC call's `grpc-status` for its access-log line, shared between the request's
/// record and its response body, which sees the trailers.
#[derive(Debug, Clone, Default)]
pub(crate) struct StatusCell(Arc<AtomicU32>);

impl StatusCell {
    const UNSET: u32 = u32::MAX;

    pub(crate) fn new() -> StatusCell {
        StatusCell(Arc::new(AtomicU32::new(Self::UNSET)))
    }

    pub(crate) fn set(&self, status: &str) {
        if let Ok(n) = status.parse::<u16>() {
            self.0.store(n.into(), Ordering::Relaxed);
        }
    }

    pub(crate) fn get(&self) -> Option<u16> {
        u16::try_from(self.0.load(Ordering::Relaxed)).ok()
    }
}

/// A gRPC call whose response streams from a backend: ends it with `DEADLINE_EXCEEDED`
/// trailers if its deadline passes first, and counts its `grpc-status` once, from the
/// trailers or, for a trailers-only answer, from the head.
pub(super) struct GrpcCall {
    deadline: Option<Pin<Box<Sleep>>>,
    statuses: IntCounterVec,
    route: String,
    /// `grpc-status` of the response head (a trailers-only answer).
    head_status: Option<String>,
    /// The access log's copy of the status, while the log is on.
    cell: Option<StatusCell>,
    counted: bool,
    expired: bool,
}

impl GrpcCall {
    /// Watches a backend's answer to a gRPC call; `None` when the answer is its head alone
    /// (trailers-only: counted now, as no body will be polled).
    pub(super) fn watch(
        deadline: Option<Instant>,
        statuses: &IntCounterVec,
        route: &str,
        head: &HeaderMap,
        body_done: bool,
        cell: Option<StatusCell>,
    ) -> Option<GrpcCall> {
        if body_done {
            let status = status_in(head).unwrap_or("other");
            record(statuses, route, cell.as_ref(), status);
            return None;
        }
        Some(GrpcCall {
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
            statuses: statuses.clone(),
            route: route.to_string(),
            head_status: status_in(head).map(str::to_string),
            cell,
            counted: false,
            expired: false,
        })
    }

    /// Polls the backend's body through the call's rules.
    pub(super) fn poll_frame(
        &mut self,
        inner: Pin<&mut Incoming>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Some(deadline) = &mut self.deadline {
            if deadline.as_mut().poll(cx).is_ready() && !self.counted {
                // The backend's stream is reset when this body is dropped, after these.
                self.expired = true;
                self.count_once("4");
                let mut trailers = HeaderMap::new();
                trailers.insert(GRPC_STATUS, HeaderValue::from(DEADLINE_EXCEEDED));
                trailers.insert(
                    GRPC_MESSAGE,
                    message("deadline exceeded while the backend was answering"),
                );
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
        }
        let polled = inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    self.count_once(status_in(trailers).unwrap_or("other"));
                    self.deadline = None;
                }
            }
            Poll::Ready(None) => {
                let status = self.head_status.take();
                self.count_once(status.as_deref().unwrap_or("other"));
            }
            _ => {}
        }
        polled
    }

    fn count_once(&mut self, status: &str) {
        if !self.counted {
            self.counted = true;
            record(&self.statuses, &self.route, self.cell.as_ref(), status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn grpc_calls_are_recognised_by_content_type() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc;charset=x",
        ] {
            assert!(is_grpc(&headers(&[("content-type", ct)])), "{ct}");
        }
        for ct in [
            "application/grpc-web",
            "application/json",
            "application/grpcx",
        ] {
            assert!(!is_grpc(&headers(&[("content-type", ct)])), "{ct}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn grpc_timeout_units() {
        let t = |v: &'static str| timeout(&headers(&[("grpc-timeout", v)]));
        assert_eq!(t("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(t("3M"), Some(Duration::from_secs(180)));
        assert_eq!(t("5S"), Some(Duration::from_secs(5)));
        assert_eq!(t("250m"), Some(Duration::from_millis(250)));
        assert_eq!(t("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(t("10n"), Some(Duration::from_nanos(10)));
        for bad in ["", "m", "123456789S", "1x", "-1S", "1.5S", " 1S"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn failures_become_trailers_only_answers() {
        let resp = error_response(&ProxyError::NoBackends);
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp.headers();
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["grpc-status"], "14");
        assert_eq!(h["grpc-message"], "no backend is available for this route");
        assert_eq!(status_for(&ProxyError::Timeout), DEADLINE_EXCEEDED);
        assert_eq!(status_for(&ProxyError::Connect), UNAVAILABLE);
        assert_eq!(status_for(&ProxyError::NoRoute), UNIMPLEMENTED);
        assert_eq!(message("50% ✓"), "50%25 %E2%9C%93");
    }
}
