//! A DNS load generator that saturates one server thread, for `bench/dns_saturate.sh`.
//!
//! ```text
//! cargo run --release --example dns_load -- TARGET QUERYFILE SECONDS [WINDOW [COUNT]]
//! ```
//!
//! dnsperf spends more CPU per query than the servers it measures, so on two cores it
//! saturates its own core first and the server never batches. This client sends and
//! receives in batches of up to 64 (`sendmmsg`/`recvmmsg` on one connected socket), keeping
//! WINDOW queries in flight (default 512): a new query for each reply. QUERYFILE has one
//! `name TYPE` per line (dnsperf's format; A, AAAA, SRV, ANY). Queries are encoded once and
//! sent round-robin with fresh IDs. After SECONDS it prints one line:
//! `answered_per_second answered errors lost` (errors: a reply whose rcode is not NOERROR or
//! that has no answer; lost: a window given up after 200 ms of silence). With COUNT, it
//! sends at most COUNT queries and stops early once each is answered or lost, so a server
//! run under callgrind can be given a known number of queries.

// A load generator measures real time (clippy.toml bars this elsewhere).
#![allow(clippy::disallowed_methods)]

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const BATCH: usize = 64;
const SLOT: usize = 512;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        usage("missing arguments");
    }
    let target: SocketAddr = args[0].parse().unwrap_or_else(|_| usage("bad TARGET"));
    let queries = read_queries(&args[1]);
    let seconds: u64 = args[2].parse().unwrap_or_else(|_| usage("bad SECONDS"));
    let window: usize = args
        .get(3)
        .map_or(Ok(512), |w| w.parse())
        .unwrap_or_else(|_| usage("bad WINDOW"));
    let count: u64 = args
        .get(4)
        .map_or(Ok(u64::MAX), |c| c.parse())
        .unwrap_or_else(|_| usage("bad COUNT"));
    run(
        target,
        &queries,
        Duration::from_secs(seconds),
        window.max(1),
        count,
    );
}

fn usage(why: &str) -> ! {
    eprintln!("dns_load: {why}\nusage: dns_load TARGET QUERYFILE SECONDS [WINDOW [COUNT]]");
    std::process::exit(2)
}

/// Each line's query in wire format, ID 0 (patched per send).
fn read_queries(path: &str) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| usage(&format!("{path}: {e}")));
    let queries: Vec<Vec<u8>> = text
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let qtype = match words.next().unwrap_or("A").to_ascii_uppercase().as_str() {
                "A" => 1,
                "AAAA" => 28,
                "SRV" => 33,
                "ANY" => 255,
                _ => return None,
            };
            encode_query(name, qtype)
        })
        .collect();
    if queries.is_empty() {
        usage(&format!("{path}: no queries"));
    }
    queries
}

fn encode_query(name: &str, qtype: u16) -> Option<Vec<u8>> {
    // ID 0, RD, one question.
    let mut q = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..64).contains(l))?;
        q.push(len);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    Some(q)
}

fn run(target: SocketAddr, queries: &[Vec<u8>], length: Duration, window: usize, count: u64) {
    let bind = if target.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = UdpSocket::bind(bind).expect("bind the client socket");
    socket.connect(target).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let fd = socket.as_raw_fd();
    let mut sender = Sender::new(queries, count);
    let mut rx = vec![[0u8; SLOT]; BATCH];
    let (mut answered, mut errors, mut lost) = (0u64, 0u64, 0u64);
    let mut in_flight = sender.send(fd, window);
    let started = Instant::now();
    let deadline = started + length;
    while Instant::now() < deadline && (in_flight > 0 || sender.left > 0) {
        match recv_batch(fd, &mut rx) {
            Some(lens) => {
                for (buf, &len) in rx.iter().zip(&lens) {
                    if is_answer(&buf[..len]) {
                        answered += 1;
                    } else {
                        errors += 1;
                    }
                }
                in_flight -= lens.len().min(in_flight);
                in_flight += sender.send(fd, window - in_flight);
            }
            None => {
                lost += in_flight as u64;
                in_flight = sender.send(fd, window);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{:.0} {answered} {errors} {lost}", answered as f64 / secs);
}

/// NOERROR with at least one answer.
fn is_answer(reply: &[u8]) -> bool {
    reply.len() >= 12 && reply[3] & 0x0f == 0 && u16::from_be_bytes([reply[6], reply[7]]) > 0
}

/// Sends queries round-robin over the file with IDs counting up.
struct Sender<'q> {
    queries: &'q [Vec<u8>],
    next: usize,
    id: u16,
    /// How many more queries may be sent.
    left: u64,
    out: Vec<Vec<u8>>,
}

impl<'q> Sender<'q> {
    fn new(queries: &'q [Vec<u8>], count: u64) -> Sender<'q> {
        Sender {
            queries,
            next: 0,
            id: 0,
            left: count,
            out: (0..BATCH).map(|_| Vec::with_capacity(SLOT)).collect(),
        }
    }

    /// Sends up to `count` queries in batches; returns how many the kernel took.
    fn send(&mut self, fd: i32, count: usize) -> usize {
        let count = count.min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let mut sent = 0;
        while sent < count {
            let n = (count - sent).min(BATCH);
            for buf in &mut self.out[..n] {
                buf.clear();
                buf.extend_from_slice(&self.queries[self.next]);
                buf[..2].copy_from_slice(&self.id.to_be_bytes());
                self.next = (self.next + 1) % self.queries.len();
                self.id = self.id.wrapping_add(1);
            }
            let mut iov: Vec<libc::iovec> = self.out[..n]
                .iter_mut()
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: b.len(),
                })
                .collect();
            let mut msgs: Vec<libc::mmsghdr> = iov.iter_mut().map(header).collect();
            // SAFETY: every header points at one live iovec over a live buffer; the socket is
            // connected, so no address is given.
            let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as u32, 0) };
            if r <= 0 {
                break;
            }
            sent += r as usize;
        }
        self.left -= sent as u64;
        sent
    }
}

/// Receives up to `BATCH` replies (waiting for the first up to the read timeout); `None`
/// when nothing came.
fn recv_batch(fd: i32, rx: &mut [[u8; SLOT]]) -> Option<Vec<usize>> {
    let mut iov: Vec<libc::iovec> = rx
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: SLOT,
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iov.iter_mut().map(header).collect();
    // SAFETY: as in `send`; MSG_WAITFORONE blocks (up to SO_RCVTIMEO) for the first datagram
    // only, then takes what is queued.
    let r = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            msgs.len() as u32,
            libc::MSG_WAITFORONE,
            std::ptr::null_mut(),
        )
    };
    (r > 0).then(|| {
        msgs[..r as usize]
            .iter()
            .map(|m| m.msg_len as usize)
            .collect()
    })
}

fn header(iov: &mut libc::iovec) -> libc::mmsghdr {
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
    m.msg_hdr.msg_iov = iov;
    m.msg_hdr.msg_iovlen = 1;
    m
}
