//! What a request's fields become on the way to the backend: hop-by-hop fields removed,
//! the target made origin-form, the underscore policy applied, and the `X-Forwarded-*`
//! fields set.

use hyper::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Uri};

use crate::config::UnderscoreHeaders;

use super::error::ProxyError;
use super::Conn;

/// Headers that describe one hop's connection and must not be forwarded (RFC 9110 §7.6.1).
pub(super) const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds which hop-by-hop fields are present. Most messages
    // carry none, or only `Connection`, and each removal hashes its name: removing only
    // what is there keeps seven hashes per message off the hot path.
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // Headers named in `Connection` (the list's first) are hop-by-hop too.
    if present & 1 != 0 {
        if let Some(conn) = headers.get(header::CONNECTION).cloned() {
            for token in conn.to_str().unwrap_or("").split(',') {
                let token = token.trim();
                // Keep-Alive is in the list: removed below if present.
                if token.eq_ignore_ascii_case("keep-alive") {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    headers.remove(name);
                }
            }
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// Edits the client's request in place into the one the backend gets.
pub(super) fn prepare_upstream_request<B>(
    req: &mut Request<B>,
    conn: &Conn,
    underscores: UnderscoreHeaders,
) -> Result<(), ProxyError> {
    // Upstreams speak HTTP/1.1 whatever the client spoke (an HTTP/2 request included).
    *req.version_mut() = hyper::Version::HTTP_11;
    // Absolute-form targets become origin-form; the Host header says where it was going.
    if req.uri().authority().is_some() {
        if !req.headers().contains_key(header::HOST) {
            if let Some(value) = req
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                req.headers_mut().insert(header::HOST, value);
            }
        }
        let origin = req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .parse::<Uri>()
            .unwrap_or_else(|_| Uri::from_static("/"));
        *req.uri_mut() = origin;
    }
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    if underscores != UnderscoreHeaders::Pass {
        underscore_names(headers, underscores)?;
    }
    const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    const XFPORT: HeaderName = HeaderName::from_static("x-forwarded-port");
    // Every X-Forwarded-For line the client sent, in order, then the client itself.
    // One lookup (the entry) whether or not the client sent any.
    match headers.entry(XFF) {
        Entry::Occupied(mut prior) => {
            let mut chain = String::new();
            for prior in prior.iter() {
                if let Ok(prior) = prior.to_str() {
                    chain.push_str(prior);
                    chain.push_str(", ");
                }
            }
            // `conn.xff` is the client's address, formatted once per connection.
            chain.push_str(conn.xff.to_str().unwrap_or_default());
            prior.insert(HeaderValue::from_str(&chain).unwrap_or(conn.xff.clone()));
        }
        Entry::Vacant(none) => {
            none.insert(conn.xff.clone());
        }
    }
    headers.insert(XFP, conn.proto.clone());
    headers.insert(XFPORT, conn.port.clone());
    Ok(())
}

/// `[http] underscore_headers`: drops the fields whose names hold `_`, or refuses the
/// request. HTTP/1 heads were refused by the guard already; this covers HTTP/2.
pub(super) fn underscore_names(
    headers: &mut HeaderMap,
    policy: UnderscoreHeaders,
) -> Result<(), ProxyError> {
    let named: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().contains('_'))
        .cloned()
        .collect();
    if !named.is_empty() && policy == UnderscoreHeaders::Reject {
        return Err(ProxyError::BadRequest("a header name with an underscore"));
    }
    for name in named {
        headers.remove(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_including_connection_tokens() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn hop_by_hop_headers_go_without_connection_and_others_stay() {
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(header::HOST, HeaderValue::from_static("a"));
        h.append("x-many", HeaderValue::from_static("1"));
        h.append("x-many", HeaderValue::from_static("2"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["host", "x-many"]);
        assert_eq!(h.get_all("x-many").iter().count(), 2);

        // Nothing hop-by-hop: nothing changes.
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }
}
