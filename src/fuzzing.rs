//! Fuzz entry points: one `pub fn <target>(data: &[u8])` per parser that reads bytes from
//! outside. Each feeds the bytes to the function production uses on them (not a copy) and
//! asserts cheap invariants; a panic is a finding.
//!
//! Two callers, kept in step: the cargo-fuzz targets in `fuzz/fuzz_targets/` (one line each,
//! run under libFuzzer) and `tests/it/fuzz_corpus.rs`, which replays every file of
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` through the same function in a
//! normal `cargo test`. See `fuzz/README.md`.
//!
//! Not an API: hidden from the docs and free to change with the parsers.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};

use crate::catalog::{self, CheckKind, RawApp, Selection};
use crate::config::Groups;
use crate::proxy::proxy_protocol::{self, ProxyError, ProxyHeader};
use crate::source::marathon::{apps, events};
use crate::source::mesos::state;
use crate::source::mesos::{recordio, v1};

// === PROXY protocol ===

/// `proxy::proxy_protocol`: `parse` on the bytes, and `read_header` reading them off a stream
/// whole and one byte per read (what a slow client sends). A parsed header must re-parse alone
/// to the same result, and the stream reader must agree with `parse` and never read a byte
/// past the header.
pub fn proxy_protocol(data: &[u8]) {
    let parsed = proxy_protocol::parse(data);
    if let Ok(Some((header, consumed))) = &parsed {
        let consumed = *consumed;
        assert!(
            consumed <= data.len(),
            "consumed {consumed} of {}",
            data.len()
        );
        let max = match header.version {
            1 => proxy_protocol::V1_MAX_LEN,
            2 => proxy_protocol::V2_FIXED_LEN + proxy_protocol::V2_MAX_BLOCK_LEN,
            v => panic!("version {v}"),
        };
        assert!(
            consumed <= max,
            "v{} header of {consumed} bytes",
            header.version
        );
        assert_eq!(
            header.source.is_some(),
            header.destination.is_some(),
            "{header:?}"
        );
        assert_eq!(
            proxy_protocol::parse(&data[..consumed]),
            Ok(Some((header.clone(), consumed))),
            "the header alone parses differently"
        );
    }
    for chunk in [usize::MAX, 1] {
        let (read, rest) = read_header_from(data, chunk);
        match (&parsed, read) {
            (Ok(Some((header, consumed))), Ok(got)) => {
                assert_eq!(&got, header, "chunk {chunk}");
                assert_eq!(
                    rest,
                    &data[*consumed..],
                    "chunk {chunk}: read past the header"
                );
            }
            // Every prefix of a header that is still incomplete must also ask for more.
            (Ok(None), Err(ProxyError::Truncated { got })) => {
                assert_eq!(got, data.len(), "chunk {chunk}")
            }
            (Err(_), Err(_)) => {}
            (expected, got) => {
                panic!("chunk {chunk}: parse says {expected:?}, read_header {got:?}")
            }
        }
    }
}

/// Runs `read_header` on `data` served `chunk` bytes per read; returns the unread rest.
fn read_header_from(data: &[u8], chunk: usize) -> (Result<ProxyHeader, ProxyError>, &[u8]) {
    thread_local! {
        // `read_header` needs a timer; one runtime per thread, not per input.
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime");
    }
    let mut stream = Chunked { data, chunk };
    let result = RUNTIME.with(|rt| {
        rt.block_on(proxy_protocol::read_header(
            &mut stream,
            Duration::from_secs(3600),
        ))
    });
    (result, stream.data)
}

/// A stream that never blocks and hands out at most `chunk` bytes per read.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.data.len().min(self.chunk).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

// === Marathon event stream ===

/// A small frame limit, so short inputs reach the oversized-frame paths too.
const SSE_SMALL_LIMIT: usize = 64;

/// `source::marathon::events`: the bytes as one event stream, fed as the event loop feeds
/// them (`SseParser::push`, then `decode` and `effect` on every frame). Where a stream is cut
/// into chunks must not change what comes out: whole, one byte at a time and in three pieces
/// give the same frames, errors and stats, with the default limit and a small one.
pub fn marathon_events(data: &[u8]) {
    for limit in [events::MAX_FRAME_BYTES, SSE_SMALL_LIMIT] {
        let whole = sse_feed(limit, [data]);
        let third = data.len() / 3;
        let pieces = [&data[..third], &data[third..2 * third], &data[2 * third..]];
        assert_eq!(
            sse_feed(limit, pieces),
            whole,
            "limit {limit}, three pieces"
        );
        assert_eq!(
            sse_feed(limit, data.chunks(1)),
            whole,
            "limit {limit}, 1-byte chunks"
        );
        for frame in whole.0.into_iter().flatten() {
            // Lines end at CR or LF, so neither survives into a field; data lines join by LF.
            assert!(!frame.data.contains('\r'), "{frame:?}");
            if let Some(event) = &frame.event {
                assert!(!event.contains(['\r', '\n']), "{frame:?}");
            }
            let Ok(event) = events::decode(&frame) else {
                continue;
            };
            let effect = events::effect(&event);
            if let events::Effect::KillTask { .. } = effect {
                let events::Event::StatusUpdate { task_status, .. } = &event else {
                    panic!("{effect:?} from {event:?}");
                };
                assert!(events::is_kill_status(task_status), "{event:?}");
            }
            if let events::Event::Other(name) = &event {
                assert!(!events::EVENT_TYPES.contains(&name.as_str()), "{event:?}");
            }
        }
    }
}

type SseOutput = (
    Vec<Result<events::SseFrame, events::SseError>>,
    events::SseStats,
    bool,
);

/// Pushes `chunks` into a fresh parser; returns what it gave, its stats and whether a frame
/// is pending. The buffer never exceeds the limit.
fn sse_feed<'a>(limit: usize, chunks: impl IntoIterator<Item = &'a [u8]>) -> SseOutput {
    let mut parser = events::SseParser::with_limit(limit);
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend(parser.push(chunk));
        assert!(
            parser.buffered() <= limit,
            "{} > {limit}",
            parser.buffered()
        );
    }
    (out, parser.stats(), parser.has_pending())
}

// === Marathon apps ===

/// `source::marathon::apps`: the bytes as a `/v2/apps` body through `decode`, then what the
/// sync loop does with it (`to_raw_apps`, twice so the health memory is used) and the catalog
/// build the control plane runs on the result (label parsing).
pub fn marathon_apps(data: &[u8]) {
    let Ok(decoded) = apps::decode(data) else {
        return;
    };
    let mut memory = apps::HealthMemory::new();
    for opts in [
        apps::ConvertOptions::default(),
        apps::ConvertOptions {
            health_check: false,
            active_checks: false,
            min_ip_per_task_port: 20000,
            max_ip_per_task_port: 20002,
        },
    ] {
        let (raw, _problems) = apps::to_raw_apps(&decoded, &mut memory, &opts);
        // Deployment groups merge apps; nothing adds one.
        assert!(
            raw.len() <= decoded.len(),
            "{} apps from {}",
            raw.len(),
            decoded.len()
        );
        build_catalog(&raw);
    }
}

/// Both catalog builds the control plane runs; every service comes from a given app.
fn build_catalog(raw: &[RawApp]) {
    for strict in [false, true] {
        let built = catalog::build_selected(
            raw,
            &Selection {
                groups: Groups::all(),
                strict,
            },
        );
        for service in &built.services {
            assert!(
                raw.iter().any(|a| a.id == service.app_id),
                "service of unknown app {}",
                service.app_id
            );
        }
    }
}

// === Mesos state ===

/// `source::mesos::state`: the bytes as a `/master/state` body through `decode`, then the
/// string formats inside it read where they are used (pids, port ranges). A decoded state
/// names a trimmed, non-empty leader; a pid that parses prints back to itself.
pub fn mesos_state(data: &[u8]) {
    let Ok(decoded) = state::decode(data) else {
        return;
    };
    assert!(!decoded.leader.is_empty(), "empty leader");
    assert_eq!(decoded.leader.trim(), decoded.leader);
    assert_eq!(decoded.pid.trim(), decoded.pid);
    let pids = [&decoded.leader, &decoded.pid]
        .into_iter()
        .chain(decoded.frameworks.iter().filter_map(|f| f.pid.as_ref()))
        .chain(decoded.agents.iter().map(|a| &a.pid));
    for text in pids {
        pid_round_trips(text);
    }
    for task in decoded.frameworks.iter().flat_map(|f| &f.tasks) {
        let _ = state::parse_port_ranges(&task.resources.ports);
    }
}

fn pid_round_trips(text: &str) {
    let Ok(pid) = state::Pid::parse(text) else {
        return;
    };
    assert!(!pid.host.is_empty(), "{text:?} -> {pid:?}");
    let printed = pid.to_string();
    assert_eq!(
        state::Pid::parse(&printed).as_ref(),
        Ok(&pid),
        "{text:?} printed as {printed:?}"
    );
}

// === catalog file ===

/// `source::file`: the bytes as a catalog file (`load` reads it as UTF-8, then `parse`), then
/// the catalog build. A parsed file re-validates: its apps written back as a catalog file parse
/// to the same apps, with no problem.
pub fn catalog_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // `load` refuses it: read_to_string wants UTF-8
    };
    let Ok(snapshot) = crate::source::file::parse(text) else {
        return;
    };
    let apps: Vec<crate::catalog::RawApp> = snapshot.apps.iter().map(|a| (**a).clone()).collect();
    let written = write_catalog(&apps);
    let again = crate::source::file::parse(&written)
        .unwrap_or_else(|e| panic!("written back, the catalog is refused: {e}\n{written}"));
    assert_eq!(again.problems, [], "written back:\n{written}");
    assert_eq!(again.apps, snapshot.apps, "written back:\n{written}");
    build_catalog(&apps);
}

/// Writes apps in the catalog file format, every field explicit.
fn write_catalog(apps: &[RawApp]) -> String {
    #[derive(serde::Serialize)]
    struct File<'a> {
        app: Vec<App<'a>>,
    }
    #[derive(serde::Serialize)]
    struct App<'a> {
        id: &'a str,
        labels: &'a BTreeMap<String, String>,
        ports: &'a [u16],
        tasks: Vec<Task<'a>>,
        health_checks: Vec<Check<'a>>,
    }
    #[derive(serde::Serialize)]
    struct Task<'a> {
        id: &'a str,
        host: &'a str,
        ports: &'a [u16],
        state: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Check<'a> {
        port_index: u64,
        protocol: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<&'a str>,
        interval: String,
        timeout: String,
        fall: u32,
        rise: u32,
    }
    // humantime reads "1s 5ns": exact, whatever the duration.
    let duration = |d: Duration| format!("{}s {}ns", d.as_secs(), d.subsec_nanos());
    let file = File {
        app: apps
            .iter()
            .map(|a| App {
                id: &a.id,
                labels: &a.labels,
                ports: &a.ports,
                tasks: a
                    .tasks
                    .iter()
                    .map(|t| Task {
                        id: &t.id,
                        host: &t.host,
                        ports: &t.ports,
                        state: &t.state,
                    })
                    .collect(),
                health_checks: a
                    .checks
                    .iter()
                    .map(|c| Check {
                        port_index: c.index as u64,
                        protocol: match c.check.kind {
                            CheckKind::Http { .. } => "http",
                            CheckKind::Tcp => "tcp",
                        },
                        path: match &c.check.kind {
                            CheckKind::Http { path } => Some(path),
                            CheckKind::Tcp => None,
                        },
                        interval: duration(c.check.interval),
                        timeout: duration(c.check.timeout),
                        fall: c.check.fall,
                        rise: c.check.rise,
                    })
                    .collect(),
            })
            .collect(),
    };
    toml::to_string(&file).expect("apps serialize as TOML")
}

// === HTTP/1 request guard ===

/// `proxy::h1_scan`, the scanner the HTTP/1 guard runs over every byte a client sends. The
/// first byte picks the limits, the underscore policy and a read size; the rest is the
/// stream. However the stream is split into reads, the same bytes must pass and it must
/// end the same way (refused with the same status, broken, or neither). The first head the
/// scanner passes must be one that httparse (hyper's head parser) reads as complete at the
/// very same length: the scanner never lets through a head hyper would frame differently.
pub fn http_guard(data: &[u8]) {
    use crate::config::UnderscoreHeaders;
    use crate::proxy::h1_scan::{Limits, Scanner};

    let Some((&knobs, stream)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_head: 64 + usize::from(knobs & 0x0f) * 64,
        max_request_line: 256,
        max_headers: 8 + usize::from((knobs >> 4) & 3) * 8,
        underscores: match knobs >> 6 {
            0 => UnderscoreHeaders::Pass,
            1 => UnderscoreHeaders::Drop,
            _ => UnderscoreHeaders::Reject,
        },
    };
    let step = 1 + usize::from(knobs) % 13;

    let mut whole = Scanner::new(limits);
    let passed = whole.process(stream);
    assert!(passed <= stream.len());

    let mut pieces = Scanner::new(limits);
    let (mut passed_in_pieces, mut held) = (0, Vec::new());
    for piece in stream.chunks(step) {
        held.extend_from_slice(piece);
        let n = pieces.process(&held);
        passed_in_pieces += n;
        held.drain(..n);
        if pieces.rejection().is_some() || pieces.is_broken() {
            break;
        }
    }
    assert_eq!(passed, passed_in_pieces, "split into reads of {step}");
    assert_eq!(whole.rejection(), pieces.rejection());
    assert_eq!(whole.is_broken(), pieces.is_broken());
    assert_eq!(whole.heads(), pieces.heads());

    if whole.heads() > 0 {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut fields);
        let len = match request.parse(stream) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!("a passed head that httparse reads as {other:?}"),
        };
        assert!(len <= passed);
        let mut alone = Scanner::new(limits);
        assert_eq!(alone.process(&stream[..len]), len, "the head alone");
        assert_eq!(alone.heads(), 1);
    }
}

// === DNS ===

/// `dns::handler` and `dns::fast`: a packet from outside, answered over UDP (fast path and
/// full path) and TCP from a small zone. Any reply must be a DNS response to the query
/// (QR set, its ID); whatever the fast path answers, the full path answers with the same
/// header fields and counts, and the fast path again (from its cache) too.
pub fn dns_packet(data: &[u8]) {
    use crate::dns::handler::Outcome;
    use crate::dns::{FastPath, FastQuery, Transport};

    let handler = dns_handler();
    let _ = FastQuery::parse(data);
    let mut fast = Vec::new();
    let mut path = FastPath::default();
    path.start_batch(handler);
    let answered_fast = path.answer(handler, data, &mut fast);
    // Asked again, a question answered with records comes from the cache: same header.
    let mut again = Vec::new();
    assert_eq!(path.answer(handler, data, &mut again), answered_fast);
    assert_eq!(fast.get(..12), again.get(..12), "the cached answer differs");
    path.finish_batch(handler);
    let full = handler.answer_packet(data, Transport::Udp);
    for reply in [
        Some(&full),
        Some(&handler.answer_packet(data, Transport::Tcp)),
    ]
    .into_iter()
    .flatten()
    {
        if let Outcome::Reply(bytes) = reply {
            assert!(
                bytes.len() >= 12 && data.len() >= 2,
                "a reply without a header"
            );
            assert_eq!(bytes[..2], data[..2], "the reply's ID");
            assert!(bytes[2] & 0x80 != 0, "a reply that is not a response");
        }
    }
    if answered_fast {
        let Outcome::Reply(slow) = full else {
            panic!("the fast path answered what the full path does not");
        };
        // ID and flags (rcode included), then the four counts.
        assert_eq!(fast[..12], slow[..12], "fast and full answers differ");
    }
}

/// One handler for every input: a zone with A, AAAA and SRV records under `mesos`.
fn dns_handler() -> &'static crate::dns::handler::DnsHandler {
    use std::sync::{Arc, OnceLock};

    use crate::dns::handler::DnsHandler;
    use crate::dns::records::RecordSets;
    use crate::dns::server::DnsServerSettings;
    use crate::dns::zone::{Zone, ZoneOptions};
    use crate::handles::ZoneWriter;
    use crate::metrics::Metrics;

    static HANDLER: OnceLock<DnsHandler> = OnceLock::new();
    HANDLER.get_or_init(|| {
        let mut sets = RecordSets::default();
        for (i, name) in ["web.marathon.mesos.", "db.marathon.mesos.", "a-b.x.mesos."]
            .into_iter()
            .enumerate()
        {
            let i = i as u8;
            let v4 = std::net::Ipv4Addr::new(10, 0, 0, i + 1).into();
            let v6 = std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(i) + 1).into();
            let target = sets.add_ips(name, &[v4, v6]);
            if let Some(target) = target {
                let srv = format!(
                    "_{}._tcp.{}",
                    name.split('.').next().unwrap_or("x"),
                    "marathon.mesos."
                );
                sets.add_srv(&srv, target, 31000 + u16::from(i));
            }
        }
        let mut options = ZoneOptions::mesos_dns_defaults("mesos");
        options.soa.mname = "ns1.mesos.".into();
        let zone = Zone::from_record_sets(sets, &options, 1);
        let writer = ZoneWriter::new();
        writer.store(Some(Arc::new(zone)));
        let metrics = Metrics::new(prometheus::Registry::new());
        DnsHandler::new(
            &DnsServerSettings::new("mesos", Vec::new()),
            writer.reader(),
            &metrics,
        )
    })
}

// === Mesos operator API stream ===

/// The limit the target gives its RecordIO decoder: small, so oversized lengths are hit.
const STREAM_RECORD_LIMIT: usize = 1 << 16;

/// `mesos::recordio::Decoder` on the bytes whole and one byte per push (the same records
/// and the same error, if any), then each record through `v1::decode` and
/// `Model::from_subscribed` / `Model::apply`, as the stream applies them: a model is never
/// left with more tasks than were added.
pub fn mesos_stream(data: &[u8]) {
    let whole = stream_records(std::iter::once(data));
    let bytewise = stream_records(data.chunks(1));
    assert_eq!(whole, bytewise, "chunking changed the records");
    let pids = v1::Pids::new();
    let mut model: Option<v1::Model> = None;
    let mut added = 0usize;
    for record in whole.0 {
        let Ok(event) = v1::decode(&record) else {
            continue;
        };
        if event.kind == "SUBSCRIBED" {
            assert!(event.heartbeat_secs() > 0.0 && event.heartbeat_secs().is_finite());
            if let Ok(m) = v1::Model::from_subscribed(&event, "master@127.0.0.1:5050", &pids) {
                added = m.task_count();
                model = Some(m);
            }
        } else if let Some(m) = model.as_mut() {
            if event.kind == "TASK_ADDED" {
                added += 1;
            }
            let _ = m.apply(&event, &pids);
            assert!(m.task_count() <= added, "tasks out of nowhere");
        }
    }
}

/// Every record the chunks frame, and the framing error that stopped them, if any.
fn stream_records<'a>(
    chunks: impl Iterator<Item = &'a [u8]>,
) -> (Vec<Vec<u8>>, Option<recordio::RecordIoError>) {
    let mut decoder = recordio::Decoder::new(STREAM_RECORD_LIMIT);
    let mut records = Vec::new();
    for chunk in chunks {
        decoder.push(chunk);
        loop {
            match decoder.next_record() {
                Ok(Some(record)) => records.push(record.to_vec()),
                Ok(None) => break,
                Err(e) => return (records, Some(e)),
            }
        }
    }
    (records, None)
}
