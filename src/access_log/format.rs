//! What one access-log line says, and its two spellings: one JSON object a line (the
//! default, for log shippers) and nginx's `combined` format (for the tools that already
//! parse nginx's logs). Formatting happens on the writer thread, never on the data plane.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

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

/// One HTTP request as the access log reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpEntry {
    /// When the request head had arrived.
    pub start: SystemTime,
    /// The client (the PROXY-protocol client when that is trusted).
    pub client: SocketAddr,
    pub method: hyper::Method,
    pub host: String,
    /// Path and query as the client sent them.
    pub path: String,
    pub version: hyper::Version,
    /// Sent to the client.
    pub status: u16,
    /// The backend's, when one answered.
    pub upstream_status: Option<u16>,
    /// Request body bytes read from the client.
    pub bytes_in: u64,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
    /// Head arrived to the response's last byte sent (or the exchange's end).
    pub duration: Duration,
    /// Request sent to the backend's response head.
    pub upstream_time: Option<Duration>,
    /// The app id and service port (`/shop/web:10001`), or the alias's host; empty when
    /// nothing matched.
    pub route: Arc<str>,
    pub upstream: Option<SocketAddr>,
    pub retries: u32,
    pub fault: Option<FaultNote>,
    pub tls: Option<TlsNote>,
    pub user_agent: Option<String>,
    pub referer: Option<String>,
}

/// One TCP connection as the access log reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpEntry {
    pub start: SystemTime,
    pub client: SocketAddr,
    /// The service port the client connected to.
    pub port: u16,
    pub route: Arc<str>,
    pub upstream: Option<SocketAddr>,
    /// Bytes from the client to the backend.
    pub bytes_in: u64,
    /// Bytes from the backend to the client.
    pub bytes_out: u64,
    pub duration: Duration,
    pub fault: Option<FaultNote>,
}

/// A line to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Http(Box<HttpEntry>),
    Tcp(Box<TcpEntry>),
}

/// Appends `entry` in `format` to `out`, newline included.
pub fn write_line(out: &mut Vec<u8>, entry: &Entry, format: Format) {
    match (format, entry) {
        (Format::Json, Entry::Http(e)) => json_line(out, &http_json(e)),
        (Format::Json, Entry::Tcp(e)) => json_line(out, &tcp_json(e)),
        (Format::Combined, Entry::Http(e)) => combined_http(out, e),
        (Format::Combined, Entry::Tcp(e)) => combined_tcp(out, e),
    }
}

fn json_line(out: &mut Vec<u8>, value: &impl Serialize) {
    // Serializing plain structs of strings and numbers cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    out.push(b'\n');
}

#[derive(Serialize)]
struct HttpJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    ts: String,
    client: String,
    method: &'a str,
    host: &'a str,
    path: &'a str,
    proto: &'static str,
    status: u16,
    upstream_status: Option<u16>,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: f64,
    upstream_ms: Option<f64>,
    route: &'a str,
    upstream: String,
    retries: u32,
    fault: &'static str,
    fault_reason: &'a str,
    tls: Option<TlsJson<'a>>,
    user_agent: &'a str,
    referer: &'a str,
}

#[derive(Serialize)]
struct TlsJson<'a> {
    version: &'static str,
    sni: &'a str,
}

#[derive(Serialize)]
struct TcpJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    ts: String,
    client: String,
    port: u16,
    route: &'a str,
    upstream: String,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: f64,
    fault: &'static str,
    fault_reason: &'a str,
}

fn http_json(e: &HttpEntry) -> HttpJson<'_> {
    HttpJson {
        kind: "http",
        ts: timestamp(e.start),
        client: e.client.to_string(),
        method: e.method.as_str(),
        host: &e.host,
        path: &e.path,
        proto: proto(e.version),
        status: e.status,
        upstream_status: e.upstream_status,
        bytes_in: e.bytes_in,
        bytes_out: e.bytes_out,
        duration_ms: millis(e.duration),
        upstream_ms: e.upstream_time.map(millis),
        route: &e.route,
        upstream: e.upstream.map_or_else(String::new, |a| a.to_string()),
        retries: e.retries,
        fault: fault_kind(&e.fault),
        fault_reason: e.fault.as_ref().map_or("", |f| f.reason.as_str()),
        tls: e.tls.as_ref().map(|t| TlsJson {
            version: t.version,
            sni: t.sni.as_deref().unwrap_or(""),
        }),
        user_agent: e.user_agent.as_deref().unwrap_or(""),
        referer: e.referer.as_deref().unwrap_or(""),
    }
}

fn tcp_json(e: &TcpEntry) -> TcpJson<'_> {
    TcpJson {
        kind: "tcp",
        ts: timestamp(e.start),
        client: e.client.to_string(),
        port: e.port,
        route: &e.route,
        upstream: e.upstream.map_or_else(String::new, |a| a.to_string()),
        bytes_in: e.bytes_in,
        bytes_out: e.bytes_out,
        duration_ms: millis(e.duration),
        fault: fault_kind(&e.fault),
        fault_reason: e.fault.as_ref().map_or("", |f| f.reason.as_str()),
    }
}

fn fault_kind(fault: &Option<FaultNote>) -> &'static str {
    fault.as_ref().map_or("none", |f| f.kind.as_str())
}

/// Milliseconds with microsecond precision: `12.345`.
fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// RFC 3339, UTC, milliseconds: `2026-12-07T13:40:18.123Z`.
fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
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

/// nginx's `$time_local` in UTC: `07/Dec/2026:13:40:18 +0000`.
fn time_local(t: SystemTime) -> String {
    // humantime gives `2026-12-07T13:40:18Z`: take its parts.
    let s = humantime::format_rfc3339_seconds(t).to_string();
    let (year, month, day, time) = (&s[0..4], &s[5..7], &s[8..10], &s[11..19]);
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

/// A value inside `"..."` as nginx escapes it: `"`, `\` and bytes outside printable ASCII
/// as `\xHH`; an empty value as `-`.
fn quoted(out: &mut String, value: &str) {
    if value.is_empty() {
        out.push('-');
        return;
    }
    for b in value.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b as char);
        }
    }
}

fn combined_http(out: &mut Vec<u8>, e: &HttpEntry) {
    let mut line = String::with_capacity(160);
    let _ = write!(line, "{} - - [{}] \"", e.client.ip(), time_local(e.start));
    let request = format!("{} {} {}", e.method, e.path, proto(e.version));
    quoted(&mut line, &request);
    let _ = write!(line, "\" {} {} \"", e.status, e.bytes_out);
    quoted(&mut line, e.referer.as_deref().unwrap_or(""));
    line.push_str("\" \"");
    quoted(&mut line, e.user_agent.as_deref().unwrap_or(""));
    line.push_str("\"\n");
    out.extend_from_slice(line.as_bytes());
}

/// A TCP connection in the same shape, as nginx's stream module reports status: 200 done,
/// 400 the client's fault, 502 the backend's, 500 Drover's. The request is `TCP port`.
fn combined_tcp(out: &mut Vec<u8>, e: &TcpEntry) {
    let status = match e.fault.as_ref().map(|f| f.kind) {
        None => 200,
        Some(Fault::Client) => 400,
        Some(Fault::Upstream) => 502,
        Some(Fault::Drover) => 500,
    };
    let line = format!(
        "{} - - [{}] \"TCP {}\" {status} {} \"-\" \"-\"\n",
        e.client.ip(),
        time_local(e.start),
        e.port,
        e.bytes_out
    );
    out.extend_from_slice(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis)
    }

    fn http_entry() -> HttpEntry {
        HttpEntry {
            // 2026-12-07T13:40:18.250Z
            start: at(1_796_650_818, 250),
            client: "127.0.0.9:40000".parse().unwrap(),
            method: hyper::Method::GET,
            host: "web.example.com".into(),
            path: "/a?b=\"c\"".into(),
            version: hyper::Version::HTTP_11,
            status: 502,
            upstream_status: None,
            bytes_in: 0,
            bytes_out: 123,
            duration: Duration::from_micros(12_345),
            upstream_time: None,
            route: "/shop/web:10001".into(),
            upstream: Some("127.0.0.2:31000".parse().unwrap()),
            retries: 1,
            fault: Some(FaultNote {
                kind: Fault::Upstream,
                reason: "connect refused".into(),
            }),
            tls: Some(TlsNote {
                version: "TLSv1.3",
                sni: Some("web.example.com".into()),
            }),
            user_agent: Some("curl/8.0".into()),
            referer: None,
        }
    }

    fn line(entry: &Entry, format: Format) -> String {
        let mut out = Vec::new();
        write_line(&mut out, entry, format);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn http_json_carries_every_field() {
        let text = line(&Entry::Http(Box::new(http_entry())), Format::Json);
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "http");
        assert_eq!(v["ts"], "2026-12-07T13:40:18.250Z");
        assert_eq!(v["client"], "127.0.0.9:40000");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], "/a?b=\"c\"");
        assert_eq!(v["proto"], "HTTP/1.1");
        assert_eq!(v["status"], 502);
        assert!(v["upstream_status"].is_null());
        assert_eq!(v["bytes_out"], 123);
        assert_eq!(v["duration_ms"], 12.345);
        assert!(v["upstream_ms"].is_null());
        assert_eq!(v["route"], "/shop/web:10001");
        assert_eq!(v["upstream"], "127.0.0.2:31000");
        assert_eq!(v["retries"], 1);
        assert_eq!(v["fault"], "upstream");
        assert_eq!(v["fault_reason"], "connect refused");
        assert_eq!(v["tls"]["version"], "TLSv1.3");
        assert_eq!(v["tls"]["sni"], "web.example.com");
        assert_eq!(v["user_agent"], "curl/8.0");
        assert_eq!(v["referer"], "");
    }

    #[test]
    fn combined_matches_nginx() {
        let mut e = http_entry();
        e.status = 200;
        e.fault = None;
        let text = line(&Entry::Http(Box::new(e)), Format::Combined);
        assert_eq!(
            text,
            "127.0.0.9 - - [07/Dec/2026:13:40:18 +0000] \"GET /a?b=\\x22c\\x22 HTTP/1.1\" 200 123 \"-\" \"curl/8.0\"\n"
        );
    }

    #[test]
    fn tcp_lines_in_both_formats() {
        let e = TcpEntry {
            start: at(1_796_650_818, 0),
            client: "[::1]:5000".parse().unwrap(),
            port: 10010,
            route: "/db:10010".into(),
            upstream: None,
            bytes_in: 10,
            bytes_out: 20,
            duration: Duration::from_millis(5),
            fault: Some(FaultNote {
                kind: Fault::Upstream,
                reason: "no backend".into(),
            }),
        };
        let entry = Entry::Tcp(Box::new(e));
        let v: serde_json::Value = serde_json::from_str(&line(&entry, Format::Json)).unwrap();
        assert_eq!(v["type"], "tcp");
        assert_eq!(v["port"], 10010);
        assert_eq!(v["upstream"], "");
        assert_eq!(v["bytes_in"], 10);
        assert_eq!(v["fault"], "upstream");
        assert_eq!(
            line(&entry, Format::Combined),
            "::1 - - [07/Dec/2026:13:40:18 +0000] \"TCP 10010\" 502 20 \"-\" \"-\"\n"
        );
    }
}
