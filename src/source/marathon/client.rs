//! The HTTP side of the Marathon source: one request to one Marathon instance, failing over
//! across the configured URLs and preferring the leader. A standby Marathon proxies every
//! API call to the leader and marks the answer with `X-Marathon-Via`, and every answer names
//! the leader in `X-Marathon-Leader`; the client moves to that URL when it is one of ours.
//!
//! Requests go over a fresh connection each (Marathon is read a few times a minute, the event
//! stream holds its own connection). Only `http://` URLs are served here; `https://` is
//! refused with a clear error until TLS arrives.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::{debug, info};

/// The largest apps snapshot accepted (a guard against a runaway or hostile answer).
const MAX_BODY: usize = 256 * 1024 * 1024;

/// Why one request to Marathon failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
    #[error("{url}: HTTP {status}{hint}")]
    Status {
        url: String,
        status: StatusCode,
        hint: &'static str,
    },
    #[error("no Marathon URL answered: {0}")]
    AllFailed(String),
}

/// A Marathon base URL split into what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// As configured, without a trailing slash, e.g. `http://m1:8080`.
    pub url: String,
    /// `host:port` to connect to (port 80 when absent).
    authority: String,
    /// Path prefix before `/v2/...` (usually empty).
    prefix: String,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<BaseUrl, String> {
        let url = url.trim_end_matches('/');
        if url.starts_with("https://") {
            return Err(format!(
                "{url}: https URLs arrive with TLS support; use http:// for now"
            ));
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: not an http:// URL"))?;
        let (hostport, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if hostport.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let authority = if hostport
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !hostport.ends_with(']')
        {
            hostport.to_string()
        } else {
            format!("{hostport}:80")
        };
        Ok(BaseUrl {
            url: url.to_string(),
            authority,
            prefix: prefix.to_string(),
        })
    }

    /// True when `leader` (an `X-Marathon-Leader` value: a URL or `host:port`) names this
    /// instance.
    fn is(&self, leader: &str) -> bool {
        let leader = leader
            .trim_end_matches('/')
            .trim_start_matches("http://")
            .trim_start_matches("https://");
        let ours = self.url.trim_start_matches("http://");
        leader == ours || leader == self.authority
    }
}

/// Talks to one Marathon cluster through any of its instances.
#[derive(Debug)]
pub struct Client {
    urls: Vec<BaseUrl>,
    /// Index of the instance tried first: the last one that answered, moved to the leader
    /// when an answer names it.
    preferred: usize,
    auth: Option<HeaderValue>,
    timeout: Duration,
}

/// A successful answer and which instance gave it.
pub struct Answer {
    pub url: String,
    pub response: Response<Incoming>,
}

impl Client {
    /// `auth` is `(user, password)` for HTTP basic auth.
    pub fn new(
        urls: &[String],
        auth: Option<(String, String)>,
        timeout: Duration,
    ) -> Result<Client, String> {
        let urls = urls
            .iter()
            .map(|u| BaseUrl::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err("no Marathon URL configured".into());
        }
        let auth = auth.map(|(user, password)| {
            let token = base64(format!("{user}:{password}").as_bytes());
            HeaderValue::from_str(&format!("Basic {token}")).expect("base64 is a valid header")
        });
        Ok(Client {
            urls,
            preferred: 0,
            auth,
            timeout,
        })
    }

    /// Reads `/v2/apps?embed=apps.tasks&embed=apps.readiness` whole.
    pub async fn apps(&mut self) -> Result<(String, Bytes), FetchError> {
        let answer = self
            .get_any(
                "/v2/apps?embed=apps.tasks&embed=apps.readiness",
                "application/json",
            )
            .await?;
        let url = answer.url.clone();
        let body = tokio::time::timeout(
            self.timeout,
            Limited::new(answer.response.into_body(), MAX_BODY).collect(),
        )
        .await
        .map_err(|_| FetchError::Request {
            url: url.clone(),
            reason: format!("body not read within {:?}", self.timeout),
        })?
        .map_err(|e| FetchError::Request {
            url: url.clone(),
            reason: format!("reading the body: {e}"),
        })?
        .to_bytes();
        Ok((url, body))
    }

    /// Opens the event stream at `path_and_query` (`/v2/events?...`), following one
    /// redirect from a standby to the leader.
    pub async fn events(&mut self, path_and_query: &str) -> Result<Answer, FetchError> {
        self.get_any(path_and_query, "text/event-stream").await
    }

    /// GET on the preferred instance, then on each other one; the first 2xx wins.
    async fn get_any(&mut self, path: &str, accept: &'static str) -> Result<Answer, FetchError> {
        let mut errors = Vec::new();
        for i in 0..self.urls.len() {
            let index = (self.preferred + i) % self.urls.len();
            match self.get_one(index, path, accept).await {
                Ok(answer) => {
                    self.note_leader(index, &answer.response);
                    return Ok(answer);
                }
                // An auth failure is the operator's to fix; trying the others hides it.
                Err(
                    e @ FetchError::Status {
                        status: StatusCode::UNAUTHORIZED,
                        ..
                    },
                )
                | Err(
                    e @ FetchError::Status {
                        status: StatusCode::FORBIDDEN,
                        ..
                    },
                ) => return Err(e),
                Err(e) => {
                    debug!(error = %e, "Marathon instance failed; trying the next");
                    errors.push(e.to_string());
                }
            }
        }
        Err(FetchError::AllFailed(errors.join("; ")))
    }

    /// Moves the preference to the leader an answer names, when it is one of our URLs.
    fn note_leader(&mut self, answered: usize, response: &Response<Incoming>) {
        let leader = response
            .headers()
            .get("x-marathon-leader")
            .and_then(|v| v.to_str().ok());
        // A standby's answer is still good (it proxied to the leader), but the next request
        // goes straight to the leader when we know its URL.
        let next = leader
            .and_then(|l| self.urls.iter().position(|u| u.is(l)))
            .unwrap_or(answered);
        if next != self.preferred {
            info!(from = %self.urls[self.preferred].url, to = %self.urls[next].url, "preferring another Marathon instance");
            self.preferred = next;
        }
    }

    async fn get_one(
        &self,
        index: usize,
        path: &str,
        accept: &'static str,
    ) -> Result<Answer, FetchError> {
        let base = &self.urls[index];
        let response = self
            .send(base, &format!("{}{path}", base.prefix), accept)
            .await?;
        if response.status() == StatusCode::FOUND
            || response.status() == StatusCode::TEMPORARY_REDIRECT
        {
            // A standby may redirect the event stream to the leader: follow once.
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let (target, target_path) =
                redirect_target(base, &location).ok_or_else(|| FetchError::Request {
                    url: base.url.clone(),
                    reason: format!("redirect to an unusable Location {location:?}"),
                })?;
            debug!(from = %base.url, to = %location, "following a redirect");
            let followed = self.send(&target, &target_path, accept).await?;
            return check_status(&target.url, followed).map(|response| Answer {
                url: target.url,
                response,
            });
        }
        check_status(&base.url, response).map(|response| Answer {
            url: base.url.clone(),
            response,
        })
    }

    async fn send(
        &self,
        base: &BaseUrl,
        path: &str,
        accept: &'static str,
    ) -> Result<Response<Incoming>, FetchError> {
        let fail = |reason: String| FetchError::Request {
            url: base.url.clone(),
            reason,
        };
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect(&base.authority))
            .await
            .map_err(|_| fail(format!("no connection within {:?}", self.timeout)))?
            .map_err(|e| fail(format!("connect: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(format!("handshake: {e}")))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut req = Request::get(path)
            .header(header::HOST, base.authority.as_str())
            .header(header::ACCEPT, accept)
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(format!("bad request path {path:?}: {e}")))?;
        if let Some(auth) = &self.auth {
            req.headers_mut()
                .insert(header::AUTHORIZATION, auth.clone());
        }
        tokio::time::timeout(self.timeout, sender.send_request(req))
            .await
            .map_err(|_| fail(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| fail(format!("request: {e}")))
    }
}

fn check_status(url: &str, response: Response<Incoming>) -> Result<Response<Incoming>, FetchError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let hint = match status {
        StatusCode::UNAUTHORIZED => {
            " (Marathon wants credentials: set [marathon] user and password_file)"
        }
        StatusCode::FORBIDDEN => " (the configured user may not read apps)",
        StatusCode::SERVICE_UNAVAILABLE => " (no leader, or the instance is starting)",
        _ => "",
    };
    Err(FetchError::Status {
        url: url.to_string(),
        status,
        hint,
    })
}

/// Where a `Location` points: an absolute http URL, or a path on the same instance.
fn redirect_target(base: &BaseUrl, location: &str) -> Option<(BaseUrl, String)> {
    if location.starts_with('/') {
        return Some((base.clone(), location.to_string()));
    }
    let rest = location.strip_prefix("http://")?;
    let split = rest.find('/').unwrap_or(rest.len());
    let target = BaseUrl::parse(&format!("http://{}", &rest[..split])).ok()?;
    let path = if split == rest.len() {
        "/"
    } else {
        &rest[split..]
    };
    Some((target, path.to_string()))
}

/// Standard base64 with padding (RFC 4648 §4), for the basic-auth header.
fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn base_urls_parse_and_name_the_leader() {
        let u = BaseUrl::parse("http://m1.example:8080/").unwrap();
        assert_eq!(u.authority, "m1.example:8080");
        assert!(u.is("http://m1.example:8080"));
        assert!(u.is("m1.example:8080"));
        assert!(!u.is("m2.example:8080"));
        let plain = BaseUrl::parse("http://marathon").unwrap();
        assert_eq!(plain.authority, "marathon:80");
        let prefixed = BaseUrl::parse("http://lb:80/marathon").unwrap();
        assert_eq!(prefixed.prefix, "/marathon");
        assert!(BaseUrl::parse("https://m1:8443")
            .unwrap_err()
            .contains("TLS"));
        assert!(BaseUrl::parse("ftp://x").is_err());
    }

    #[test]
    fn redirects_keep_the_query() {
        let base = BaseUrl::parse("http://127.0.0.1:1").unwrap();
        let (t, p) =
            redirect_target(&base, "http://127.0.0.2:8080/v2/events?event_type=a").unwrap();
        assert_eq!(t.authority, "127.0.0.2:8080");
        assert_eq!(p, "/v2/events?event_type=a");
        let (t, p) = redirect_target(&base, "/v2/events").unwrap();
        assert_eq!(
            (t.authority.as_str(), p.as_str()),
            ("127.0.0.1:1", "/v2/events")
        );
        assert!(redirect_target(&base, "gopher://x").is_none());
    }
}
