//! One DNS message in, one reply out, without sockets: the checks every message goes through
//! (header, question count, parse, EDNS version, opcode, class, type), the zone's answer as
//! wire records, forwarding outside the domain, and the reply's encoding for UDP or TCP. The
//! answers it gives are listed in `dns::server`'s documentation; `dns::server` (UDP) and
//! `dns::tcp` hand packets in and send what comes out, after the UDP fast path
//! (`dns::fast`) has taken the queries it can.
//!
//! `answer_packet` is the entry for untrusted bytes: it never panics, allocates in
//! proportion to the packet's size, and does no I/O; only forwarding (`forward`) waits.

use std::cell::RefCell;
use std::sync::Arc;

use hickory_proto::op::{
    Edns, Header, LowerQuery, Message, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_proto::rr::{DNSClass, Record as WireRecord, RecordType as WireType};
use hickory_proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder, DecodeError,
};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tracing::{debug, warn};

use crate::dns::forward::Forwarder;
use crate::dns::labels::{QtypeLabel, QueryCounters, Transport};
use crate::dns::server::DnsServerSettings;
use crate::dns::wire::{query_key, WireAnswer, CACHE, NAME_BUF};
use crate::dns::zone::{Lookup, QueryType};
use crate::handles::ZoneReader;
use crate::metrics::Metrics;

/// RFC 1035: the UDP limit without EDNS; RFC 6891 §6.2.5: the least an EDNS size means.
pub(crate) const MIN_UDP_PAYLOAD: u16 = 512;

/// Answers queries from the zone in use (one `load()` per query).
pub struct DnsHandler {
    pub(super) zone: ZoneReader,
    /// `mesos.` and `.mesos.`, lower case.
    apex: Box<str>,
    dot_apex: Box<str>,
    forwarder: Option<Forwarder>,
    /// Our largest UDP reply, whatever the client advertises.
    pub(super) max_udp_payload: u16,
    pub(super) counters: QueryCounters,
}

/// What to do with one packet.
pub enum Outcome {
    /// Send this reply.
    Reply(Vec<u8>),
    /// Send nothing: there is no header to answer to, or the packet is a response
    /// (answering responses could start a loop between two servers; RFC 8906 §3.1.1 asks
    /// for an answer to every query, and these are not queries).
    Silent,
    /// A name outside the domain, with forwarding on: `DnsHandler::forward` answers it.
    Forward(Forward),
}

/// A query to forward, as parsed, with its bytes.
pub struct Forward {
    query: ParsedQuery,
    raw: Vec<u8>,
}

/// The parts of a query its reply needs.
struct ParsedQuery {
    metadata: Metadata,
    /// The question, with the bytes as sent (echoed in the reply).
    queries: Queries,
    edns: Option<Edns>,
    transport: Transport,
}

/// What the zone said, in wire records.
enum ZoneAnswer {
    /// Answers sent starting at `rotate` (and wrapping around): a random rotation per
    /// response spreads clients over the records without copying them.
    Records {
        wire: Arc<WireAnswer>,
        rotate: usize,
    },
    Negative {
        rcode: ResponseCode,
        soa: Option<Arc<WireRecord>>,
    },
    /// In the domain, but no zone yet.
    NotReady,
    Outside,
}

thread_local! {
    /// Answer shuffling only needs to spread load, not to be unpredictable.
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

// === impl DnsHandler ===

impl DnsHandler {
    /// A handler for `settings`' domain and forwarders, answering from `zone` and counting
    /// into `metrics`.
    pub fn new(settings: &DnsServerSettings, zone: ZoneReader, metrics: &Metrics) -> DnsHandler {
        let domain = settings.domain.trim_end_matches('.').to_ascii_lowercase();
        DnsHandler {
            counters: QueryCounters::new(metrics.dns_queries.clone()),
            zone,
            apex: format!("{domain}.").into(),
            dot_apex: format!(".{domain}.").into(),
            forwarder: (!settings.forward.is_empty())
                .then(|| Forwarder::new(settings.forward.clone(), settings.forward_timeout)),
            max_udp_payload: settings.max_udp_payload.max(MIN_UDP_PAYLOAD),
        }
    }

    /// The reply to `packet`, received over `transport`; everything but the UDP fast path
    /// (`FastPath::answer`) and forwarding. Every reply is counted.
    pub fn answer_packet(&self, packet: &[u8], transport: Transport) -> Outcome {
        let mut decoder = BinDecoder::new(packet);
        let Ok(header) = Header::read(&mut decoder) else {
            return Outcome::Silent;
        };
        if header.metadata.message_type == MessageType::Response {
            return Outcome::Silent;
        }
        // No query holds more than one question; refused before hickory reserves room for
        // QDCOUNT of them.
        if header.counts.queries > 1 {
            return Outcome::Reply(self.header_error(&header, ResponseCode::FormErr, transport));
        }
        let query = match read_query(&mut decoder, header, transport) {
            Ok(query) => query,
            Err(e) => {
                debug!(error = %e, %transport, "malformed DNS query");
                return Outcome::Reply(self.header_error(
                    &header,
                    ResponseCode::FormErr,
                    transport,
                ));
            }
        };
        let qtype = query.qtype_label();
        // Counted before the answer leaves, so whoever reads the metric after the answer
        // arrives sees it.
        let count = |rcode: ResponseCode| self.counters.count(qtype, rcode, transport);
        let question = match zone_question(&query) {
            Ok(question) => question,
            Err(rcode) => {
                count(rcode);
                return Outcome::Reply(self.error(&query, rcode));
            }
        };
        let mut buf = [0u8; NAME_BUF];
        let key = query_key(question.name(), &mut buf);
        let lookup_type = QueryType::from_code(u16::from(question.query_type()));

        match self.answer_from_zone(key, lookup_type) {
            ZoneAnswer::Records { wire, rotate } => {
                count(ResponseCode::NoError);
                let metadata = authoritative(&query, ResponseCode::NoError);
                let (tail, head) = wire.answers.split_at(rotate);
                Outcome::Reply(self.encode(
                    &query,
                    metadata,
                    head.iter().chain(tail),
                    &[],
                    &wire.additional,
                ))
            }
            ZoneAnswer::Negative { rcode, soa } => {
                count(rcode);
                let metadata = authoritative(&query, rcode);
                let authority = soa.as_deref().map(std::slice::from_ref).unwrap_or_default();
                Outcome::Reply(self.encode(&query, metadata, std::iter::empty(), authority, &[]))
            }
            ZoneAnswer::NotReady => {
                count(ResponseCode::ServFail);
                Outcome::Reply(self.error(&query, ResponseCode::ServFail))
            }
            ZoneAnswer::Outside if self.forwarder.is_some() => Outcome::Forward(Forward {
                query,
                raw: packet.to_vec(),
            }),
            ZoneAnswer::Outside => {
                count(ResponseCode::Refused);
                Outcome::Reply(self.error(&query, ResponseCode::Refused))
            }
        }
    }

    /// The upstream's answer to a query `answer_packet` left to forwarding, under the
    /// client's ID; SERVFAIL when no resolver answered.
    pub async fn forward(&self, forward: Forward) -> Vec<u8> {
        let Forward { query, raw } = forward;
        let qtype = query.qtype_label();
        let reply = match &self.forwarder {
            Some(forwarder) => forwarder.forward(&raw, query.transport).await,
            None => None,
        };
        let Some(reply) = reply else {
            self.counters
                .count(qtype, ResponseCode::ServFail, query.transport);
            return self.error(&query, ResponseCode::ServFail);
        };
        self.counters
            .count(qtype, reply.metadata.response_code, query.transport);
        let mut metadata = reply.metadata;
        metadata.id = query.metadata.id;
        let Message {
            answers,
            authorities,
            additionals,
            ..
        } = reply;
        self.encode(&query, metadata, answers.iter(), &authorities, &additionals)
    }

    /// `answer_packet`, then `forward` if it asks for it; `None`: send nothing.
    pub async fn answer(&self, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
        match self.answer_packet(packet, transport) {
            Outcome::Reply(reply) => Some(reply),
            Outcome::Silent => None,
            Outcome::Forward(forward) => Some(self.forward(forward).await),
        }
    }

    fn in_domain(&self, key: &str) -> bool {
        key.eq_ignore_ascii_case(&self.apex)
            || (key.len() > self.dot_apex.len()
                && key.as_bytes()[key.len() - self.dot_apex.len()..]
                    .eq_ignore_ascii_case(self.dot_apex.as_bytes()))
    }

    /// The answer the zone gives, as wire records, or why there is none. Holds the zone
    /// guard only while reading it; the wire records come from this thread's `WireCache`.
    fn answer_from_zone(&self, key: &str, qtype: QueryType) -> ZoneAnswer {
        let guard = self.zone.load();
        let Some(zone) = guard.as_ref() else {
            return if self.in_domain(key) {
                ZoneAnswer::NotReady
            } else {
                ZoneAnswer::Outside
            };
        };
        let lookup = zone.lookup(key, qtype);
        if matches!(lookup, Lookup::OutsideZone) {
            return ZoneAnswer::Outside;
        }
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            cache.use_zone(zone);
            match lookup {
                Lookup::Found {
                    answers,
                    additional,
                } => {
                    let wire = cache.answer(zone, answers, additional);
                    let rotate = if wire.answers.len() > 1 {
                        RNG.with(|rng| rng.borrow_mut().random_range(0..wire.answers.len()))
                    } else {
                        0
                    };
                    ZoneAnswer::Records { wire, rotate }
                }
                Lookup::NoData => ZoneAnswer::Negative {
                    rcode: ResponseCode::NoError,
                    soa: cache.soa(zone),
                },
                Lookup::NxDomain => ZoneAnswer::Negative {
                    rcode: ResponseCode::NXDomain,
                    soa: cache.soa(zone),
                },
                Lookup::OutsideZone => ZoneAnswer::Outside,
            }
        })
    }

    /// The EDNS of our reply: present when the query had one (RFC 6891 §6.1.1), version 0,
    /// no options (unknown ones are not echoed), DO clear (we do not sign); its payload size
    /// is the client's within our bounds, and is also where UDP replies are cut.
    fn reply_edns(&self, query: &ParsedQuery) -> Option<Edns> {
        query.edns.as_ref().map(|query_edns| {
            let mut edns = Edns::new();
            edns.set_max_payload(
                query_edns
                    .max_payload()
                    .clamp(MIN_UDP_PAYLOAD, self.max_udp_payload),
            );
            edns
        })
    }

    /// An error reply: the question echoed, nothing else but the OPT record.
    fn error(&self, query: &ParsedQuery, rcode: ResponseCode) -> Vec<u8> {
        let mut metadata = Metadata::response_from_request(&query.metadata);
        metadata.response_code = rcode;
        self.encode(query, metadata, std::iter::empty(), &[], &[])
    }

    /// An error reply to a packet that did not parse beyond its header: the header alone
    /// (QR set, ID, opcode, RD and CD as sent). Counted under qtype "other".
    fn header_error(&self, header: &Header, rcode: ResponseCode, transport: Transport) -> Vec<u8> {
        self.counters.count(QtypeLabel::Other, rcode, transport);
        let mut metadata = Metadata::response_from_request(&header.metadata);
        metadata.response_code = rcode;
        let mut bytes = Vec::with_capacity(12);
        let header = Header {
            metadata,
            counts: Default::default(),
        };
        // Twelve bytes into a vector: cannot fail.
        let _ = header.emit(&mut BinEncoder::new(&mut bytes));
        bytes
    }

    /// The reply to `query`, as hickory encodes it: cut at the reply's EDNS payload size
    /// (512 without EDNS) over UDP, TC set when cut; up to 65535 bytes over TCP.
    fn encode<'r>(
        &self,
        query: &ParsedQuery,
        metadata: Metadata,
        answers: impl Iterator<Item = &'r WireRecord> + Send + 'r,
        authority: &'r [WireRecord],
        additional: &'r [WireRecord],
    ) -> Vec<u8> {
        let edns = self.reply_edns(query);
        let mut builder = MessageResponseBuilder::new(&query.queries, None);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let limit = match query.transport {
            Transport::Udp => edns.as_ref().map_or(MIN_UDP_PAYLOAD, |e| e.max_payload()),
            Transport::Tcp => u16::MAX,
        };
        emit(
            builder.build(metadata, answers, authority, [], additional),
            limit,
        )
    }
}

impl ParsedQuery {
    /// The `qtype` label: the question's type, "other" without one.
    fn qtype_label(&self) -> QtypeLabel {
        self.queries
            .queries()
            .first()
            .map_or(QtypeLabel::Other, |q| QtypeLabel::of(q.query_type()))
    }
}

/// The question of a query the zone (or forwarding) answers, or the RCODE that refuses
/// it, in the order the checks apply.
fn zone_question(query: &ParsedQuery) -> Result<&LowerQuery, ResponseCode> {
    if query.edns.as_ref().is_some_and(|e| e.version() > 0) {
        // RFC 6891 §6.1.3: we speak version 0 only.
        return Err(ResponseCode::BADVERS);
    }
    if query.metadata.op_code != OpCode::Query {
        return Err(ResponseCode::NotImp);
    }
    let [question] = query.queries.queries() else {
        return Err(ResponseCode::FormErr);
    };
    if !matches!(question.query_class(), DNSClass::IN | DNSClass::ANY) {
        // As Knot and BIND: no zone of ours is in another class.
        return Err(ResponseCode::Refused);
    }
    if matches!(question.query_type(), WireType::AXFR | WireType::IXFR) {
        // No zone transfers: REFUSED, as BIND answers one its `allow-transfer` denies.
        return Err(ResponseCode::Refused);
    }
    Ok(question)
}

/// Reads the rest of a query after its header, as hickory's server does: the question
/// (bytes kept), the records of every section (at most one OPT, only in additional; TSIG
/// last), nothing after them looked at.
fn read_query(
    decoder: &mut BinDecoder<'_>,
    header: Header,
    transport: Transport,
) -> Result<ParsedQuery, DecodeError> {
    let (counts, op) = (header.counts, header.metadata.op_code);
    let queries = Queries::read(decoder, usize::from(counts.queries))?;
    Message::read_records(decoder, usize::from(counts.answers), false, op)?;
    Message::read_records(decoder, usize::from(counts.authorities), false, op)?;
    let (_, edns, _) = Message::read_records(decoder, usize::from(counts.additionals), true, op)?;
    Ok(ParsedQuery {
        metadata: header.metadata,
        queries,
        edns,
        transport,
    })
}

/// Encodes `response` within `limit` bytes; a reply that cannot be encoded becomes a bare
/// SERVFAIL with the same ID.
fn emit<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a WireRecord> + Send + 'a,
        impl Iterator<Item = &'a WireRecord> + Send + 'a,
        impl Iterator<Item = &'a WireRecord> + Send + 'a,
        impl Iterator<Item = &'a WireRecord> + Send + 'a,
    >,
    limit: u16,
) -> Vec<u8> {
    let metadata = *response.metadata();
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(limit);
    if let Err(e) = response.destructive_emit(&mut encoder) {
        warn!(error = %e, "cannot encode a DNS reply");
        bytes.clear();
        let mut metadata = Metadata::response_from_request(&metadata);
        metadata.response_code = ResponseCode::ServFail;
        let header = Header {
            metadata,
            counts: Default::default(),
        };
        let _ = header.emit(&mut BinEncoder::new(&mut bytes));
    }
    bytes
}

/// NOERROR/NXDOMAIN metadata of an answer from the zone.
fn authoritative(query: &ParsedQuery, rcode: ResponseCode) -> Metadata {
    let mut metadata = Metadata::response_from_request(&query.metadata);
    metadata.authoritative = true;
    metadata.response_code = rcode;
    metadata
}
