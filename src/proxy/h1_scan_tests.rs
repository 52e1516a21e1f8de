use proptest::prelude::*;

use super::*;

fn limits() -> Limits {
    Limits {
        max_head: 1024,
        max_request_line: 256,
        max_headers: 8,
        underscores: UnderscoreHeaders::Pass,
    }
}

/// Runs `data` through a fresh scanner in one piece: bytes passed, and the scanner.
fn scan(data: &[u8]) -> (usize, Scanner) {
    let mut s = Scanner::new(limits());
    let n = s.process(data);
    (n, s)
}

/// The same, fed in pieces of `step` bytes as a socket might deliver them: what has not
/// passed is given again with the next piece, as the guard does.
fn scan_in_pieces(data: &[u8], step: usize) -> (usize, Scanner) {
    let mut s = Scanner::new(limits());
    let (mut passed, mut held) = (0, Vec::new());
    for piece in data.chunks(step) {
        held.extend_from_slice(piece);
        let n = s.process(&held);
        passed += n;
        held.drain(..n);
        if s.rejection().is_some() || s.is_broken() {
            break;
        }
    }
    (passed, s)
}

fn refused(head: &str) -> Rejection {
    let (n, s) = scan(head.as_bytes());
    assert_eq!(n, 0, "{head:?} passed");
    s.rejection()
        .unwrap_or_else(|| panic!("{head:?} not refused"))
}

const GET: &str = "GET /a HTTP/1.1\r\nHost: web\r\n\r\n";

#[test]
fn a_plain_head_passes_whole() {
    let (n, s) = scan(GET.as_bytes());
    assert_eq!((n, s.heads(), s.in_head()), (GET.len(), 1, true));
}

#[test]
fn an_incomplete_head_is_held_back() {
    let (n, s) = scan(b"GET /a HTTP/1.1\r\nHost: we");
    assert_eq!(n, 0);
    assert!(s.in_head() && s.rejection().is_none());
}

#[test]
fn pipelined_heads_each_pass() {
    let two = format!("{GET}{GET}GET /b HT");
    let (n, s) = scan(two.as_bytes());
    assert_eq!((n, s.heads()), (2 * GET.len(), 2));
}

#[test]
fn empty_lines_before_a_request_line_are_allowed() {
    let head = format!("\r\n\r\n{GET}");
    assert_eq!(scan(head.as_bytes()).0, head.len());
}

#[test]
fn a_request_hidden_in_a_body_is_body() {
    let hidden = "GET /admin HTTP/1.1\r\nHost: web\r\n\r\n";
    let req = format!(
        "POST / HTTP/1.1\r\nHost: web\r\nContent-Length: {}\r\n\r\n{hidden}{GET}",
        hidden.len()
    );
    let (n, s) = scan(req.as_bytes());
    assert_eq!((n, s.heads()), (req.len(), 2));
}

#[test]
fn chunked_bodies_are_skipped_with_extensions_and_trailers() {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n\
         5;name=value\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\n{GET}"
    );
    for step in [1, 2, 3, 7, req.len()] {
        let (n, s) = scan_in_pieces(req.as_bytes(), step);
        assert_eq!((n, s.heads()), (req.len(), 2), "step {step}");
    }
}

#[test]
fn broken_chunk_framing_ends_the_stream() {
    let start = "POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n";
    for body in [
        "5 \r\nhello\r\n0\r\n\r\n", // whitespace not followed by an extension
        "5\r\nhelloX\r\n0\r\n\r\n", // no CRLF after the data
        "g\r\n",                    // not hex
        "\r\n",                     // no size
        "11111111111111111\r\n",    // 17 digits
        "0\r\n\tfolded\r\n\r\n",    // a folded trailer
        "5\nhello\r\n0\r\n\r\n",    // bare LF
    ] {
        let req = format!("{start}{body}");
        let (n, s) = scan(req.as_bytes());
        assert!(s.is_broken(), "{body:?}");
        assert!(n < req.len() && n >= start.len(), "{body:?}");
    }
}

#[test]
fn smuggling_shapes_are_refused_as_400() {
    let bad = Rejection::BadRequest;
    for head in [
        "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: +4\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: -1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 4a\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 0x4\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 4, 4\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: \r\n\r\n",
        "POST / HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: identity\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\x0b\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: ,chunked\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: w\r\nTransfer-Encoding : chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: w\r\nTransfer_Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: w\r\nContent_Length: 4\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: w\r\nX-A: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: w\r\nX-A: a\r\n\tb\r\n\r\n",
        "GET / HTTP/1.1\r\n Host: w\r\n\r\n",
        "GET / HTTP/1.1\nHost: w\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: w\n\r\n",
        "GET / HTTP/1.1\r\nHost: w\r\n\n",
        "GET / HTTP/1.1\r\nHost: w\r\nX-A: a\0b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: w\r\nX-A: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: w\r\nX-A: a\x7fb\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: w\r\nNoColon\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: w\r\n: empty name\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET  / HTTP/1.1\r\nHost: w\r\n\r\n",
        "GET /a b HTTP/1.1\r\nHost: w\r\n\r\n",
        "GET /\x01 HTTP/1.1\r\nHost: w\r\n\r\n",
        "GET / http/1.1\r\nHost: w\r\n\r\n",
        "G@T / HTTP/1.1\r\nHost: w\r\n\r\n",
        "GET / HTTP/1.1 \r\nHost: w\r\n\r\n",
    ] {
        assert!(matches!(refused(head), Rejection::BadRequest(_)), "{head:?}");
    }
    assert!(matches!(bad("x"), Rejection::BadRequest(_)));
}

#[test]
fn other_refusals_have_their_own_status() {
    let te = "POST / HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    assert_eq!(refused(te), Rejection::NotImplemented);
    let identity = "POST / HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: identity, chunked\r\n\r\n";
    assert_eq!(refused(identity), Rejection::NotImplemented);
    assert_eq!(
        refused("GET / HTTP/2.0\r\nHost: w\r\n\r\n"),
        Rejection::VersionNotSupported
    );
    assert_eq!(
        refused("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        Rejection::VersionNotSupported
    );
    assert_eq!(
        refused("CONNECT w:443 HTTP/1.1\r\nHost: w:443\r\n\r\n"),
        Rejection::MethodNotAllowed
    );
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: w\r\n\r\n", "a".repeat(300));
    assert_eq!(refused(&long_line), Rejection::UriTooLong);
    // Also before its end has arrived.
    assert_eq!(refused(&long_line[..290]), Rejection::UriTooLong);
    let many = format!(
        "GET / HTTP/1.1\r\nHost: w\r\n{}\r\n",
        "X-A: 1\r\n".repeat(8)
    );
    assert_eq!(refused(&many), Rejection::HeadTooLarge);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: w\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1100)
    );
    assert_eq!(refused(&big), Rejection::HeadTooLarge);
}

#[test]
fn the_head_limit_holds_however_the_bytes_are_split() {
    // Just over the limit, and just under it.
    for (extra, over) in [(1, true), (0, false)] {
        let pad = 1024 - "GET / HTTP/1.1\r\nHost: w\r\nX-Pad: \r\n\r\n".len() + extra;
        let head = format!(
            "GET / HTTP/1.1\r\nHost: w\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(pad)
        );
        for step in [1, 100, 1000, head.len()] {
            let (n, s) = scan_in_pieces(head.as_bytes(), step);
            if over {
                assert_eq!(
                    (n, s.rejection()),
                    (0, Some(Rejection::HeadTooLarge)),
                    "{step}"
                );
            } else {
                assert_eq!((n, s.rejection()), (head.len(), None), "{step}");
            }
        }
    }
}

#[test]
fn acceptable_odd_shapes_pass() {
    for head in [
        "POST / HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked \r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: w\r\ntRANSFER-ENCODING:\tChunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: w\r\nContent-Length:  3 \r\n\r\nabc",
        "GET / HTTP/1.0\r\n\r\n",
        "GET http://w/x HTTP/1.1\r\nHost: w\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: w\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: w\r\nX-Cafe: \u{e9}t\u{e9}\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: w\r\nX_Under: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: w\r\nX-Empty:\r\n\r\n",
    ] {
        let (n, s) = scan(head.as_bytes());
        assert_eq!((n, s.rejection()), (head.len(), None), "{head:?}");
        assert!(s.in_head(), "{head:?}");
    }
}

#[test]
fn underscores_can_be_refused() {
    let mut s = Scanner::new(Limits {
        underscores: UnderscoreHeaders::Reject,
        ..limits()
    });
    assert_eq!(
        s.process(b"GET / HTTP/1.1\r\nHost: w\r\nX_User: a\r\n\r\n"),
        0
    );
    assert!(matches!(s.rejection(), Some(Rejection::BadRequest(_))));
}

#[test]
fn after_an_upgrade_request_bytes_pass_unread() {
    let req: &[u8] =
        b"GET /ws HTTP/1.1\r\nHost: w\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\
               \x81\x05hello\r\n\r\nnot http";
    let (n, s) = scan(req);
    assert_eq!(n, req.len());
    assert!(s.is_tunnel());
    // An Upgrade header without `Connection: upgrade` asks for nothing.
    let (_, s) = scan(b"GET / HTTP/1.1\r\nHost: w\r\nUpgrade: websocket\r\n\r\n");
    assert!(s.in_head());
}

/// Heads built from valid and invalid pieces, to compare the scanner with httparse.
fn head_strategy() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "G T", "", "CONNECT"]);
    let target = prop::sample::select(vec!["/", "/a?b=c", "*", "http://w/x", "/\x7f", "/a b"]);
    let version = prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 "]);
    let field = prop::sample::select(vec![
        "Host: w",
        "Host: w2",
        "Content-Length: 3",
        "Content-Length: 03",
        "Content-Length: x",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: gzip, chunked",
        "X-A: b",
        "X-A : b",
        " folded",
        "X-B:\x0bv",
        "X_C: d",
        "Upgrade: websocket",
        "Connection: upgrade",
        "X-N: \0",
    ]);
    let eol = prop::sample::select(vec!["\r\n", "\r\n", "\r\n", "\n"]);
    (
        method,
        target,
        version,
        prop::collection::vec((field, eol.clone()), 0..6),
        eol,
    )
        .prop_map(|(m, t, v, fields, end)| {
            let mut head = format!("{m} {t} {v}\r\n");
            for (f, e) in fields {
                head.push_str(f);
                head.push_str(e);
            }
            head.push_str(end);
            head.into_bytes()
        })
}

proptest! {
    /// Every head the scanner passes, httparse (hyper's parser) reads as one complete head
    /// of exactly that length with the same fields: the scanner never lets through
    /// something hyper would frame differently.
    #[test]
    fn passed_heads_parse_the_same_in_httparse(head in head_strategy(), tail in prop::collection::vec(any::<u8>(), 0..8)) {
        let mut data = head.clone();
        data.extend_from_slice(&tail);
        let mut s = Scanner::new(limits());
        let n = s.process(&data);
        if s.heads() == 1 {
            let mut fields = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut fields);
            let parsed = req.parse(&data);
            prop_assert_eq!(parsed, Ok(httparse::Status::Complete(head.len())));
            prop_assert!(n >= head.len());
        }
    }

    /// However the bytes are split into reads, the scanner passes the same bytes and ends
    /// in the same state.
    #[test]
    fn splitting_changes_nothing(head in head_strategy(), body in prop::collection::vec(any::<u8>(), 0..40), step in 1usize..50) {
        let mut data = head;
        data.extend_from_slice(&body);
        let (whole, a) = scan(&data);
        let (pieces, b) = scan_in_pieces(&data, step);
        prop_assert_eq!(whole, pieces);
        prop_assert_eq!(a.rejection(), b.rejection());
        prop_assert_eq!(a.heads(), b.heads());
    }
}
