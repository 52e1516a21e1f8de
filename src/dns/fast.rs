//! The UDP fast path: a well-formed single-question IN query for a lower-case name the zone
//! answers (or denies) within 512 bytes or the client's EDNS size is answered from replies
//! encoded once per (zone, record set) and thread, with the ID, RD/CD flags and OPT payload
//! patched in: no task, no parsing into hickory types, no encoding per query (DESIGN §6b).
//! Everything else (other classes, opcodes or counts, mixed case, `.*`, EDNS options or
//! versions, truncation, names outside the zone, garbage) is left to
//! `DnsHandler::answer_packet`. The answers are byte-for-byte what that path sends, except
//! that name compression may differ.
//!
//! `FastQuery::parse` reads untrusted bytes: every index is checked (`get`), and it never
//! panics, whatever the input.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Record as WireRecord, RecordType as WireType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use crate::dns::handler::{DnsHandler, MIN_UDP_PAYLOAD};
use crate::dns::labels::{QtypeLabel, Transport};
use crate::dns::wire::{name, soa_of, switch_zone, to_wire, AddressHasher, NAME_BUF};
use crate::dns::zone::{Lookup, QueryType, Record, Zone};

// === impl DnsHandler (fast path) ===

impl DnsHandler {
    /// Answers `p` into `out` if it is a query the fast path takes (see the module
    /// documentation); false leaves it to `answer_packet`. Counted when answered.
    pub fn fast_answer(&self, p: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(q) = FastQuery::parse(p) else {
            return false;
        };
        let qtype = QueryType::from_code(q.qtype);
        if matches!(qtype, QueryType::Other(_)) {
            return false;
        }
        let guard = self.zone.load();
        let Some(zone) = guard.as_ref() else {
            return false;
        };
        // Only lower-case host-name bytes and dots: valid UTF-8.
        let Ok(key) = std::str::from_utf8(&q.key[..q.key_len]) else {
            return false;
        };
        let lookup = zone.lookup(key, qtype);
        let limit = match q.edns_payload {
            Some(payload) => payload.min(self.max_udp_payload).max(MIN_UDP_PAYLOAD),
            None => MIN_UDP_PAYLOAD,
        };
        let opt_len = if q.edns_payload.is_some() { OPT_LEN } else { 0 };
        let question = &p[12..q.question_end];
        let rcode = FAST.with(|fast| {
            let mut fast = fast.borrow_mut();
            fast.use_zone(zone);
            out.clear();
            match lookup {
                Lookup::Found {
                    answers,
                    additional,
                } => {
                    let encoded = fast.answer(zone, key, q.qtype, answers, additional)?;
                    let message = fast.pick(&encoded);
                    if message.len() + opt_len > usize::from(limit)
                        || message.get(12..q.question_end) != Some(question)
                    {
                        return None;
                    }
                    out.extend_from_slice(message);
                    Some(ResponseCode::NoError)
                }
                Lookup::NoData | Lookup::NxDomain => {
                    let soa = fast.soa(zone)?;
                    let rcode = if lookup == Lookup::NoData {
                        ResponseCode::NoError
                    } else {
                        ResponseCode::NXDomain
                    };
                    if 12 + question.len() + soa.len() + opt_len > usize::from(limit) {
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
        });
        let Some(rcode) = rcode else {
            return false;
        };
        // ID, then RD and CD as the query had them (`Metadata::response_from_request`).
        out[0] = p[0];
        out[1] = p[1];
        out[2] = (out[2] & !0x01) | (p[2] & 0x01);
        out[3] = (out[3] & !0x10) | (p[3] & 0x10);
        if let Some(_payload) = q.edns_payload {
            let arcount = u16::from_be_bytes([out[10], out[11]]).saturating_add(1);
            out[10..12].copy_from_slice(&arcount.to_be_bytes());
            // OPT: root owner, type 41, class = our payload size, no extended RCODE,
            // version 0, no flags, no options (`Edns::new()` as `reply_edns` sets it).
            let [hi, lo] = limit.to_be_bytes();
            out.extend_from_slice(&[0, 0, 41, hi, lo, 0, 0, 0, 0, 0, 0]);
        }
        self.counters.count(
            QtypeLabel::of(WireType::from(q.qtype)),
            rcode,
            Transport::Udp,
        );
        true
    }
}

/// An OPT record without options.
const OPT_LEN: usize = 11;

/// How many answer orders are encoded per record set (more orders than that are sent as
/// that many evenly spaced rotations).
const ROTATIONS: usize = 8;

/// A query the fast path can take, as far as the packet alone tells.
pub struct FastQuery {
    /// The question name as `Zone::lookup` takes it (dots, trailing dot).
    key: [u8; NAME_BUF],
    key_len: usize,
    qtype: u16,
    /// Where the question ends (and the OPT record, if any, starts).
    question_end: usize,
    /// The OPT record's payload size, if the query has one.
    edns_payload: Option<u16>,
}

impl FastQuery {
    /// A query (QR=0, opcode QUERY), one question of class IN for a name of lower-case
    /// letters, digits, `-` and `_`, no answer or authority records, at most an OPT
    /// record (version 0, no extended RCODE, no options) as the only additional; nothing
    /// after that.
    pub fn parse(p: &[u8]) -> Option<FastQuery> {
        if p.len() < 12 + 5 || p[2] & 0xf8 != 0 || p[4..10] != [0, 1, 0, 0, 0, 0] {
            return None;
        }
        let arcount = u16::from_be_bytes([p[10], p[11]]);
        if arcount > 1 {
            return None;
        }
        let mut key = [0u8; NAME_BUF];
        let mut key_len = 0;
        let mut i = 12;
        loop {
            let len = usize::from(*p.get(i)?);
            if len == 0 {
                i += 1;
                break;
            }
            let label = p.get(i + 1..i + 1 + len)?;
            if len > 63 || key_len + len + 1 > 254 {
                return None;
            }
            if !label
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                return None;
            }
            key[key_len..key_len + len].copy_from_slice(label);
            key[key_len + len] = b'.';
            key_len += len + 1;
            i += 1 + len;
        }
        if key_len == 0 {
            return None;
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
            key,
            key_len,
            qtype,
            question_end,
            edns_payload,
        })
    }
}

thread_local! {
    static FAST: RefCell<FastCache> = RefCell::new(FastCache::default());
}

/// Complete replies, one per answer rotation.
type Encoded = Arc<[Box<[u8]>]>;

/// The fast path's encoded answers, per thread, for one zone (like `WireCache`).
#[derive(Default)]
struct FastCache {
    zone: Option<Arc<Zone>>,
    /// By (address, length) of the answer slice and the question type (ANY and a type
    /// can share a slice): a few complete replies (ID 0, RD 0, no OPT), one per rotation.
    answers: HashMap<(usize, usize, u16), Option<Encoded>, BuildHasherDefault<AddressHasher>>,
    /// The zone's SOA as an authority record, uncompressed.
    soa: Option<Option<Arc<[u8]>>>,
    /// Round-robin over the rotations.
    turn: usize,
}

impl FastCache {
    fn use_zone(&mut self, zone: &Arc<Zone>) {
        if switch_zone(&mut self.zone, zone) {
            self.answers.clear();
            self.soa = None;
        }
    }

    fn pick<'e>(&mut self, encoded: &'e [Box<[u8]>]) -> &'e [u8] {
        self.turn = self.turn.wrapping_add(1);
        &encoded[self.turn % encoded.len()]
    }

    /// After `use_zone(zone)`, with `answers` and `additional` from that zone.
    fn answer(
        &mut self,
        zone: &Zone,
        key: &str,
        qtype: u16,
        answers: &[Record],
        additional: &[Record],
    ) -> Option<Encoded> {
        let id = (answers.as_ptr() as usize, answers.len(), qtype);
        self.answers
            .entry(id)
            .or_insert_with(|| encode_answers(zone, key, qtype, answers, additional))
            .clone()
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
) -> Option<Encoded> {
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
            message.to_vec().ok().map(Vec::into_boxed_slice)
        })
        .collect()
}
