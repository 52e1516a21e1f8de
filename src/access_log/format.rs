//! What one access-log line says, and its two spellings: one JSON object a line (the
//! default, for log shippers) and nginx's `combined` format (for the tools that already
//! parse nginx's logs). Formatting happens on the writer thread, never on the data plane.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::proxy::Fault;

/// The line format (`[access_log] format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Json,
    /// nginx's `combined`: `addr - user [time] "request" status bytes "referer" "agent"`.
    Combined,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Json => "json",
            Format::Combined => "combined",
        })
    }
}

impl Format {
    pub fn from_name(name: &str) -> Option<Format> {
        match name {
            "json" => Some(Format::Json),
            "combined" => Some(Format::Combined),
            _ => None,
        }
    }
}

/// Why an exchange went wrong, and whose fault it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultNote {
    pub kind: Fault,
    /// A short reason: `connect refused`, `response timeout`, `client closed`, ...
    pub reason: String,
}

/// The TLS side of a request that came over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsNote {
    /// `TLSv1.3`, `TLSv1.2`.
    pub version: &'static str,
    pub sni: Option<String>,
}

/// One HTTP request as the access log reports it, borrowed from where the request's
/// record keeps it: the line is formatted on the request's own thread, with no copies.
#[derive(Debug, Clone)]
pub struct HttpLine<'a> {
    /// When the request head had arrived.
    pub start: SystemTime,
    /// The client (the PROXY-protocol client when that is trusted).
    pub client: SocketAddr,
    pub method: &'a str,
    pub host: &'a str,
    /// Path and query as the client sent them.
    pub path: &'a str,
    pub version: hyper::Version,
    /// Sent to the client.
    pub status: u16,
    /// The backend's, when one answered.
    pub upstream_status: Option<u16>,
    /// A gRPC call's `grpc-status` (the backend's, or Drover's own answer's).
    pub grpc_status: Option<u16>,
    /// Request body bytes read from the client.
    pub bytes_in: u64,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
    /// Head arrived to the response's last byte sent (or the exchange's end).
    pub duration: Duration,
    /// Request sent to the backend's response head.
    pub upstream_time: Option<Duration>,
    /// The app id and service port (`/shop/web:10001`), or the alias's route name; empty
    /// when nothing matched.
    pub route: &'a str,
    pub upstream: Option<SocketAddr>,
    pub retries: u32,
    pub fault: Option<&'a FaultNote>,
    pub tls: Option<&'a TlsNote>,
    pub user_agent: &'a str,
    pub referer: &'a str,
}

/// One TCP connection as the access log reports it.
#[derive(Debug, Clone)]
pub struct TcpLine<'a> {
    pub start: SystemTime,
    pub client: SocketAddr,
    /// The service port the client connected to.
    pub port: u16,
    pub route: &'a str,
    pub upstream: Option<SocketAddr>,
    /// Bytes from the client to the backend.
    pub bytes_in: u64,
    /// Bytes from the backend to the client.
    pub bytes_out: u64,
    pub duration: Duration,
    pub fault: Option<&'a FaultNote>,
}

/// Appends the line of `e` in `format` to `out`, newline included. `stamps` caches the
/// time text of the current second (thousands of lines a second share it).
pub fn http_line(out: &mut Vec<u8>, e: &HttpLine, format: Format, stamps: &mut Stamps) {
    match format {
        Format::Json => http_json(out, e, stamps),
        Format::Combined => combined_http(out, e, stamps),
    }
}

/// As `http_line`, for a TCP connection.
pub fn tcp_line(out: &mut Vec<u8>, e: &TcpLine, format: Format, stamps: &mut Stamps) {
    match format {
        Format::Json => tcp_json(out, e, stamps),
        Format::Combined => combined_tcp(out, e, stamps),
    }
}

/// The time texts of one second, made once per second.
#[derive(Debug, Default)]
pub struct Stamps {
    secs: Option<u64>,
    /// `2026-12-07T13:40:18`
    iso: String,
    /// `07/Dec/2026:13:40:18 +0000`
    clf: String,
}

impl Stamps {
    /// Makes the texts for `t`'s second if they are not those already; returns the
    /// milliseconds within it.
    fn at(&mut self, t: SystemTime) -> u32 {
        let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        if self.secs != Some(since.as_secs()) {
            self.secs = Some(since.as_secs());
            // humantime gives `2026-12-07T13:40:18Z`: take its parts.
            let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(since.as_secs());
            let s = humantime::format_rfc3339_seconds(whole).to_string();
            self.iso = s[..19].to_string();
            self.clf = clf_time(&s);
        }
        since.subsec_millis()
    }
}

/// nginx's `$time_local` in UTC from `2026-12-07T13:40:18Z`: `07/Dec/2026:13:40:18 +0000`.
fn clf_time(rfc3339: &str) -> String {
    let (year, month, day, time) = (
        &rfc3339[0..4],
        &rfc3339[5..7],
        &rfc3339[8..10],
        &rfc3339[11..19],
    );
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = month
        .parse::<usize>()
        .ok()
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("Jan");
    format!("{day}/{month}/{year}:{time} +0000")
}

/// A line under construction: the constant text between values goes in as one piece
/// (`","host":"`), each value as it is or escaped. The request's own thread runs this for
/// every request while the log is on, so it avoids the formatting machinery.
struct Line<'a>(&'a mut Vec<u8>);

impl Line<'_> {
    fn raw(&mut self, text: &str) -> &mut Self {
        self.0.extend_from_slice(text.as_bytes());
        self
    }

    /// A JSON string's contents (the quotes are in the constant text around it).
    fn esc(&mut self, value: &str) -> &mut Self {
        json_escaped(self.0, value);
        self
    }

    fn num(&mut self, value: u64) -> &mut Self {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    fn opt_num(&mut self, value: Option<u64>) -> &mut Self {
        match value {
            Some(v) => self.num(v),
            None => self.raw("null"),
        }
    }

    /// Milliseconds with microseconds: `12.345`.
    fn ms(&mut self, d: Duration) -> &mut Self {
        write_ms(self.0, d);
        self
    }

    fn opt_ms(&mut self, d: Option<Duration>) -> &mut Self {
        match d {
            Some(d) => self.ms(d),
            None => self.raw("null"),
        }
    }

    /// `ip:port`, nothing for none.
    fn addr(&mut self, addr: Option<SocketAddr>) -> &mut Self {
        if let Some(a) = addr {
            write_addr(self.0, a);
        }
        self
    }

    /// `2026-12-07T13:40:18.250Z`
    fn ts(&mut self, t: SystemTime, stamps: &mut Stamps) -> &mut Self {
        let millis = stamps.at(t);
        self.0.extend_from_slice(stamps.iso.as_bytes());
        write_thousandths(self.0, millis);
        self.0.push(b'Z');
        self
    }
}

fn write_ms(out: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros() as u64;
    out.extend_from_slice(itoa::Buffer::new().format(micros / 1000).as_bytes());
    write_thousandths(out, (micros % 1000) as u32);
}

/// `.NNN` for `n` below 1000: milliseconds of a second, microseconds of a millisecond.
fn write_thousandths(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&[
        b'.',
        b'0' + (n / 100) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]);
}

/// `ip:port` (`[v6]:port`) without the formatting machinery for the usual IPv4: the text
/// is put together on the stack and appended once.
fn write_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            let mut text = [0u8; 21];
            let mut n = put_ipv4(&mut text, *a.ip());
            text[n] = b':';
            n = put_decimal(&mut text, n + 1, a.port().into());
            out.extend_from_slice(&text[..n]);
        }
        SocketAddr::V6(a) => {
            use std::io::Write as _;
            let _ = write!(out, "[{}]:{}", a.ip(), a.port());
        }
    }
}

/// Writes `ip` at the start of `text` (15 bytes at most); returns where it ended.
fn put_ipv4(text: &mut [u8], ip: std::net::Ipv4Addr) -> usize {
    let mut n = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text[n] = b'.';
            n += 1;
        }
        n = put_decimal(text, n, octet.into());
    }
    n
}

/// Writes `value` in decimal into `text` at `at`; returns where it ended.
fn put_decimal(text: &mut [u8], at: usize, value: u32) -> usize {
    let mut digits = [0u8; 10];
    let mut len = 0;
    let mut v = value;
    loop {
        digits[len] = b'0' + (v % 10) as u8;
        len += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for (i, d) in digits[..len].iter().rev().enumerate() {
        text[at + i] = *d;
    }
    at + len
}

/// Bytes a JSON string cannot hold as they are: `"`, `\` and control characters.
const fn escapes() -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
}
static ESCAPE: [bool; 256] = escapes();

/// A JSON string's contents (RFC 8259): `"` and `\` escaped, control characters as
/// `\u00XX`; the rest (valid UTF-8) as it is. Most values need no escape and are copied
/// in one piece.
fn json_escaped(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !ESCAPE[b as usize] {
            continue;
        }
        out.extend_from_slice(&bytes[from..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xf) as usize],
                ]);
            }
        }
        from = i + 1;
    }
    out.extend_from_slice(&bytes[from..]);
}

fn http_json(out: &mut Vec<u8>, e: &HttpLine, stamps: &mut Stamps) {
    let mut l = Line(out);
    l.raw(r#"{"type":"http","ts":""#)
        .ts(e.start, stamps)
        .raw(r#"","client":""#)
        .addr(Some(e.client))
        .raw(r#"","method":""#)
        .esc(e.method)
        .raw(r#"","host":""#)
        .esc(e.host)
        .raw(r#"","path":""#)
        .esc(e.path)
        .raw(r#"","proto":""#)
        .raw(proto(e.version))
        .raw(r#"","status":"#)
        .num(e.status.into())
        .raw(r#","upstream_status":"#)
        .opt_num(e.upstream_status.map(u64::from))
        .raw(r#","grpc_status":"#)
        .opt_num(e.grpc_status.map(u64::from))
        .raw(r#","bytes_in":"#)
        .num(e.bytes_in)
        .raw(r#","bytes_out":"#)
        .num(e.bytes_out)
        .raw(r#","duration_ms":"#)
        .ms(e.duration)
        .raw(r#","upstream_ms":"#)
        .opt_ms(e.upstream_time)
        .raw(r#","route":""#)
        .esc(e.route)
        .raw(r#"","upstream":""#)
        .addr(e.upstream)
        .raw(r#"","retries":"#)
        .num(e.retries.into())
        .raw(r#","fault":""#)
        .raw(fault_kind(e.fault))
        .raw(r#"","fault_reason":""#)
        .esc(e.fault.map_or("", |f| f.reason.as_str()));
    match e.tls {
        Some(t) => l
            .raw(r#"","tls":{"version":""#)
            .raw(t.version)
            .raw(r#"","sni":""#)
            .esc(t.sni.as_deref().unwrap_or(""))
            .raw(r#""},"user_agent":""#),
        None => l.raw(r#"","tls":null,"user_agent":""#),
    };
    l.esc(e.user_agent)
        .raw(r#"","referer":""#)
        .esc(e.referer)
        .raw("\"}\n");
}

fn tcp_json(out: &mut Vec<u8>, e: &TcpLine, stamps: &mut Stamps) {
    Line(out)
        .raw(r#"{"type":"tcp","ts":""#)
        .ts(e.start, stamps)
        .raw(r#"","client":""#)
        .addr(Some(e.client))
        .raw(r#"","port":"#)
        .num(e.port.into())
        .raw(r#","route":""#)
        .esc(e.route)
        .raw(r#"","upstream":""#)
        .addr(e.upstream)
        .raw(r#"","bytes_in":"#)
        .num(e.bytes_in)
        .raw(r#","bytes_out":"#)
        .num(e.bytes_out)
        .raw(r#","duration_ms":"#)
        .ms(e.duration)
        .raw(r#","fault":""#)
        .raw(fault_kind(e.fault))
        .raw(r#"","fault_reason":""#)
        .esc(e.fault.map_or("", |f| f.reason.as_str()))
        .raw("\"}\n");
}

fn fault_kind(fault: Option<&FaultNote>) -> &'static str {
    fault.map_or("none", |f| f.kind.as_str())
}

fn proto(v: hyper::Version) -> &'static str {
    match v {
        hyper::Version::HTTP_09 => "HTTP/0.9",
        hyper::Version::HTTP_10 => "HTTP/1.0",
        hyper::Version::HTTP_2 => "HTTP/2.0",
        hyper::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

// === combined ===

/// A value inside `"..."` as nginx escapes it: `"`, `\\` and bytes outside printable ASCII
/// as `\\xHH`; an empty value as `-`.
fn quoted(out: &mut Vec<u8>, value: &str) {
    if value.is_empty() {
        out.push(b'-');
        return;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.extend_from_slice(b"\\x");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.push(b);
        }
    }
}

/// `addr - - [time] "` for both kinds of line.
fn combined_start(out: &mut Vec<u8>, client: SocketAddr, start: SystemTime, stamps: &mut Stamps) {
    stamps.at(start);
    match client {
        SocketAddr::V4(a) => {
            let mut text = [0u8; 15];
            let n = put_ipv4(&mut text, *a.ip());
            out.extend_from_slice(&text[..n]);
        }
        SocketAddr::V6(a) => out.extend_from_slice(a.ip().to_string().as_bytes()),
    }
    out.extend_from_slice(b" - - [");
    out.extend_from_slice(stamps.clf.as_bytes());
    out.extend_from_slice(b"] \"");
}

fn combined_http(out: &mut Vec<u8>, e: &HttpLine, stamps: &mut Stamps) {
    combined_start(out, e.client, e.start, stamps);
    quoted(out, e.method);
    out.push(b' ');
    quoted(out, e.path);
    out.push(b' ');
    out.extend_from_slice(proto(e.version).as_bytes());
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(b"\" ");
    out.extend_from_slice(digits.format(e.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(digits.format(e.bytes_out).as_bytes());
    out.extend_from_slice(b" \"");
    quoted(out, e.referer);
    out.extend_from_slice(b"\" \"");
    quoted(out, e.user_agent);
    out.extend_from_slice(b"\"\n");
}

/// A TCP connection in the same shape, as nginx's stream module reports status: 200 done,
/// 400 the client's fault, 502 the backend's, 500 Drover's. The request is `TCP port`.
fn combined_tcp(out: &mut Vec<u8>, e: &TcpLine, stamps: &mut Stamps) {
    let status: u16 = match e.fault.map(|f| f.kind) {
        None => 200,
        Some(Fault::Client) => 400,
        Some(Fault::Upstream) => 502,
        Some(Fault::Drover) => 500,
    };
    combined_start(out, e.client, e.start, stamps);
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(b"TCP ");
    out.extend_from_slice(digits.format(e.port).as_bytes());
    out.extend_from_slice(b"\" ");
    out.extend_from_slice(digits.format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(digits.format(e.bytes_out).as_bytes());
    out.extend_from_slice(b" \"-\" \"-\"\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis)
    }

    fn upstream_fault() -> FaultNote {
        FaultNote {
            kind: Fault::Upstream,
            reason: "connect refused".into(),
        }
    }

    fn tls() -> TlsNote {
        TlsNote {
            version: "TLSv1.3",
            sni: Some("web.example.com".into()),
        }
    }

    fn http<'a>(fault: Option<&'a FaultNote>, tls: Option<&'a TlsNote>) -> HttpLine<'a> {
        HttpLine {
            // 2026-12-07T13:40:18.250Z
            start: at(1_796_650_818, 250),
            client: "127.0.0.9:40000".parse().unwrap(),
            method: "GET",
            host: "web.example.com",
            path: "/a?b=\"c\"\u{1}",
            version: hyper::Version::HTTP_11,
            status: 502,
            upstream_status: None,
            grpc_status: Some(14),
            bytes_in: 0,
            bytes_out: 123,
            duration: Duration::from_micros(12_345),
            upstream_time: Some(Duration::from_micros(7)),
            route: "/shop/web:10001",
            upstream: Some("127.0.0.2:31000".parse().unwrap()),
            retries: 1,
            fault,
            tls,
            user_agent: "curl/8.0",
            referer: "",
        }
    }

    fn text(out: Vec<u8>) -> String {
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn http_json_carries_every_field() {
        let (fault, tls) = (upstream_fault(), tls());
        let mut out = Vec::new();
        http_line(
            &mut out,
            &http(Some(&fault), Some(&tls)),
            Format::Json,
            &mut Stamps::default(),
        );
        let line = text(out);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "http");
        assert_eq!(v["ts"], "2026-12-07T13:40:18.250Z");
        assert_eq!(v["client"], "127.0.0.9:40000");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], "/a?b=\"c\"\u{1}", "escaped, then read back");
        assert_eq!(v["proto"], "HTTP/1.1");
        assert_eq!(v["status"], 502);
        assert!(v["upstream_status"].is_null());
        assert_eq!(v["grpc_status"], 14);
        assert_eq!(v["bytes_out"], 123);
        assert_eq!(v["duration_ms"], 12.345);
        assert_eq!(v["upstream_ms"], 0.007);
        assert_eq!(v["route"], "/shop/web:10001");
        assert_eq!(v["upstream"], "127.0.0.2:31000");
        assert_eq!(v["retries"], 1);
        assert_eq!(v["fault"], "upstream");
        assert_eq!(v["fault_reason"], "connect refused");
        assert_eq!(v["tls"]["version"], "TLSv1.3");
        assert_eq!(v["tls"]["sni"], "web.example.com");
        assert_eq!(v["user_agent"], "curl/8.0");
        assert_eq!(v["referer"], "");
        // Without TLS and fault.
        let mut out = Vec::new();
        http_line(
            &mut out,
            &http(None, None),
            Format::Json,
            &mut Stamps::default(),
        );
        let v: serde_json::Value = serde_json::from_str(&text(out)).unwrap();
        assert!(v["tls"].is_null());
        assert_eq!(v["fault"], "none");
        assert_eq!(v["fault_reason"], "");
    }

    #[test]
    fn combined_matches_nginx() {
        let mut e = http(None, None);
        e.status = 200;
        e.path = "/a?b=\"c\"";
        let mut out = Vec::new();
        http_line(&mut out, &e, Format::Combined, &mut Stamps::default());
        assert_eq!(
            text(out),
            "127.0.0.9 - - [07/Dec/2026:13:40:18 +0000] \"GET /a?b=\\x22c\\x22 HTTP/1.1\" 200 123 \"-\" \"curl/8.0\"\n"
        );
    }

    #[test]
    fn tcp_lines_in_both_formats() {
        let fault = FaultNote {
            kind: Fault::Upstream,
            reason: "no backend".into(),
        };
        let e = TcpLine {
            start: at(1_796_650_818, 0),
            client: "[::1]:5000".parse().unwrap(),
            port: 10010,
            route: "/db:10010",
            upstream: None,
            bytes_in: 10,
            bytes_out: 20,
            duration: Duration::from_millis(5),
            fault: Some(&fault),
        };
        let mut stamps = Stamps::default();
        let mut out = Vec::new();
        tcp_line(&mut out, &e, Format::Json, &mut stamps);
        let v: serde_json::Value = serde_json::from_str(&text(out)).unwrap();
        assert_eq!(v["type"], "tcp");
        assert_eq!(v["client"], "[::1]:5000");
        assert_eq!(v["port"], 10010);
        assert_eq!(v["upstream"], "");
        assert_eq!(v["bytes_in"], 10);
        assert_eq!(v["fault"], "upstream");
        let mut out = Vec::new();
        tcp_line(&mut out, &e, Format::Combined, &mut stamps);
        assert_eq!(
            text(out),
            "::1 - - [07/Dec/2026:13:40:18 +0000] \"TCP 10010\" 502 20 \"-\" \"-\"\n"
        );
    }
}
