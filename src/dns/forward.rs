//! Forwarding for names outside the domain (`[dns] forward`): the client's query, under an
//! ID of our own, to each resolver in order over the client's transport (UDP or TCP), each
//! attempt bounded by a timeout. The first reply that answers our query (same ID, QR set,
//! same question) is returned; `dns::server` sends it on with the client's ID. No caching,
//! no retries beyond the list.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tracing::debug;

use crate::dns::labels::Transport;

/// The largest reply read from a resolver over UDP (EDNS allows up to 65535).
const MAX_UDP_REPLY: usize = 65535;

/// The resolvers and the per-attempt timeout.
#[derive(Debug, Clone)]
pub(crate) struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
}

/// Why one attempt gave nothing.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("reply does not parse: {0}")]
    Decode(String),
    #[error("reply does not answer our query")]
    Mismatch,
    #[error("query too short")]
    ShortQuery,
}

// === impl Forwarder ===

impl Forwarder {
    pub(crate) fn new(upstreams: Vec<SocketAddr>, timeout: Duration) -> Forwarder {
        Forwarder { upstreams, timeout }
    }

    /// The upstream reply to `query` (the client's raw message), ID not yet restored;
    /// `None` when no resolver answered.
    pub(crate) async fn forward(&self, query: &[u8], transport: Transport) -> Option<Message> {
        if query.len() < 12 {
            return None;
        }
        let mut ours = query.to_vec();
        for upstream in &self.upstreams {
            let id: u16 = rand::random();
            ours[..2].copy_from_slice(&id.to_be_bytes());
            let attempt = async {
                let reply = match transport {
                    Transport::Udp => udp_exchange(&ours, *upstream).await?,
                    Transport::Tcp => tcp_exchange(&ours, *upstream).await?,
                };
                check_reply(&ours, &reply)?;
                Message::from_vec(&reply).map_err(|e| ForwardError::Decode(e.to_string()))
            };
            let result = match tokio::time::timeout(self.timeout, attempt).await {
                Ok(r) => r,
                Err(_) => Err(ForwardError::Timeout(self.timeout)),
            };
            match result {
                Ok(message) => return Some(message),
                Err(e) => debug!(%upstream, %transport, error = %e, "forwarding failed"),
            }
        }
        None
    }
}

/// The reply has our ID, QR set, and echoes our question bytes (the question section
/// follows the 12-byte header in both).
fn check_reply(query: &[u8], reply: &[u8]) -> Result<(), ForwardError> {
    if query.len() < 12 {
        return Err(ForwardError::ShortQuery);
    }
    if reply.len() < 12 || reply[..2] != query[..2] || reply[2] & 0x80 == 0 {
        return Err(ForwardError::Mismatch);
    }
    let qdcount = u16::from_be_bytes([query[4], query[5]]);
    if qdcount == 1 && reply[4..6] == query[4..6] {
        let question = question_len(&query[12..]).ok_or(ForwardError::Mismatch)?;
        let (q, r) = (&query[12..12 + question], reply.get(12..12 + question));
        if r.is_none_or(|r| !r.eq_ignore_ascii_case(q)) {
            return Err(ForwardError::Mismatch);
        }
    }
    Ok(())
}

/// Length of one question (uncompressed name, type, class) at the start of `bytes`.
fn question_len(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let len = usize::from(*bytes.get(i)?);
        if len == 0 {
            i += 1;
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        i += 1 + len;
    }
    (i + 4 <= bytes.len()).then_some(i + 4)
}

async fn udp_exchange(query: &[u8], upstream: SocketAddr) -> Result<Vec<u8>, ForwardError> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; MAX_UDP_REPLY];
    loop {
        let n = socket.recv(&mut buf).await?;
        // A stray datagram (not our ID) is skipped; the timeout bounds the wait.
        if n >= 2 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp_exchange(query: &[u8], upstream: SocketAddr) -> Result<Vec<u8>, ForwardError> {
    let mut stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let len = u16::try_from(query.len()).map_err(|_| ForwardError::ShortQuery)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let reply_len = stream.read_u16().await?;
    let mut reply = vec![0u8; usize::from(reply_len)];
    stream.read_exact(&mut reply).await?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16, name: &[u8]) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        q.extend_from_slice(name);
        q.extend_from_slice(&[0, 1, 0, 1]);
        q
    }

    #[test]
    fn replies_must_match_the_query() {
        let q = query(7, b"\x06google\x03com\x00");
        let mut r = q.clone();
        r[2] |= 0x80;
        assert!(check_reply(&q, &r).is_ok());
        // Case may differ (0x20 randomisation upstream).
        let mut upper = r.clone();
        upper[13] = b'G';
        assert!(check_reply(&q, &upper).is_ok());
        // Not a response, another ID, another question.
        assert!(check_reply(&q, &q).is_err());
        let mut other_id = r.clone();
        other_id[1] = 8;
        assert!(check_reply(&q, &other_id).is_err());
        let mut other_name = r.clone();
        other_name[14] = b'x';
        assert!(check_reply(&q, &other_name).is_err());
        assert!(check_reply(&q, &r[..5]).is_err());
        assert_eq!(question_len(b"\x00\x00\x01\x00\x01"), Some(5));
        assert_eq!(question_len(b"\x05ab"), None);
        assert_eq!(question_len(b"\xc0\x0c\x00\x01\x00\x01"), None);
    }
}
