//! Batched UDP for the DNS server: one `recvmmsg` takes in up to [`BATCH`] queries and one
//! `sendmmsg` sends their replies, where a loop of `recvfrom`/`sendto` pays two system calls
//! per query (DESIGN §6b: a batched loop measured 0.86× Knot's CPU per query, the one at a
//! time loop 1.07×). Under light load a batch holds one query, and it costs what the plain
//! loop costs.
//!
//! The only unsafe code of the DNS server is here: the `mmsghdr` arrays point into buffers
//! this struct owns on the heap, and are rebuilt before each call, so no pointer outlives or
//! escapes what it points to.
//!
//! A reply goes back to the address its query came from, as the kernel wrote it (the
//! `sockaddr` is reused as is, no conversion). A query longer than [`SLOT`] bytes is cut to
//! its first [`SLOT`] bytes (a DNS query is a few dozen bytes; the handler answers a cut one
//! FORMERR or ignores the cut tail, as it ignores bytes after the last record).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::debug;

/// Sets on an IPv4 socket what Knot and BIND set on theirs: `IP_PMTUDISC_OMIT`. Replies
/// leave without Don't-Fragment and the socket ignores path-MTU news, so a forged ICMP
/// "fragmentation needed" cannot make later replies go out in fragments (what
/// fragment-based cache poisoning needs). It is not for speed: measured at saturation it
/// costs as much as it saves (a datagram without Don't-Fragment needs an IP ID of its own).
/// IPv6 sockets keep the kernel's default: there only the sender fragments, and an
/// ignored "packet too big" would lose replies.
pub fn omit_path_mtu(socket: &impl AsRawFd) -> io::Result<()> {
    let value: libc::c_int = libc::IP_PMTUDISC_OMIT;
    // SAFETY: setsockopt(2) reads `size_of::<c_int>()` bytes from a live local.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Datagrams per system call. 32 covers a busy server's backlog per wake-up; more buys
/// little (the syscall is already amortized) and costs cache.
pub const BATCH: usize = 32;

/// Bytes kept of one query.
pub const SLOT: usize = 4096;

/// The buffers of one receive and one send batch.
pub struct UdpBatch {
    /// `BATCH` slots of `SLOT` bytes: the received queries.
    queries: Box<[u8]>,
    lens: [usize; BATCH],
    /// Where each query came from, and where its reply goes.
    peers: Box<[libc::sockaddr_storage; BATCH]>,
    peer_lens: [libc::socklen_t; BATCH],
    /// The reply to each slot (empty: none).
    replies: Vec<Vec<u8>>,
    /// Slots with a reply to send, in order.
    pending: Vec<usize>,
    iovecs: Box<[libc::iovec; BATCH]>,
    headers: Box<[libc::mmsghdr; BATCH]>,
    received: usize,
}

// SAFETY: the raw pointers in `iovecs` and `headers` are scratch space, rewritten from this
// struct's own heap buffers before every system call and never read otherwise; moving the
// struct to another thread moves what they point to with it.
unsafe impl Send for UdpBatch {}

// === impl UdpBatch ===

impl UdpBatch {
    pub fn new() -> UdpBatch {
        // SAFETY (the three `zeroed`): all-zero is a valid `sockaddr_storage`, `iovec` and
        // `mmsghdr` (null pointers and zero lengths), and each is filled in before use.
        UdpBatch {
            queries: vec![0u8; BATCH * SLOT].into_boxed_slice(),
            lens: [0; BATCH],
            peers: Box::new(unsafe { std::mem::zeroed() }),
            peer_lens: [0; BATCH],
            replies: (0..BATCH).map(|_| Vec::with_capacity(512)).collect(),
            pending: Vec::with_capacity(BATCH),
            iovecs: Box::new(unsafe { std::mem::zeroed() }),
            headers: Box::new(unsafe { std::mem::zeroed() }),
            received: 0,
        }
    }

    /// Waits for queries and takes in as many as are queued, up to [`BATCH`]; returns how
    /// many (at least one).
    pub async fn recv(&mut self, socket: &UdpSocket) -> Result<usize, RecvError> {
        loop {
            socket.readable().await.map_err(RecvError::Socket)?;
            match socket.try_io(Interest::READABLE, || self.recvmmsg(socket)) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if is_fatal(&e) => return Err(RecvError::Socket(e)),
                Err(e) => return Err(RecvError::Skipped(e)),
            }
        }
    }

    fn recvmmsg(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovecs[i] = libc::iovec {
                iov_base: self.queries[i * SLOT..].as_mut_ptr().cast(),
                iov_len: SLOT,
            };
            let header = &mut self.headers[i].msg_hdr;
            header.msg_name = std::ptr::addr_of_mut!(self.peers[i]).cast();
            header.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = std::ptr::addr_of_mut!(self.iovecs[i]);
            header.msg_iovlen = 1;
            header.msg_control = std::ptr::null_mut();
            header.msg_controllen = 0;
            header.msg_flags = 0;
            self.headers[i].msg_len = 0;
        }
        // SAFETY: `headers` holds BATCH valid entries whose name and iovec pointers point
        // into `peers`, `iovecs` and `queries`, all alive and not otherwise borrowed for the
        // call. MSG_DONTWAIT: readiness is tokio's; never block the runtime.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.received = 0;
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            self.lens[i] = (self.headers[i].msg_len as usize).min(SLOT);
            self.peer_lens[i] = self.headers[i].msg_hdr.msg_namelen;
        }
        self.received = n;
        Ok(n)
    }

    /// The query in slot `i` (below what `recv` returned), where it came from (`None` for
    /// an address family that is not IP), and the buffer its reply is written to (empty).
    pub fn slot(&mut self, i: usize) -> (&[u8], Option<SocketAddr>, &mut Vec<u8>) {
        debug_assert!(i < self.received);
        let peer = peer_addr(&self.peers[i], self.peer_lens[i]);
        let query = &self.queries[i * SLOT..i * SLOT + self.lens[i]];
        let reply = &mut self.replies[i];
        reply.clear();
        (query, peer, reply)
    }

    /// Queues the reply written into slot `i`'s buffer (or `bytes` instead, when given).
    pub fn queue_reply(&mut self, i: usize, bytes: Option<Vec<u8>>) {
        if let Some(bytes) = bytes {
            self.replies[i] = bytes;
        }
        self.pending.push(i);
    }

    /// Sends every queued reply, waiting only when the socket's buffer is full. A reply the
    /// kernel refuses (say, an unreachable client) is skipped, not retried.
    pub async fn flush(&mut self, socket: &UdpSocket) {
        let mut from = 0;
        while from < self.pending.len() {
            match socket.try_io(Interest::WRITABLE, || self.sendmmsg(socket, from)) {
                Ok(sent) => from += sent,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if socket.writable().await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    // sendmmsg fails only when the first datagram does.
                    debug!(error = %e, "cannot send a DNS reply");
                    from += 1;
                }
            }
        }
        self.pending.clear();
    }

    fn sendmmsg(&mut self, socket: &UdpSocket, from: usize) -> io::Result<usize> {
        let batch = &self.pending[from..];
        for (k, &i) in batch.iter().enumerate() {
            let reply = &mut self.replies[i];
            self.iovecs[k] = libc::iovec {
                iov_base: reply.as_mut_ptr().cast(),
                iov_len: reply.len(),
            };
            let header = &mut self.headers[k].msg_hdr;
            header.msg_name = std::ptr::addr_of_mut!(self.peers[i]).cast();
            header.msg_namelen = self.peer_lens[i];
            header.msg_iov = std::ptr::addr_of_mut!(self.iovecs[k]);
            header.msg_iovlen = 1;
            header.msg_control = std::ptr::null_mut();
            header.msg_controllen = 0;
            header.msg_flags = 0;
        }
        // SAFETY: the first `batch.len()` headers point into `peers`, `iovecs` and
        // `replies`, alive and unchanged for the call.
        let n = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                batch.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

impl Default for UdpBatch {
    fn default() -> UdpBatch {
        UdpBatch::new()
    }
}

/// Why `recv` returned no datagram.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// The socket is unusable: stop serving it.
    #[error("DNS UDP socket failed: {0}")]
    Socket(#[source] io::Error),
    /// One receive failed, such as with an ICMP error of an earlier reply
    /// (`ECONNREFUSED`): the next receive gets past it.
    #[error("DNS UDP receive error: {0}")]
    Skipped(#[source] io::Error),
}

/// Whether a receive error means the socket itself is unusable.
fn is_fatal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADF | libc::ENOTSOCK | libc::EINVAL | libc::EFAULT)
    )
}

/// The IP address and port a `sockaddr` from the kernel holds.
fn peer_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a `sockaddr_in`, and it is long
            // enough; `sockaddr_storage` is aligned for every sockaddr type.
            let v4 =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for `sockaddr_in6`.
            let v6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mtu_discover(socket: &std::net::UdpSocket) -> libc::c_int {
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt(2) writes at most `len` bytes into the live local.
        let got = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(got, 0, "{}", io::Error::last_os_error());
        value
    }

    #[test]
    fn path_mtu_news_are_ignored_once_set() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_ne!(
            mtu_discover(&socket),
            libc::IP_PMTUDISC_OMIT,
            "not the default"
        );
        omit_path_mtu(&socket).unwrap();
        assert_eq!(mtu_discover(&socket), libc::IP_PMTUDISC_OMIT);
    }

    /// Queries from two clients (v4 and v6) arrive in one batch, each reply goes back to
    /// the client that asked, and a cut query keeps its first `SLOT` bytes.
    #[tokio::test]
    async fn a_batch_takes_queued_datagrams_and_answers_each_sender() {
        let server = UdpSocket::bind("[::1]:0").await.unwrap();
        let server_v4 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = UdpSocket::bind("[::1]:0").await.unwrap();
        let b = UdpSocket::bind("[::1]:0").await.unwrap();
        let to = server.local_addr().unwrap();
        for i in 0..5u8 {
            a.send_to(&[b'a', i], to).await.unwrap();
            b.send_to(&[b'b', i], to).await.unwrap();
        }
        b.send_to(&vec![7u8; SLOT + 100], to).await.unwrap();
        let mut batch = UdpBatch::new();
        let mut seen = 0;
        while seen < 11 {
            let n = batch.recv(&server).await.unwrap();
            for i in 0..n {
                let (query, peer, reply) = batch.slot(i);
                let peer = peer.expect("an IP peer");
                if query.len() > 2 {
                    assert_eq!(query.len(), SLOT, "cut to the slot");
                    assert_eq!(peer, b.local_addr().unwrap());
                } else {
                    let want = if query[0] == b'a' { &a } else { &b };
                    assert_eq!(peer, want.local_addr().unwrap());
                }
                reply.extend_from_slice(b"re:");
                reply.extend_from_slice(&query[..2]);
                batch.queue_reply(i, None);
            }
            seen += n;
            batch.flush(&server).await;
        }
        let mut buf = [0u8; 16];
        for i in 0..5u8 {
            let (len, from) = a.recv_from(&mut buf).await.unwrap();
            assert_eq!((&buf[..len], from), (&[b'r', b'e', b':', b'a', i][..], to));
        }
        // The v4 socket's sender address parses too.
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.send_to(b"v4", server_v4.local_addr().unwrap())
            .await
            .unwrap();
        let n = batch.recv(&server_v4).await.unwrap();
        assert_eq!(n, 1);
        let (_, peer, _) = batch.slot(0);
        assert_eq!(peer, Some(c.local_addr().unwrap()));
    }
}
