//! The HTTP side of the Marathon source: one request to one Marathon instance, failing over
//! across the configured URLs and preferring the leader. A standby Marathon proxies every
//! API call to the leader and marks the answer with `X-Marathon-Via`, and every answer names
//! the leader in `X-Marathon-Leader`; the client moves to that URL when it is one of ours.
//!
//! Requests go over a fresh connection each, through `source::https::Get` (Marathon is read
//! a few times a minute, the event stream holds its own connection). The connect, the TLS
//! handshake, the answer head and the read of the apps snapshot each get `timeout`.
//! `https://` URLs go over TLS (rustls): the certificate must be valid for the URL's host (a
//! name or an IP address) and chain to `ca_file` when one is configured, else to the
//! system's roots. The TLS setup is made once per `Client`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tracing::{debug, info, warn};

use crate::source::https::{basic_auth, read_body, Get, GetError, TlsClient, TlsSetupError};

/// The largest apps snapshot accepted (a guard against a runaway or hostile answer).
const MAX_BODY: usize = 256 * 1024 * 1024;

/// Why one request to Marathon failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A step of the GET: connect, TLS, the answer, the body.
    #[error("{url}: {source}")]
    Get {
        url: String,
        #[source]
        source: GetError,
    },
    #[error("{url}: body not read within {timeout:?}")]
    BodyTimeout { url: String, timeout: Duration },
    #[error("{url}: redirect to an unusable Location {location:?}")]
    BadRedirect { url: String, location: String },
    /// A redirect to an https URL when every configured one is http.
    #[error("{url}: an https URL, but no configured Marathon URL is https, so TLS is not set up")]
    NoTls { url: String },
    #[error("{url}: bad request path {path:?}: {source}")]
    BadPath {
        url: String,
        path: String,
        #[source]
        source: hyper::http::Error,
    },
    #[error("{url}: HTTP {status}{hint}")]
    Status {
        url: String,
        status: StatusCode,
        hint: &'static str,
    },
    #[error("no Marathon URL answered: {0}")]
    AllFailed(String),
}

/// Why the `[marathon]` section cannot be followed: the operator's to fix.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}: not an http:// or https:// URL")]
    NotHttp(String),
    #[error("{0}: no host")]
    NoHost(String),
    #[error("no Marathon URL configured")]
    NoUrl,
    #[error("cannot read password_file {}: {source}", .file.display())]
    PasswordFile {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
}

/// A Marathon base URL split into what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// As configured, without a trailing slash, e.g. `http://m1:8080`.
    pub url: String,
    /// `https://`: the connection goes over TLS.
    tls: bool,
    /// The host alone (no brackets around an IPv6 address): what the certificate must name.
    host: String,
    /// `host:port` to connect to (port 80, or 443 for https, when absent).
    authority: String,
    /// Path prefix before `/v2/...` (usually empty).
    prefix: String,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<BaseUrl, SetupError> {
        let url = url.trim_end_matches('/');
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(SetupError::NotHttp(url.to_string()));
        };
        let (hostport, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if hostport.is_empty() {
            return Err(SetupError::NoHost(url.to_string()));
        }
        let port = hostport
            .rsplit_once(':')
            .filter(|(_, p)| p.parse::<u16>().is_ok() && !hostport.ends_with(']'));
        let (host, authority) = match port {
            Some((host, _)) => (host, hostport.to_string()),
            None => (
                hostport,
                format!("{hostport}:{}", if tls { 443 } else { 80 }),
            ),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(SetupError::NoHost(url.to_string()));
        }
        Ok(BaseUrl {
            url: url.to_string(),
            tls,
            host: host.to_string(),
            authority,
            prefix: prefix.to_string(),
        })
    }

    /// True when `leader` (an `X-Marathon-Leader` value: a URL or `host:port`) names this
    /// instance.
    fn is(&self, leader: &str) -> bool {
        let leader = without_scheme(leader.trim_end_matches('/'));
        leader == without_scheme(&self.url) || leader == self.authority
    }
}

fn without_scheme(url: &str) -> &str {
    url.strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url)
}

/// Talks to one Marathon cluster through any of its instances. A clone shares the TLS
/// setup (the roots are loaded once) and starts with the same preference.
#[derive(Debug, Clone)]
pub struct Client {
    urls: Vec<BaseUrl>,
    /// Index of the instance tried first: the last one that answered, moved to the leader
    /// when an answer names it.
    preferred: usize,
    auth: Option<HeaderValue>,
    timeout: Duration,
    /// Set when some URL is https.
    tls: Option<TlsClient>,
}

/// A successful answer and which instance gave it.
pub struct Answer {
    pub url: String,
    pub response: Response<Incoming>,
}

impl Client {
    /// `auth` is `(user, password)` for HTTP basic auth; `ca_file` a PEM bundle whose
    /// certificates are the only roots trusted for https URLs (system roots when `None`).
    pub fn new(
        urls: &[String],
        auth: Option<(String, String)>,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Client, SetupError> {
        let urls = urls
            .iter()
            .map(|u| BaseUrl::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err(SetupError::NoUrl);
        }
        let tls = if urls.iter().any(|u| u.tls) {
            Some(TlsClient::new(ca_file, "marathon")?)
        } else {
            if let Some(file) = ca_file {
                warn!(ca_file = %file.display(), "[marathon] ca_file is set but no Marathon URL is https://; it is unused");
            }
            None
        };
        let auth = auth.map(|(user, password)| basic_auth(&user, &password));
        Ok(Client {
            urls,
            preferred: 0,
            auth,
            timeout,
            tls,
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
        self.read_whole(answer).await
    }

    /// Reads one app with its tasks (`/v2/apps/{id}?embed=app.tasks&embed=app.readiness`,
    /// answered `{"app": {...}}`). `Ok(None)`: Marathon says the app does not exist (404).
    pub async fn app(&mut self, id: &str) -> Result<Option<(String, Bytes)>, FetchError> {
        let path = format!(
            "/v2/apps/{}?embed=app.tasks&embed=app.readiness",
            app_path(id)
        );
        let answer = match self.get_any(&path, "application/json").await {
            Ok(answer) => answer,
            Err(FetchError::Status {
                status: StatusCode::NOT_FOUND,
                ..
            }) => return Ok(None),
            Err(e) => return Err(e),
        };
        self.read_whole(answer).await.map(Some)
    }

    async fn read_whole(&self, answer: Answer) -> Result<(String, Bytes), FetchError> {
        let url = answer.url.clone();
        let body = tokio::time::timeout(
            self.timeout,
            read_body(answer.response.into_body(), MAX_BODY),
        )
        .await
        .map_err(|_| FetchError::BodyTimeout {
            url: url.clone(),
            timeout: self.timeout,
        })?
        .map_err(|e| FetchError::Get {
            url: url.clone(),
            source: GetError::Body(e),
        })?;
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
                // One app's 404 is the cluster's answer (the app is gone), not this
                // instance's failure.
                Err(
                    e @ FetchError::Status {
                        status: StatusCode::NOT_FOUND,
                        ..
                    },
                ) if path.starts_with("/v2/apps/") => return Err(e),
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
                redirect_target(base, &location).ok_or_else(|| FetchError::BadRedirect {
                    url: base.url.clone(),
                    location: location.clone(),
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

    /// One GET to `base`; the answer's body is left to the caller.
    async fn send(
        &self,
        base: &BaseUrl,
        path: &str,
        accept: &'static str,
    ) -> Result<Response<Incoming>, FetchError> {
        let url = || base.url.clone();
        let tls = match (base.tls, &self.tls) {
            (false, _) => None,
            (true, Some(tls)) => Some((tls, base.host.as_str())),
            // Only a redirect can lead here: every configured URL is http.
            (true, None) => return Err(FetchError::NoTls { url: url() }),
        };
        let request = Request::get(path)
            .header(header::HOST, base.authority.as_str())
            .header(header::ACCEPT, accept)
            .body(Empty::<Bytes>::new())
            .map_err(|source| FetchError::BadPath {
                url: url(),
                path: path.to_string(),
                source,
            })?;
        let get = Get {
            authority: &base.authority,
            tls,
            auth: self.auth.as_ref(),
            step_timeout: Some(self.timeout),
        };
        get.send(request, |response| async { Ok::<_, GetError>(response) })
            .await
            .map_err(|source| FetchError::Get { url: url(), source })
    }
}

/// An app id as a request path (`/shop/web` -> `shop/web`): Marathon's ids need no
/// escaping, anything else in an event's id is percent-encoded rather than trusted.
fn app_path(id: &str) -> String {
    let mut path = String::with_capacity(id.len());
    for b in id.trim_start_matches('/').bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'/') {
            path.push(b as char);
        } else {
            path.push_str(&format!("%{b:02X}"));
        }
    }
    path
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

/// Where a `Location` points: an absolute http(s) URL, or a path on the same instance.
fn redirect_target(base: &BaseUrl, location: &str) -> Option<(BaseUrl, String)> {
    if location.starts_with('/') {
        return Some((base.clone(), location.to_string()));
    }
    let (scheme, rest) = location.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let split = rest.find('/').unwrap_or(rest.len());
    let target = BaseUrl::parse(&format!("{scheme}://{}", &rest[..split])).ok()?;
    let path = if split == rest.len() {
        "/"
    } else {
        &rest[split..]
    };
    Some((target, path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::https::tests::ca_pem;
    use rustls_pki_types::ServerName;

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
        assert!(BaseUrl::parse("ftp://x").is_err());
        assert!(BaseUrl::parse("https://").is_err());
    }

    #[test]
    fn https_urls_parse_with_their_host_for_the_certificate() {
        let u = BaseUrl::parse("https://m1.example").unwrap();
        assert!(u.tls);
        assert_eq!(
            (u.host.as_str(), u.authority.as_str()),
            ("m1.example", "m1.example:443")
        );
        assert!(u.is("https://m1.example"));
        assert!(u.is("m1.example:443"));
        let ip = BaseUrl::parse("https://127.0.0.1:8443/marathon").unwrap();
        assert_eq!(
            (ip.host.as_str(), ip.prefix.as_str()),
            ("127.0.0.1", "/marathon")
        );
        assert!(matches!(
            ServerName::try_from(ip.host.clone()),
            Ok(ServerName::IpAddress(_))
        ));
        let v6 = BaseUrl::parse("https://[::1]:8443").unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.authority.as_str()),
            ("::1", "[::1]:8443")
        );
        let v6 = BaseUrl::parse("https://[::1]").unwrap();
        assert_eq!(v6.authority, "[::1]:443");
        assert!(!BaseUrl::parse("http://m1").unwrap().tls);
    }

    #[test]
    fn a_ca_file_with_certificates_becomes_the_roots() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, format!("{}\n{}", ca_pem(), ca_pem())).unwrap();
        let client = Client::new(
            &["https://127.0.0.1:8443".into()],
            None,
            Some(&file),
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(client.tls.is_some());
    }

    #[test]
    fn a_missing_ca_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = Client::new(
            &["https://m1:8443".into()],
            None,
            Some(&missing),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(
            matches!(e, SetupError::Tls(TlsSetupError::ReadCaFile { .. })),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(e.contains(&missing.display().to_string()), "{e}");
        assert!(e.contains("cannot read ca_file"), "{e}");

        // Over http alone the file is not read (only a warning says it is unused).
        let client = Client::new(
            &["http://m1:8080".into()],
            None,
            Some(&missing),
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(client.tls.is_none());
    }

    #[test]
    fn app_ids_become_request_paths() {
        assert_eq!(app_path("/shop/web-1.v2"), "shop/web-1.v2");
        assert_eq!(app_path("/a b?c"), "a%20b%3Fc");
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
        let (t, _) = redirect_target(&base, "https://m2:8443/v2/events").unwrap();
        assert!(t.tls);
        assert_eq!(t.authority, "m2:8443");
    }
}
