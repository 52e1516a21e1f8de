//! The byte stream of one HTTP/1.1 client connection, framed as RFC 9112 frames it: where
//! each request head starts and ends, and how long the body after it is. Pure: bytes in,
//! a count of bytes that may pass out.
//!
//! `h1_guard` runs every byte a client sends through a `Scanner` before hyper parses it, so
//! that no head Drover forwards could be read differently by a backend (request smuggling):
//! the scanner accepts a strict subset of what hyper accepts and refuses the rest with the
//! status RFC 9112 asks for. It refuses:
//! - a head over `max_head` bytes (431), a request line over `max_request_line` (414),
//!   more than `max_headers` fields (431);
//! - bare LF line endings, obs-fold (a line starting with SP or HTAB), whitespace between a
//!   field name and its colon, control characters (NUL, CR, VT, DEL...) in a field value or
//!   a request target, a malformed request line (400); an HTTP version other than 1.0 and
//!   1.1 (505); `CONNECT` (405: Drover is no forward proxy);
//! - `Content-Length` with anything but digits, more than one `Content-Length`,
//!   `Content-Length` with `Transfer-Encoding`, `Transfer-Encoding` in HTTP/1.0, a
//!   `Transfer-Encoding` whose last coding is not `chunked` or that names `chunked` twice
//!   (400), and codings other than `chunked` (501, as §6.1 says for codings a server does
//!   not understand);
//! - more than one `Host`, or none in HTTP/1.1 (400); with `underscores = reject` any field
//!   name holding `_`, and always `content_length`/`transfer_encoding` look-alikes (400).
//!
//! Bodies are skipped by their framing: a `Content-Length` count, or the chunked coding
//! parsed strictly (hex size, extensions, CRLFs, trailer fields). A chunked body that breaks
//! its framing ends the connection (`is_broken`). After a request that asks to switch
//! protocols (`Upgrade` with `Connection: upgrade`) the bytes are no longer HTTP/1 and pass
//! unscanned (`is_tunnel`); the router closes the connection when the switch is refused.

use crate::config::UnderscoreHeaders;

/// Limits a head must keep to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest head, request line and final CRLF included.
    pub max_head: usize,
    /// Longest request line.
    pub max_request_line: usize,
    /// Most header fields in one head.
    pub max_headers: usize,
    /// What to do with field names that hold an underscore.
    pub underscores: UnderscoreHeaders,
}

/// Why a head was refused, and so what the client is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 400, with what was wrong.
    BadRequest(&'static str),
    /// 405: `CONNECT`.
    MethodNotAllowed,
    /// 408: the head did not arrive within `header_timeout`.
    Timeout,
    /// 414: the request line is too long.
    UriTooLong,
    /// 431: the head is too large or has too many fields.
    HeadTooLarge,
    /// 501: a transfer coding other than chunked.
    NotImplemented,
    /// 505: not HTTP/1.0 or HTTP/1.1.
    VersionNotSupported,
}

impl Rejection {
    pub fn status(self) -> u16 {
        match self {
            Rejection::BadRequest(_) => 400,
            Rejection::MethodNotAllowed => 405,
            Rejection::Timeout => 408,
            Rejection::UriTooLong => 414,
            Rejection::HeadTooLarge => 431,
            Rejection::NotImplemented => 501,
            Rejection::VersionNotSupported => 505,
        }
    }

    /// One line for the client and the logs.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::BadRequest(why) => why,
            Rejection::MethodNotAllowed => "CONNECT is not served here",
            Rejection::Timeout => "the request head did not arrive in time",
            Rejection::UriTooLong => "the request line is too long",
            Rejection::HeadTooLarge => "the request head is too large",
            Rejection::NotImplemented => "a transfer coding other than chunked",
            Rejection::VersionNotSupported => "only HTTP/1.0 and HTTP/1.1 are served",
        }
    }
}

/// Reads a client's byte stream message by message. `process` takes the bytes that
/// follow those it has seen and says how many of them may pass to hyper.
#[derive(Debug, Clone)]
pub struct Scanner {
    limits: Limits,
    phase: Phase,
    head: HeadState,
    heads: u64,
}

/// Where in the stream the next byte falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A request head (or the empty lines that may precede one).
    Head,
    /// A body of known length; `left` bytes to go.
    Fixed { left: u64, then: After },
    /// A chunked body.
    Chunked { at: Chunk, then: After },
    /// After a protocol switch: not HTTP/1 any more.
    Tunnel,
    /// A head was refused; nothing after it is read.
    Rejected(Rejection),
    /// A body broke its framing; nothing after it is read.
    Broken,
}

/// What follows a message's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Head,
    Tunnel,
}

/// Position inside a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// The chunk-size's hex digits; `digits` read so far.
    Size { size: u64, digits: u8 },
    /// Whitespace after the size; only `;` may follow.
    SizeSpace { size: u64 },
    /// A chunk extension, up to its CR; `len` bytes so far.
    Extension { size: u64, len: usize },
    /// The LF after the size line's CR.
    SizeLf { size: u64 },
    /// Chunk data.
    Data { left: u64 },
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// A trailer field line (`len` bytes of it so far), or the empty line that ends the
    /// body when `len` is 0; `total` bytes of trailer section so far.
    Trailer { len: usize, total: usize },
    /// The LF of a trailer field line.
    TrailerLf { total: usize },
    /// The LF of the last, empty line.
    EndLf,
}

/// Longest chunk-size line (size and extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;

/// What the head read so far said, kept between calls so a head that arrives in many reads
/// is scanned once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct HeadState {
    /// Bytes of this head already scanned: complete lines only.
    scanned: usize,
    /// The request line has been read.
    request_line: bool,
    http10: bool,
    fields: usize,
    hosts: u8,
    content_length: Option<u64>,
    /// `Transfer-Encoding` codings seen: how many, how many were `chunked`, whether the
    /// last one was.
    codings: u32,
    chunked: u32,
    last_chunked: bool,
    upgrade: bool,
    connection_upgrade: bool,
}

impl Scanner {
    pub fn new(limits: Limits) -> Scanner {
        Scanner {
            limits,
            phase: Phase::Head,
            head: HeadState::default(),
            heads: 0,
        }
    }

    /// Takes the bytes that follow all bytes given before and returns how many of them, from
    /// the start, may pass: every byte of complete, accepted heads and of bodies. It stops
    /// short at a head not yet complete (give those bytes again, with more, next time), at
    /// a refused head (`rejection`) and where a body breaks its framing (`is_broken`).
    pub fn process(&mut self, data: &[u8]) -> usize {
        let mut at = 0;
        while at < data.len() {
            match self.phase {
                Phase::Head => match self.scan_head(&data[at..]) {
                    Some(len) => {
                        at += len;
                        self.heads += 1;
                    }
                    None => return at,
                },
                Phase::Fixed { left, then } => {
                    let take = left.min((data.len() - at) as u64);
                    at += take as usize;
                    self.phase = match left - take {
                        0 => then.phase(),
                        left => Phase::Fixed { left, then },
                    };
                }
                Phase::Chunked { at: chunk, then } => {
                    let (used, next) = chunk_step(chunk, &data[at..], self.limits.max_head);
                    at += used;
                    self.phase = match next {
                        Ok(Some(chunk)) => Phase::Chunked { at: chunk, then },
                        Ok(None) => then.phase(),
                        Err(()) => Phase::Broken,
                    };
                }
                Phase::Tunnel => return data.len(),
                Phase::Rejected(_) | Phase::Broken => return at,
            }
        }
        at
    }

    /// Refuses the head being waited for (the head timer ran out).
    pub fn reject(&mut self, why: Rejection) {
        self.phase = Phase::Rejected(why);
    }

    /// Marks the body being read as broken (the client stalled or left mid-body).
    pub fn break_body(&mut self) {
        self.phase = Phase::Broken;
    }

    /// Why the last head was refused, once one was.
    pub fn rejection(&self) -> Option<Rejection> {
        match self.phase {
            Phase::Rejected(r) => Some(r),
            _ => None,
        }
    }

    pub fn is_broken(&self) -> bool {
        self.phase == Phase::Broken
    }

    pub fn is_tunnel(&self) -> bool {
        self.phase == Phase::Tunnel
    }

    /// Waiting for a head (possibly part-way through one).
    pub fn in_head(&self) -> bool {
        self.phase == Phase::Head
    }

    /// Inside a request body.
    pub fn in_body(&self) -> bool {
        matches!(self.phase, Phase::Fixed { .. } | Phase::Chunked { .. })
    }

    /// Complete heads accepted so far.
    pub fn heads(&self) -> u64 {
        self.heads
    }

    /// Scans the head starting at `data[0]` from where the last call stopped. Returns its
    /// length once complete and accepted (and sets the phase for its body); `None` when it
    /// is incomplete or refused.
    fn scan_head(&mut self, data: &[u8]) -> Option<usize> {
        match self.scan_lines(data) {
            Ok(Some(len)) => {
                let then = if self.head.upgrade && self.head.connection_upgrade {
                    After::Tunnel
                } else {
                    After::Head
                };
                match self.framing(then) {
                    Ok(phase) => {
                        self.phase = phase;
                        self.head = HeadState::default();
                        Some(len)
                    }
                    Err(why) => {
                        self.phase = Phase::Rejected(why);
                        None
                    }
                }
            }
            Ok(None) => {
                let start = self.head.scanned;
                let over_head = data.len() > self.limits.max_head;
                if let Some(why) = self.limit_crossed(start, data.len() - start, over_head) {
                    self.phase = Phase::Rejected(why);
                }
                None
            }
            Err(why) => {
                self.phase = Phase::Rejected(why);
                None
            }
        }
    }

    /// The size limit the line starting at `start` crosses first, if any: `line_len` bytes
    /// of it have come (its LF not counted), and `over_head` says the head holds more than
    /// `max_head` bytes. Both are judged by the byte that first went over, so a head gets
    /// the same answer whether it came whole or a byte at a time.
    fn limit_crossed(&self, start: usize, line_len: usize, over_head: bool) -> Option<Rejection> {
        let over_line = !self.head.request_line && line_len > self.limits.max_request_line;
        match (over_line, over_head) {
            (true, true) if start + self.limits.max_request_line > self.limits.max_head => {
                Some(Rejection::HeadTooLarge)
            }
            (true, _) => Some(Rejection::UriTooLong),
            (false, true) => Some(Rejection::HeadTooLarge),
            (false, false) => None,
        }
    }

    /// Validates the complete lines of `data` not yet scanned. `Ok(Some(len))` when the
    /// empty line ending the head was found at `len`.
    fn scan_lines(&mut self, data: &[u8]) -> Result<Option<usize>, Rejection> {
        loop {
            let start = self.head.scanned;
            let Some(lf) = memchr::memchr(b'\n', &data[start..]) else {
                return Ok(None);
            };
            let end = start + lf + 1;
            // Sizes before content, so the answer does not depend on how the bytes came.
            if let Some(why) = self.limit_crossed(start, lf, end > self.limits.max_head) {
                return Err(why);
            }
            if lf == 0 || data[start + lf - 1] != b'\r' {
                return Err(Rejection::BadRequest("a line ends in a bare LF"));
            }
            let line = &data[start..end - 2];
            self.head.scanned = end;
            if !self.head.request_line {
                // Empty lines before the request line are allowed (RFC 9112 §2.2).
                if !line.is_empty() {
                    self.request_line(line)?;
                }
                continue;
            }
            if line.is_empty() {
                return Ok(Some(end));
            }
            self.head.fields += 1;
            if self.head.fields > self.limits.max_headers {
                return Err(Rejection::HeadTooLarge);
            }
            self.field(line)?;
        }
    }

    fn request_line(&mut self, line: &[u8]) -> Result<(), Rejection> {
        const MALFORMED: Rejection = Rejection::BadRequest("a malformed request line");
        let mut parts = line.split(|&b| b == b' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(MALFORMED);
        };
        if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
            return Err(MALFORMED);
        }
        if target.is_empty() || !target.iter().all(|&b| is_target_byte(b)) {
            return Err(Rejection::BadRequest(
                "a request target with a forbidden byte",
            ));
        }
        match version {
            b"HTTP/1.1" => {}
            b"HTTP/1.0" => self.head.http10 = true,
            [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
                if major.is_ascii_digit() && minor.is_ascii_digit() =>
            {
                return Err(Rejection::VersionNotSupported)
            }
            _ => return Err(MALFORMED),
        }
        if method == b"CONNECT" {
            return Err(Rejection::MethodNotAllowed);
        }
        self.head.request_line = true;
        Ok(())
    }

    fn field(&mut self, line: &[u8]) -> Result<(), Rejection> {
        if matches!(line[0], b' ' | b'\t') {
            return Err(Rejection::BadRequest("obsolete line folding"));
        }
        // The name runs to the first byte that is not a token byte, which must be the colon.
        let colon = line
            .iter()
            .position(|&b| !is_tchar(b))
            .unwrap_or(line.len());
        if colon == 0 || line.get(colon) != Some(&b':') {
            let why = match line[colon..].iter().position(|&b| b == b':') {
                None => "a header line without a colon",
                Some(_) => "a header name with a forbidden byte (whitespace before the colon?)",
            };
            return Err(Rejection::BadRequest(why));
        }
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if !all_field_bytes(value) {
            return Err(Rejection::BadRequest(
                "a header value with a control character",
            ));
        }
        let value = trim_ows(value);
        if name.contains(&b'_') {
            let dashed = |want: &[u8]| {
                name.len() == want.len()
                    && name
                        .iter()
                        .zip(want)
                        .all(|(&a, &b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'))
            };
            if dashed(b"content-length") || dashed(b"transfer-encoding") {
                return Err(Rejection::BadRequest(
                    "a framing header spelt with an underscore",
                ));
            }
            if self.limits.underscores == UnderscoreHeaders::Reject {
                return Err(Rejection::BadRequest("a header name with an underscore"));
            }
            return Ok(());
        }
        // Only five names matter for framing; their lengths tell them apart first.
        let is = |want: &[u8]| name.eq_ignore_ascii_case(want);
        match name.len() {
            14 if is(b"content-length") => {
                if self.head.content_length.is_some() {
                    return Err(Rejection::BadRequest("more than one Content-Length"));
                }
                self.head.content_length = Some(parse_length(value)?);
            }
            17 if is(b"transfer-encoding") => {
                for coding in value.split(|&b| b == b',').map(trim_ows) {
                    if coding.is_empty() {
                        return Err(Rejection::BadRequest("an empty transfer coding"));
                    }
                    self.head.codings += 1;
                    self.head.last_chunked = coding.eq_ignore_ascii_case(b"chunked");
                    if self.head.last_chunked {
                        self.head.chunked += 1;
                    }
                }
            }
            4 if is(b"host") => self.head.hosts = self.head.hosts.saturating_add(1),
            7 if is(b"upgrade") => self.head.upgrade = true,
            10 if is(b"connection") => {
                let upgrade = value
                    .split(|&b| b == b',')
                    .any(|t| trim_ows(t).eq_ignore_ascii_case(b"upgrade"));
                self.head.connection_upgrade |= upgrade;
            }
            _ => {}
        }
        Ok(())
    }

    /// The body framing of the complete head (RFC 9112 §6.3), or why it is refused.
    fn framing(&self, then: After) -> Result<Phase, Rejection> {
        let h = &self.head;
        if h.hosts > 1 {
            return Err(Rejection::BadRequest("more than one Host header"));
        }
        if h.hosts == 0 && !h.http10 {
            return Err(Rejection::BadRequest("an HTTP/1.1 request without Host"));
        }
        if h.codings > 0 {
            if h.content_length.is_some() {
                return Err(Rejection::BadRequest(
                    "both Content-Length and Transfer-Encoding",
                ));
            }
            if h.http10 {
                return Err(Rejection::BadRequest("Transfer-Encoding in HTTP/1.0"));
            }
            if !h.last_chunked {
                return Err(Rejection::BadRequest(
                    "a Transfer-Encoding whose last coding is not chunked",
                ));
            }
            if h.chunked > 1 {
                return Err(Rejection::BadRequest("chunked applied twice"));
            }
            if h.codings > 1 {
                return Err(Rejection::NotImplemented);
            }
            let at = Chunk::Size { size: 0, digits: 0 };
            return Ok(Phase::Chunked { at, then });
        }
        Ok(match h.content_length {
            Some(left) if left > 0 => Phase::Fixed { left, then },
            _ => then.phase(),
        })
    }
}

impl After {
    fn phase(self) -> Phase {
        match self {
            After::Head => Phase::Head,
            After::Tunnel => Phase::Tunnel,
        }
    }
}

/// Walks a chunked body from `chunk` over `data`: the bytes used, and where it stands
/// after them (`None`: the body ended; `Err`: its framing broke).
fn chunk_step(
    mut chunk: Chunk,
    data: &[u8],
    max_trailers: usize,
) -> (usize, Result<Option<Chunk>, ()>) {
    let mut i = 0;
    while i < data.len() {
        if let Chunk::Data { left } = chunk {
            let take = left.min((data.len() - i) as u64);
            i += take as usize;
            chunk = match left - take {
                0 => Chunk::DataCr,
                left => Chunk::Data { left },
            };
            continue;
        }
        let b = data[i];
        i += 1;
        chunk = match (chunk, b) {
            (Chunk::Size { size, digits }, _) if b.is_ascii_hexdigit() => {
                let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                if digits >= 16 {
                    return (i, Err(()));
                }
                Chunk::Size {
                    size: size << 4 | digit,
                    digits: digits + 1,
                }
            }
            (Chunk::Size { digits: 0, .. }, _) => return (i, Err(())),
            (Chunk::Size { size, .. } | Chunk::SizeSpace { size }, b' ' | b'\t') => {
                Chunk::SizeSpace { size }
            }
            (Chunk::Size { size, .. } | Chunk::SizeSpace { size }, b';') => {
                Chunk::Extension { size, len: 0 }
            }
            (Chunk::Size { size, .. }, b'\r') => Chunk::SizeLf { size },
            (Chunk::Extension { size, .. }, b'\r') => Chunk::SizeLf { size },
            (Chunk::Extension { size, len }, _) if is_field_byte(b) && len < MAX_CHUNK_LINE => {
                Chunk::Extension { size, len: len + 1 }
            }
            (Chunk::SizeLf { size: 0 }, b'\n') => Chunk::Trailer { len: 0, total: 0 },
            (Chunk::SizeLf { size }, b'\n') => Chunk::Data { left: size },
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataLf, b'\n') => Chunk::Size { size: 0, digits: 0 },
            (Chunk::Trailer { len: 0, .. }, b'\r') => Chunk::EndLf,
            (Chunk::Trailer { len: 0, .. }, b' ' | b'\t') => return (i, Err(())),
            (Chunk::Trailer { len, total }, b'\r') if len > 0 => Chunk::TrailerLf { total },
            (Chunk::Trailer { len, total }, _) if is_field_byte(b) && total < max_trailers => {
                Chunk::Trailer {
                    len: len + 1,
                    total: total + 1,
                }
            }
            (Chunk::TrailerLf { total }, b'\n') => Chunk::Trailer {
                len: 0,
                total: total + 2,
            },
            (Chunk::EndLf, b'\n') => return (i, Ok(None)),
            _ => return (i, Err(())),
        };
    }
    (i, Ok(Some(chunk)))
}

/// Byte classes, looked up once per byte: `TCHAR` (RFC 9110 token: methods and field
/// names), `FIELD` (a field value: HTAB, SP, visible ASCII, obs-text), `TARGET` (a request
/// target: visible ASCII).
const TCHAR: u8 = 1;
const FIELD: u8 = 2;
const TARGET: u8 = 4;

static CLASSES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let mut class = 0;
        if c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            )
        {
            class |= TCHAR;
        }
        if c == b'\t' || (c >= 0x20 && c != 0x7f) {
            class |= FIELD;
        }
        if c >= 0x21 && c <= 0x7e {
            class |= TARGET;
        }
        table[b] = class;
        b += 1;
    }
    table
};

fn is_tchar(b: u8) -> bool {
    CLASSES[b as usize] & TCHAR != 0
}

fn is_field_byte(b: u8) -> bool {
    CLASSES[b as usize] & FIELD != 0
}

/// Whether every byte may stand in a field value. Branch-free, so it runs many bytes a
/// cycle: this is most of what a head is.
fn all_field_bytes(value: &[u8]) -> bool {
    let bad = value.iter().fold(false, |bad, &b| {
        bad | ((b < 0x20) & (b != b'\t')) | (b == 0x7f)
    });
    !bad
}

fn is_target_byte(b: u8) -> bool {
    CLASSES[b as usize] & TARGET != 0
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ' && b != b'\t');
    let Some(start) = start else { return &[] };
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .unwrap_or(start);
    &v[start..=end]
}

/// A `Content-Length` value: digits only, no sign, no list.
fn parse_length(v: &[u8]) -> Result<u64, Rejection> {
    const BAD: Rejection = Rejection::BadRequest("a Content-Length that is not a number");
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return Err(BAD);
    }
    Ok(v.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
#[path = "h1_scan_tests.rs"]
mod tests;
