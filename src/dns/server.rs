//! The DNS server: UDP and TCP on one address, on hickory-server's `Server`, answering from
//! the compiled `Zone` in `Shared.zone` (one `load()` per query). Names outside the domain
//! are refused, or passed to `forward` resolvers when there are some (`dns::forward`).
//! What a name holds is `dns::zone`'s job; this module turns lookups into DNS messages,
//! with the UDP fast path in `dns::fast`, the zone's records as wire records in
//! `dns::wire`, and the metric's labels in `dns::labels`.
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
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Header, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Record as WireRecord};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo, Server};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, info, warn};

use crate::config::DnsConfig;
use crate::dns::forward::Forwarder;
use crate::dns::labels::{QtypeLabel, QueryCounters, Transport};
use crate::dns::wire::{query_key, WireAnswer, CACHE, NAME_BUF};
use crate::dns::zone::{Lookup, QueryType};
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
pub(super) const MIN_UDP_PAYLOAD: u16 = 512;

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
        info!(udp = %u, tcp = %t, domain = %settings.domain, forward = ?settings.forward, "DNS listening");
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
pub(super) struct DnsHandler {
    pub(super) shared: Arc<Shared>,
    /// `mesos.` and `.mesos.`, lower case.
    apex: Box<str>,
    dot_apex: Box<str>,
    forwarder: Option<Forwarder>,
    pub(super) max_udp_payload: u16,
    pub(super) counters: QueryCounters,
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
