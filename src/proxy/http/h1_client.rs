//! The HTTP/1.1 client of upstream exchanges, purpose-built: the request head encoded once
//! and written in one call, the response head parsed with httparse, and the response body
//! read by the request's own task. hyper's client runs a dispatcher task per connection
//! and hands every message through channels, which cost a keep-alive request more than
//! everything else Drover does for it (bench/README.md, "Instructions per keep-alive
//! request"); here nothing but the socket sits between the request and its backend.
//! Upgrades keep hyper's client (they hand the connection over to a tunnel).

use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::ready;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{http, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::h1_chunked::{ChunkError, ChunkedDecoder, Decoded};
use super::headers::{
    connection_listed, is_forwarded_field, is_hop_by_hop, xff_chain, Forwarding, XFF,
};
use super::upstream::checkin;
use super::BodyError;

/// The largest response head read (status line and fields).
pub(super) const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Response header fields read at most.
const MAX_RESPONSE_FIELDS: usize = 100;
/// How much a read asks for when the buffer has little room left.
const READ_SIZE: usize = 16 * 1024;

/// One upstream HTTP/1.1 connection: the socket, and what has been read from it and not
/// used yet.
pub(super) struct H1Conn {
    io: TcpStream,
    buf: BytesMut,
}

impl H1Conn {
    pub(super) fn new(io: TcpStream) -> H1Conn {
        H1Conn {
            io,
            buf: BytesMut::new(),
        }
    }

    /// Whether an idle connection can take a request: the backend has neither closed it
    /// nor sent anything unasked. No system call unless the reactor saw the socket
    /// become readable since the last read.
    pub(super) fn is_usable(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut peek = ReadBuf::new(&mut byte);
        self.io.poll_peek(&mut cx, &mut peek).is_pending()
    }

    /// Reads more into the buffer; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        make_room(&mut self.buf);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }
}

fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_SIZE);
    }
}

/// Why an exchange with a backend failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum H1Error {
    /// Nothing of the request reached the socket: it can go on another connection.
    #[error("the connection was closed before the request was written: {0}")]
    Unsent(io::Error),
    /// The backend closed the connection without a byte of answer.
    #[error("the connection closed before any response")]
    NoAnswer,
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    #[error("the connection closed mid-response")]
    Truncated,
    #[error("malformed response head: {0}")]
    Head(&'static str),
    #[error("malformed chunked body: {0}")]
    Chunked(#[from] ChunkError),
    /// The client's request body failed (it stalled, broke or left).
    #[error("the request body failed: {0}")]
    RequestBody(BodyError),
}

/// How the request's body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RequestFraming {
    Empty,
    Length(u64),
    Chunked,
}

/// Writes the head the backend gets into `out` (cleared first) and says how the body
/// follows. The head is the client's, origin-form (`to_origin_form` ran), with the edits
/// `prepare_upstream_request` makes on a header map made here as it is written: no
/// hop-by-hop fields, Drover's `X-Forwarded-*` (the client's `X-Forwarded-For` lines
/// joined in front of its address). The body's framing: the client's `Content-Length` when
/// it sent one, else the body's known length, else chunked; a body that is already over
/// sends nothing, as hyper's client does.
pub(super) fn encode_request<B: Body>(
    parts: &http::request::Parts,
    body: &B,
    fwd: &Forwarding<'_>,
    out: &mut Vec<u8>,
) -> Result<RequestFraming, &'static str> {
    out.clear();
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let listed = connection_listed(&parts.headers);
    let mut prior_xff = Vec::new();
    for (name, value) in &parts.headers {
        if is_hop_by_hop(name) || is_forwarded_field(name) || listed.contains(name) {
            if name == XFF {
                prior_xff.push(value);
            }
            continue;
        }
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    xff_chain(prior_xff.into_iter(), fwd.client, out);
    out.extend_from_slice(b"\r\n");
    field(out, b"x-forwarded-proto", fwd.proto.as_bytes());
    field(out, b"x-forwarded-port", fwd.port.as_bytes());
    let framing = match parts.headers.get(header::CONTENT_LENGTH) {
        Some(value) => match parse_length(value.as_bytes()) {
            Some(0) => RequestFraming::Empty,
            Some(len) => RequestFraming::Length(len),
            None => return Err("an invalid Content-Length"),
        },
        None if body.is_end_stream() => RequestFraming::Empty,
        None => match body.size_hint().exact() {
            Some(len) => {
                // Writing to a Vec cannot fail.
                let _ = write!(out, "content-length: {len}\r\n");
                if len == 0 {
                    RequestFraming::Empty
                } else {
                    RequestFraming::Length(len)
                }
            }
            None => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                RequestFraming::Chunked
            }
        },
    };
    out.extend_from_slice(b"\r\n");
    Ok(framing)
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A Content-Length value: digits only, no overflow.
fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// How the response's body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResponseFraming {
    Empty,
    Length(u64),
    Chunked,
    /// Neither length nor chunked: the body ends when the backend closes.
    UntilClose,
}

/// A response head, read and taken apart; its fields are those to pass on (without the
/// hop-by-hop ones).
#[derive(Debug)]
pub(super) struct ResponseHead {
    pub(super) parts: http::response::Parts,
    pub(super) framing: ResponseFraming,
    /// Whether the connection can carry another request once this response has ended.
    pub(super) keep_alive: bool,
}

/// Takes one response head off the front of `buf`, or `None` when it is not all there
/// yet. Field values share the buffer's memory (no copy).
fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<ResponseHead>, H1Error> {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_FIELDS];
    let mut parsed = httparse::Response::new(&mut []);
    let parser = httparse::ParserConfig::default();
    let len = match parser.parse_response_with_uninit_headers(&mut parsed, buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_RESPONSE_HEAD => len,
        Ok(httparse::Status::Complete(_)) => return Err(H1Error::Head("larger than 64 KiB")),
        Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(H1Error::Head("larger than 64 KiB")),
        Err(httparse::Error::TooManyHeaders) => return Err(H1Error::Head("too many fields")),
        Err(_) => return Err(H1Error::Head("not HTTP/1.x")),
    };
    let code = parsed.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| H1Error::Head("bad status code"))?;
    let version = if parsed.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Where each field's name and value sit in the head, so that the head can be frozen
    // and the values sliced out of it once the parser's borrow has ended.
    let base = buf.as_ptr() as usize;
    // (The head is at most 64 KiB: every offset fits 16 bits.)
    let mut spans = [(0u16, 0u16, 0u16, 0u16); MAX_RESPONSE_FIELDS];
    let count = parsed.headers.len();
    for (span, field) in spans.iter_mut().zip(parsed.headers.iter()) {
        let name = field.name.as_ptr() as usize - base;
        let value = field.value.as_ptr() as usize - base;
        *span = (
            name as u16,
            (name + field.name.len()) as u16,
            value as u16,
            (value + field.value.len()) as u16,
        );
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_coded = false;
    let mut close = false;
    let mut keep_alive_token = false;
    // Fields `Connection` names as hop-by-hop (rare): removed once all are in.
    let mut listed: Vec<HeaderName> = Vec::new();
    for &(ns, ne, vs, ve) in &spans[..count] {
        let name = HeaderName::from_bytes(&head[ns as usize..ne as usize])
            .map_err(|_| H1Error::Head("a field name"))?;
        let value = &head[vs as usize..ve as usize];
        if name == header::CONTENT_LENGTH {
            let n = parse_length(value).ok_or(H1Error::Head("Content-Length"))?;
            if length.is_some_and(|prior| prior != n) {
                return Err(H1Error::Head("two different Content-Length values"));
            }
            length = Some(n);
        } else if name == header::TRANSFER_ENCODING {
            transfer_coded = true;
            // Only the last coding says whether the body is chunked.
            chunked = last_token(value).eq_ignore_ascii_case(b"chunked");
        } else if name == header::CONNECTION {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive_token = true;
                } else if let Ok(other) = HeaderName::from_bytes(token) {
                    listed.push(other);
                }
            }
        }
        // The hop-by-hop fields describe this connection only: never passed on.
        if is_hop_by_hop(&name) {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(head.slice(vs as usize..ve as usize))
            .map_err(|_| H1Error::Head("a field value"))?;
        headers.append(name, value);
    }
    for name in listed {
        headers.remove(name);
    }
    let mut keep_alive = !close && (version == Version::HTTP_11 || keep_alive_token);
    let bodyless = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if bodyless {
        ResponseFraming::Empty
    } else if transfer_coded {
        // A length beside a transfer coding is a smuggling shape: the coding wins and the
        // connection is not used again.
        if length.is_some() {
            headers.remove(header::CONTENT_LENGTH);
            keep_alive = false;
        }
        if chunked {
            ResponseFraming::Chunked
        } else {
            keep_alive = false;
            ResponseFraming::UntilClose
        }
    } else {
        match length {
            Some(0) => ResponseFraming::Empty,
            Some(n) => ResponseFraming::Length(n),
            None => {
                keep_alive = false;
                ResponseFraming::UntilClose
            }
        }
    };
    let mut response = http::Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    let (parts, ()) = response.into_parts();
    Ok(Some(ResponseHead {
        parts,
        framing,
        keep_alive,
    }))
}

fn last_token(value: &[u8]) -> &[u8] {
    value
        .rsplit(|&b| b == b',')
        .next()
        .unwrap_or(b"")
        .trim_ascii()
}

/// Reads responses off `io` until a final one (1xx interim answers are passed over).
/// `answered` says whether any byte of answer came, across calls.
fn poll_head<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    head_request: bool,
    answered: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<Result<ResponseHead, H1Error>> {
    loop {
        if !buf.is_empty() {
            *answered = true;
            if let Some(head) = parse_head(buf, head_request)? {
                match head.parts.status.as_u16() {
                    // Upgrades take hyper's client (`upgrade.rs`): a switch here is unasked.
                    101 => {
                        return Poll::Ready(Err(H1Error::Head(
                            "an unasked 101 Switching Protocols",
                        )))
                    }
                    100..=199 => continue,
                    _ => return Poll::Ready(Ok(head)),
                }
            }
        }
        make_room(buf);
        match ready!(tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf)) {
            Ok(0) if *answered => return Poll::Ready(Err(H1Error::Truncated)),
            Ok(0) => return Poll::Ready(Err(H1Error::NoAnswer)),
            Ok(_) => {}
            Err(e) if !*answered && is_drop(&e) => return Poll::Ready(Err(H1Error::NoAnswer)),
            Err(e) => return Poll::Ready(Err(H1Error::Io(e))),
        }
    }
}

/// A reset or broken pipe: the backend dropped the connection.
fn is_drop(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// The request body on its way to the backend, in the framing the head announced. It is
/// driven by whoever holds the connection: the exchange until the response head comes,
/// then the response body, so a body and its answer can stream at the same time (an echo).
pub(super) struct Upload {
    body: UnsyncBoxBody<Bytes, BodyError>,
    framing: RequestFraming,
    /// Framed bytes not written yet: a chunk's size line, its data, its CRLF.
    queue: VecDeque<Bytes>,
    /// The body has ended (and the last chunk is queued).
    ended: bool,
}

impl Upload {
    fn new<B>(body: B, framing: RequestFraming) -> Upload
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BodyError>,
    {
        Upload {
            body: body.map_err(Into::into).boxed_unsync(),
            framing,
            queue: VecDeque::new(),
            ended: false,
        }
    }

    /// Writes what it can; ready when all is sent, or on a failure: `RequestBody` when
    /// the client's body failed, any other when the backend stopped taking it.
    fn poll_send(&mut self, io: &mut TcpStream, cx: &mut Context<'_>) -> Poll<Result<(), H1Error>> {
        loop {
            while let Some(front) = self.queue.front_mut() {
                let n = ready!(Pin::new(&mut *io).poll_write(cx, front))?;
                if n == 0 {
                    return Poll::Ready(Err(H1Error::Io(io::ErrorKind::WriteZero.into())));
                }
                front.advance(n);
                if front.is_empty() {
                    self.queue.pop_front();
                }
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                None => {
                    self.ended = true;
                    if self.framing == RequestFraming::Chunked {
                        self.queue.push_back(Bytes::from_static(b"0\r\n\r\n"));
                    }
                }
                Some(Err(e)) => return Poll::Ready(Err(H1Error::RequestBody(e))),
                // Trailers: an HTTP/1.1 backend is not sent them (nothing announced them).
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => {
                        if self.framing == RequestFraming::Chunked {
                            let size = format!("{:x}\r\n", data.len());
                            self.queue.push_back(Bytes::from(size));
                            self.queue.push_back(data);
                            self.queue.push_back(Bytes::from_static(b"\r\n"));
                        } else {
                            self.queue.push_back(data);
                        }
                    }
                    _ => {}
                },
            }
        }
    }
}

/// What an exchange gives: the response head, and the rest of the request body when the
/// answer came before all of it was sent (boxed: it rides on the response body, which is
/// moved whole several times on its way to the client).
pub(super) type Answer = (ResponseHead, Option<Box<Upload>>);

/// Sends one request over `conn` (its head as `encode_request` wrote it, then the body,
/// which is taken only once the head is on its way) and reads the response head.
pub(super) async fn exchange<B>(
    conn: &mut H1Conn,
    head: &[u8],
    body: &mut Option<B>,
    framing: RequestFraming,
    head_request: bool,
) -> Result<Answer, H1Error>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BodyError>,
{
    let mut written = 0;
    while written < head.len() {
        match conn.io.write(&head[written..]).await {
            Ok(n) if n > 0 => written += n,
            Ok(_) if written == 0 => return Err(H1Error::Unsent(io::ErrorKind::WriteZero.into())),
            Ok(_) => return Err(H1Error::Io(io::ErrorKind::WriteZero.into())),
            Err(e) if written == 0 => return Err(H1Error::Unsent(e)),
            Err(e) => return Err(H1Error::Io(e)),
        }
    }
    let mut answered = false;
    let Some(body) = body.take() else {
        let H1Conn { io, buf } = conn;
        let head = poll_fn(|cx| poll_head(io, buf, head_request, &mut answered, cx)).await?;
        return Ok((head, None));
    };
    let mut upload = Some(Box::new(Upload::new(body, framing)));
    let mut backend_stopped_reading = false;
    let head = poll_fn(|cx| {
        if let Some(sending) = &mut upload {
            match sending.poll_send(&mut conn.io, cx) {
                Poll::Pending => {}
                Poll::Ready(Ok(())) => upload = None,
                // The client's body failed: no answer can be given to it.
                Poll::Ready(Err(e @ H1Error::RequestBody(_))) => return Poll::Ready(Err(e)),
                // The backend stopped taking the body; it may still have answered.
                Poll::Ready(Err(_)) => {
                    backend_stopped_reading = true;
                    upload = None;
                }
            }
        }
        poll_head(&mut conn.io, &mut conn.buf, head_request, &mut answered, cx)
    })
    .await?;
    let mut head = head;
    if backend_stopped_reading {
        head.keep_alive = false;
    }
    Ok((head, upload))
}

/// Where the response body is.
#[derive(Debug)]
enum BodyState {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

/// A backend's response body, read from its connection as the client takes it. At its
/// end the connection goes back to this worker's pool when it can carry another request;
/// dropped before the end (the client left), the connection closes with it.
pub(super) struct H1Body {
    conn: Option<H1Conn>,
    state: BodyState,
    keep_alive: bool,
    backend: SocketAddr,
    /// The rest of the request body, sent as this body is read.
    upload: Option<Box<Upload>>,
}

impl H1Body {
    pub(super) fn new(
        conn: H1Conn,
        head: &ResponseHead,
        upload: Option<Box<Upload>>,
        backend: SocketAddr,
    ) -> H1Body {
        let state = match head.framing {
            ResponseFraming::Empty => BodyState::Done,
            ResponseFraming::Length(n) => BodyState::Length(n),
            ResponseFraming::Chunked => BodyState::Chunked(ChunkedDecoder::new()),
            ResponseFraming::UntilClose => BodyState::UntilClose,
        };
        let mut body = H1Body {
            conn: Some(conn),
            state,
            keep_alive: head.keep_alive,
            backend,
            upload,
        };
        if matches!(body.state, BodyState::Done) {
            body.finish();
        }
        body
    }

    /// The body has ended: its connection goes back to the pool if it can be used again
    /// (the request all sent, and nothing past the body in the buffer: a backend that
    /// sent more is not trusted).
    fn finish(&mut self) {
        self.state = BodyState::Done;
        if let Some(conn) = self.conn.take() {
            if self.keep_alive && self.upload.is_none() && conn.buf.is_empty() {
                checkin(self.backend, conn);
            }
        }
    }

    /// Ends the body with an error; the connection closes.
    fn fail(&mut self, e: H1Error) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.state = BodyState::Done;
        self.conn = None;
        Poll::Ready(Some(Err(e.into())))
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if let Some(upload) = &mut this.upload {
                match upload.poll_send(&mut conn.io, cx) {
                    Poll::Pending => {}
                    Poll::Ready(Ok(())) => this.upload = None,
                    Poll::Ready(Err(e @ H1Error::RequestBody(_))) => return this.fail(e),
                    // The backend stopped reading the request; its answer goes on.
                    Poll::Ready(Err(_)) => {
                        this.upload = None;
                        this.keep_alive = false;
                    }
                }
            }
            match &mut this.state {
                BodyState::Done => return Poll::Ready(None),
                BodyState::Length(left) if !conn.buf.is_empty() => {
                    let take = (*left).min(conn.buf.len() as u64);
                    let data = conn.buf.split_to(take as usize).freeze();
                    *left -= take;
                    if *left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                BodyState::UntilClose if !conn.buf.is_empty() => {
                    let data = conn.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                BodyState::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(fields)) => {
                        this.finish();
                        return Poll::Ready(Some(Ok(Frame::trailers(fields))));
                    }
                    Ok(Decoded::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => {}
                    Err(e) => return this.fail(e.into()),
                },
                BodyState::Length(_) | BodyState::UntilClose => {}
            }
            match conn.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) if matches!(this.state, BodyState::UntilClose) => {
                    this.state = BodyState::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => return this.fail(H1Error::Truncated),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return this.fail(H1Error::Io(e)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, BodyState::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            BodyState::Length(left) => SizeHint::with_exact(left),
            BodyState::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
#[path = "h1_client_tests.rs"]
mod tests;
