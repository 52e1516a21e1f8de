//! HAProxy's PROXY protocol, versions 1 (text) and 2 (binary): parsing the header a trusted
//! load balancer puts in front of a connection, reading exactly that header off a stream, and
//! encoding one to send to a backend. Which peers may send one is `crate::cidr`'s check.
//!
//! The receiver side never reads past the header: [`read_header`] only asks the stream for as
//! many bytes as the header must still have, so whatever follows (an HTTP request, a TLS
//! ClientHello) stays in the stream for the next layer. Read the PROXY header first, then hand
//! the stream to TLS or HTTP.
//!
//! The spec says a receiver must not guess whether a header is present: a listener either
//! requires it (from trusted peers) or doesn't take it at all.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::str::FromStr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::cidr::as_v6;

/// The 12-byte signature every version 2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 line, CRLF included (`PROXY UNKNOWN` with two full IPv6 addresses).
pub const V1_MAX_LEN: usize = 107;
/// The fixed part of a version 2 header: signature, version/command, family, length.
pub const V2_FIXED_LEN: usize = 16;
/// The longest version 2 address block (addresses plus TLVs) accepted. The protocol allows
/// 65535; load balancers send a few dozen bytes of TLVs at most.
pub const V2_MAX_BLOCK_LEN: usize = 2048;

const V1_PREFIX: &[u8] = b"PROXY ";
/// The shortest valid header of either version, `PROXY UNKNOWN\r\n`.
const MIN_HEADER_LEN: usize = 15;

/// The addresses a PROXY header carries: `None` for v1 `UNKNOWN`, v2 `LOCAL`, or a v2 family
/// or transport this proxy doesn't use (UNSPEC, AF_UNIX, DGRAM) — the connection's own
/// addresses apply then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The original client.
    pub source: Option<SocketAddr>,
    /// The address the client connected to.
    pub destination: Option<SocketAddr>,
    /// 1 or 2.
    pub version: u8,
}

/// Why bytes are not (or can never become) a valid PROXY header, or why reading one failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("not a PROXY protocol header")]
    NotProxy,
    #[error("PROXY v1 header has no CRLF within 107 bytes")]
    V1TooLong,
    #[error("malformed PROXY v1 header: {0}")]
    V1Malformed(&'static str),
    #[error("bad PROXY v2 signature")]
    V2BadSignature,
    #[error("unsupported PROXY v2 version {0} (only 2 exists)")]
    V2BadVersion(u8),
    #[error("bad PROXY v2 command {0:#x} (expected LOCAL 0x0 or PROXY 0x1)")]
    V2BadCommand(u8),
    #[error("bad PROXY v2 address family/transport byte {0:#04x}")]
    V2BadFamily(u8),
    #[error("PROXY v2 address block of {len} bytes exceeds the limit of {max}")]
    V2TooLong { len: usize, max: usize },
    #[error("PROXY v2 address block of {len} bytes is shorter than the {needed} its family needs")]
    V2AddressesTooShort { len: usize, needed: usize },
    #[error("connection closed after {got} bytes, before the PROXY header was complete")]
    Truncated { got: usize },
    #[error("no complete PROXY header within the timeout")]
    Timeout,
    #[error("reading the PROXY header: {0}")]
    Io(io::ErrorKind),
}

/// Parses a header at the start of `buf`: `Ok(Some((header, consumed_len)))` when complete,
/// `Ok(None)` when more bytes are needed, `Err` when it can never become a valid header.
/// Bytes after `consumed_len` belong to the application.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    match buf.first() {
        None => Ok(None),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Err(ProxyError::NotProxy),
    }
}

/// Reads exactly one header from `stream` — never a byte past it — within `timeout`.
/// Errs on timeout, a malformed header, an I/O error, or EOF before the header is complete.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<ProxyHeader, ProxyError> {
    match tokio::time::timeout(timeout, read_header_unbounded(stream)).await {
        Ok(result) => result,
        Err(_) => Err(ProxyError::Timeout),
    }
}

async fn read_header_unbounded<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<ProxyHeader, ProxyError> {
    let mut buf = Vec::with_capacity(V1_MAX_LEN);
    loop {
        if let Some((header, consumed)) = parse(&buf)? {
            debug_assert_eq!(consumed, buf.len(), "read past the PROXY header");
            return Ok(header);
        }
        let start = buf.len();
        buf.resize(start + min_remaining(&buf), 0);
        let n = loop {
            match stream.read(&mut buf[start..]).await {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ProxyError::Io(e.kind())),
            }
        };
        buf.truncate(start + n);
        if n == 0 {
            return Err(ProxyError::Truncated { got: start });
        }
    }
}

/// A lower bound (at least 1) on how many more bytes the header starting with `buf` has, when
/// `parse(buf)` is `Ok(None)`. Reading at most this much never reads past a valid header.
fn min_remaining(buf: &[u8]) -> usize {
    match buf.first() {
        None => MIN_HEADER_LEN,
        Some(b'\r') => {
            if buf.len() < V2_FIXED_LEN {
                V2_FIXED_LEN - buf.len()
            } else {
                let block = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
                (V2_FIXED_LEN + block).saturating_sub(buf.len()).max(1)
            }
        }
        Some(_) => v1_min_remaining(buf).max(1),
    }
}

fn v1_min_remaining(buf: &[u8]) -> usize {
    let len = buf.len();
    if buf.last() == Some(&b'\r') {
        return 1; // only the LF is left
    }
    let tcp = match buf.get(6..11) {
        Some(b"TCP4 ") => Some(7usize), // shortest address, "0.0.0.0"
        Some(b"TCP6 ") => Some(2),      // "::"
        _ => None,
    };
    let Some(min_addr) = tcp else {
        // "PROXY TCP6 :: :: 0 0\r\n" is the shortest TCP line, "PROXY UNKNOWN\r\n" the
        // shortest of all; past that, the CRLF is all that's certain.
        let min_total = if buf.get(6) == Some(&b'T') {
            22
        } else {
            MIN_HEADER_LEN
        };
        return min_total.saturating_sub(len).max(2);
    };
    // Fields after "PROXY TCPx ": source, destination, source port, destination port.
    let fields = &buf[11..];
    let current = fields.iter().filter(|&&b| b == b' ').count();
    let typed = fields.iter().rev().take_while(|&&b| b != b' ').count();
    let min_len = |field: usize| if field < 2 { min_addr } else { 1 };
    if current > 3 {
        return 2; // malformed; `parse` says so at the CRLF
    }
    let rest_of_current = min_len(current).saturating_sub(typed);
    let later: usize = (current + 1..4).map(|f| 1 + min_len(f)).sum();
    rest_of_current + later + 2
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] != V1_PREFIX[..n] {
        return Err(ProxyError::NotProxy);
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(end) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        if buf.len() >= V1_MAX_LEN {
            return Err(ProxyError::V1TooLong);
        }
        check_v1_protocol_prefix(&buf[n..])?;
        return Ok(None);
    };
    if window[end] == b'\n' {
        return Err(ProxyError::V1Malformed("line feed without carriage return"));
    }
    if end + 1 >= V1_MAX_LEN {
        return Err(ProxyError::V1TooLong);
    }
    match buf.get(end + 1) {
        None => {
            check_v1_protocol_prefix(&buf[n..])?;
            return Ok(None);
        }
        Some(b'\n') => {}
        Some(_) => return Err(ProxyError::V1Malformed("carriage return without line feed")),
    }
    if end < V1_PREFIX.len() {
        return Err(ProxyError::NotProxy); // "PROXY\r\n" or shorter
    }
    let line = &buf[V1_PREFIX.len()..end];
    let header = parse_v1_line(line)?;
    Ok(Some((header, end + 2)))
}

/// Rejects early a line whose protocol word can't become `TCP4 `, `TCP6 ` or `UNKNOWN` (the
/// only word a CR may follow). `rest` is what follows "PROXY " so far.
fn check_v1_protocol_prefix(rest: &[u8]) -> Result<(), ProxyError> {
    let word_len = rest
        .iter()
        .position(|&b| b == b' ' || b == b'\r')
        .unwrap_or(rest.len());
    let word = &rest[..word_len];
    let ok = match rest.get(word_len) {
        Some(b' ') => matches!(word, b"TCP4" | b"TCP6" | b"UNKNOWN"),
        Some(_) => word == b"UNKNOWN",
        None => [&b"TCP4"[..], b"TCP6", b"UNKNOWN"]
            .iter()
            .any(|p| p.starts_with(word)),
    };
    if ok {
        Ok(())
    } else {
        Err(ProxyError::V1Malformed(
            "unknown protocol (expected TCP4, TCP6 or UNKNOWN)",
        ))
    }
}

/// `line` is what lies between "PROXY " and the CRLF.
fn parse_v1_line(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let unknown = ProxyHeader {
        source: None,
        destination: None,
        version: 1,
    };
    if line == b"UNKNOWN" || line.starts_with(b"UNKNOWN ") {
        return Ok(unknown); // the rest of an UNKNOWN line is to be ignored
    }
    let mut parts = line.split(|&b| b == b' ');
    let v6 = match parts.next() {
        Some(b"TCP4") => false,
        Some(b"TCP6") => true,
        _ => {
            return Err(ProxyError::V1Malformed(
                "unknown protocol (expected TCP4, TCP6 or UNKNOWN)",
            ))
        }
    };
    let fields: Vec<&[u8]> = parts.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(ProxyError::V1Malformed(
            "expected exactly four single-space-separated fields after the protocol",
        ));
    };
    let src = parse_v1_addr(src, v6, "bad source address")?;
    let dst = parse_v1_addr(dst, v6, "bad destination address")?;
    let sport = parse_v1_port(sport).ok_or(ProxyError::V1Malformed("bad source port"))?;
    let dport = parse_v1_port(dport).ok_or(ProxyError::V1Malformed("bad destination port"))?;
    Ok(ProxyHeader {
        source: Some(SocketAddr::new(src, sport)),
        destination: Some(SocketAddr::new(dst, dport)),
        version: 1,
    })
}

fn parse_v1_addr(field: &[u8], v6: bool, what: &'static str) -> Result<IpAddr, ProxyError> {
    let text = std::str::from_utf8(field).map_err(|_| ProxyError::V1Malformed(what))?;
    match (IpAddr::from_str(text), v6) {
        (Ok(ip @ IpAddr::V4(_)), false) | (Ok(ip @ IpAddr::V6(_)), true) => Ok(ip),
        (Ok(IpAddr::V6(_)), false) => Err(ProxyError::V1Malformed(
            "IPv6 address in a TCP4 line (family mismatch)",
        )),
        (Ok(IpAddr::V4(_)), true) => Err(ProxyError::V1Malformed(
            "IPv4 address in a TCP6 line (family mismatch)",
        )),
        (Err(_), _) => Err(ProxyError::V1Malformed(what)),
    }
}

/// 0..=65535 in plain decimal: digits only, no sign, no leading zero (the spec forbids them).
fn parse_v1_port(field: &[u8]) -> Option<u16> {
    if field.is_empty() || field.len() > 5 || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if field.len() > 1 && field[0] == b'0' {
        return None;
    }
    let value = field
        .iter()
        .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
    u16::try_from(value).ok()
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err(ProxyError::V2BadSignature);
    }
    let Some(&ver_cmd) = buf.get(12) else {
        return Ok(None);
    };
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::V2BadVersion(ver_cmd >> 4));
    }
    let proxy = match ver_cmd & 0x0f {
        0 => false, // LOCAL: the connection's own endpoints apply; the family is ignored
        1 => true,
        other => return Err(ProxyError::V2BadCommand(other)),
    };
    let Some(&family) = buf.get(13) else {
        return Ok(None);
    };
    // Address bytes the family needs, and whether this proxy uses them.
    let (needed, usable) = match (family >> 4, family & 0x0f) {
        _ if !proxy => (0, false),
        (0, 0..=2) | (1..=3, 0) => (0, false), // UNSPEC family or transport
        (1, 1) => (12, true),                  // TCP over IPv4
        (2, 1) => (36, true),                  // TCP over IPv6
        (1, 2) => (12, false),                 // UDP over IPv4
        (2, 2) => (36, false),                 // UDP over IPv6
        (3, 1..=2) => (216, false),            // AF_UNIX
        _ => return Err(ProxyError::V2BadFamily(family)),
    };
    let Some(len_bytes) = buf.get(14..16) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
    if len > V2_MAX_BLOCK_LEN {
        return Err(ProxyError::V2TooLong {
            len,
            max: V2_MAX_BLOCK_LEN,
        });
    }
    if len < needed {
        return Err(ProxyError::V2AddressesTooShort { len, needed });
    }
    let total = V2_FIXED_LEN + len;
    let Some(block) = buf.get(V2_FIXED_LEN..total) else {
        return Ok(None);
    };
    let (source, destination) = if !usable {
        (None, None)
    } else if needed == 12 {
        let ip = |at: usize| {
            IpAddr::V4(Ipv4Addr::new(
                block[at],
                block[at + 1],
                block[at + 2],
                block[at + 3],
            ))
        };
        let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
        (
            Some(SocketAddr::new(ip(0), port(8))),
            Some(SocketAddr::new(ip(4), port(10))),
        )
    } else {
        let ip = |at: usize| {
            let octets: [u8; 16] = block[at..at + 16].try_into().expect("16 bytes");
            IpAddr::V6(Ipv6Addr::from(octets))
        };
        let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
        (
            Some(SocketAddr::new(ip(0), port(32))),
            Some(SocketAddr::new(ip(16), port(34))),
        )
    };
    // Anything after the addresses is TLVs, skipped unread.
    Ok(Some((
        ProxyHeader {
            source,
            destination,
            version: 2,
        },
        total,
    )))
}

/// Both addresses as IPv4 when both are IPv4 or IPv4-mapped IPv6 (a dual-stack listener sees
/// IPv4 clients as `::ffff:a.b.c.d`), else `None`.
fn as_v4_pair(source: SocketAddr, destination: SocketAddr) -> Option<(SocketAddrV4, SocketAddrV4)> {
    match (source.ip().to_canonical(), destination.ip().to_canonical()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some((
            SocketAddrV4::new(s, source.port()),
            SocketAddrV4::new(d, destination.port()),
        )),
        _ => None,
    }
}

/// A version 1 line for a backend. `TCP4` when both addresses are IPv4 (IPv4-mapped IPv6
/// counts as IPv4), else `TCP6` with any IPv4 address mapped. IPv6 flow info and scope ids
/// are not carried.
pub fn encode_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let line = match as_v4_pair(source, destination) {
        Some((s, d)) => format!(
            "PROXY TCP4 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
        None => format!(
            "PROXY TCP6 {} {} {} {}\r\n",
            as_v6(source.ip()),
            as_v6(destination.ip()),
            source.port(),
            destination.port()
        ),
    };
    line.into_bytes()
}

/// A version 2 `PROXY` header (TCP, no TLVs) for a backend; families chosen as in
/// [`encode_v1`].
pub fn encode_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(V2_FIXED_LEN + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21); // version 2, PROXY
    match as_v4_pair(source, destination) {
        Some((s, d)) => {
            out.push(0x11); // TCP over IPv4
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
        }
        None => {
            out.push(0x21); // TCP over IPv6
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&as_v6(source.ip()).octets());
            out.extend_from_slice(&as_v6(destination.ip()).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

#[cfg(test)]
#[path = "proxy_protocol_tests.rs"]
mod tests;
