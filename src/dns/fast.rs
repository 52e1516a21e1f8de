//! The UDP fast path: a well-formed single-question IN query for a lower-case name the zone
//! answers (or denies) within 512 bytes or the client's EDNS size is answered from replies
//! encoded once per (zone, question) and UDP loop, with the ID, RD/CD flags and OPT payload
//! patched in: no task, no parsing into hickory types, no encoding per query (DESIGN §6b).
//! A question asked before is found by its bytes as sent (one hash, one probe, one compare,
//! no zone lookup); only a new one has its name checked and looked up in the zone.
//! Everything else (other classes, opcodes or counts, mixed case, `.*`, EDNS options or
//! versions, truncation, names outside the zone, garbage) is left to
//! `DnsHandler::answer_packet`. The answers are byte-for-byte what that path sends, except
//! that name compression may differ.
//!
//! `FastQuery::parse` and `lookup_key` read untrusted bytes: every index is checked
//! (`get`), and they never panic, whatever the input.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use hashbrown::HashTable;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Record as WireRecord, RecordType as WireType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use crate::dns::handler::{DnsHandler, MIN_UDP_PAYLOAD};
use crate::dns::labels::{QtypeLabel, Transport, QTYPES};
use crate::dns::name::FastState;
use crate::dns::wire::{name, soa_of, switch_zone, to_wire, NAME_BUF};
use crate::dns::zone::{Lookup, QueryType, Record, Zone};

/// The fast path of one UDP loop: the zone its current batch answers from, the replies
/// encoded for that zone, and a tally of the answers not yet counted in the query metric.
/// The loop owns it, so a query takes no lock, no thread-local and no atomic.
#[derive(Default)]
pub struct FastPath {
    cache: FastCache,
    /// Answers since the last `finish_batch`, by qtype label, NOERROR then NXDOMAIN.
    tally: [[u64; 2]; QTYPES],
}

// === impl FastPath ===

impl FastPath {
    /// Begins a batch: its queries are answered from the zone `handler` has in use now
    /// (a zone stored during the batch answers from the next one on).
    pub fn start_batch(&mut self, handler: &DnsHandler) {
        self.cache.use_zone(handler.zone.load().as_ref());
    }

    /// Answers `p` into `out` if it is a query the fast path takes (see the module
    /// documentation); false leaves it to `answer_packet`. Tallied when answered.
    pub fn answer(&mut self, handler: &DnsHandler, p: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(q) = FastQuery::parse(p) else {
            return false;
        };
        let limit = match q.edns_payload {
            Some(payload) => payload.min(handler.max_udp_payload).max(MIN_UDP_PAYLOAD),
            None => MIN_UDP_PAYLOAD,
        };
        // Room left for the reply before the OPT record.
        let room = usize::from(limit) - if q.edns_payload.is_some() { OPT_LEN } else { 0 };
        let question = q.question(p);
        out.clear();
        // A question asked before: one hash, one probe, one compare.
        let rcode = match self.cache.cached(question) {
            Some(reply) if reply.len() <= room => {
                out.extend_from_slice(reply);
                ResponseCode::NoError
            }
            Some(_) => return false,
            None => match self.cache.answer_new(question, q.qtype, room, out) {
                Some(rcode) => rcode,
                None => return false,
            },
        };
        // ID, then RD and CD as the query had them (`Metadata::response_from_request`).
        out[0] = p[0];
        out[1] = p[1];
        out[2] = (out[2] & !0x01) | (p[2] & 0x01);
        out[3] = (out[3] & !0x10) | (p[3] & 0x10);
        if q.edns_payload.is_some() {
            let arcount = u16::from_be_bytes([out[10], out[11]]).saturating_add(1);
            out[10..12].copy_from_slice(&arcount.to_be_bytes());
            // OPT: root owner, type 41, class = our payload size, no extended RCODE,
            // version 0, no flags, no options (`Edns::new()` as `reply_edns` sets it).
            let [hi, lo] = limit.to_be_bytes();
            out.extend_from_slice(&[0, 0, 41, hi, lo, 0, 0, 0, 0, 0, 0]);
        }
        let qtype = QtypeLabel::of(WireType::from(q.qtype));
        self.tally[qtype as usize][usize::from(rcode == ResponseCode::NXDomain)] += 1;
        true
    }

    /// Counts the answers tallied since the last call in `handler`'s query metric.
    pub fn finish_batch(&mut self, handler: &DnsHandler) {
        for (qtype, counts) in QtypeLabel::ALL.into_iter().zip(&mut self.tally) {
            for (rcode, count) in [ResponseCode::NoError, ResponseCode::NXDomain]
                .into_iter()
                .zip(counts)
            {
                if *count > 0 {
                    handler
                        .counters
                        .count_n(qtype, rcode, Transport::Udp, std::mem::take(count));
                }
            }
        }
    }
}

/// An OPT record without options.
const OPT_LEN: usize = 11;

/// How many answer orders are encoded per record set (more orders than that are sent as
/// that many evenly spaced rotations).
const ROTATIONS: usize = 8;

/// A query the fast path can take, as far as its shape tells: the name's characters are
/// checked only when its question is not cached (`lookup_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastQuery {
    qtype: u16,
    /// Where the question ends (and the OPT record, if any, starts).
    question_end: usize,
    /// The OPT record's payload size, if the query has one.
    edns_payload: Option<u16>,
}

impl FastQuery {
    /// A query (QR=0, opcode QUERY), one question of class IN with an uncompressed name
    /// of at most 255 bytes, no answer or authority records, at most an OPT record
    /// (version 0, no extended RCODE, no options) as the only additional; nothing after
    /// that.
    pub fn parse(p: &[u8]) -> Option<FastQuery> {
        if p.len() < 12 + 5 || p[2] & 0xf8 != 0 || p[4..10] != [0, 1, 0, 0, 0, 0] {
            return None;
        }
        let arcount = u16::from_be_bytes([p[10], p[11]]);
        if arcount > 1 {
            return None;
        }
        // Only the label lengths are read here: the cache compares the whole question.
        let mut i = 12;
        loop {
            let len = usize::from(*p.get(i)?);
            if len == 0 {
                i += 1;
                break;
            }
            // Above 63: a pointer or a reserved label type. The name, its root byte
            // included, fits in 255 bytes.
            if len > 63 || i + 1 + len + 1 - 12 > 255 {
                return None;
            }
            i += 1 + len;
        }
        let fixed = p.get(i..i + 4)?;
        let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        if fixed[2..4] != [0, 1] {
            return None;
        }
        let question_end = i + 4;
        let edns_payload = if arcount == 1 {
            let opt = p.get(question_end..)?;
            // root, type 41, payload, ext-rcode 0, version 0, flags (any), rdlength 0
            if opt.len() != OPT_LEN
                || opt[0..3] != [0, 0, 41]
                || opt[5..7] != [0, 0]
                || opt[9..11] != [0, 0]
            {
                return None;
            }
            Some(u16::from_be_bytes([opt[3], opt[4]]))
        } else {
            if p.len() != question_end {
                return None;
            }
            None
        };
        Some(FastQuery {
            qtype,
            question_end,
            edns_payload,
        })
    }

    /// The question's bytes (name, type, class) in `p`, the packet `parse` read.
    fn question<'p>(&self, p: &'p [u8]) -> &'p [u8] {
        &p[12..self.question_end]
    }
}

/// The question name as `Zone::lookup` takes it (labels joined by dots, a trailing dot),
/// written into `key`; `None` unless the name is one the fast path answers: not the root,
/// and only lower-case letters, digits, `-` and `_` (so also valid UTF-8). `question` is
/// what `FastQuery::question` gives: its label lengths are known to be in bounds.
fn lookup_key<'k>(question: &[u8], key: &'k mut [u8; NAME_BUF]) -> Option<&'k str> {
    let mut key_len = 0;
    let mut i = 0;
    loop {
        let len = usize::from(*question.get(i)?);
        if len == 0 {
            break;
        }
        let label = question.get(i + 1..i + 1 + len)?;
        if !label.iter().all(|&b| HOST_BYTE[usize::from(b)]) {
            return None;
        }
        key.get_mut(key_len..key_len + len)?.copy_from_slice(label);
        *key.get_mut(key_len + len)? = b'.';
        key_len += len + 1;
        i += 1 + len;
    }
    if key_len == 0 {
        return None;
    }
    std::str::from_utf8(&key[..key_len]).ok()
}

/// The bytes a name the fast path answers is made of: `a`-`z`, `0`-`9`, `-`, `_`.
static HOST_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_';
        b += 1;
    }
    table
};

/// The fast path's encoded answers for one zone.
#[derive(Default)]
struct FastCache {
    zone: Option<Arc<Zone>>,
    /// The replies to each question answered with records, found by the question's bytes
    /// (which the replies hold): a question asked again costs no name parsing and no zone
    /// lookup. At most one entry per (name, type) the zone answers: only questions the
    /// zone has records for are kept.
    replies: HashTable<Replies>,
    hasher: FastState,
    /// The zone's SOA as an authority record, uncompressed.
    soa: Option<Option<Arc<[u8]>>>,
    /// Round-robin over the rotations.
    turn: usize,
}

/// The complete replies to one question (ID 0, RD 0, no OPT), one per answer rotation,
/// one after the other in `bytes`; each starts with the header and the question.
struct Replies {
    hash: u64,
    bytes: Box<[u8]>,
    /// Where each rotation's reply ends in `bytes`; `count` of them are used.
    ends: [u32; ROTATIONS],
    count: usize,
}

impl Replies {
    /// The bytes of `encoded` (each at least a header long), or `None` when there are
    /// none or they are too big to index.
    fn new(hash: u64, encoded: &[Vec<u8>]) -> Option<Replies> {
        let mut ends = [0u32; ROTATIONS];
        let mut bytes = Vec::with_capacity(encoded.iter().map(Vec::len).sum());
        for (end, reply) in ends.iter_mut().zip(encoded) {
            bytes.extend_from_slice(reply);
            *end = u32::try_from(bytes.len()).ok()?;
        }
        let count = encoded.len().min(ROTATIONS);
        (count > 0).then(|| Replies {
            hash,
            bytes: bytes.into_boxed_slice(),
            ends,
            count,
        })
    }

    fn rotation(&self, k: usize) -> &[u8] {
        let start = if k == 0 { 0 } else { self.ends[k - 1] as usize };
        &self.bytes[start..self.ends[k] as usize]
    }

    /// Whether these are the replies to `question` (name, type and class).
    fn answer(&self, question: &[u8]) -> bool {
        self.bytes.get(12..12 + question.len()) == Some(question)
    }
}

impl FastCache {
    /// Answers from `zone` (none: no answers) from now on; what was encoded for another
    /// zone is dropped.
    fn use_zone(&mut self, zone: Option<&Arc<Zone>>) {
        let changed = match zone {
            Some(zone) => switch_zone(&mut self.zone, zone),
            None => self.zone.take().is_some(),
        };
        if changed {
            self.replies.clear();
            self.soa = None;
        }
    }

    fn hash(&self, question: &[u8]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(question);
        hasher.finish()
    }

    /// The next reply to `question`, if it was answered with records before.
    fn cached(&mut self, question: &[u8]) -> Option<&[u8]> {
        let hash = self.hash(question);
        let replies = self.replies.find(hash, |r| r.answer(question))?;
        self.turn = self.turn.wrapping_add(1);
        Some(replies.rotation(self.turn % replies.count))
    }

    /// Answers a question not cached into `out` (empty) from the zone, within `room`
    /// bytes, and keeps the replies when the zone has records for it. The rcode, or `None`
    /// to leave the query to the full path.
    fn answer_new(
        &mut self,
        question: &[u8],
        qtype: u16,
        room: usize,
        out: &mut Vec<u8>,
    ) -> Option<ResponseCode> {
        let query_type = QueryType::from_code(qtype);
        if matches!(query_type, QueryType::Other(_)) {
            return None;
        }
        let zone = self.zone.clone()?;
        let zone = zone.as_ref();
        let mut buf = [0u8; NAME_BUF];
        let key = lookup_key(question, &mut buf)?;
        let lookup = zone.lookup(key, query_type);
        match lookup {
            Lookup::Found {
                answers,
                additional,
            } => {
                let encoded = encode_answers(zone, key, qtype, answers, additional)?;
                let hash = self.hash(question);
                let replies = Replies::new(hash, &encoded)?;
                if !replies.answer(question) {
                    return None;
                }
                // Kept even when too big for this query: a client with a larger EDNS
                // size gets it next time.
                let entry = self.replies.insert_unique(hash, replies, |r| r.hash);
                let reply = entry.get().rotation(0);
                if reply.len() > room {
                    return None;
                }
                out.extend_from_slice(reply);
                Some(ResponseCode::NoError)
            }
            Lookup::NoData | Lookup::NxDomain => {
                let soa = self.soa(zone)?;
                let rcode = if lookup == Lookup::NoData {
                    ResponseCode::NoError
                } else {
                    ResponseCode::NXDomain
                };
                if 12 + question.len() + soa.len() > room {
                    return None;
                }
                // Header: QR AA, NOERROR/NXDOMAIN; one question, one authority.
                let low = u16::from(rcode.low()) as u8;
                out.extend_from_slice(&[0, 0, 0x84, low, 0, 1, 0, 0, 0, 1, 0, 0]);
                out.extend_from_slice(question);
                out.extend_from_slice(&soa);
                Some(rcode)
            }
            Lookup::OutsideZone => None,
        }
    }

    fn soa(&mut self, zone: &Zone) -> Option<Arc<[u8]>> {
        self.soa
            .get_or_insert_with(|| {
                let record = soa_of(zone)?;
                let mut bytes = Vec::with_capacity(128);
                let mut encoder = BinEncoder::new(&mut bytes);
                // No compression: the record goes behind a question of any length.
                encoder.set_canonical_form(true);
                record.emit(&mut encoder).ok()?;
                Some(bytes.into())
            })
            .clone()
    }
}

/// The replies to `key`/`qtype`: AA, NOERROR, the question in lower case, the answers
/// rotated (up to `ROTATIONS` orders) and the additional records.
fn encode_answers(
    zone: &Zone,
    key: &str,
    qtype: u16,
    answers: &[Record],
    additional: &[Record],
) -> Option<Vec<Vec<u8>>> {
    let owner = answers.first().and_then(|r| name(zone.name(r.owner)))?;
    let answers: Vec<WireRecord> = answers
        .iter()
        .filter_map(|r| to_wire(zone, r, Some(&owner)))
        .collect();
    let additional: Vec<WireRecord> = additional
        .iter()
        .filter_map(|r| to_wire(zone, r, None))
        .collect();
    let question = Query::query(name(key)?, WireType::from(qtype));
    let n = answers.len().max(1);
    let count = n.min(ROTATIONS);
    (0..count)
        .map(|k| {
            let rotate = k * n / count;
            let mut message = Message::new(0, MessageType::Response, OpCode::Query);
            message.metadata.authoritative = true;
            message.add_query(question.clone());
            message.add_answers(answers[rotate..].iter().chain(&answers[..rotate]).cloned());
            message.add_additionals(additional.iter().cloned());
            message.to_vec().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::dns::handler::Outcome;
    use crate::dns::records::RecordSets;
    use crate::dns::server::DnsServerSettings;
    use crate::dns::zone::ZoneOptions;
    use crate::handles::ZoneWriter;
    use crate::metrics::Metrics;

    /// A query with ID 0x1234 and RD for `name` (dotted, no trailing dot), with an OPT
    /// record of `edns` bytes when given.
    fn query(name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
        let arcount = u8::from(edns.is_some());
        let mut q = vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, arcount];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        if let Some(size) = edns {
            q.extend_from_slice(&[0, 0, 41]);
            q.extend_from_slice(&size.to_be_bytes());
            q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        }
        q
    }

    /// `web.mesos` with `ips` A records and an SRV for each of `ports`.
    fn zone(ips: &[Ipv4Addr], ports: &[u16]) -> Arc<Zone> {
        let mut sets = RecordSets::default();
        let ips: Vec<IpAddr> = ips.iter().map(|&ip| ip.into()).collect();
        let target = sets.add_ips("web.mesos.", &ips).expect("addresses");
        sets.add_srvs("_web._tcp.mesos.", target, ports);
        let mut options = ZoneOptions::mesos_dns_defaults("mesos");
        options.soa.mname = "ns1.mesos.".into();
        Arc::new(Zone::from_record_sets(sets, &options, 1))
    }

    fn handler(writer: &ZoneWriter) -> DnsHandler {
        let metrics = Metrics::new(prometheus::Registry::new());
        DnsHandler::new(
            &DnsServerSettings::new("mesos", Vec::new()),
            writer.reader(),
            &metrics,
        )
    }

    fn full(handler: &DnsHandler, p: &[u8]) -> Vec<u8> {
        match handler.answer_packet(p, Transport::Udp) {
            Outcome::Reply(reply) => reply,
            _ => panic!("no reply"),
        }
    }

    #[test]
    fn parse_reads_the_shape_of_a_query() {
        let q = query("web.mesos", 1, None);
        let parsed = FastQuery::parse(&q).expect("a plain query");
        assert_eq!(parsed.qtype, 1);
        assert_eq!(parsed.question(&q), &q[12..]);
        assert_eq!(parsed.edns_payload, None);
        let q = query("web.mesos", 33, Some(1232));
        let parsed = FastQuery::parse(&q).expect("with OPT");
        assert_eq!((parsed.qtype, parsed.edns_payload), (33, Some(1232)));
        assert_eq!(parsed.question(&q).len(), 1 + 3 + 1 + 5 + 1 + 4);
        // The shape only: upper case passes here and is refused by `lookup_key`.
        assert!(FastQuery::parse(&query("WEB.mesos", 1, None)).is_some());
        // A name of 255 bytes passes, one of 256 does not.
        let long = |last: usize| format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(last));
        assert!(FastQuery::parse(&query(&long(61), 1, None)).is_some());
        assert!(FastQuery::parse(&query(&long(62), 1, None)).is_none());

        let refused = |what: &str, edit: &dyn Fn(&mut Vec<u8>)| {
            let mut q = query("web.mesos", 1, Some(1232));
            edit(&mut q);
            assert_eq!(FastQuery::parse(&q), None, "{what}");
        };
        refused("a response", &|q| q[2] |= 0x80);
        refused("opcode STATUS", &|q| q[2] |= 2 << 3);
        refused("two questions", &|q| q[5] = 2);
        refused("an answer record", &|q| q[7] = 1);
        refused("two additional records", &|q| q[11] = 2);
        refused("a label over 63", &|q| q[12] = 64);
        refused("a compression pointer", &|q| q[16] = 0xc0);
        refused("class CH", &|q| q[26] = 3);
        refused("EDNS version 1", &|q| q[33] = 1);
        refused("an EDNS option", &|q| q[36] = 4);
        refused("bytes after the OPT", &|q| q.push(0));
        refused("cut in the name", &|q| q.truncate(15));
        refused("cut in the OPT", &|q| q.truncate(q.len() - 1));
        let mut q = query("web.mesos", 1, None);
        q.push(0);
        assert_eq!(FastQuery::parse(&q), None, "bytes after the question");
    }

    #[test]
    fn lookup_key_takes_lower_case_host_names_only() {
        let key = |name: &str| {
            let q = query(name, 1, None);
            let mut buf = [0u8; NAME_BUF];
            lookup_key(&q[12..], &mut buf).map(str::to_string)
        };
        assert_eq!(
            key("_http._tcp.svc-1.mesos").as_deref(),
            Some("_http._tcp.svc-1.mesos.")
        );
        assert_eq!(key("Web.mesos"), None);
        assert_eq!(key("w*b.mesos"), None);
        assert_eq!(key("w.b"), Some("w.b.".to_string()));
        // A dot inside a label is not the name `w.b`.
        let mut q = query("wxb", 1, None);
        q[14] = b'.';
        assert_eq!(lookup_key(&q[12..], &mut [0u8; NAME_BUF]), None);
        // The root.
        let mut root = vec![0u8];
        root.extend_from_slice(&[0, 1, 0, 1]);
        assert_eq!(lookup_key(&root, &mut [0u8; NAME_BUF]), None);
    }

    /// A question answered again comes from the cache: the same reply as the first time,
    /// with this query's ID, RD and OPT, and the same header and counts as the full path.
    #[test]
    fn a_cached_reply_is_the_reply_the_zone_gives() {
        let writer = ZoneWriter::new();
        writer.store(Some(zone(&[Ipv4Addr::new(10, 0, 0, 1)], &[31000])));
        let handler = handler(&writer);
        let mut fast = FastPath::default();
        fast.start_batch(&handler);
        for (qtype, edns) in [(1, None), (33, None), (1, Some(1232)), (255, Some(4096))] {
            let mut q = query("web.mesos", qtype, edns);
            if qtype == 33 {
                q = query("_web._tcp.mesos", qtype, edns);
            }
            let (mut first, mut again) = (Vec::new(), Vec::new());
            assert!(fast.answer(&handler, &q, &mut first), "{qtype}");
            q[0..2].copy_from_slice(&[0xab, 0xcd]);
            q[2] &= !0x01;
            assert!(fast.answer(&handler, &q, &mut again), "{qtype}, cached");
            let slow = full(&handler, &q);
            assert_eq!(again[..12], slow[..12], "{qtype}: header and counts");
            assert_eq!(&again[..4], &[0xab, 0xcd, 0x84, 0x00], "ID, AA, RD clear");
            assert_eq!(first[2] & !0x01, again[2], "{qtype}: only RD differs");
            assert_eq!(first[3..], again[3..], "{qtype}: the same reply");
            let question = q.len() - edns.map_or(0, |_| OPT_LEN);
            assert_eq!(
                again[12..question],
                q[12..question],
                "{qtype}: the question"
            );
            if let Some(size) = edns {
                let opt = &again[again.len() - OPT_LEN..];
                assert_eq!(opt[..5], [0, 0, 41, (size >> 8) as u8, size as u8]);
            }
        }
        // Mixed case and names the zone lacks are never cached as found.
        let mut out = Vec::new();
        assert!(!fast.answer(&handler, &query("WEB.mesos", 1, None), &mut out));
        let nx = query("nope.mesos", 1, None);
        for _ in 0..2 {
            assert!(fast.answer(&handler, &nx, &mut out));
            assert_eq!(out[3] & 0x0f, 3, "NXDOMAIN");
            assert_eq!(out[..12], full(&handler, &nx)[..12]);
        }
    }

    /// Several records go out in turns of order, each order the full path could send.
    #[test]
    fn cached_replies_rotate_the_answers() {
        let ips: Vec<Ipv4Addr> = (1..=3).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let writer = ZoneWriter::new();
        writer.store(Some(zone(&ips, &[31000])));
        let handler = handler(&writer);
        let mut fast = FastPath::default();
        fast.start_batch(&handler);
        let q = query("web.mesos", 1, None);
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..6 {
            let mut out = Vec::new();
            assert!(fast.answer(&handler, &q, &mut out));
            assert_eq!(u16::from_be_bytes([out[6], out[7]]), 3);
            // The first answer's address: the last four bytes of its record.
            let first = 12 + (q.len() - 12) + 2 + 2 + 2 + 4 + 2;
            firsts.insert(out[first..first + 4].to_vec());
        }
        assert_eq!(firsts.len(), 3, "each address goes first in turn");
    }

    #[test]
    fn a_new_zone_empties_the_cache() {
        let writer = ZoneWriter::new();
        writer.store(Some(zone(&[Ipv4Addr::new(10, 0, 0, 1)], &[31000])));
        let handler = handler(&writer);
        let mut fast = FastPath::default();
        fast.start_batch(&handler);
        let q = query("web.mesos", 1, None);
        let mut out = Vec::new();
        assert!(fast.answer(&handler, &q, &mut out));
        assert_eq!(out[out.len() - 4..], [10, 0, 0, 1]);
        writer.store(Some(zone(&[Ipv4Addr::new(10, 0, 0, 2)], &[31000])));
        // The batch under way answers from the zone it started with.
        assert!(fast.answer(&handler, &q, &mut out));
        assert_eq!(out[out.len() - 4..], [10, 0, 0, 1]);
        fast.start_batch(&handler);
        assert!(fast.answer(&handler, &q, &mut out));
        assert_eq!(out[out.len() - 4..], [10, 0, 0, 2]);
        // No zone: nothing for the fast path (the full path answers SERVFAIL).
        writer.store(None);
        fast.start_batch(&handler);
        assert!(!fast.answer(&handler, &q, &mut out));
    }

    /// A batch's answers reach the query metric when it finishes, by type and rcode.
    #[test]
    fn a_batch_is_counted_when_it_finishes() {
        let writer = ZoneWriter::new();
        writer.store(Some(zone(&[Ipv4Addr::new(10, 0, 0, 1)], &[31000])));
        let metrics = Metrics::new(prometheus::Registry::new());
        let handler = DnsHandler::new(
            &DnsServerSettings::new("mesos", Vec::new()),
            writer.reader(),
            &metrics,
        );
        let count = |qtype: &str, rcode: &str| {
            metrics
                .dns_queries
                .with_label_values(&[qtype, rcode, "udp"])
                .get()
        };
        let mut fast = FastPath::default();
        let mut out = Vec::new();
        for round in 0..2 {
            fast.start_batch(&handler);
            for q in [
                query("web.mesos", 1, None),
                query("web.mesos", 1, Some(1232)),
                query("_web._tcp.mesos", 33, None),
                query("nope.mesos", 28, None),
                query("web.mesos", 28, None),
            ] {
                assert!(fast.answer(&handler, &q, &mut out));
            }
            assert_eq!(
                count("A", "NOERROR"),
                2 * round,
                "not before the batch ends"
            );
            fast.finish_batch(&handler);
        }
        assert_eq!(count("A", "NOERROR"), 4);
        assert_eq!(count("SRV", "NOERROR"), 2);
        assert_eq!(count("AAAA", "NXDOMAIN"), 2);
        assert_eq!(count("AAAA", "NOERROR"), 2, "NODATA");
    }

    /// An answer over the UDP limit is the full path's (it sets TC), cached or not; with
    /// room enough for it (EDNS) the cached reply goes out whole.
    #[test]
    fn an_answer_over_the_limit_is_left_to_the_full_path() {
        let ips: Vec<Ipv4Addr> = (1..=40).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let writer = ZoneWriter::new();
        writer.store(Some(zone(&ips, &[31000])));
        let handler = handler(&writer);
        let mut fast = FastPath::default();
        fast.start_batch(&handler);
        let mut out = Vec::new();
        for _ in 0..2 {
            assert!(!fast.answer(&handler, &query("web.mesos", 1, None), &mut out));
        }
        assert!(fast.answer(&handler, &query("web.mesos", 1, Some(1232)), &mut out));
        assert_eq!(u16::from_be_bytes([out[6], out[7]]), 40);
        assert_eq!(out[2] & 0x02, 0, "not truncated");
    }
}
