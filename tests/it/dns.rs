//! The DNS server on real sockets: EXPECTED.md §3 rows over UDP and TCP, every recorded
//! answer of `mesos-dns-fake.dns-answers.json` replayed through the server, truncation and
//! the TCP retry, REFUSED and forwarding outside the domain, metrics. Hostile packets and
//! TCP limits: `dns_hostile`.
//!
//! Where Drover answers differently from the recorded Mesos-DNS answers, on purpose (the
//! [Q] choices of `src/dns/tests.rs`):
//! - the apex answers SOA, NS and ANY in the answer section (RFC 1034), and its other
//!   types are NODATA, not NXDOMAIN (the apex exists);
//! - SOA and NS exist only at the apex: below it they are NODATA or NXDOMAIN, not a
//!   SOA/NS record in authority;
//! - SRV of a name that does not exist is NXDOMAIN (Mesos-DNS: NOERROR, no SOA), and SRV of
//!   a name without SRV is NODATA with the SOA;
//! - every negative answer (NXDOMAIN, NODATA) carries exactly the SOA, owner the apex
//!   `mesos.` (RFC 2308), not the question name; nothing else in authority (Mesos-DNS adds
//!   NS + SOA under the question name to ANY answers);
//! - empty non-terminals exist (NODATA, not NXDOMAIN; RFC 8020).
//!
//! The replay uses the zone with `legacy_discovery_names` on, as the recording had them.

use std::collections::BTreeSet;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use serde_json::Value;

use crate::support::dns::{
    compile, config_r, fixture, fixture_zone, query, tcp, udp, udp_raw, FakeUpstream, TestDns,
    REPLY_WAIT,
};

const SOA_LINE: &str = "mesos. 60 SOA ns1.mesos. root.ns1.mesos. 0 60 600 86400 60";

/// `owner TTL TYPE rdata`, rdata as in the fixture files.
fn line(r: &Record) -> String {
    let rdata = match &r.data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::SRV(s) => format!("{} {} {} {}", s.priority, s.weight, s.port, s.target),
        RData::NS(ns) => ns.0.to_string(),
        RData::SOA(s) => format!(
            "{} {} {} {} {} {} {}",
            s.mname, s.rname, s.serial, s.refresh, s.retry, s.expire, s.minimum
        ),
        other => format!("{other:?}"),
    };
    format!("{} {} {} {rdata}", r.name, r.ttl, r.record_type())
}

fn lines(records: &[Record]) -> BTreeSet<String> {
    records.iter().map(line).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The header rules of EXPECTED.md §3 for an answer from the zone.
fn assert_zone_header(q: &Message, r: &Message, rcode: ResponseCode, what: &str) {
    assert_eq!(r.metadata.message_type, MessageType::Response, "{what}: QR");
    assert!(r.metadata.authoritative, "{what}: AA");
    assert!(!r.metadata.recursion_available, "{what}: RA");
    assert!(!r.metadata.truncation, "{what}: TC");
    assert_eq!(
        r.metadata.recursion_desired, q.metadata.recursion_desired,
        "{what}: RD copied"
    );
    assert_eq!(r.metadata.response_code, rcode, "{what}: rcode");
    assert_eq!(r.queries.len(), 1, "{what}: question");
    // Echoed as sent, case included.
    assert_eq!(
        r.queries[0].name().to_string(),
        q.queries[0].name().to_string(),
        "{what}: question name"
    );
    assert_eq!(r.queries[0].query_type(), q.queries[0].query_type());
}

#[derive(Clone, Copy, Debug)]
enum Via {
    Udp,
    Tcp,
}

async fn ask(dns: &TestDns, via: Via, q: &Message) -> Message {
    match via {
        Via::Udp => udp(dns.addr, q).await,
        Via::Tcp => tcp(dns.addr, q).await,
    }
}

/// EXPECTED.md §3 rows 1-11 over both transports (row 12, forwarding, below).
#[tokio::test]
async fn resolver_rows_over_udp_and_tcp() {
    let dns = TestDns::start(Some(fixture_zone(false)), vec![]);
    for via in [Via::Udp, Via::Tcp] {
        for (i, rd) in [(0, true), (1, false)] {
            let _ = i;
            let run = |name: &str, t: RecordType| query(name, t, rd, None);
            // 1, 2: owner lower-cased, question echoed as sent.
            for name in ["chronos.marathon.mesos.", "cHrOnOs.MARATHON.mesoS."] {
                let q = run(name, RecordType::A);
                let r = ask(&dns, via, &q).await;
                assert_zone_header(&q, &r, ResponseCode::NoError, name);
                assert_eq!(
                    lines(&r.answers),
                    set(&["chronos.marathon.mesos. 60 A 1.2.3.11"])
                );
                assert!(r.authorities.is_empty() && r.additionals.is_empty());
            }
            // 3
            let q = run("toy-store.ipv6-framework.mesos.", RecordType::AAAA);
            let r = ask(&dns, via, &q).await;
            assert_zone_header(&q, &r, ResponseCode::NoError, "row 3");
            assert_eq!(
                lines(&r.answers),
                set(&["toy-store.ipv6-framework.mesos. 60 AAAA fd01:b::1:8000:2"])
            );
            // 4: SRV with the targets' addresses in additional.
            let n = "_liquor-store._tcp.marathon.mesos.";
            let q = run(n, RecordType::SRV);
            let r = ask(&dns, via, &q).await;
            assert_zone_header(&q, &r, ResponseCode::NoError, "row 4");
            assert_eq!(
                lines(&r.answers),
                set(&[
                    &format!("{n} 60 SRV 0 1 443 liquor-store-4dfjd-0.marathon.mesos."),
                    &format!("{n} 60 SRV 0 1 80 liquor-store-4dfjd-0.marathon.mesos."),
                    &format!("{n} 60 SRV 0 1 80 liquor-store-zasmd-1.marathon.mesos."),
                    &format!("{n} 60 SRV 0 1 443 liquor-store-zasmd-1.marathon.mesos."),
                ])
            );
            assert!(r.authorities.is_empty());
            assert_eq!(
                lines(&r.additionals),
                set(&[
                    "liquor-store-4dfjd-0.marathon.mesos. 60 A 10.3.0.1",
                    "liquor-store-zasmd-1.marathon.mesos. 60 A 10.3.0.2",
                ])
            );
            // 5
            let n = "_car-store._udp.marathon.mesos.";
            let q = run(n, RecordType::SRV);
            let r = ask(&dns, via, &q).await;
            assert_zone_header(&q, &r, ResponseCode::NoError, "row 5");
            assert_eq!(
                lines(&r.answers),
                set(&[
                    &format!("{n} 60 SRV 0 1 31364 car-store-zinaz-0.marathon.slave.mesos."),
                    &format!("{n} 60 SRV 0 1 31365 car-store-zinaz-0.marathon.slave.mesos."),
                ])
            );
            assert_eq!(
                lines(&r.additionals),
                set(&["car-store-zinaz-0.marathon.slave.mesos. 60 A 1.2.3.11"])
            );
            // 6, 10: NODATA with the SOA. 9, 11: NXDOMAIN with the SOA.
            // 7, 8 [Q]: SOA/NS only at the apex, so a missing name is NXDOMAIN.
            for (name, t, rcode) in [
                (n, RecordType::A, ResponseCode::NoError),
                (
                    "chronos.marathon.mesos.",
                    RecordType::AAAA,
                    ResponseCode::NoError,
                ),
                ("missing.mesos.", RecordType::A, ResponseCode::NXDomain),
                ("missing.mesos.", RecordType::AAAA, ResponseCode::NXDomain),
                (
                    "non-existing.mesos.",
                    RecordType::SOA,
                    ResponseCode::NXDomain,
                ),
                (
                    "non-existing.mesos.",
                    RecordType::NS,
                    ResponseCode::NXDomain,
                ),
            ] {
                let q = run(name, t);
                let r = ask(&dns, via, &q).await;
                let what = format!("{name} {t} {via:?}");
                assert_zone_header(&q, &r, rcode, &what);
                assert!(r.answers.is_empty(), "{what}");
                assert_eq!(lines(&r.authorities), set(&[SOA_LINE]), "{what}");
                assert!(r.additionals.is_empty(), "{what}");
            }
            // The apex [Q]: SOA and NS in the answer section.
            let q = run("mesos.", RecordType::SOA);
            let r = ask(&dns, via, &q).await;
            assert_zone_header(&q, &r, ResponseCode::NoError, "apex SOA");
            assert_eq!(lines(&r.answers), set(&[SOA_LINE]));
            let q = run("MESOS.", RecordType::NS);
            let r = ask(&dns, via, &q).await;
            assert_zone_header(&q, &r, ResponseCode::NoError, "apex NS");
            assert_eq!(lines(&r.answers), set(&["mesos. 60 NS ns1.mesos."]));
        }
    }
    // Per pass and transport: A NOERROR x3 (rows 1, 2, 6), A NXDOMAIN x1, SRV NOERROR x2,
    // SOA NXDOMAIN x1; two passes each.
    assert_eq!(dns.count("A", "NOERROR", "udp"), 2 * 3);
    assert_eq!(dns.count("A", "NXDOMAIN", "tcp"), 2);
    assert_eq!(dns.count("SRV", "NOERROR", "tcp"), 2 * 2);
    assert_eq!(dns.count("SOA", "NXDOMAIN", "udp"), 2);
}

/// All 338 recorded answers through the running server, over UDP and over TCP.
#[tokio::test]
async fn every_recorded_answer_over_the_wire() {
    let zone = fixture_zone(true);
    let recorded: Value =
        serde_json::from_slice(&fixture("mesos-dns-fake.dns-answers.json")).unwrap();
    let questions = recorded["dns"].as_array().unwrap();
    assert_eq!(questions.len(), 338);
    let exists: Vec<bool> = questions
        .iter()
        .map(|q| {
            let key = q["qname"]
                .as_str()
                .unwrap()
                .to_ascii_lowercase()
                .replace(".*", "");
            zone.node(&key).is_some()
        })
        .collect();
    let addresses_of = |name: &str| -> BTreeSet<String> {
        zone.node(name)
            .map(|n| {
                n.records()
                    .iter()
                    .filter_map(|r| drover_address(&r.data))
                    .collect()
            })
            .unwrap_or_default()
    };
    let addresses: Vec<(String, BTreeSet<String>)> = zone
        .nodes()
        .map(|n| (n.name().to_string(), addresses_of(n.name())))
        .collect();
    let dns = TestDns::start(Some(zone), vec![]);

    let mut checked = 0;
    for via in [Via::Udp, Via::Tcp] {
        for (i, (want, exists)) in questions.iter().zip(&exists).enumerate() {
            let qname = want["qname"].as_str().unwrap();
            let t = want["qtype"].as_str().unwrap();
            let rtype: RecordType = t.parse().unwrap();
            let q = query(qname, rtype, i % 2 == 0, None);
            let r = ask(&dns, via, &q).await;
            let what = format!("{qname} {t} {via:?}");
            let apex = qname.eq_ignore_ascii_case("mesos.");

            let fixture_line = |rec: &Value| {
                format!(
                    "{} {} {} {}",
                    rec["name"].as_str().unwrap(),
                    rec["ttl"],
                    rec["type"].as_str().unwrap(),
                    rec["rdata"].as_str().unwrap()
                )
            };
            let mut want_rcode = want["rcode"].as_str().unwrap();
            let mut want_answers: BTreeSet<String> = want["answer"]
                .as_array()
                .unwrap()
                .iter()
                .map(fixture_line)
                .collect();
            match (t, apex) {
                ("SOA" | "NS" | "ANY", true) => {
                    want_rcode = "NOERROR";
                    want_answers = set(&["mesos. 60 NS ns1.mesos.", SOA_LINE]);
                    if t != "ANY" {
                        want_answers.retain(|l| l.split(' ').nth(2) == Some(t));
                    }
                }
                (_, true) => want_rcode = "NOERROR",
                ("SOA" | "NS" | "SRV", false) if !exists => want_rcode = "NXDOMAIN",
                _ => {}
            }
            let rcode = match want_rcode {
                "NOERROR" => ResponseCode::NoError,
                "NXDOMAIN" => ResponseCode::NXDomain,
                other => panic!("{what}: rcode {other}"),
            };
            assert_zone_header(&q, &r, rcode, &what);
            assert_eq!(lines(&r.answers), want_answers, "{what}: answers");
            let want_authority = if want_answers.is_empty() {
                set(&[SOA_LINE])
            } else {
                BTreeSet::new()
            };
            assert_eq!(lines(&r.authorities), want_authority, "{what}: authority");

            // Additional: one A and one AAAA per target, each one of the target's addresses.
            let want_pairs: BTreeSet<(String, String)> = want["additional"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    (
                        a["name"].as_str().unwrap().to_string(),
                        a["type"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            let got_pairs: Vec<(String, String)> = r
                .additionals
                .iter()
                .map(|a| (a.name.to_string(), a.record_type().to_string()))
                .collect();
            assert_eq!(got_pairs.len(), want_pairs.len(), "{what}: additional");
            assert_eq!(
                got_pairs.iter().cloned().collect::<BTreeSet<_>>(),
                want_pairs,
                "{what}: additional"
            );
            for a in &r.additionals {
                let value = match &a.data {
                    RData::A(x) => x.0.to_string(),
                    RData::AAAA(x) => x.0.to_string(),
                    other => panic!("{what}: additional {other:?}"),
                };
                let owner = a.name.to_string();
                let known = addresses
                    .iter()
                    .find(|(n, _)| *n == owner)
                    .map(|(_, a)| a.contains(&value));
                assert_eq!(known, Some(true), "{what}: additional {owner} {value}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * 338);
}

fn drover_address(data: &drover::dns::zone::RecordData) -> Option<String> {
    match data {
        drover::dns::zone::RecordData::A(ip) => Some(ip.to_string()),
        drover::dns::zone::RecordData::Aaaa(ip) => Some(ip.to_string()),
        _ => None,
    }
}

/// Answer order is shuffled per response.
#[tokio::test]
async fn answers_are_shuffled() {
    let dns = TestDns::start(Some(big_zone(20)), vec![]);
    let mut firsts = BTreeSet::new();
    for _ in 0..40 {
        let r = udp(dns.addr, &query("slave.mesos.", RecordType::A, false, None)).await;
        assert_eq!(r.answers.len(), 20);
        firsts.insert(line(&r.answers[0]));
    }
    assert!(firsts.len() > 3, "first answers seen: {firsts:?}");
}

/// A zone with `agents` agents (10.1.x.y), so `slave.mesos.` A is as large as asked.
fn big_zone(agents: usize) -> drover::dns::zone::Zone {
    let slaves: Vec<String> = (0..agents)
        .map(|i| {
            format!(
                r#"{{"id":"agent-S{i}","pid":"slave(1)@10.1.{}.{}:5051","hostname":"h{i}"}}"#,
                i / 250,
                i % 250 + 1
            )
        })
        .collect();
    let json = format!(
        r#"{{"leader":"master@10.0.0.1:5050","slaves":[{}],"frameworks":[]}}"#,
        slaves.join(",")
    );
    let state = drover::source::mesos::state::decode(json.as_bytes()).expect("state decodes");
    assert_eq!(state.agents.len(), agents);
    compile(&state, &config_r(false))
}

/// Too big for UDP: TC=1 and a partial answer that fits the limit (512 without EDNS, the
/// advertised size with it, 4096 at most); over TCP the whole set.
#[tokio::test]
async fn truncation_then_tcp_retry() {
    let dns = TestDns::start(Some(big_zone(500)), vec![]);
    for (edns, limit) in [
        (None, 512usize),
        (Some(1232), 1232),
        (Some(100), 512),
        (Some(65000), 4096),
    ] {
        let q = query("slave.mesos.", RecordType::A, true, edns);
        let raw = udp_raw(dns.addr, &q.to_vec().unwrap(), REPLY_WAIT)
            .await
            .expect("reply");
        assert!(raw.len() <= limit, "{edns:?}: {} > {limit}", raw.len());
        let r = Message::from_vec(&raw).unwrap();
        assert!(r.metadata.truncation, "{edns:?}: TC");
        assert!(r.metadata.authoritative);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.len() < 500, "{edns:?}");
        // Full enough: within one record of the limit.
        assert!(
            raw.len() + 16 + 11 > limit,
            "{edns:?}: only {} bytes",
            raw.len()
        );

        let r = tcp(dns.addr, &q).await;
        assert!(!r.metadata.truncation);
        assert_eq!(r.answers.len(), 500, "{edns:?} over TCP");
        assert_eq!(
            r.answers.iter().map(line).collect::<BTreeSet<_>>().len(),
            500
        );
    }
    // A small answer over UDP is not truncated, with or without EDNS.
    for edns in [None, Some(1232)] {
        let r = udp(dns.addr, &query("leader.mesos.", RecordType::A, true, edns)).await;
        assert!(!r.metadata.truncation);
        assert_eq!(lines(&r.answers), set(&["leader.mesos. 60 A 10.0.0.1"]));
        assert_eq!(r.edns.is_some(), edns.is_some(), "EDNS answered with EDNS");
    }
    assert_eq!(dns.count("A", "NOERROR", "udp"), 6);
    assert_eq!(dns.count("A", "NOERROR", "tcp"), 4);
}

/// Outside the domain without `forward`: REFUSED, not authoritative, no records.
#[tokio::test]
async fn refused_outside_the_domain() {
    let dns = TestDns::start(Some(fixture_zone(false)), vec![]);
    for name in ["google.com.", "notmesos.", ".", "mesos.com."] {
        for via in [Via::Udp, Via::Tcp] {
            let q = query(name, RecordType::A, true, None);
            let r = ask(&dns, via, &q).await;
            assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{name}");
            assert!(!r.metadata.authoritative && !r.metadata.recursion_available);
            assert!(r.metadata.recursion_desired);
            assert_eq!(r.queries.len(), 1);
            assert!(r.answers.is_empty() && r.authorities.is_empty());
        }
    }
    assert_eq!(dns.count("A", "REFUSED", "udp"), 4);
    assert_eq!(dns.count("A", "REFUSED", "tcp"), 4);
}

/// Before the first zone: SERVFAIL in the domain, REFUSED outside it.
#[tokio::test]
async fn no_zone_yet() {
    let dns = TestDns::start(None, vec![]);
    let r = udp(
        dns.addr,
        &query("leader.mesos.", RecordType::A, false, None),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    let r = tcp(dns.addr, &query("Mesos.", RecordType::SOA, false, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    let r = udp(dns.addr, &query("example.com.", RecordType::A, false, None)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);

    // Once a zone is stored, the next query sees it.
    dns.zone.store(Some(fixture_zone(false).into()));
    let r = udp(
        dns.addr,
        &query("leader.mesos.", RecordType::A, false, None),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(lines(&r.answers), set(&["leader.mesos. 60 A 1.2.3.4"]));
    assert_eq!(dns.count("A", "SERVFAIL", "udp"), 1);
    assert_eq!(dns.count("SOA", "SERVFAIL", "tcp"), 1);
}

fn upstream_answer(q: &Message) -> Option<Message> {
    let mut r = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.queries = q.queries.clone();
    let name = q.queries[0].name().clone();
    for ip in ["1.1.1.1", "2.2.2.2"] {
        r.add_answer(Record::from_rdata(
            name.clone(),
            300,
            RData::A(hickory_proto::rr::rdata::A(ip.parse().unwrap())),
        ));
    }
    Some(r)
}

fn upstream_silent(_: &Message) -> Option<Message> {
    None
}

/// EXPECTED.md §3 row 12: outside the domain with `forward`, the upstream's answer over
/// the client's transport, unchanged but for the ID (AA=0, RA as it came).
#[tokio::test]
async fn forwarding_over_udp_and_tcp() {
    let upstream = FakeUpstream::start(upstream_answer).await;
    let dns = TestDns::start(Some(fixture_zone(false)), vec![upstream.addr]);
    for (i, via) in [Via::Udp, Via::Tcp].into_iter().enumerate() {
        let q = query("google.com.", RecordType::A, true, None);
        let r = ask(&dns, via, &q).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{via:?}");
        assert!(!r.metadata.authoritative, "{via:?}: AA as forwarded");
        assert!(r.metadata.recursion_available, "{via:?}: RA as forwarded");
        assert_eq!(
            lines(&r.answers),
            set(&["google.com. 300 A 1.1.1.1", "google.com. 300 A 2.2.2.2"])
        );
        assert_eq!(
            upstream.queries.load(std::sync::atomic::Ordering::SeqCst),
            i + 1
        );
    }
    // Names in the domain are never forwarded.
    let r = udp(
        dns.addr,
        &query("missing.mesos.", RecordType::A, true, None),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        upstream.queries.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    assert_eq!(dns.count("A", "NOERROR", "udp"), 1);
    assert_eq!(dns.count("A", "NOERROR", "tcp"), 1);
}

/// A silent first resolver is skipped after the timeout; all silent: SERVFAIL.
#[tokio::test]
async fn forwarding_failover_and_servfail() {
    let silent = FakeUpstream::start(upstream_silent).await;
    let good = FakeUpstream::start(upstream_answer).await;
    let dns = TestDns::start(Some(fixture_zone(false)), vec![silent.addr, good.addr]);
    for via in [Via::Udp, Via::Tcp] {
        let r = ask(&dns, via, &query("example.org.", RecordType::A, true, None)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{via:?}");
        assert_eq!(r.answers.len(), 2);
    }
    drop(dns);

    let dns = TestDns::start(Some(fixture_zone(false)), vec![silent.addr]);
    for via in [Via::Udp, Via::Tcp] {
        let started = tokio::time::Instant::now();
        let r = ask(&dns, via, &query("example.org.", RecordType::A, true, None)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail, "{via:?}");
        assert!(!r.metadata.authoritative);
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    assert_eq!(dns.count("A", "SERVFAIL", "udp"), 1);
    assert_eq!(dns.count("A", "SERVFAIL", "tcp"), 1);
}

/// A class other than IN is refused; other types at an existing name are NODATA, counted
/// under bounded labels.
#[tokio::test]
async fn classes_types_and_labels() {
    let dns = TestDns::start(Some(fixture_zone(false)), vec![]);
    let mut q = query("leader.mesos.", RecordType::A, false, None);
    q.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    let r = udp(dns.addr, &q).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    for t in [
        RecordType::TXT,
        RecordType::CAA,
        RecordType::HINFO,
        RecordType::PTR,
    ] {
        let r = udp(dns.addr, &query("leader.mesos.", t, false, None)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{t}");
        assert!(r.answers.is_empty());
        assert_eq!(lines(&r.authorities), set(&[SOA_LINE]));
    }
    assert_eq!(dns.count("A", "REFUSED", "udp"), 1);
    assert_eq!(dns.count("TXT", "NOERROR", "udp"), 1);
    assert_eq!(dns.count("PTR", "NOERROR", "udp"), 1);
    assert_eq!(dns.count("other", "NOERROR", "udp"), 2);
    // In the exposition too.
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&dns.metrics.registry.gather())
        .unwrap();
    assert!(
        text.contains(
            r#"drover_dns_queries_total{qtype="other",rcode="NOERROR",transport="udp"} 2"#
        ),
        "{text}"
    );
}

/// A zone patched by `ZoneState` (one Marathon-only app added, then restarted, then removed)
/// is what the server answers, over the UDP fast path and TCP alike, each patch with its
/// own SOA serial; the fixture's Mesos names stay.
#[tokio::test]
async fn a_patched_zone_is_served_at_once() {
    use drover::catalog::cluster::{MarathonOnlyApp, MarathonOnlyTask};
    use drover::dns::zone::{ZoneInput, ZoneState};
    use drover::source::mesos::cluster::convert;

    let cluster = convert(
        &crate::support::dns::fixture_state(),
        &["144.76.157.37:5050".to_string()],
        &Default::default(),
    );
    let options = config_r(false);
    let mut state = ZoneState::compile(&ZoneInput {
        cluster: Some(&cluster),
        marathon_apps: &[],
        options: &options,
        checked_down: &BTreeSet::new(),
        serial: 10,
    });
    let dns = TestDns::start(Some(drover::dns::Zone::clone(state.zone())), vec![]);
    let app = |task: &str, host: &str| MarathonOnlyApp {
        id: "/shop/cart".into(),
        tasks: vec![MarathonOnlyTask {
            id: task.into(),
            host: host.parse().unwrap(),
            ip_addresses: vec![],
            ports: vec![31005],
            agent_id: None,
            healthy: None,
        }],
    };
    let name = "cart-shop.marathon.mesos.";
    let ask = |qtype| query(name, qtype, false, None);
    let soa_serial = |r: &Message| match r.authorities.first().map(|a| &a.data) {
        Some(RData::SOA(soa)) => soa.serial,
        other => panic!("no SOA: {other:?}"),
    };
    let r = udp(dns.addr, &ask(RecordType::A)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(soa_serial(&r), 10);

    for (serial, host) in [(11, "10.7.0.1"), (12, "10.7.0.2")] {
        let task = format!("cart.{serial}");
        let zone = state.replace_marathon_apps(&["/shop/cart"], &[app(&task, host)], serial);
        dns.zone.store(Some(zone));
        let want = set(&[&format!("{name} 60 A {host}")]);
        assert_eq!(
            lines(&udp(dns.addr, &ask(RecordType::A)).await.answers),
            want
        );
        assert_eq!(
            lines(&tcp(dns.addr, &ask(RecordType::A)).await.answers),
            want
        );
        let srv = udp(
            dns.addr,
            &query(
                "_cart-shop._tcp.marathon.mesos.",
                RecordType::SRV,
                false,
                None,
            ),
        )
        .await;
        assert_eq!(srv.answers.len(), 1, "one task, one port");
        assert_eq!(lines(&srv.additionals).len(), 1, "its address");
        let r = udp(dns.addr, &ask(RecordType::AAAA)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "NODATA");
        assert_eq!(soa_serial(&r), serial);
    }
    let zone = state.replace_marathon_apps(&["/shop/cart"], &[], 13);
    dns.zone.store(Some(zone));
    for r in [
        udp(dns.addr, &ask(RecordType::A)).await,
        tcp(dns.addr, &ask(RecordType::A)).await,
    ] {
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(soa_serial(&r), 13);
    }
    // The cluster's names never moved.
    let r = udp(
        dns.addr,
        &query("leader.mesos.", RecordType::A, false, None),
    )
    .await;
    assert_eq!(r.answers.len(), 1);
}

/// The UDP socket is set as Knot and BIND set theirs: IPv4 replies without Don't-Fragment,
/// path-MTU news ignored (`IP_PMTUDISC_OMIT`), so forged ICMP cannot fragment replies.
#[tokio::test]
async fn the_udp_socket_ignores_path_mtu_news() {
    use std::os::fd::AsRawFd;
    let dns = TestDns::start(Some(fixture_zone(false)), vec![]);
    // An answer means `serve` has set its socket up.
    let q = query("chronos.marathon.mesos.", RecordType::A, false, None);
    assert_eq!(
        udp(dns.addr, &q).await.metadata.response_code,
        ResponseCode::NoError
    );
    let mut value: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `len` bytes into the live local.
    let got = unsafe {
        libc::getsockopt(
            dns.udp_socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(got, 0, "{}", std::io::Error::last_os_error());
    assert_eq!(value, libc::IP_PMTUDISC_OMIT);
}
