//! What a request's fields become on the way to the backend: hop-by-hop fields removed,
//! the target made origin-form, the underscore policy applied, and the `X-Forwarded-*`
//! fields set.

use hyper::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Uri};

use crate::config::UnderscoreHeaders;

use super::error::ProxyError;

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

/// Whether `name` is one of `HOP_BY_HOP`. By its text: comparing with the array builds
/// (and drops) the seven names wherever the compiler does not inline it, and this runs for
/// every field of every message.
pub(super) fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

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
        for name in connection_listed(headers) {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// What the `X-Forwarded-*` fields say of one client connection.
pub(super) struct Forwarding<'a> {
    /// The client's address, formatted once per connection.
    pub(super) client: &'a HeaderValue,
    /// `http` or `https`.
    pub(super) proto: &'a HeaderValue,
    /// The port the client connected to.
    pub(super) port: &'a HeaderValue,
}

pub(super) const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(super) const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(super) const XFPORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// Whether the backend gets Drover's own value of this field, not the client's.
pub(super) fn is_forwarded_field(name: &HeaderName) -> bool {
    name == XFF || name == XFP || name == XFPORT
}

/// The `X-Forwarded-For` value: every line the client sent, in order (those that are not
/// visible ASCII are left out), then the client itself.
pub(super) fn xff_chain<'a>(
    prior: impl Iterator<Item = &'a HeaderValue>,
    client: &HeaderValue,
    out: &mut Vec<u8>,
) {
    for prior in prior {
        if prior.to_str().is_ok() {
            out.extend_from_slice(prior.as_bytes());
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(client.as_bytes());
}

/// The fields a `Connection` header names, which are hop-by-hop too (`keep-alive` and
/// `close` are not field names to remove here). Empty, without allocating, when the
/// message has no `Connection` field.
pub(super) fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut listed = Vec::new();
    if !headers.keys().any(|name| name == header::CONNECTION) {
        return listed;
    }
    for value in headers.get_all(header::CONNECTION) {
        for token in value.to_str().unwrap_or("").split(',') {
            let token = token.trim();
            if token.eq_ignore_ascii_case("keep-alive") || token.eq_ignore_ascii_case("close") {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                listed.push(name);
            }
        }
    }
    listed
}

/// Makes an absolute-form target origin-form; the Host header then says where it was
/// going (added from the target when the client sent none).
pub(super) fn to_origin_form<B>(req: &mut Request<B>) {
    let Some(authority) = req.uri().authority() else {
        return;
    };
    if !req.headers().contains_key(header::HOST) {
        if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
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

/// Edits the client's request in place into the one the backend gets. (The HTTP/1.1
/// client writes the same edits as it encodes the head: `h1_client::encode_request`.)
pub(super) fn prepare_upstream_request<B>(
    req: &mut Request<B>,
    fwd: &Forwarding<'_>,
    underscores: UnderscoreHeaders,
) -> Result<(), ProxyError> {
    // Upstreams speak HTTP/1.1 whatever the client spoke (an HTTP/2 request included).
    *req.version_mut() = hyper::Version::HTTP_11;
    to_origin_form(req);
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    if underscores != UnderscoreHeaders::Pass {
        underscore_names(headers, underscores)?;
    }
    // One lookup (the entry) whether or not the client sent any.
    match headers.entry(XFF) {
        Entry::Occupied(mut prior) => {
            let mut chain = Vec::new();
            xff_chain(prior.iter(), fwd.client, &mut chain);
            prior.insert(HeaderValue::from_bytes(&chain).unwrap_or(fwd.client.clone()));
        }
        Entry::Vacant(none) => {
            none.insert(fwd.client.clone());
        }
    }
    headers.insert(XFP, fwd.proto.clone());
    headers.insert(XFPORT, fwd.port.clone());
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
    fn hop_by_hop_by_text_is_the_list() {
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for other in [
            "content-length",
            "host",
            "x-upgrade",
            "tE2",
            "connections",
            "keep",
        ] {
            let name = HeaderName::from_bytes(other.as_bytes()).unwrap();
            assert!(!is_hop_by_hop(&name), "{other}");
        }
        // Names are lower-case whatever the peer sent.
        assert!(is_hop_by_hop(
            &HeaderName::from_bytes(b"Keep-Alive").unwrap()
        ));
    }

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
