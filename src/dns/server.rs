//! The DNS server: UDP and TCP on one address, answering from the compiled `Zone` a
//! `ZoneReader` gives. Names outside the domain are refused, or passed to `forward` resolvers
//! when there are some (`dns::forward`). What a name holds is `dns::zone`'s job; turning a
//! packet into a reply is `dns::handler`'s (the UDP fast path `dns::fast` first); the TCP
//! connections are `dns::tcp`'s; this module owns the settings, the UDP loop, and the
//! contract below.
//!
//! Answers, as EXPECTED.md §3 asks and the RFCs where it allows a choice:
//! - QR=1, RA=0, RD and CD copied, the question echoed as sent (hickory emits the
//!   question's raw bytes), owners as the zone has them (lower case, `.*` removed);
//! - AA=1 for everything the zone answers; answer order shuffled per response;
//! - SRV (and NS, ANY) answers carry the zone's additional records;
//! - NODATA and NXDOMAIN carry `Zone::soa` (owner: the apex, RFC 2308) in authority;
//!   a type the zone never holds (unknown types included) is NODATA where the name exists;
//! - before the first zone, names in the domain get SERVFAIL (AA=0);
//! - outside the domain: REFUSED (AA=0), or the upstream's answer when forwarding.
//!
//! Hostile and malformed packets (RFC 1035, 6891, 7766; RFC 8906: answer, don't drop),
//! checked in this order:
//! - fewer than 12 bytes (no header), or QR=1 (a response; answering could loop between
//!   two servers): no reply, the only silence;
//! - QDCOUNT above 1: FORMERR; a message that does not parse (counts larger than the
//!   packet, labels over 63 bytes or of a reserved type, names over 255 bytes, compression
//!   pointers that loop, point forward, at themselves or out of the packet, two OPT records
//!   or one outside the additional section, a short record): FORMERR. Both are the header
//!   alone (ID, opcode, RD, CD as sent; no question, no OPT), as the question cannot be
//!   trusted;
//! - EDNS version above 0: BADVERS (extended RCODE 16: 0 in the header, 1 in our OPT,
//!   which says version 0; RFC 6891 §6.1.3), question echoed;
//! - an opcode other than QUERY: NOTIMP; QDCOUNT 0: FORMERR;
//! - a class other than IN (or ANY): REFUSED, as Knot and BIND answer (no zone of ours is
//!   in another class; NODATA would claim one is);
//! - AXFR and IXFR: REFUSED (no zone transfers; BIND answers a denied one so);
//! - EDNS: the reply has an OPT record when the query had one: version 0, no options
//!   (unknown ones are not echoed), DO clear, the payload size the client's within 512 and
//!   `max_udp_payload`; bytes after the last record are ignored.
//!
//! Over UDP the reply is limited to that payload size (512 without EDNS); hickory's
//! encoder stops at the limit and sets TC, so the client retries over TCP and gets
//! everything. TCP follows RFC 7766 within the bounds `dns::tcp` describes.
//!
//! UDP runs in one loop (`udp_loop`) that takes queries in batches (`recvmmsg`), answers
//! them inline and sends the replies in one batch (`sendmmsg`); only forwarded queries get a
//! task of their own (forwarding can take seconds).
//!
//! Every reply is counted in `drover_dns_queries_total{qtype,rcode,transport}` (qtype
//! "other" when the question did not parse); the label values come from fixed lists
//! (`dns::labels`), so the series stay few whatever clients send.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, info, warn};

use crate::config::DnsConfig;
use crate::dns::fast::FastPath;
use crate::dns::handler::{DnsHandler, Outcome};
use crate::dns::labels::Transport;
use crate::dns::tcp::{self, TcpLimits};
use crate::dns::udp_batch::{self, RecvError, UdpBatch};
use crate::handles::ZoneReader;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

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
    /// A TCP connection that completes no query (or takes no reply) for this long is
    /// closed.
    pub tcp_idle_timeout: Duration,
    /// TCP connections served at once; a new one beyond them is closed at once.
    pub tcp_max_connections: usize,
    /// The largest UDP reply sent, whatever the client advertises (EDNS).
    pub max_udp_payload: u16,
}

// === impl DnsServerSettings ===

impl DnsServerSettings {
    /// Defaults: 2 s per forwarding attempt; TCP idle timeout 10 s (Knot's), at most 150
    /// TCP connections (BIND's `tcp-clients`: TCP is the truncation fallback, not the main
    /// path); UDP replies up to 4096 bytes (above that, fragmentation loses more than a
    /// TCP retry costs).
    pub fn new(domain: &str, forward: Vec<SocketAddr>) -> DnsServerSettings {
        DnsServerSettings {
            domain: domain.to_string(),
            forward,
            forward_timeout: Duration::from_secs(2),
            tcp_idle_timeout: Duration::from_secs(10),
            tcp_max_connections: 150,
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
    zone: ZoneReader,
    metrics: Metrics,
    shutdown: Shutdown,
) {
    if let (Ok(u), Ok(t)) = (udp.local_addr(), tcp.local_addr()) {
        info!(udp = %u, tcp = %t, domain = %settings.domain, forward = %crate::logfmt::list(&settings.forward), "DNS listening");
    }
    let limits = TcpLimits {
        max_connections: settings.tcp_max_connections,
        idle_timeout: settings.tcp_idle_timeout,
    };
    if udp.local_addr().is_ok_and(|a| a.is_ipv4()) {
        if let Err(e) = udp_batch::omit_path_mtu(&udp) {
            warn!(error = %e, "cannot set IP_PMTUDISC_OMIT on the DNS socket; replies keep Don't-Fragment");
        }
    }
    let handler = Arc::new(DnsHandler::new(&settings, zone, &metrics));
    let udp = async {
        udp_loop(Arc::new(udp), handler.clone()).await;
        warn!("DNS UDP socket failed; UDP service stopped");
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = udp => {}
        () = tcp::serve(tcp, handler.clone(), limits, &metrics, shutdown.clone()) => {}
        () = shutdown.triggered() => {}
    }
    debug!("DNS server stopped");
}

/// Serves UDP until the socket fails: queries are taken in and answered in batches
/// (`dns::udp_batch`), every reply sent inline but those to forwarded queries, which get a
/// task of their own.
async fn udp_loop(socket: Arc<UdpSocket>, handler: Arc<DnsHandler>) {
    let mut batch = UdpBatch::new();
    let mut fast = FastPath::default();
    loop {
        let n = match batch.recv(&socket).await {
            Ok(n) => n,
            // ICMP errors of earlier replies (ECONNREFUSED) and the like: nothing to do.
            Err(e @ RecvError::Skipped(_)) => {
                debug!(error = %e, "DNS UDP receive error");
                continue;
            }
            Err(e @ RecvError::Socket(_)) => {
                warn!(error = %e, "DNS UDP socket not readable");
                return;
            }
        };
        fast.start_batch(&handler);
        for i in 0..n {
            let (packet, src, out) = batch.slot(i);
            // Nothing can be answered to port 0 or an unspecified or multicast address.
            let Some(src) =
                src.filter(|s| s.port() != 0 && !s.ip().is_unspecified() && !s.ip().is_multicast())
            else {
                continue;
            };
            if fast.answer(&handler, packet, out) {
                batch.queue_reply(i, None);
                continue;
            }
            match handler.answer_packet(packet, Transport::Udp) {
                Outcome::Reply(reply) => batch.queue_reply(i, Some(reply)),
                Outcome::Silent => {}
                Outcome::Forward(forward) => {
                    let (handler, socket) = (handler.clone(), socket.clone());
                    tokio::spawn(async move {
                        let reply = handler.forward(forward).await;
                        send(&socket, &reply, src).await;
                    });
                }
            }
        }
        fast.finish_batch(&handler);
        batch.flush(&socket).await;
    }
}

/// Sends one datagram, waiting only when the socket's buffer is full.
async fn send(socket: &UdpSocket, bytes: &[u8], dst: SocketAddr) {
    let sent = match socket.try_send_to(bytes, dst) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => socket.send_to(bytes, dst).await,
        other => other,
    };
    if let Err(e) = sent {
        debug!(error = %e, client = %dst, "cannot send a DNS reply");
    }
}
