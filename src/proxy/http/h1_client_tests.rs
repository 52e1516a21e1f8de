use std::time::Duration;

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Body;
use hyper::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::proxy::http::upstream::{sweep_idle, take_idle, IDLE_MAX};
use hyper::header::HeaderValue;

/// The client at 127.0.0.1 on the plain listener's port 80.
fn with_fwd<T>(f: impl FnOnce(&Forwarding<'_>) -> T) -> T {
    let (client, proto, port) = (
        HeaderValue::from_static("127.0.0.1"),
        HeaderValue::from_static("http"),
        HeaderValue::from_static("80"),
    );
    f(&Forwarding {
        client: &client,
        proto: &proto,
        port: &port,
    })
}

fn encode<B: Body>(
    parts: &http::request::Parts,
    body: &B,
    out: &mut Vec<u8>,
) -> Result<RequestFraming, &'static str> {
    with_fwd(|fwd| encode_request(parts, body, fwd, out))
}

fn head_of(raw: &[u8], head_request: bool) -> Result<Option<ResponseHead>, H1Error> {
    let mut buf = BytesMut::from(raw);
    parse_head(&mut buf, head_request)
}

fn framing_of(raw: &str) -> (ResponseFraming, bool) {
    let head = head_of(raw.as_bytes(), false)
        .unwrap()
        .expect("a whole head");
    (head.framing, head.keep_alive)
}

#[test]
fn the_request_head_carries_the_fields_and_the_framing() {
    let req = Request::post("/echo?x=1")
        .header("host", "web.example.com")
        .header("x-forwarded-for", "10.0.0.1")
        .header("connection", "keep-alive")
        .body(())
        .unwrap();
    let (parts, ()) = req.into_parts();
    let mut out = Vec::new();
    // A body of known length gets a Content-Length; an unknown one is chunked.
    let known = Full::new(Bytes::from_static(b"hello"));
    let framing = encode(&parts, &known, &mut out).unwrap();
    assert_eq!(framing, RequestFraming::Length(5));
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        "POST /echo?x=1 HTTP/1.1\r\nhost: web.example.com\r\n\
         x-forwarded-for: 10.0.0.1, 127.0.0.1\r\nx-forwarded-proto: http\r\n\
         x-forwarded-port: 80\r\ncontent-length: 5\r\n\r\n"
    );
    let unknown = known.map_frame(|f| f).boxed_unsync();
    struct Unsized<B>(B);
    impl<B: Body + Unpin> Body for Unsized<B> {
        type Data = B::Data;
        type Error = B::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
            Pin::new(&mut self.0).poll_frame(cx)
        }
    }
    let framing = encode(&parts, &Unsized(unknown), &mut out).unwrap();
    assert_eq!(framing, RequestFraming::Chunked);
    assert!(out.ends_with(b"transfer-encoding: chunked\r\n\r\n"));
    // No body: nothing added.
    let framing = encode(&parts, &Empty::<Bytes>::new(), &mut out).unwrap();
    assert_eq!(framing, RequestFraming::Empty);
    assert!(out.ends_with(b"x-forwarded-port: 80\r\n\r\n"));
}

#[test]
fn the_clients_content_length_decides_the_framing() {
    let with = |value: &str| {
        let (parts, ()) = Request::put("/")
            .header("content-length", value)
            .body(())
            .unwrap()
            .into_parts();
        encode(&parts, &Empty::<Bytes>::new(), &mut Vec::new())
    };
    assert_eq!(with("12"), Ok(RequestFraming::Length(12)));
    assert_eq!(with("0"), Ok(RequestFraming::Empty));
    assert!(with("1x").is_err());
    assert!(with("99999999999999999999999").is_err());
}

#[test]
fn response_framing_follows_rfc_9112() {
    use ResponseFraming::*;
    let cases = [
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            Length(5),
            true,
        ),
        ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Empty, true),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Chunked,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Chunked,
            true,
        ),
        // Neither: the body runs to the close.
        ("HTTP/1.1 200 OK\r\n\r\n", UntilClose, false),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            UntilClose,
            false,
        ),
        // Both: chunked wins, the connection is not trusted again.
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            Chunked,
            false,
        ),
        (
            "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
            Empty,
            true,
        ),
        ("HTTP/1.1 304 Not Modified\r\n\r\n", Empty, true),
        (
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            Length(1),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
            Length(1),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\n",
            Length(1),
            true,
        ),
    ];
    for (raw, framing, keep_alive) in cases {
        assert_eq!(framing_of(raw), (framing, keep_alive), "{raw:?}");
    }
    // A HEAD request's answer has no body whatever it announces.
    let head = head_of(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", true)
        .unwrap()
        .unwrap();
    assert_eq!(head.framing, Empty);
    assert_eq!(head.parts.headers["content-length"], "50");
}

#[test]
fn broken_response_heads_are_errors_and_partial_ones_wait() {
    assert!(head_of(b"HTTP/1.1 200 OK\r\nContent-Le", false)
        .unwrap()
        .is_none());
    for raw in [
        &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 999999 OK\r\n\r\n",
    ] {
        assert!(head_of(raw, false).is_err(), "{raw:?}");
    }
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=MAX_RESPONSE_FIELDS {
        many.extend_from_slice(format!("x-{i}: y\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert!(head_of(&many, false).is_err());
    let mut huge = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
    huge.resize(MAX_RESPONSE_HEAD + 10, b'a');
    assert!(head_of(&huge, false).is_err());
}

#[test]
fn fields_keep_their_values_and_the_rest_stays_in_the_buffer() {
    let mut buf =
        BytesMut::from(&b"HTTP/1.1 201 Created\r\nX-A: 1\r\nx-a: 2\r\nServer: t\r\n\r\nBODY"[..]);
    let head = parse_head(&mut buf, false).unwrap().unwrap();
    assert_eq!(head.parts.status, 201);
    let values: Vec<_> = head.parts.headers.get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(head.parts.headers["server"], "t");
    assert_eq!(&buf[..], b"BODY");
}

async fn read_head<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<ResponseHead, H1Error> {
    let mut answered = false;
    poll_fn(|cx| poll_head(io, buf, head_request, &mut answered, cx)).await
}

#[tokio::test]
async fn interim_answers_are_passed_over() {
    let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let mut io = &raw[..];
    let mut buf = BytesMut::new();
    let head = read_head(&mut io, &mut buf, false).await.unwrap();
    assert_eq!(head.parts.status, 200);
    assert_eq!(head.framing, ResponseFraming::Length(2));
    // A close before any byte is told apart from one mid-head.
    let mut none = &b""[..];
    let err = read_head(&mut none, &mut BytesMut::new(), false).await;
    assert!(matches!(err, Err(H1Error::NoAnswer)), "{err:?}");
    let mut half = &b"HTTP/1.1 200 OK\r\n"[..];
    let err = read_head(&mut half, &mut BytesMut::new(), false).await;
    assert!(matches!(err, Err(H1Error::Truncated)), "{err:?}");
}

/// A loopback backend that reads one request head (and `body` more bytes) per answer in
/// `answers`, and says what it read.
async fn backend(
    answers: Vec<&'static [u8]>,
    body: usize,
) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        for answer in answers {
            let start = seen.len();
            let mut chunk = [0u8; 4096];
            loop {
                let head_end = seen[start..].windows(4).position(|w| w == b"\r\n\r\n");
                if head_end.is_some_and(|end| seen.len() - start - end - 4 >= body) {
                    break;
                }
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the client closed early");
                seen.extend_from_slice(&chunk[..n]);
            }
            s.write_all(answer).await.unwrap();
        }
        // Wait for the client's close.
        let mut rest = [0u8; 64];
        while let Ok(n) = s.read(&mut rest).await {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&rest[..n]);
        }
        seen
    });
    (addr, task)
}

/// One exchange of a request without a body.
async fn send_bodyless(conn: &mut H1Conn, head: &[u8]) -> Result<Answer, H1Error> {
    let no_body = &mut None::<Empty<Bytes>>;
    exchange(conn, head, no_body, RequestFraming::Empty, false).await
}

async fn connect_to(addr: SocketAddr) -> H1Conn {
    let stream = TcpStream::connect(addr).await.unwrap();
    H1Conn::new(stream)
}

async fn read_all(body: &mut H1Body) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

#[tokio::test]
async fn two_exchanges_on_one_connection_with_each_framing() {
    let (addr, task) = backend(
        vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        ],
        0,
    )
    .await;
    let mut conn = connect_to(addr).await;
    let head_bytes = b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n";
    let (head, upload) = send_bodyless(&mut conn, head_bytes).await.unwrap();
    let mut body = H1Body::new(conn, &head, upload, addr);
    assert_eq!(read_all(&mut body).await.unwrap(), b"hello");
    assert!(body.is_end_stream());
    // Read to the end: the connection went back to this thread's pool.
    let mut conn = take_idle(addr).expect("pooled");
    assert!(conn.is_usable());
    let (head, upload) = send_bodyless(&mut conn, head_bytes).await.unwrap();
    let mut body = H1Body::new(conn, &head, upload, addr);
    assert_eq!(read_all(&mut body).await.unwrap(), b"abcde");
    drop(body);
    sweep_idle(Duration::ZERO);
    let seen = task.await.unwrap();
    assert_eq!(seen, [&head_bytes[..], head_bytes].concat());
}

/// A request body in pieces, of no announced length.
fn streamed(
    pieces: &[&'static [u8]],
) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + Unpin {
    let frames: Vec<_> = pieces
        .iter()
        .map(|p| Ok(Frame::data(Bytes::from_static(p))))
        .collect();
    http_body_util::StreamBody::new(futures_util::stream::iter(frames))
}

#[tokio::test]
async fn a_streamed_body_is_sent_chunked() {
    let chunked_body = b"5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n";
    let (addr, task) = backend(
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
        chunked_body.len(),
    )
    .await;
    let mut conn = connect_to(addr).await;
    let body = streamed(&[b"hello", b"", b"!"]);
    let (parts, ()) = Request::post("/").body(()).unwrap().into_parts();
    let mut head_bytes = Vec::new();
    let framing = encode(&parts, &body, &mut head_bytes).unwrap();
    assert_eq!(framing, RequestFraming::Chunked);
    let (head, upload) = exchange(&mut conn, &head_bytes, &mut Some(body), framing, false)
        .await
        .unwrap();
    assert_eq!(head.parts.status, 200);
    assert!(upload.is_none(), "the whole body was sent first");
    drop(conn);
    let seen = task.await.unwrap();
    assert_eq!(seen, [&head_bytes[..], chunked_body].concat());
}

#[tokio::test]
async fn an_answer_before_the_whole_body_streams_while_the_body_goes_on() {
    // An echo: the backend answers at once, then sends back each chunk as it comes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let echo = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut chunk).await.unwrap();
            seen.extend_from_slice(&chunk[..n]);
        }
        let head_end = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        // The request's chunks are valid chunks of the answer: echoed as they come.
        let mut body = seen.split_off(head_end);
        loop {
            s.write_all(&body).await.unwrap();
            if body.ends_with(b"0\r\n\r\n") {
                break;
            }
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            body = chunk[..n].to_vec();
        }
        // Kept open: the connection can carry another request.
        s
    });
    let mut conn = connect_to(addr).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
    let body = http_body_util::StreamBody::new(tokio_stream(rx));
    let head_bytes = b"PUT / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n";
    let (head, upload) = exchange(
        &mut conn,
        head_bytes,
        &mut Some(body),
        RequestFraming::Chunked,
        false,
    )
    .await
    .unwrap();
    assert_eq!(head.parts.status, 200);
    assert!(upload.is_some(), "the body has not ended yet");
    let mut body = H1Body::new(conn, &head, upload, addr);
    for piece in [&b"hello"[..], b"world"] {
        tx.send(Ok(Frame::data(Bytes::from_static(piece))))
            .await
            .unwrap();
        let echoed = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(echoed, piece);
    }
    drop(tx);
    assert!(body.frame().await.is_none(), "the echo ends with the body");
    let _still_open = echo.await.unwrap();
    // All sent and all read: the connection was pooled.
    assert!(take_idle(addr).is_some());
}

/// The receiver as a stream of frames.
fn tokio_stream<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Unpin {
    Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_and_a_body_to_the_close_is_not() {
    for (answer, want) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"[..],
            None,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nshort\r\n",
            None,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            None,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\nall of it", Some(&b"all of it"[..])),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 256];
            let _ = s.read(&mut head).await.unwrap();
            s.write_all(answer).await.unwrap();
            // Closed here.
        });
        let mut conn = connect_to(addr).await;
        let (head, upload) = send_bodyless(&mut conn, b"GET / HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut body = H1Body::new(conn, &head, upload, addr);
        let got = read_all(&mut body).await;
        match want {
            Some(want) => assert_eq!(got.unwrap(), want),
            None => assert!(got.is_err(), "{answer:?}"),
        }
        server.await.unwrap();
        assert!(take_idle(addr).is_none(), "not pooled");
    }
}

#[tokio::test]
async fn a_closed_idle_connection_is_not_usable_and_a_pooled_one_is_swept() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conn = connect_to(addr).await;
    let (server_side, _) = listener.accept().await.unwrap();
    assert!(conn.is_usable());
    checkin(addr, conn);
    assert_eq!(sweep_idle(IDLE_MAX), 1);
    drop(server_side);
    // The reactor sees the close on its next turn.
    let mut left = 1;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        left = sweep_idle(IDLE_MAX);
        if left == 0 {
            break;
        }
    }
    assert_eq!(left, 0, "the closed connection was swept");
}

#[test]
fn hop_by_hop_fields_are_not_passed_on() {
    let raw = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, x-private\r\nKeep-Alive: timeout=5\r\n\
        X-Private: 1\r\nTransfer-Encoding: chunked\r\nX-Kept: 2\r\n\r\n";
    let head = head_of(raw, false).unwrap().unwrap();
    let names: Vec<_> = head.parts.headers.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["x-kept"]);
    // What they said still counts.
    assert_eq!(head.framing, ResponseFraming::Chunked);
    assert!(head.keep_alive);
}

#[test]
fn the_encoded_head_makes_the_edits_prepare_upstream_request_makes() {
    use crate::config::UnderscoreHeaders;
    use crate::proxy::http::headers::prepare_upstream_request;
    let requests = [
        Request::get("/plain").header("host", "a"),
        Request::get("/xff")
            .header("host", "a")
            .header("x-forwarded-for", "10.0.0.1")
            .header("X-Forwarded-For", "10.0.0.2, 10.0.0.3")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-port", "8443"),
        Request::get("/hop")
            .header("host", "a")
            .header("connection", "keep-alive, x-secret, close")
            .header("x-secret", "1")
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("proxy-connection", "keep-alive")
            .header("upgrade", "h2c")
            .header("x-kept", "yes")
            .header("x-kept", "twice"),
        Request::get("http://b.example:8080/abs?q=1"),
        Request::get("http://b.example/abs").header("host", "c"),
        Request::post("/bin")
            .header("host", "a")
            .header("content-length", "3")
            .header("x-bytes", HeaderValue::from_bytes(b"caf\xe9").unwrap()),
    ];
    for builder in requests {
        let mut req = builder.body(()).unwrap();
        let mut edited = req.clone();
        with_fwd(|fwd| prepare_upstream_request(&mut edited, fwd, UnderscoreHeaders::Pass))
            .unwrap();
        let mut want: Vec<String> = edited
            .headers()
            .iter()
            .map(|(n, v)| format!("{}: {}", n, String::from_utf8_lossy(v.as_bytes())))
            .collect();
        want.insert(0, format!("{} {} HTTP/1.1", edited.method(), edited.uri()));
        crate::proxy::http::headers::to_origin_form(&mut req);
        let (parts, ()) = req.into_parts();
        let mut out = Vec::new();
        encode(&parts, &Empty::<Bytes>::new(), &mut out).unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let mut got: Vec<String> = text
            .trim_end_matches("\r\n\r\n")
            .split("\r\n")
            .map(str::to_string)
            .collect();
        let (want_line, got_line) = (want.remove(0), got.remove(0));
        assert_eq!(got_line, want_line);
        want.sort();
        got.sort();
        assert_eq!(got, want, "{text}");
    }
}
