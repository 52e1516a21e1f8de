//! The per-route rules from marathon-lb's labels that act on a request before any backend
//! is tried: source ACL, redirect to https, basic auth, sticky cookies, proxy-pass paths.

use std::net::SocketAddr;

use hyper::header::{self, HeaderValue};
use hyper::{Request, Uri};

use crate::routing::Route;

use super::error::ProxyError;
use super::respond::request_host;
use super::Conn;

/// The route's gates before any backend is tried: the source ACL (403), the redirect of
/// plain HTTP to https (301), basic auth (401).
pub(super) fn admit<B>(req: &Request<B>, conn: &Conn, route: &Route) -> Result<(), ProxyError> {
    let rules = &route.rules;
    if !rules.admits(conn.client.ip()) {
        return Err(ProxyError::Forbidden);
    }
    if rules.redirect_to_https && conn.proto == "http" {
        // The https URL names the host without the plain listener's port.
        let host = without_port(request_host(req).unwrap_or(""));
        let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let location = HeaderValue::from_str(&format!("https://{host}{target}"))
            .map_err(|_| ProxyError::BadRequest("a Host that cannot be redirected"))?;
        return Err(ProxyError::ToHttps(location));
    }
    if let Some(auth) = &rules.auth {
        if !auth.allows(req.headers().get(header::AUTHORIZATION)) {
            return Err(ProxyError::Unauthorized(auth.challenge().clone()));
        }
    }
    Ok(())
}

/// `host` without a `:port` (`[v6]:port` keeps its brackets).
pub(super) fn without_port(host: &str) -> &str {
    if let Some(end) = host.find(']') {
        return &host[..=end];
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The sticky cookie's name, as marathon-lb's HAProxy config names it.
pub(super) const STICKY_COOKIE: &str = "mesosphere_server_id";

/// A backend's cookie value: a stable hash of its address, so clients never see it.
pub(super) fn sticky_token(addr: SocketAddr) -> String {
    // FNV-1a: stable across runs and versions (unlike the std hasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in addr.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The backend a sticky cookie names, when it is still in the pool and available.
pub(super) fn sticky_backend<B>(req: &Request<B>, route: &Route) -> Option<usize> {
    let token = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == STICKY_COOKIE).then(|| value.trim().to_string())
        })?;
    route
        .pool
        .backends()
        .iter()
        .position(|b| b.is_available() && sticky_token(b.addr) == token)
}

/// `HAPROXY_{n}_HTTP_BACKEND_PROXYPASS_PATH`: `/prefix/rest?q` goes to the backend as `/rest?q`.
pub(super) fn strip_proxypass<B>(req: &mut Request<B>, prefix: &str) {
    let Some(pq) = req.uri().path_and_query() else {
        return;
    };
    let Some(rest) = pq.as_str().strip_prefix(prefix) else {
        return;
    };
    if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
        return; // `/apples` does not start with the prefix `/app`.
    }
    let rewritten = if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    };
    if let Ok(uri) = rewritten.parse::<Uri>() {
        *req.uri_mut() = uri;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxypass_strips_a_whole_prefix_only() {
        let rewrite = |path: &str| {
            let mut req = Request::get(path).body(()).unwrap();
            strip_proxypass(&mut req, "/api");
            req.uri().to_string()
        };
        assert_eq!(rewrite("/api/users?x=1"), "/users?x=1");
        assert_eq!(rewrite("/api"), "/");
        assert_eq!(rewrite("/api?x"), "/?x");
        assert_eq!(rewrite("/apiary"), "/apiary");
        assert_eq!(rewrite("/other"), "/other");
    }

    #[test]
    fn redirects_drop_the_port_but_keep_ipv6_brackets() {
        assert_eq!(without_port("web.test:8080"), "web.test");
        assert_eq!(without_port("web.test"), "web.test");
        assert_eq!(without_port("[::1]:8080"), "[::1]");
        assert_eq!(without_port("[::1]"), "[::1]");
    }

    #[test]
    fn sticky_tokens_are_stable_and_distinct() {
        let a: SocketAddr = "10.0.0.1:31000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:31000".parse().unwrap();
        assert_eq!(sticky_token(a), sticky_token(a));
        assert_ne!(sticky_token(a), sticky_token(b));
        assert_eq!(sticky_token(a).len(), 16);
        assert!(!sticky_token(a).contains("10.0.0.1"));
    }
}
