//! Why a request got no upstream response, and the answer each reason gets: its status,
//! a one-line body, `Connection: close` where the framing of what follows is unknowable,
//! and whether it counts against the backend.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::access_log::FaultNote;
use crate::proxy::h1_guard::ClientFault;
use crate::proxy::h1_scan::Rejection;
use crate::proxy::Fault;

use super::ProxyBody;

/// Why a request got no upstream response.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProxyError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("no route for this host")]
    NoRoute,
    #[error("no backend is available for this route")]
    NoBackends,
    #[error("no elected leader for {0}: none of its masters proves leadership right now")]
    NoLeader(String),
    #[error("forbidden: this service does not take requests from your address")]
    Forbidden,
    #[error("authentication required")]
    Unauthorized(HeaderValue),
    #[error("moved to https")]
    ToHttps(HeaderValue),
    #[error("could not connect to any backend")]
    Connect,
    #[error("the backend did not answer in time")]
    Timeout,
    /// The client's own deadline (`grpc-timeout`) passed first: not held against the backend.
    #[error("the call's deadline (grpc-timeout) passed before the backend answered")]
    Deadline,
    #[error("the backend broke the exchange: {0}")]
    Upstream(super::BodyError),
    #[error("{}", .0.reason())]
    Refused(Rejection),
    #[error("{}", client_fault_text(*.0))]
    Client(ClientFault),
}

pub(super) fn client_fault_text(fault: ClientFault) -> &'static str {
    match fault {
        ClientFault::BodyTimeout => "the request body stalled",
        ClientFault::BadBody => "bad request: the chunked body is malformed",
        ClientFault::ClosedMidBody => "the client closed the connection mid-body",
    }
}

impl ProxyError {
    pub(super) fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoBackends | ProxyError::NoLeader(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Forbidden => StatusCode::FORBIDDEN,
            ProxyError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ProxyError::ToHttps(_) => StatusCode::MOVED_PERMANENTLY,
            ProxyError::Connect | ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout | ProxyError::Deadline => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Refused(why) => {
                StatusCode::from_u16(why.status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ProxyError::Client(ClientFault::BodyTimeout) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Client(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// Whose fault it was; `None` for answers that are policy, not failure (the redirect to
    /// https, the authentication challenge).
    pub(super) fn fault(&self) -> Option<Fault> {
        match self {
            ProxyError::ToHttps(_) | ProxyError::Unauthorized(_) => None,
            ProxyError::BadRequest(_)
            | ProxyError::Refused(_)
            | ProxyError::Client(_)
            | ProxyError::NoRoute
            | ProxyError::Forbidden
            | ProxyError::Deadline => Some(Fault::Client),
            ProxyError::NoBackends
            | ProxyError::NoLeader(_)
            | ProxyError::Connect
            | ProxyError::Timeout
            | ProxyError::Upstream(_) => Some(Fault::Upstream),
        }
    }

    /// Whose fault it was and why, for the access log.
    pub(super) fn fault_note(&self) -> Option<FaultNote> {
        self.fault().map(|kind| FaultNote {
            kind,
            reason: self.to_string(),
        })
    }

    /// The `kind` label of `drover_upstream_errors_total`, for the backend's failures.
    pub(super) fn upstream_kind(&self) -> Option<&'static str> {
        match self {
            ProxyError::Connect => Some("connect"),
            ProxyError::Timeout => Some("timeout"),
            ProxyError::Upstream(_) => Some("protocol"),
            _ => None,
        }
    }

    pub(super) fn response(&self) -> Response<ProxyBody> {
        let mut resp = Response::new(Either::Right(Full::new(Bytes::from(format!("{self}\n")))));
        *resp.status_mut() = self.status();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match self {
            ProxyError::Unauthorized(challenge) => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, challenge.clone());
            }
            ProxyError::ToHttps(location) => {
                resp.headers_mut()
                    .insert(header::LOCATION, location.clone());
            }
            _ => {}
        }
        if matches!(
            self,
            ProxyError::BadRequest(_) | ProxyError::Refused(_) | ProxyError::Client(_)
        ) {
            // After a refused request the framing of what follows is unknowable.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_say_whose_side_failed() {
        assert_eq!(ProxyError::NoRoute.fault(), Some(Fault::Client));
        let stalled = ProxyError::Client(ClientFault::BodyTimeout);
        assert_eq!(stalled.fault(), Some(Fault::Client));
        assert_eq!(stalled.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(ProxyError::Timeout.fault(), Some(Fault::Upstream));
        assert_eq!(ProxyError::NoBackends.fault(), Some(Fault::Upstream));
        let redirect = ProxyError::ToHttps(HeaderValue::from_static("https://x/"));
        assert_eq!(redirect.fault(), None);
    }

    #[test]
    fn error_statuses() {
        assert_eq!(ProxyError::NoRoute.status(), 404);
        assert_eq!(ProxyError::NoBackends.status(), 503);
        assert_eq!(ProxyError::Connect.status(), 502);
        assert_eq!(ProxyError::Timeout.status(), 504);
    }
}
