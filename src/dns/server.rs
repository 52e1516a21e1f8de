//! The DNS server: UDP and TCP on one address, on hickory-server's `Server`, answering from
//! the compiled `Zone` in `Shared.zone` (one `load()` per query). Names outside the domain
//! are refused, or passed to `forward` resolvers when there are some (`dns::forward`).
//! What a name holds is `dns::zone`'s job; this module turns lookups into DNS messages.
//!
//! Answers, as EXPECTED.md §3 asks and the RFCs where it allows a choice:
//! - QR=1, RA=0, RD copied, the question echoed as sent (hickory emits the question's raw
//!   bytes), owners as the zone has them (lower case, `.*` removed);
//! - AA=1 for everything the zone answers; answer order shuffled per response;
//! - SRV (and NS, ANY) answers carry the zone's additional records;
//! - NODATA and NXDOMAIN carry `Zone::soa` (owner: the apex, RFC 2308) in authority;
//! - before the first zone, names in the domain get SERVFAIL (AA=0);
//! - outside the domain: REFUSED (AA=0), or the upstream's answer when forwarding;
//! - more or fewer than one question: FORMERR; an opcode other than QUERY: NOTIMP; a class
//!   other than IN (or ANY): REFUSED. Packets hickory cannot parse get FORMERR from hickory
//!   itself (a pointer loop, a short record) or no answer (a short header, a response).
//!
//! Over UDP the reply is limited to the client's EDNS payload size (at least 512, at most
//! `DnsServerSettings::max_udp_payload`), 512 without EDNS; hickory's encoder stops at the
//! limit and sets TC, so the client retries over TCP and gets everything.
//!
//! UDP runs in our own loop (`udp_loop`), not hickory's: a well-formed single-question IN
//! query for a lower-case name the zone answers (or denies) within 512 bytes or the
//! client's EDNS size is answered from answers encoded once per (zone, record set) and
//! thread, with the ID, RD/CD flags and OPT payload patched in: no task, no parsing into
//! hickory types, no encoding per query (DESIGN §6b: hickory's `Server` per-query task
//! and copies cost more than the rest). Every other UDP packet (other classes, opcodes or
//! counts, mixed case, `.*`, EDNS options, truncation, names outside the zone, forwarding,
//! garbage) is parsed by hickory (`Request::from_bytes`) and answered by the same
//! `RequestHandler` hickory's `Server` uses for TCP, encoded the way hickory encodes UDP
//! replies. The fast path's answers are byte-for-byte what that path would send, except
//! that name compression may differ.
//!
//! Every answered query counts in `drover_dns_queries_total{qtype,rcode,transport}`; the
//! label values come from fixed lists, so the series stay few whatever clients send.
//! Queries hickory answers or drops itself (unparseable packets) are not counted.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_proto::op::{
    Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record as WireRecord, RecordType as WireType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo, Server};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use prometheus::IntCounter;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, info, warn};

use crate::config::DnsConfig;
use crate::dns::forward::Forwarder;
use crate::dns::zone::{Lookup, QueryType, Record, RecordData, Zone};
use crate::shutdown::Shutdown;
use crate::Shared;

/// How the DNS server runs; everything but the sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsServerSettings {
    /// The zone's domain (`mesos`; any case, trailing dot optional). Needed before the first
    /// zone exists, to tell SERVFAIL (ours, not ready) from REFUSED (not ours).
    pub domain: String,
    /// Resolvers for names outside the domain, tried in order; empty: REFUSED.
    pub forward: Vec<SocketAddr>,
    /// How long one forwarding attempt (one resolver) may take.
    pub forward_timeout: Duration,
    /// A TCP connection with no complete query for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// The largest UDP reply sent, whatever the client advertises (EDNS).
    pub max_udp_payload: u16,
}

/// RFC 1035: the UDP limit without EDNS.
const MIN_UDP_PAYLOAD: u16 = 512;

// === impl DnsServerSettings ===

impl DnsServerSettings {
    /// Defaults: 2 s per forwarding attempt, TCP idle timeout 10 s, UDP replies up to 4096
    /// bytes (above that, fragmentation loses more than a TCP retry costs).
    pub fn new(domain: &str, forward: Vec<SocketAddr>) -> DnsServerSettings {
        DnsServerSettings {
            domain: domain.to_string(),
            forward,
            forward_timeout: Duration::from_secs(2),
            tcp_idle_timeout: Duration::from_secs(10),
            max_udp_payload: 4096,
        }
    }

    /// From `[dns]`: its domain and `forward` list, the rest defaults.
    pub fn from_config(config: &DnsConfig) -> DnsServerSettings {
        DnsServerSettings::new(config.domain.as_str(), config.forward.clone())
    }
}

/// Serves DNS on `udp` and `tcp` (normally bound to the same address) until `shutdown`
/// fires. Runs on any tokio runtime; a current-thread one is the cheapest (DESIGN §6b).
pub async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    settings: DnsServerSettings,
    shared: Arc<Shared>,
    shutdown: Shutdown,
) {
    if let (Ok(u), Ok(t)) = (udp.local_addr(), tcp.local_addr()) {
        info!(udp = %u, tcp = %t, domain = %settings.domain, forward = %crate::logfmt::list(&settings.forward), "DNS listening");
    }
    let tcp_idle_timeout = settings.tcp_idle_timeout;
    let handler = Arc::new(DnsHandler::new(settings, shared));
    let mut server = Server::new(SharedHandler(handler.clone()));
    // Up to 32 replies queued per TCP connection (pipelined queries).
    server.register_listener(tcp, tcp_idle_timeout, 32);
    tokio::select! {
        () = udp_loop(Arc::new(udp), handler) => {
            warn!("DNS UDP socket failed; UDP service stopped");
            let _ = server.shutdown_gracefully().await;
        }
        _ = shutdown.triggered() => {
            if let Err(e) = server.shutdown_gracefully().await {
                warn!(error = %e, "DNS server stopped with an error");
            }
        }
        result = server.block_until_done() => {
            if let Err(e) = result {
                warn!(error = %e, "DNS server stopped with an error");
            }
        }
    }
    debug!("DNS server stopped");
}

/// The handler, shared by hickory's `Server` (TCP) and our UDP loop's slow path.
struct SharedHandler(Arc<DnsHandler>);

#[async_trait::async_trait]
impl RequestHandler for SharedHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.0.handle_request(request, response_handle).await
    }
}

/// Serves UDP until the socket fails: the fast path inline, everything else in a task of
/// its own (forwarding can take seconds).
async fn udp_loop(socket: Arc<UdpSocket>, handler: Arc<DnsHandler>) {
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(4096);
    loop {
        let (len, src) = match socket.try_recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Err(e) = socket.readable().await {
                    warn!(error = %e, "DNS UDP socket not readable");
                    return;
                }
                continue;
            }
            // ICMP errors of earlier replies (ECONNREFUSED) and the like: nothing to do.
            Err(e) => {
                debug!(error = %e, "DNS UDP receive error");
                continue;
            }
        };
        // hickory's `sanitize_src_address`: nothing can be answered to port 0 or an
        // unspecified or multicast address.
        if src.port() == 0 || src.ip().is_unspecified() || src.ip().is_multicast() {
            continue;
        }
        let packet = &buf[..len];
        if handler.fast_answer(packet, &mut out) {
            match socket.try_send_to(&out, src) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Err(e) = socket.send_to(&out, src).await {
                        debug!(error = %e, client = %src, "cannot send a DNS reply");
                    }
                }
                Err(e) => debug!(error = %e, client = %src, "cannot send a DNS reply"),
            }
            continue;
        }
        let raw = packet.to_vec();
        let (handler, socket) = (handler.clone(), socket.clone());
        tokio::spawn(async move { handler.udp_slow_path(raw, src, socket).await });
    }
}

/// Replies to one UDP client, encoded as hickory's `Server` encodes UDP replies: cut at
/// the reply's EDNS payload size (512 without EDNS), TC set when cut.
#[derive(Clone)]
struct UdpReply {
    socket: Arc<UdpSocket>,
    dst: SocketAddr,
}

#[async_trait::async_trait]
impl ResponseHandler for UdpReply {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a WireRecord> + Send + 'a,
            impl Iterator<Item = &'a WireRecord> + Send + 'a,
            impl Iterator<Item = &'a WireRecord> + Send + 'a,
            impl Iterator<Item = &'a WireRecord> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let id = response.metadata().id;
        let limit = response.edns().map_or(MIN_UDP_PAYLOAD, |e| e.max_payload());
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(limit);
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(e) => {
                warn!(error = %e, "cannot encode a DNS reply");
                bytes.clear();
                let mut encoder = BinEncoder::new(&mut bytes);
                let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                let header = Header {
                    metadata,
                    counts: Default::default(),
                };
                header.emit(&mut encoder)?;
                ResponseInfo::from(header)
            }
        };
        self.socket.send_to(&bytes, self.dst).await?;
        Ok(info)
    }
}

/// hickory's request handler: one query in, one answer out.
struct DnsHandler {
    shared: Arc<Shared>,
    /// `mesos.` and `.mesos.`, lower case.
    apex: Box<str>,
    dot_apex: Box<str>,
    forwarder: Option<Forwarder>,
    max_udp_payload: u16,
    counters: QueryCounters,
}

// === impl DnsHandler ===

impl DnsHandler {
    fn new(settings: DnsServerSettings, shared: Arc<Shared>) -> DnsHandler {
        let domain = settings.domain.trim_end_matches('.').to_ascii_lowercase();
        DnsHandler {
            counters: QueryCounters::new(shared.metrics.dns_queries.clone()),
            shared,
            apex: format!("{domain}.").into(),
            dot_apex: format!(".{domain}.").into(),
            forwarder: (!settings.forward.is_empty())
                .then(|| Forwarder::new(settings.forward, settings.forward_timeout)),
            max_udp_payload: settings.max_udp_payload.max(MIN_UDP_PAYLOAD),
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
        let guard = self.shared.zone.load();
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

    /// The EDNS of our reply: present when the query had one; its payload size is the
    /// client's, within our bounds, and is also the limit the encoder cuts UDP replies at.
    fn reply_edns(&self, request: &Request) -> Option<Edns> {
        request.edns.as_ref().map(|query_edns| {
            let mut edns = Edns::new();
            edns.set_max_payload(query_edns.max_payload().min(self.max_udp_payload));
            edns
        })
    }

    /// What hickory's `Server` does with a UDP packet, then our handler: no reply to
    /// fewer than 12 bytes or a response; FORMERR (empty question) when it does not parse.
    async fn udp_slow_path(&self, raw: Vec<u8>, src: SocketAddr, socket: Arc<UdpSocket>) {
        let reply = UdpReply { socket, dst: src };
        let header = {
            let mut decoder = BinDecoder::new(&raw);
            match Header::read(&mut decoder) {
                Ok(header) => header,
                Err(_) => return,
            }
        };
        match Request::from_bytes(raw, src, Protocol::Udp) {
            Ok(request) => {
                if request.metadata.message_type == MessageType::Response {
                    return;
                }
                self.handle_request(&request, reply).await;
            }
            Err(e) => {
                debug!(error = %e, client = %src, "unparseable DNS query");
                let Ok(queries) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
                    return;
                };
                let response = MessageResponseBuilder::new(&queries, None)
                    .error_msg(&header.metadata, ResponseCode::FormErr);
                let mut reply = reply;
                if let Err(e) = reply.send_response(response).await {
                    debug!(error = %e, client = %src, "cannot send a DNS reply");
                }
            }
        }
    }

    /// Answers `packet` into `out` if it is a query the fast path takes (see the module
    /// documentation); false leaves it to the slow path.
    fn fast_answer(&self, p: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(q) = FastQuery::parse(p) else {
            return false;
        };
        let qtype = QueryType::from_code(q.qtype);
        if matches!(qtype, QueryType::Other(_)) {
            return false;
        }
        let guard = self.shared.zone.load();
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
            let arcount = u16::from_be_bytes([out[10], out[11]]) + 1;
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

    async fn send<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
        metadata: Metadata,
        answers: (&[WireRecord], &[WireRecord]),
        authority: &[WireRecord],
        additional: &[WireRecord],
    ) -> ResponseInfo {
        let edns = self.reply_edns(request);
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let answers = answers.0.iter().chain(answers.1);
        let response = builder.build(metadata, answers, authority, [], additional);
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                debug!(error = %e, client = %request.src(), "cannot send a DNS reply");
                failed(metadata)
            }
        }
    }

    async fn send_error<R: ResponseHandler>(
        &self,
        request: &Request,
        response_handle: R,
        rcode: ResponseCode,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = rcode;
        self.send(request, response_handle, metadata, (&[], &[]), &[], &[])
            .await
    }
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

impl DnsHandler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let transport = Transport::of(request.protocol());
        let queries = request.queries.queries();
        let qtype_label = queries
            .first()
            .map_or(QtypeLabel::Other, |q| QtypeLabel::of(q.query_type()));

        let early_error = if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else if queries.len() != 1 {
            Some(ResponseCode::FormErr)
        } else if !matches!(queries[0].query_class(), DNSClass::IN | DNSClass::ANY) {
            Some(ResponseCode::Refused)
        } else {
            None
        };
        // Counted before the answer leaves, so whoever reads the metric after the answer
        // arrives sees it.
        let count = |rcode: ResponseCode| self.counters.count(qtype_label, rcode, transport);
        if let Some(rcode) = early_error {
            count(rcode);
            return self.send_error(request, response_handle, rcode).await;
        }

        let query = &queries[0];
        let mut buf = [0u8; NAME_BUF];
        let key = query_key(query.name(), &mut buf);
        let qtype = QueryType::from_code(u16::from(query.query_type()));

        match self.answer_from_zone(key, qtype) {
            ZoneAnswer::Records { wire, rotate } => {
                count(ResponseCode::NoError);
                let metadata = authoritative(request, ResponseCode::NoError);
                let (tail, head) = wire.answers.split_at(rotate);
                self.send(
                    request,
                    response_handle,
                    metadata,
                    (head, tail),
                    &[],
                    &wire.additional,
                )
                .await
            }
            ZoneAnswer::Negative { rcode, soa } => {
                count(rcode);
                let metadata = authoritative(request, rcode);
                let authority = soa.as_deref().map(std::slice::from_ref).unwrap_or_default();
                self.send(
                    request,
                    response_handle,
                    metadata,
                    (&[], &[]),
                    authority,
                    &[],
                )
                .await
            }
            ZoneAnswer::NotReady => {
                count(ResponseCode::ServFail);
                self.send_error(request, response_handle, ResponseCode::ServFail)
                    .await
            }
            ZoneAnswer::Outside => match &self.forwarder {
                None => {
                    count(ResponseCode::Refused);
                    self.send_error(request, response_handle, ResponseCode::Refused)
                        .await
                }
                Some(forwarder) => match forwarder.forward(request.as_slice(), transport).await {
                    Some(reply) => {
                        count(reply.metadata.response_code);
                        let mut metadata = reply.metadata;
                        metadata.id = request.metadata.id;
                        self.send(
                            request,
                            response_handle,
                            metadata,
                            (&reply.answers, &[]),
                            &reply.authorities,
                            &reply.additionals,
                        )
                        .await
                    }
                    None => {
                        count(ResponseCode::ServFail);
                        self.send_error(request, response_handle, ResponseCode::ServFail)
                            .await
                    }
                },
            },
        }
    }
}

/// NOERROR/NXDOMAIN metadata of an answer from the zone.
fn authoritative(request: &Request, rcode: ResponseCode) -> Metadata {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.authoritative = true;
    metadata.response_code = rcode;
    metadata
}

/// What hickory reports when a reply could not be sent.
fn failed(mut metadata: Metadata) -> ResponseInfo {
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(hickory_proto::op::Header {
        metadata,
        counts: Default::default(),
    })
}

thread_local! {
    /// Answer shuffling only needs to spread load, not to be unpredictable.
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

thread_local! {
    static CACHE: RefCell<WireCache> = RefCell::new(WireCache::default());
}

/// The wire records of one answer.
struct WireAnswer {
    answers: Box<[WireRecord]>,
    additional: Box<[WireRecord]>,
}

/// Answers already converted to wire records, for one zone: each (name, type) is
/// converted on its first query and shared after that, so a query costs no name parsing
/// and no record allocation. Per thread (no lock); emptied when the zone changes. Holds
/// at most one entry per record set of the zone, and keeps the zone it is for alive
/// until the next query sees a new one.
#[derive(Default)]
struct WireCache {
    zone: Option<Arc<Zone>>,
    /// By the address and length of the zone's answer slice: unique within a zone.
    answers: HashMap<(usize, usize), Arc<WireAnswer>, BuildHasherDefault<AddressHasher>>,
    soa: Option<Arc<WireRecord>>,
}

impl WireCache {
    fn use_zone(&mut self, zone: &Arc<Zone>) {
        if switch_zone(&mut self.zone, zone) {
            self.answers.clear();
            self.soa = None;
        }
    }

    /// After `use_zone(zone)`, with `answers` and `additional` from that zone.
    fn answer(
        &mut self,
        zone: &Zone,
        answers: &[Record],
        additional: &[Record],
    ) -> Arc<WireAnswer> {
        let key = (answers.as_ptr() as usize, answers.len());
        self.answers
            .entry(key)
            .or_insert_with(|| {
                let owner = answers.first().and_then(|r| name(zone.name(r.owner)));
                let answers = owner
                    .map(|owner| {
                        answers
                            .iter()
                            .filter_map(|r| to_wire(zone, r, Some(&owner)))
                            .collect()
                    })
                    .unwrap_or_default();
                let additional = additional
                    .iter()
                    .filter_map(|r| to_wire(zone, r, None))
                    .collect();
                Arc::new(WireAnswer {
                    answers,
                    additional,
                })
            })
            .clone()
    }

    fn soa(&mut self, zone: &Zone) -> Option<Arc<WireRecord>> {
        if self.soa.is_none() {
            self.soa = soa_of(zone).map(Arc::new);
        }
        self.soa.clone()
    }
}

/// Hashes a (pointer, length) key with two multiplications; SipHash's flood resistance
/// buys nothing for keys the zone makes.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

// === the UDP fast path ===

/// An OPT record without options.
const OPT_LEN: usize = 11;

/// How many answer orders are encoded per record set (more orders than that are sent as
/// that many evenly spaced rotations).
const ROTATIONS: usize = 8;

/// A query the fast path can take, as far as the packet alone tells.
struct FastQuery {
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
    fn parse(p: &[u8]) -> Option<FastQuery> {
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

/// Makes `held` the zone `zone`: true when it held another one, so what a cache built
/// from it is stale.
fn switch_zone(held: &mut Option<Arc<Zone>>, zone: &Arc<Zone>) -> bool {
    if held.as_ref().is_some_and(|z| Arc::ptr_eq(z, zone)) {
        return false;
    }
    *held = Some(zone.clone());
    true
}

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

// === names and records on the wire ===

/// A name on the wire is at most 255 bytes; as text with dots, at most 254.
const NAME_BUF: usize = 256;

/// The question name as `Zone::lookup` takes it: labels joined by `.`, a trailing dot.
/// Built on the stack. A label holding a `.` or a byte that is not printable ASCII cannot
/// be any zone name (their labels are host-name characters), so such bytes become `?`,
/// which keeps the name in (or out of) the domain as it was but matches nothing.
fn query_key<'b>(name: &Name, buf: &'b mut [u8; NAME_BUF]) -> &'b str {
    let mut len = 0;
    for label in name.iter() {
        for &b in label {
            if len == NAME_BUF - 1 {
                break;
            }
            buf[len] = if b == b'.' || !b.is_ascii_graphic() {
                b'?'
            } else {
                b
            };
            len += 1;
        }
        if len < NAME_BUF {
            buf[len] = b'.';
            len += 1;
        }
    }
    if len == 0 {
        buf[0] = b'.';
        len = 1;
    }
    // Every byte is printable ASCII or `.`.
    std::str::from_utf8(&buf[..len]).unwrap_or(".")
}

/// A zone name (lower case, trailing dot) as a wire name.
fn name(text: &str) -> Option<Name> {
    Name::from_ascii(text).ok()
}

/// A record of `zone` as a wire record; `owner` saves parsing the owner again when the
/// caller has it.
fn to_wire(zone: &Zone, record: &Record, owner: Option<&Name>) -> Option<WireRecord> {
    let owner = match owner {
        Some(o) => o.clone(),
        None => name(zone.name(record.owner))?,
    };
    let data = match &record.data {
        RecordData::A(ip) => RData::A(A(*ip)),
        RecordData::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        RecordData::Ns(target) => RData::NS(NS(name(zone.name(*target))?)),
        RecordData::Srv(srv) => RData::SRV(SRV::new(
            zone.srv_priority(),
            zone.srv_weight(),
            srv.port,
            name(zone.name(srv.target))?,
        )),
        RecordData::Soa => {
            let soa = zone.soa_fields();
            RData::SOA(SOA::new(
                name(zone.name(soa.mname))?,
                name(&soa.rname)?,
                soa.serial,
                soa.refresh as i32,
                soa.retry as i32,
                soa.expire as i32,
                soa.minimum,
            ))
        }
    };
    Some(WireRecord::from_rdata(owner, zone.ttl(), data))
}

/// The SOA for the authority section of a negative answer.
fn soa_of(zone: &Zone) -> Option<WireRecord> {
    to_wire(zone, zone.soa(), None)
}

// === metrics ===

/// Transport label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn of(protocol: Protocol) -> Transport {
        match protocol {
            Protocol::Udp => Transport::Udp,
            _ => Transport::Tcp,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The `qtype` label values: the types clients ask a Mesos-DNS server for, then "other".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QtypeLabel {
    A,
    Aaaa,
    Srv,
    Soa,
    Ns,
    Any,
    Ptr,
    Txt,
    Mx,
    Other,
}

const QTYPES: usize = 10;

impl QtypeLabel {
    fn of(t: WireType) -> QtypeLabel {
        match t {
            WireType::A => QtypeLabel::A,
            WireType::AAAA => QtypeLabel::Aaaa,
            WireType::SRV => QtypeLabel::Srv,
            WireType::SOA => QtypeLabel::Soa,
            WireType::NS => QtypeLabel::Ns,
            WireType::ANY => QtypeLabel::Any,
            WireType::PTR => QtypeLabel::Ptr,
            WireType::TXT => QtypeLabel::Txt,
            WireType::MX => QtypeLabel::Mx,
            _ => QtypeLabel::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            QtypeLabel::A => "A",
            QtypeLabel::Aaaa => "AAAA",
            QtypeLabel::Srv => "SRV",
            QtypeLabel::Soa => "SOA",
            QtypeLabel::Ns => "NS",
            QtypeLabel::Any => "ANY",
            QtypeLabel::Ptr => "PTR",
            QtypeLabel::Txt => "TXT",
            QtypeLabel::Mx => "MX",
            QtypeLabel::Other => "other",
        }
    }
}

/// The `rcode` label values.
const RCODES: [&str; 7] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other",
];

fn rcode_index(rcode: ResponseCode) -> usize {
    match rcode {
        ResponseCode::NoError => 0,
        ResponseCode::FormErr => 1,
        ResponseCode::ServFail => 2,
        ResponseCode::NXDomain => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::Refused => 5,
        _ => 6,
    }
}

/// The counter of each (qtype, rcode, transport), looked up once and kept: a query then
/// costs one array index and one atomic add, not a label hash.
struct QueryCounters {
    vec: prometheus::IntCounterVec,
    cells: [[[OnceLock<IntCounter>; 2]; RCODES.len()]; QTYPES],
}

impl QueryCounters {
    fn new(vec: prometheus::IntCounterVec) -> QueryCounters {
        QueryCounters {
            vec,
            cells: Default::default(),
        }
    }

    fn count(&self, qtype: QtypeLabel, rcode: ResponseCode, transport: Transport) {
        let r = rcode_index(rcode);
        let t = transport as usize;
        self.cells[qtype as usize][r][t]
            .get_or_init(|| {
                self.vec
                    .with_label_values(&[qtype.label(), RCODES[r], transport.label()])
            })
            .inc();
    }
}
