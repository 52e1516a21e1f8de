//! The DNS server against hostile and malformed input on raw sockets (RFC 1035, 6891, 7766,
//! 8906): every case over UDP and over TCP, each followed by a normal query on the same
//! socket or connection that must still be answered; the exact header of every reply (ID,
//! QR, opcode, AA, TC, RD, RA, Z, AD, CD, rcode, counts) and its OPT record. Then pipelined
//! and stalled TCP connections, the TCP connection cap, and a burst of garbage datagrams.

use std::time::Duration;

use tokio::time::Instant;

use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::support::dns::{fixture_zone, tcp_raw, udp_raw, TestDns, REPLY_WAIT};
use drover::dns::server::DnsServerSettings;

/// The hostile packets' ID; the normal query after each has another.
const ID: [u8; 2] = [0xbe, 0xef];
const NORMAL_ID: [u8; 2] = [0x0a, 0x0a];

const LEADER: &[u8] = b"\x06leader\x05mesos\x00";
const A: u16 = 1;
const IN: u16 = 1;

/// A header with ID `ID`, flag bytes and counts (QD, AN, NS, AR), then `body`.
fn packet(flags: [u8; 2], counts: [u16; 4], body: &[&[u8]]) -> Vec<u8> {
    let mut p = ID.to_vec();
    p.extend_from_slice(&flags);
    for c in counts {
        p.extend_from_slice(&c.to_be_bytes());
    }
    for part in body {
        p.extend_from_slice(part);
    }
    p
}

/// RD set, opcode QUERY.
const QUERY: [u8; 2] = [0x01, 0x00];

fn question(name: &[u8], qtype: u16, class: u16) -> Vec<u8> {
    let mut q = name.to_vec();
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&class.to_be_bytes());
    q
}

/// An OPT record: root owner, the payload size, extended RCODE 0, `version`, `flags`, then
/// the options (code, data).
fn opt(version: u8, payload: u16, flags: u16, options: &[(u16, &[u8])]) -> Vec<u8> {
    let mut rdata = Vec::new();
    for (code, data) in options {
        rdata.extend_from_slice(&code.to_be_bytes());
        rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
        rdata.extend_from_slice(data);
    }
    let mut o = vec![0, 0, 41];
    o.extend_from_slice(&payload.to_be_bytes());
    o.extend_from_slice(&[0, version]);
    o.extend_from_slice(&flags.to_be_bytes());
    o.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    o.extend_from_slice(&rdata);
    o
}

/// A valid query: `question`, RD set, opcode QUERY.
fn query(question: &[u8]) -> Vec<u8> {
    packet(QUERY, [1, 0, 0, 0], &[question])
}

/// What a reply must hold besides what every reply holds (the query's ID, opcode, RD and
/// CD; QR set; TC, RA, Z and AD clear).
#[derive(Debug, Clone, Copy)]
struct Reply {
    /// The full (extended) RCODE.
    rcode: u16,
    aa: bool,
    /// The question echoed as sent (the first `question_len` bytes after the header).
    question_len: Option<usize>,
    answers: u16,
    authority: u16,
    /// An OPT record: version 0, no options, DO clear, this payload size.
    opt: Option<u16>,
}

const FORMERR: Reply = Reply {
    rcode: 1,
    aa: false,
    question_len: None,
    answers: 0,
    authority: 0,
    opt: None,
};

fn error(rcode: u16, question: &[u8]) -> Reply {
    Reply {
        rcode,
        question_len: Some(question.len()),
        ..FORMERR
    }
}

/// NOERROR, one answer (leader.mesos. A 1.2.3.4).
fn found(question: &[u8]) -> Reply {
    Reply {
        rcode: 0,
        aa: true,
        question_len: Some(question.len()),
        answers: 1,
        authority: 0,
        opt: None,
    }
}

/// NODATA or NXDOMAIN: the SOA in authority.
fn negative(rcode: u16, question: &[u8]) -> Reply {
    Reply {
        rcode,
        aa: true,
        question_len: Some(question.len()),
        answers: 0,
        authority: 1,
        opt: None,
    }
}

fn with_opt(reply: Reply, payload: u16) -> Reply {
    Reply {
        opt: Some(payload),
        ..reply
    }
}

/// One hostile case: what is sent and what must come back (`None`: nothing).
struct Case {
    what: &'static str,
    packet: Vec<u8>,
    want: Option<Reply>,
}

fn case(what: &'static str, packet: Vec<u8>, want: Option<Reply>) -> Case {
    Case { what, packet, want }
}

fn cases() -> Vec<Case> {
    let leader = question(LEADER, A, IN);
    let name_64 = {
        let mut n = vec![64];
        n.extend_from_slice(&[b'a'; 64]);
        n.extend_from_slice(LEADER);
        n
    };
    // 4 labels of 63 and "mesos": 4 * 64 + 7 = 263 bytes on the wire.
    let name_263 = {
        let mut n = Vec::new();
        for _ in 0..4 {
            n.push(63);
            n.extend_from_slice(&[b'a'; 63]);
        }
        n.extend_from_slice(b"\x05mesos\x00");
        n
    };
    // The question name starts at offset 12.
    let pointer_to_itself = question(b"\xc0\x0c", A, IN);
    let pointer_loop = question(b"\x01a\xc0\x0c", A, IN);
    let pointer_forward = question(b"\xc0\x0e\x06leader\x05mesos\x00", A, IN);
    let pointer_out_of_bounds = question(b"\x01a\xff\xff", A, IN);
    let payload_big = 4096;
    let ours = 4096;
    vec![
        // Nothing to answer to (RFC 8906 allows silence only here).
        case("empty", vec![], None),
        case(
            "short header",
            ID.iter().chain(&[1, 0, 0]).copied().collect(),
            None,
        ),
        case(
            "11 bytes",
            packet(QUERY, [1, 0, 0, 0], &[])[..11].to_vec(),
            None,
        ),
        case(
            "response",
            packet([0x81, 0x80], [1, 0, 0, 0], &[&leader]),
            None,
        ),
        case(
            "response that does not parse",
            packet([0x81, 0x80], [1, 0, 0, 0], &[]),
            None,
        ),
        // Counts larger than the packet.
        case(
            "header only, QDCOUNT 1",
            packet(QUERY, [1, 0, 0, 0], &[]),
            Some(FORMERR),
        ),
        case(
            "ANCOUNT 3, no answers",
            packet(QUERY, [1, 3, 0, 0], &[&leader]),
            Some(FORMERR),
        ),
        case(
            "NSCOUNT 1, no records",
            packet(QUERY, [1, 0, 1, 0], &[&leader]),
            Some(FORMERR),
        ),
        case(
            "ARCOUNT 65535",
            packet(QUERY, [1, 0, 0, 0xffff], &[&leader]),
            Some(FORMERR),
        ),
        case(
            "QDCOUNT 65535",
            packet(QUERY, [0xffff, 0, 0, 0], &[&leader]),
            Some(FORMERR),
        ),
        case(
            "question cut in the name",
            query(&leader)[..16].to_vec(),
            Some(FORMERR),
        ),
        case(
            "question without class",
            query(&leader)[..leader.len() + 10].to_vec(),
            Some(FORMERR),
        ),
        // Question counts.
        case("QDCOUNT 0", packet(QUERY, [0, 0, 0, 0], &[]), Some(FORMERR)),
        case(
            "QDCOUNT 2",
            packet(QUERY, [2, 0, 0, 0], &[&leader, &leader]),
            Some(FORMERR),
        ),
        // Names.
        case(
            "label of 64",
            query(&question(&name_64, A, IN)),
            Some(FORMERR),
        ),
        case(
            "label type 0x80",
            query(&question(b"\x80abc\x00", A, IN)),
            Some(FORMERR),
        ),
        case(
            "name of 263 bytes",
            query(&question(&name_263, A, IN)),
            Some(FORMERR),
        ),
        case(
            "pointer to itself",
            query(&pointer_to_itself),
            Some(FORMERR),
        ),
        case("pointer loop", query(&pointer_loop), Some(FORMERR)),
        case("forward pointer", query(&pointer_forward), Some(FORMERR)),
        case(
            "pointer out of bounds",
            query(&pointer_out_of_bounds),
            Some(FORMERR),
        ),
        // Opcodes other than QUERY (1 IQUERY, 2 STATUS, 4 NOTIFY, 5 UPDATE, 3 and 15 unassigned).
        case(
            "opcode 1",
            packet([0x09, 0], [1, 0, 0, 0], &[&leader]),
            Some(error(4, &leader)),
        ),
        case(
            "opcode 2",
            packet([0x11, 0], [1, 0, 0, 0], &[&leader]),
            Some(error(4, &leader)),
        ),
        case(
            "opcode 3",
            packet([0x19, 0], [1, 0, 0, 0], &[&leader]),
            Some(error(4, &leader)),
        ),
        case(
            "opcode 4",
            packet([0x21, 0], [1, 0, 0, 0], &[&leader]),
            Some(error(4, &leader)),
        ),
        case(
            "opcode 5",
            packet([0x29, 0], [1, 0, 0, 0], &[&leader]),
            Some(error(4, &leader)),
        ),
        case(
            "opcode 15",
            packet([0x79, 0], [1, 0, 0, 0], &[&leader]),
            Some(error(4, &leader)),
        ),
        // Classes: IN and ANY answered, every other refused (as Knot and BIND do).
        case(
            "class ANY",
            query(&question(LEADER, A, 255)),
            Some(found(&question(LEADER, A, 255))),
        ),
        case(
            "class CH",
            query(&question(LEADER, A, 3)),
            Some(error(5, &question(LEADER, A, 3))),
        ),
        case(
            "class NONE",
            query(&question(LEADER, A, 254)),
            Some(error(5, &question(LEADER, A, 254))),
        ),
        case(
            "class 4242",
            query(&question(LEADER, A, 4242)),
            Some(error(5, &question(LEADER, A, 4242))),
        ),
        // Types: unknown ones are NODATA where the name exists, NXDOMAIN where it does not.
        case(
            "type 65280",
            query(&question(LEADER, 65280, IN)),
            Some(negative(0, &question(LEADER, 65280, IN))),
        ),
        case(
            "type 0",
            query(&question(LEADER, 0, IN)),
            Some(negative(0, &question(LEADER, 0, IN))),
        ),
        case(
            "type OPT",
            query(&question(LEADER, 41, IN)),
            Some(negative(0, &question(LEADER, 41, IN))),
        ),
        case(
            "type 65280, no such name",
            query(&question(b"\x04nope\x05mesos\x00", 65280, IN)),
            Some(negative(3, &question(b"\x04nope\x05mesos\x00", 65280, IN))),
        ),
        // Zone transfers are not offered.
        case(
            "AXFR",
            query(&question(b"\x05mesos\x00", 252, IN)),
            Some(error(5, &question(b"\x05mesos\x00", 252, IN))),
        ),
        case(
            "IXFR",
            query(&question(b"\x05mesos\x00", 251, IN)),
            Some(error(5, &question(b"\x05mesos\x00", 251, IN))),
        ),
        // Header bits a query should not set are ignored (Z, AD, TC, AA); CD is copied.
        case(
            "Z, AD, CD, TC, AA set",
            packet([0x07, 0x70], [1, 0, 0, 0], &[&leader]),
            Some(found(&leader)),
        ),
        // Trailing bytes after a complete message are ignored.
        case(
            "trailing bytes",
            packet(QUERY, [1, 0, 0, 0], &[&leader, b"junk"]),
            Some(found(&leader)),
        ),
        // EDNS (RFC 6891).
        case(
            "EDNS version 1",
            packet(
                QUERY,
                [1, 0, 0, 1],
                &[&leader, &opt(1, payload_big, 0, &[])],
            ),
            Some(with_opt(error(16, &leader), ours)),
        ),
        case(
            "EDNS version 255 with an option",
            packet(
                QUERY,
                [1, 0, 0, 1],
                &[&leader, &opt(255, 1232, 0, &[(65001, b"xy")])],
            ),
            Some(with_opt(error(16, &leader), 1232)),
        ),
        case(
            "EDNS unknown option",
            packet(
                QUERY,
                [1, 0, 0, 1],
                &[&leader, &opt(0, payload_big, 0, &[(65001, b"hello")])],
            ),
            Some(with_opt(found(&leader), ours)),
        ),
        case(
            "EDNS DO and unknown flags",
            packet(QUERY, [1, 0, 0, 1], &[&leader, &opt(0, 1232, 0xffff, &[])]),
            Some(with_opt(found(&leader), 1232)),
        ),
        case(
            "EDNS payload 100",
            packet(QUERY, [1, 0, 0, 1], &[&leader, &opt(0, 100, 0, &[])]),
            Some(with_opt(found(&leader), 512)),
        ),
        case(
            "two OPT records",
            packet(
                QUERY,
                [1, 0, 0, 2],
                &[&leader, &opt(0, 1232, 0, &[]), &opt(0, 1232, 0, &[])],
            ),
            Some(FORMERR),
        ),
        case(
            "OPT in the answer section",
            packet(QUERY, [1, 1, 0, 0], &[&leader, &opt(0, 1232, 0, &[])]),
            Some(FORMERR),
        ),
        case(
            "OPT option longer than its record",
            {
                let mut o = opt(0, 1232, 0, &[(65001, b"abcd")]);
                // The option says 200 bytes; the record holds 4.
                let n = o.len();
                o[n - 6..n - 4].copy_from_slice(&200u16.to_be_bytes());
                packet(QUERY, [1, 0, 0, 1], &[&leader, &o])
            },
            Some(FORMERR),
        ),
    ]
}

fn formerr_cases() -> u64 {
    cases()
        .iter()
        .filter(|c| c.want.is_some_and(|w| w.rcode == 1))
        .count() as u64
}

/// Checks `reply` against `want` for the query `sent`.
fn check(what: &str, sent: &[u8], reply: Option<&[u8]>, want: Option<Reply>) {
    let (reply, want) = match (reply, want) {
        (None, None) => return,
        (Some(r), None) => panic!("{what}: expected no reply, got {r:02x?}"),
        (None, Some(w)) => panic!("{what}: no reply, expected {w:?}"),
        (Some(r), Some(w)) => (r, w),
    };
    assert!(reply.len() >= 12, "{what}: short reply {reply:02x?}");
    let counts = |i: usize| u16::from_be_bytes([reply[4 + 2 * i], reply[5 + 2 * i]]);
    let (f0, f1) = (reply[2], reply[3]);
    let header = format!("{what}: reply {:02x?}", &reply[..12]);
    assert_eq!(reply[..2], sent[..2], "{header}: ID");
    assert_eq!(f0 & 0x80, 0x80, "{header}: QR");
    assert_eq!(f0 & 0x78, sent[2] & 0x78, "{header}: opcode");
    assert_eq!(f0 & 0x04 != 0, want.aa, "{header}: AA");
    assert_eq!(f0 & 0x02, 0, "{header}: TC");
    assert_eq!(f0 & 0x01, sent[2] & 0x01, "{header}: RD");
    assert_eq!(f1 & 0x80, 0, "{header}: RA");
    assert_eq!(f1 & 0x60, 0, "{header}: Z, AD");
    assert_eq!(f1 & 0x10, sent[3] & 0x10, "{header}: CD");
    assert_eq!(u16::from(f1 & 0x0f), want.rcode & 0x0f, "{header}: RCODE");
    match want.question_len {
        Some(len) => {
            assert_eq!(counts(0), 1, "{header}: QDCOUNT");
            assert_eq!(
                reply.get(12..12 + len),
                sent.get(12..12 + len),
                "{what}: question"
            );
        }
        None => assert_eq!(counts(0), 0, "{header}: QDCOUNT"),
    }
    assert_eq!(counts(1), want.answers, "{header}: ANCOUNT");
    assert_eq!(counts(2), want.authority, "{header}: NSCOUNT");
    assert_eq!(
        counts(3),
        u16::from(want.opt.is_some()),
        "{header}: ARCOUNT"
    );
    let m = Message::from_vec(reply).unwrap_or_else(|e| panic!("{what}: reply parses: {e}"));
    match (m.edns.as_ref(), want.opt) {
        (None, None) => assert!(want.rcode < 16, "{what}: an extended RCODE needs OPT"),
        (Some(e), Some(payload)) => {
            assert_eq!(e.version(), 0, "{what}: OPT version");
            assert_eq!(
                u16::from(e.rcode_high()),
                want.rcode >> 4,
                "{what}: extended RCODE"
            );
            assert_eq!(e.max_payload(), payload, "{what}: OPT payload");
            assert!(!e.flags().dnssec_ok, "{what}: DO");
            assert_eq!(e.options().options.len(), 0, "{what}: OPT options echoed");
        }
        (got, want) => panic!("{what}: OPT {got:?}, expected payload {want:?}"),
    }
    if want.answers == 1 {
        assert!(
            matches!(m.answers[0].data, RData::A(a) if a.0 == std::net::Ipv4Addr::new(1, 2, 3, 4)),
            "{what}: {:?}",
            m.answers
        );
    }
}

/// The normal query sent after each case: leader.mesos. A, ID `NORMAL_ID`.
fn normal() -> Vec<u8> {
    let mut q = query(&question(LEADER, A, IN));
    q[..2].copy_from_slice(&NORMAL_ID);
    q
}

fn check_normal(what: &str, reply: Option<&[u8]>) {
    let q = normal();
    check(
        &format!("normal query after {what}"),
        &q,
        reply,
        Some(found(&question(LEADER, A, IN))),
    );
}

/// Sends each case then a normal query from one UDP socket; the server answers a socket's
/// datagrams in order, so whatever arrives before the normal reply is the case's reply.
#[tokio::test]
async fn hostile_udp() {
    let dns = TestDns::start(Some(fixture_zone(false)), vec![]);
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(dns.addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    for c in cases() {
        socket.send(&c.packet).await.unwrap();
        socket.send(&normal()).await.unwrap();
        let mut replies = Vec::new();
        loop {
            let n = tokio::time::timeout(REPLY_WAIT, socket.recv(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("{}: no reply to the normal query", c.what))
                .unwrap();
            let reply = buf[..n].to_vec();
            let last = reply[..2] == NORMAL_ID;
            replies.push(reply);
            if last {
                break;
            }
        }
        let normal_reply = replies.pop();
        assert!(replies.len() <= 1, "{}: {} replies", c.what, replies.len());
        check(
            c.what,
            &c.packet,
            replies.first().map(Vec::as_slice),
            c.want,
        );
        check_normal(c.what, normal_reply.as_deref());
    }
    // Every FORMERR has no question that parsed, so counts under "other".
    assert_eq!(dns.count("other", "FORMERR", "udp"), formerr_cases());
    assert_eq!(dns.count("A", "BADVERS", "udp"), 2);
    assert_eq!(dns.count("other", "NOTIMP", "udp"), 0);
    assert_eq!(dns.count("A", "NOTIMP", "udp"), 6);
}

/// Each case and then a normal query pipelined on one TCP connection: answered in order.
#[tokio::test]
async fn hostile_tcp() {
    let dns = TestDns::start(Some(fixture_zone(false)), vec![]);
    for c in cases() {
        let mut s = TcpStream::connect(dns.addr).await.unwrap();
        let mut out = frame(&c.packet);
        out.extend_from_slice(&frame(&normal()));
        s.write_all(&out).await.unwrap();
        let first = read_frame(&mut s)
            .await
            .unwrap_or_else(|| panic!("{}: connection closed", c.what));
        let (reply, normal_reply) = if first[..2] == NORMAL_ID {
            (None, Some(first))
        } else {
            (Some(first), read_frame(&mut s).await)
        };
        check(c.what, &c.packet, reply.as_deref(), c.want);
        check_normal(c.what, normal_reply.as_deref());
    }
    assert_eq!(dns.count("other", "FORMERR", "tcp"), formerr_cases());
}

fn frame(message: &[u8]) -> Vec<u8> {
    let mut f = (message.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(message);
    f
}

/// One framed message, or `None` when the connection closes (or nothing comes in time).
async fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let read = async {
        let len = s.read_u16().await.ok()?;
        let mut m = vec![0u8; usize::from(len)];
        s.read_exact(&mut m).await.ok()?;
        Some(m)
    };
    tokio::time::timeout(REPLY_WAIT, read).await.ok().flatten()
}

/// True when the server closes `s` within `within` (EOF or reset), false if it stays open.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(within, s.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("unexpected data"),
        Err(_) => false,
    }
}

fn settings(idle: Duration, max_connections: usize) -> DnsServerSettings {
    let mut s = DnsServerSettings::new("mesos", vec![]);
    s.tcp_idle_timeout = idle;
    s.tcp_max_connections = max_connections;
    s
}

/// RFC 7766 §6.2.1.1: pipelined queries in one segment are all answered (in order here),
/// a malformed one among them included; a length-0 message gets nothing.
#[tokio::test]
async fn pipelined_tcp_queries() {
    let dns = TestDns::start(Some(fixture_zone(false)), vec![]);
    let mut s = TcpStream::connect(dns.addr).await.unwrap();
    let mut out = Vec::new();
    let ids: Vec<[u8; 2]> = (1u16..=5).map(|i| i.to_be_bytes()).collect();
    for (i, id) in ids.iter().enumerate() {
        let mut q = if i == 2 {
            packet(QUERY, [1, 0, 0, 0], &[]) // FORMERR
        } else {
            normal()
        };
        q[..2].copy_from_slice(id);
        out.extend_from_slice(&frame(&q));
        if i == 3 {
            out.extend_from_slice(&frame(&[]));
        }
    }
    s.write_all(&out).await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        let r = read_frame(&mut s).await.expect("reply");
        assert_eq!(&r[..2], id, "reply {i} in order");
        assert_eq!(r[3] & 0x0f, if i == 2 { 1 } else { 0 }, "reply {i}: rcode");
    }
    // The client may close its side once it has sent everything (RFC 7766 §6.2.3).
    let mut q = normal();
    q[..2].copy_from_slice(&[7, 7]);
    s.write_all(&frame(&q)).await.unwrap();
    s.shutdown().await.unwrap();
    let r = read_frame(&mut s)
        .await
        .expect("reply after the client's FIN");
    assert_eq!(&r[..2], &[7, 7]);
    assert!(closed_within(&mut s, REPLY_WAIT).await);
}

/// A connection that stalls (mid-message, mid-length, or before sending anything) is closed
/// after the idle timeout; the server keeps answering meanwhile.
#[tokio::test]
async fn stalled_tcp_connections_are_closed() {
    let idle = Duration::from_millis(300);
    let dns = TestDns::start_with(Some(fixture_zone(false)), settings(idle, 150));
    let full = frame(&normal());
    for (what, sent) in [
        ("nothing sent", &full[..0]),
        ("half a length", &full[..1]),
        ("length only", &full[..2]),
        ("half a message", &full[..full.len() / 2]),
    ] {
        let started = Instant::now();
        let mut s = TcpStream::connect(dns.addr).await.unwrap();
        s.write_all(sent).await.unwrap();
        // Another client is served while this one stalls.
        let mut other = TcpStream::connect(dns.addr).await.unwrap();
        other.write_all(&full).await.unwrap();
        check_normal(what, read_frame(&mut other).await.as_deref());
        assert!(closed_within(&mut s, REPLY_WAIT).await, "{what}: closed");
        let took = started.elapsed();
        assert!(
            took >= idle - Duration::from_millis(50),
            "{what}: closed after {took:?}"
        );
        assert!(took < idle * 10, "{what}: closed after {took:?}");
    }
    // A connection that keeps asking is not cut by the idle timeout (it counts per message).
    let mut s = TcpStream::connect(dns.addr).await.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(idle / 2).await;
        s.write_all(&full).await.unwrap();
        check_normal("steady client", read_frame(&mut s).await.as_deref());
    }
}

/// Beyond `tcp_max_connections` open connections, a new one is closed at once, unanswered,
/// and counted; once one closes, new connections are served again.
#[tokio::test]
async fn tcp_connection_cap() {
    let dns = TestDns::start_with(Some(fixture_zone(false)), settings(REPLY_WAIT * 2, 2));
    let full = frame(&normal());
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(dns.addr).await.unwrap();
        s.write_all(&full).await.unwrap();
        check_normal("held", read_frame(&mut s).await.as_deref());
        held.push(s);
    }
    let mut over = TcpStream::connect(dns.addr).await.unwrap();
    let _ = over.write_all(&full).await;
    assert!(
        closed_within(&mut over, REPLY_WAIT).await,
        "over the cap: closed"
    );
    let metrics = &dns.metrics;
    let dns_label = [drover::metrics::LISTENER_DNS];
    assert_eq!(
        metrics
            .connections_rejected
            .with_label_values(&dns_label)
            .get(),
        1
    );
    assert_eq!(
        metrics.connections_open.with_label_values(&dns_label).get(),
        2
    );
    // The held ones still work.
    for s in &mut held {
        s.write_all(&full).await.unwrap();
        check_normal("held, again", read_frame(s).await.as_deref());
    }
    drop(held.pop());
    // The server notices the close on its next read; retry briefly until it has.
    let deadline = Instant::now() + REPLY_WAIT;
    loop {
        let mut s = TcpStream::connect(dns.addr).await.unwrap();
        let _ = s.write_all(&full).await;
        if let Some(r) = read_frame(&mut s).await {
            check_normal("after one closed", Some(&r));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no connection served after one closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 1,000 garbage datagrams, sent in bursts of 100 (so loopback buffers drop none): every
/// one with a header and QR clear is answered with its ID, none other is; then a normal
/// query is answered.
#[tokio::test]
async fn garbage_burst() {
    let dns = TestDns::start(Some(fixture_zone(false)), vec![]);
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(dns.addr).await.unwrap();
    let mut rng = SmallRng::seed_from_u64(11);
    let mut buf = vec![0u8; 65535];
    let mut answered = 0;
    for burst in 0..10u16 {
        let mut expected = std::collections::BTreeMap::new();
        for k in 0..100u16 {
            let id = burst * 100 + k;
            let len = match k % 4 {
                0 => rng.random_range(0..12),
                _ => rng.random_range(12..600),
            };
            let mut p: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if len >= 12 {
                p[..2].copy_from_slice(&id.to_be_bytes());
                match k % 4 {
                    // A response: never answered.
                    1 => p[2] |= 0x80,
                    // A query whose name starts with a reserved label type: FORMERR.
                    2 => {
                        p[2] &= 0x07;
                        p[4..6].copy_from_slice(&[0, 1]);
                        if len > 12 {
                            p[12] = 0x40 | (p[12] & 0x7f);
                        }
                        expected.insert(id, Some(1u8));
                    }
                    // Anything else with QR clear: some answer.
                    _ => {
                        p[2] &= 0x7f;
                        expected.insert(id, None);
                    }
                }
            }
            socket.send(&p).await.unwrap();
        }
        let mut got = 0;
        while got < expected.len() {
            let n = tokio::time::timeout(REPLY_WAIT, socket.recv(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("burst {burst}: {got} of {} replies", expected.len()))
                .unwrap();
            let r = &buf[..n];
            let id = u16::from_be_bytes([r[0], r[1]]);
            let want = expected
                .get(&id)
                .unwrap_or_else(|| panic!("burst {burst}: reply to {id}, which gets none"));
            assert_eq!(r[2] & 0x80, 0x80, "reply {id}: QR");
            if let Some(rcode) = want {
                assert_eq!(r[3] & 0x0f, *rcode, "reply {id}: rcode");
            }
            got += 1;
        }
        answered += got;
    }
    assert_eq!(answered, 500);
    let r = udp_raw(dns.addr, &normal(), REPLY_WAIT).await;
    check_normal("the burst", r.as_deref());
    assert!(dns.count("other", "FORMERR", "udp") >= 250);
}

/// EDNS version 1 on a name with additional records: BADVERS too, over both transports;
/// the same query with version 0 is answered.
#[tokio::test]
async fn badvers_for_every_name() {
    let dns = TestDns::start(Some(fixture_zone(false)), vec![]);
    let q = question(b"\x07_leader\x04_tcp\x05mesos\x00", 33, IN);
    for (version, rcode) in [(1u8, 16u16), (0, 0)] {
        let p = packet(QUERY, [1, 0, 0, 1], &[&q, &opt(version, 1232, 0, &[])]);
        for via in ["udp", "tcp"] {
            let reply = match via {
                "udp" => udp_raw(dns.addr, &p, REPLY_WAIT).await,
                _ => tcp_raw(dns.addr, &p, REPLY_WAIT).await,
            }
            .expect("reply");
            let m = Message::from_vec(&reply).unwrap();
            let high = m.edns.as_ref().expect("OPT").rcode_high();
            let got = (u16::from(high) << 4) | u16::from(reply[3] & 0x0f);
            assert_eq!(got, rcode, "version {version} over {via}");
            assert_eq!(
                m.answers.is_empty(),
                version == 1,
                "version {version} over {via}"
            );
            if version == 0 {
                assert_eq!(m.answers[0].record_type(), RecordType::SRV);
            }
        }
    }
}

/// RFC 6891 §6.2.5: an EDNS payload size below 512 is taken as 512; a 4-SRV answer of
/// some 200 bytes is not truncated for a client that advertises 100 (the unknown option
/// takes the query off the fast path).
#[tokio::test]
async fn edns_payload_below_512_is_512() {
    let dns = TestDns::start(Some(fixture_zone(false)), vec![]);
    let q = question(
        b"\x0d_liquor-store\x04_tcp\x08marathon\x05mesos\x00",
        33,
        IN,
    );
    for options in [&[][..], &[(65001u16, &b"x"[..])][..]] {
        let p = packet(QUERY, [1, 0, 0, 1], &[&q, &opt(0, 100, 0, options)]);
        let reply = udp_raw(dns.addr, &p, REPLY_WAIT).await.expect("reply");
        assert!(reply.len() > 100, "{} bytes", reply.len());
        assert_eq!(reply[2] & 0x02, 0, "TC, options {options:?}");
        let m = Message::from_vec(&reply).unwrap();
        assert_eq!(m.answers.len(), 4);
        assert_eq!(m.edns.as_ref().unwrap().max_payload(), 512);
    }
}

/// Queries from eight clients at once, interleaved so the server takes them in batches
/// (`recvmmsg`): each client gets one reply per query, to its own address, with its own IDs,
/// and the answers are right (a fast-path A, a slow-path SRV, a refused name).
#[tokio::test]
async fn interleaved_clients_each_get_their_own_replies() {
    let dns = TestDns::start(Some(fixture_zone(false)), vec![]);
    let mut clients = Vec::new();
    for _ in 0..8 {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.connect(dns.addr).await.unwrap();
        clients.push(s);
    }
    let leader = question(LEADER, A, IN);
    let srv = question(b"\x07_leader\x04_tcp\x05mesos\x00", 33, IN);
    let outside = question(b"\x07example\x03com\x00", A, IN);
    let kinds: [(&[u8], u8); 3] = [(&leader, 0), (&srv, 0), (&outside, 5)];
    for round in 0..8u16 {
        for (c, client) in clients.iter().enumerate() {
            let (q, _) = kinds[(round as usize + c) % 3];
            let mut p = query(q);
            p[..2].copy_from_slice(&(c as u16 * 100 + round).to_be_bytes());
            client.send(&p).await.unwrap();
        }
    }
    let mut buf = vec![0u8; 65535];
    for (c, client) in clients.iter().enumerate() {
        let mut ids = Vec::new();
        for _ in 0..8 {
            let n = tokio::time::timeout(REPLY_WAIT, client.recv(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("client {c}: only {} replies", ids.len()))
                .unwrap();
            assert!(n > 12, "client {c}: a {n}-byte reply");
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            let round = id
                .checked_sub(c as u16 * 100)
                .expect("one of this client's IDs");
            let (q, rcode) = kinds[(round as usize + c) % 3];
            assert_eq!(buf[3] & 0x0f, rcode, "client {c}, query {round}");
            assert_eq!(&buf[12..12 + q.len()], q, "the question echoed");
            let answers = u16::from_be_bytes([buf[6], buf[7]]);
            assert_eq!(
                answers > 0,
                rcode == 0,
                "client {c}, query {round}: {answers}"
            );
            ids.push(round);
        }
        ids.sort_unstable();
        assert_eq!(ids, (0..8).collect::<Vec<_>>(), "client {c}");
    }
}
