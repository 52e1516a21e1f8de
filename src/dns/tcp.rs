//! The DNS server's TCP side (RFC 7766): messages framed by a two-byte length, answered in
//! order by `DnsHandler`, pipelined ones included, on one task per connection.
//!
//! Bounded, so a hostile or overloaded client costs a connection slot and no more:
//! - at most `tcp_max_connections` connections at once; beyond that a new connection is
//!   closed at once, unanswered, and counted (`drover_connections_rejected_total`);
//! - a connection that completes no message within `tcp_idle_timeout` (idle, or stalled
//!   in the middle of a length or a message), or does not take a reply within it, is closed
//!   (RFC 7766 §6.2.3);
//! - an accept error (out of file descriptors and the like) is counted
//!   (`drover_accept_errors_total`), logged at most once per `ACCEPT_LOG_EVERY` with the
//!   number held back, and followed by a pause of `ACCEPT_BACKOFF`: never a busy loop,
//!   never an exit.
//!
//! Messages shorter than a header, or that are responses, get no reply; the connection
//! stays open for the next one.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};
use tracing::{debug, warn};

use crate::accept::{is_peer_error, Slot, Throttle};
use crate::dns::handler::DnsHandler;
use crate::dns::labels::Transport;
use crate::logfmt;
use crate::metrics::{Metrics, LISTENER_DNS};
use crate::shutdown::Shutdown;

/// The pause after a failed accept: the condition (a full descriptor table) rarely clears
/// faster, and a retry at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// At most one warning per this long for failed accepts, and one for rejected connections.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// How the TCP side is bounded (from `DnsServerSettings`).
#[derive(Debug, Clone, Copy)]
pub(super) struct TcpLimits {
    pub(super) max_connections: usize,
    pub(super) idle_timeout: Duration,
}

/// Where connections come from: the listener, or a test's stand-in.
pub(super) trait Incoming {
    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)>;
}

impl Incoming for TcpListener {
    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        TcpListener::accept(self).await
    }
}

/// The listener's counters.
struct Counters {
    open: IntGauge,
    rejected: IntCounter,
    accept_errors: IntCounter,
}

/// Accepts and serves connections until `shutdown`; open connections end with it.
pub(super) async fn serve(
    mut incoming: impl Incoming,
    handler: Arc<DnsHandler>,
    limits: TcpLimits,
    metrics: &Metrics,
    shutdown: Shutdown,
) {
    let counters = Counters {
        open: metrics.connections_open.with_label_values(&[LISTENER_DNS]),
        rejected: metrics
            .connections_rejected
            .with_label_values(&[LISTENER_DNS]),
        accept_errors: metrics.accept_errors.with_label_values(&[LISTENER_DNS]),
    };
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Dropped (so every connection aborted) when the loop ends.
    let mut connections = JoinSet::new();
    let mut accept_log = Throttle::new(ACCEPT_LOG_EVERY);
    let mut reject_log = Throttle::new(ACCEPT_LOG_EVERY);
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.triggered() => break,
            accepted = incoming.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    counters.rejected.inc();
                    if let Some(held) = reject_log.pass(Instant::now()) {
                        warn!(%peer, max = limits.max_connections, held_back = held,
                            "DNS TCP connection cap reached; closing new connections");
                    }
                    continue; // dropping `stream` closes it
                };
                let open = Slot::new(slot, counters.open.clone());
                let handler = handler.clone();
                connections.spawn(async move {
                    let _open = open;
                    connection(stream, &handler, limits.idle_timeout).await;
                });
            }
            // The client gave up between its SYN and our accept: nothing is wrong here.
            Err(e) if is_peer_error(&e) => debug!(error = %e, "DNS TCP accept: peer gone"),
            Err(e) => {
                counters.accept_errors.inc();
                if let Some(held) = accept_log.pass(Instant::now()) {
                    warn!(error = %e, held_back = held, pause = %logfmt::duration(ACCEPT_BACKOFF),
                        "DNS TCP accept failed");
                }
                tokio::select! {
                    () = shutdown.triggered() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
}

/// Serves one connection until the client closes it, a read or write fails, or it idles
/// (or stalls) for `idle`.
async fn connection(mut stream: TcpStream, handler: &DnsHandler, idle: Duration) {
    // Each reply is one write; Nagle would hold the next pipelined reply for an ACK.
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.split();
    let mut reader = BufReader::new(reader);
    let mut message = Vec::new();
    loop {
        match timeout(idle, read_message(&mut reader, &mut message)).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return,
            Ok(Err(e)) => {
                debug!(error = %e, "DNS TCP connection failed");
                return;
            }
            Err(_) => {
                debug!(idle = %logfmt::duration(idle), "DNS TCP connection idle; closing");
                return;
            }
        }
        let Some(reply) = handler.answer(&message, Transport::Tcp).await else {
            continue;
        };
        // Replies are encoded within 65535 bytes.
        let Ok(len) = u16::try_from(reply.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(2 + reply.len());
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply);
        match timeout(idle, writer.write_all(&framed)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "DNS TCP reply not sent");
                return;
            }
            Err(_) => {
                debug!(idle = %logfmt::duration(idle), "DNS TCP client does not read its replies; closing");
                return;
            }
        }
    }
}

/// Reads one length-framed message into `buf`: false when the client closed the
/// connection before it, an error when it closed in the middle.
async fn read_message(
    reader: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> io::Result<bool> {
    let mut len = [0u8; 2];
    if reader.read(&mut len[..1]).await? == 0 {
        return Ok(false);
    }
    reader.read_exact(&mut len[1..]).await?;
    buf.resize(usize::from(u16::from_be_bytes(len)), 0);
    reader.read_exact(buf).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::server::DnsServerSettings;
    use crate::handles::ZoneWriter;

    /// Fails every accept with EMFILE, `left` times, then waits forever.
    struct OutOfFiles {
        left: u32,
    }

    impl Incoming for OutOfFiles {
        async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
            if self.left == 0 {
                std::future::pending::<()>().await;
            }
            self.left -= 1;
            Err(io::Error::from_raw_os_error(libc::EMFILE))
        }
    }

    /// A burst of EMFILE is counted and paced by the backoff (no busy loop), and the loop
    /// survives it and stops on shutdown.
    #[tokio::test(start_paused = true)]
    async fn accept_errors_back_off_and_are_counted() {
        let metrics = Metrics::new(prometheus::Registry::new());
        let settings = DnsServerSettings::new("mesos", vec![]);
        let zone = ZoneWriter::new().reader();
        let handler = Arc::new(DnsHandler::new(&settings, zone, &metrics));
        let limits = TcpLimits {
            max_connections: 4,
            idle_timeout: Duration::from_secs(1),
        };
        let shutdown = Shutdown::new();
        let errors = metrics.accept_errors.with_label_values(&[LISTENER_DNS]);
        let task = {
            let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
            tokio::spawn(async move {
                let incoming = OutOfFiles { left: 314 };
                serve(incoming, handler, limits, &metrics, shutdown).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(1_050)).await;
        // One error per pause: 11 by 1.05 s (at 0, 0.1, ..., 1.0 s).
        assert_eq!(errors.get(), 11);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(errors.get(), 314);
        assert!(!task.is_finished(), "the accept loop survives");
        shutdown.trigger();
        task.await.unwrap();
    }
}
