//! The UDP proxy of one service port. One socket bound to the service port receives every
//! client's datagrams; a *flow* is one client address, and gets its own connected socket
//! (an ephemeral port) to the backend the pool picked for it when its first datagram came.
//! Every later datagram of the client goes to that backend; the backend's replies come back
//! on the flow's socket and leave through the service-port socket, so the client sees them
//! from the address it sent to.
//!
//! A flow ends when it has been idle (no datagram either way) for `[udp] idle_timeout`, when
//! its backend leaves the pool (at once, on the new table), when the backend refuses (an
//! ICMP port unreachable: counted against it as a failed exchange), when the port closes,
//! and at shutdown. A datagram that would open more than `[udp] max_flows` flows on the
//! port is dropped and counted. Pool and settings changes apply to new flows.
//!
//! The hot path of a datagram is one receive, one flow lookup and one send, all without an
//! await in between: every task of a worker thread reads into that thread's one 64 KiB
//! buffer, and a send that would block drops the datagram (UDP's own promise) instead of
//! queueing it. Which ports exist, and on which worker each runs, is
//! `proxy::udp_listeners`' job.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Instrument};

use super::{note_failure, DataPlane, Fault};
use crate::routing::pool::{Backend, InFlight};
use crate::routing::{Route, RouteTable};
use crate::shutdown::Shutdown;

/// The largest datagram IP carries (64 KiB); a shorter buffer would truncate.
const BUF_LEN: usize = 65_536;

/// Datagrams handled per wake-up before the other tasks of the thread get a turn.
const BATCH: usize = 64;

thread_local! {
    /// The one receive buffer of this worker thread. Borrowed only between a receive and
    /// its send, never across an await, so every flow and port of the thread shares it.
    static BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; BUF_LEN].into_boxed_slice());
}

/// Why a datagram was dropped: the `reason` label of `drover_udp_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dropped {
    /// A new client while the port has `max_flows` flows.
    MaxFlows,
    /// The port's pool is empty (or the port left the table).
    NoBackend,
    /// The client is outside `HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL`.
    NotAllowed,
    /// No socket for a new flow (out of file descriptors and the like).
    Socket,
    /// A send failed or would block (a full socket buffer).
    Send,
}

const DROPS: [Dropped; 5] = [
    Dropped::MaxFlows,
    Dropped::NoBackend,
    Dropped::NotAllowed,
    Dropped::Socket,
    Dropped::Send,
];

impl Dropped {
    fn as_str(self) -> &'static str {
        match self {
            Dropped::MaxFlows => "max_flows",
            Dropped::NoBackend => "no_backend",
            Dropped::NotAllowed => "not_allowed",
            Dropped::Socket => "socket",
            Dropped::Send => "send",
        }
    }
}

/// Serves the service-port socket until `stop` or the shutdown fires; every flow ends
/// with it. `tables` tells of new route tables, to end the flows of removed backends.
pub async fn serve_port(
    socket: UdpSocket,
    port: u16,
    plane: Arc<DataPlane>,
    mut tables: watch::Receiver<Arc<RouteTable>>,
    stop: CancellationToken,
    shutdown: Shutdown,
) {
    let port = Arc::new(Port::new(socket, port, plane));
    let mut tables_open = true;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = shutdown.triggered() => break,
            changed = tables.changed(), if tables_open => match changed {
                Ok(()) => {
                    let table = tables.borrow_and_update().clone();
                    port.end_removed(&table);
                }
                // control has stopped (at shutdown): no more changes to follow.
                Err(_) => tables_open = false,
            },
            ready = port.socket.readable() => match ready {
                // A full batch means more may wait: let the flows' replies go first.
                Ok(()) => if port.receive() {
                    tokio::task::yield_now().await;
                },
                Err(e) => {
                    warn!(port = port.port, error = %e, "UDP service port socket failed; closing it");
                    break;
                }
            },
        }
    }
    let ended = std::mem::take(&mut *port.flows());
    debug!(
        port = port.port,
        flows = ended.len(),
        "UDP service port closed; its flows end"
    );
}

/// One service port: its socket, its flows and its metric handles, shared by the port's
/// receive loop and every flow's reply task.
struct Port {
    port: u16,
    socket: UdpSocket,
    plane: Arc<DataPlane>,
    flows: Mutex<HashMap<SocketAddr, Flow>>,
    /// The epoch of the flows' millisecond activity stamps.
    epoch: Instant,
    next_id: AtomicU64,
    datagrams_in: IntCounter,
    datagrams_out: IntCounter,
    open_flows: IntGauge,
    dropped: [IntCounter; DROPS.len()],
}

/// A client's flow, owned by the port's table; dropping it ends the flow.
struct Flow {
    /// Tells this flow from a later one of the same client.
    id: u64,
    link: Arc<Link>,
    route: Arc<Route>,
    /// Counts the flow for `leastconn`, and names the backend.
    in_flight: InFlight,
    /// The task relaying the backend's replies.
    replies: AbortHandle,
    open_flows: IntGauge,
}

/// What a flow's datagrams travel on, shared with its reply task.
struct Link {
    /// Connected to the backend.
    upstream: UdpSocket,
    /// Milliseconds since the port's epoch of the last datagram either way.
    last: AtomicU64,
}

impl std::ops::Drop for Flow {
    fn drop(&mut self) {
        self.replies.abort();
        self.open_flows.dec();
    }
}

// === impl Port ===

impl Port {
    fn new(socket: UdpSocket, port: u16, plane: Arc<DataPlane>) -> Port {
        let label = port.to_string();
        let m = &plane.metrics;
        Port {
            port,
            socket,
            flows: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            datagrams_in: m.udp_datagrams.with_label_values(&[&label, "in"]),
            datagrams_out: m.udp_datagrams.with_label_values(&[&label, "out"]),
            open_flows: m.udp_flows.with_label_values(&[&label]),
            dropped: DROPS.map(|d| m.udp_dropped.with_label_values(&[&label, d.as_str()])),
            plane,
        }
    }

    fn flows(&self) -> MutexGuard<'_, HashMap<SocketAddr, Flow>> {
        // Only this worker thread locks it, never across an await; a panic leaves it whole.
        self.flows.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn drop_datagram(&self, why: Dropped) {
        self.dropped[why as usize].inc();
    }

    /// Reads up to a batch of client datagrams and forwards each to its flow's backend.
    /// True when the batch was full (more may be waiting).
    fn receive(self: &Arc<Self>) -> bool {
        let now = self.now_ms();
        BUF.with_borrow_mut(|buf| {
            for _ in 0..BATCH {
                let (n, client) = match self.socket.try_recv_from(buf) {
                    Ok(got) => got,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                    Err(e) => {
                        debug!(port = self.port, error = %e, "UDP receive failed");
                        return false;
                    }
                };
                self.forward(&buf[..n], client, now);
            }
            true
        })
    }

    /// Sends one client datagram on the client's flow, opening the flow if it is new.
    fn forward(self: &Arc<Self>, datagram: &[u8], client: SocketAddr, now: u64) {
        let mut flows = self.flows();
        let failed = match flows.get(&client) {
            Some(flow) => {
                flow.link.touch(now);
                match self.send_up(&flow.link, datagram) {
                    Ok(()) => return,
                    Err(e) => e,
                }
            }
            None => {
                let flow = match self.open_flow(client, now, flows.len()) {
                    Ok(flow) => flow,
                    Err(why) => return self.drop_datagram(why),
                };
                let sent = self.send_up(&flow.link, datagram);
                flows.insert(client, flow);
                match sent {
                    Ok(()) => return,
                    Err(e) => e,
                }
            }
        };
        // The backend refused (an ICMP error the kernel kept for this socket), or the
        // socket broke: end the flow; the client's next datagram picks afresh.
        if let Some(flow) = flows.remove(&client) {
            drop(flows);
            self.backend_failed(&flow.route, flow.in_flight.backend(), &failed);
        }
    }

    /// Sends on a flow's upstream socket. A full socket buffer drops the datagram; any
    /// other error is returned (the flow should end). Sends are plain syscalls, not
    /// tokio's `try_send`: that one waits for the reactor to have seen the socket
    /// writable, which a flow's new socket has not when its first datagram goes out.
    fn send_up(&self, link: &Link, datagram: &[u8]) -> io::Result<()> {
        match SockRef::from(&link.upstream).send(datagram) {
            Ok(_) => {
                self.datagrams_in.inc();
                Ok(())
            }
            Err(e) => {
                self.drop_datagram(Dropped::Send);
                if e.kind() == io::ErrorKind::WouldBlock {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// A new flow for `client`: the pool picks its backend, a socket is connected to it and
    /// a task relays its replies. `open` is the number of flows the port has.
    fn open_flow(
        self: &Arc<Self>,
        client: SocketAddr,
        now: u64,
        open: usize,
    ) -> Result<Flow, Dropped> {
        let (route, backend, idle_timeout) = {
            let table = self.plane.table.load();
            let settings = table.udp_settings;
            if open >= settings.max_flows {
                debug!(port = self.port, %client, max_flows = settings.max_flows, "UDP port at max_flows; datagram of a new client dropped");
                return Err(Dropped::MaxFlows);
            }
            let Some(route) = table.lookup_udp(self.port) else {
                return Err(Dropped::NoBackend);
            };
            if !route.rules.admits(client.ip()) {
                debug!(port = self.port, %client, route = %route.name, fault = Fault::Client.as_str(), "source not allowed; datagram dropped");
                return Err(Dropped::NotAllowed);
            }
            let Some(i) = route.pool.pick(client.ip()) else {
                debug!(port = self.port, %client, route = %route.name, fault = Fault::Upstream.as_str(), "no backend in the pool; datagram dropped");
                return Err(Dropped::NoBackend);
            };
            (
                route.clone(),
                route.pool.backends()[i].clone(),
                settings.idle_timeout,
            )
        };
        let upstream = connect(backend.addr).map_err(|e| {
            warn!(port = self.port, backend = %backend.addr, error = %e, "cannot open a UDP socket for a new flow; datagram dropped");
            Dropped::Socket
        })?;
        let link = Arc::new(Link {
            upstream,
            last: AtomicU64::new(now),
        });
        let id = self.next_id.fetch_add(1, Relaxed);
        let replies = tokio::spawn(
            self.clone()
                .relay_replies(client, id, link.clone(), idle_timeout)
                .in_current_span(),
        )
        .abort_handle();
        self.open_flows.inc();
        debug!(port = self.port, %client, backend = %backend.addr, route = %route.name, "UDP flow opened");
        Ok(Flow {
            id,
            link,
            in_flight: backend.start(),
            route,
            replies,
            open_flows: self.open_flows.clone(),
        })
    }

    /// A flow's reply task: relays the backend's datagrams to `client` until the flow has
    /// been idle for `idle_timeout` or its socket fails, then removes the flow.
    async fn relay_replies(
        self: Arc<Self>,
        client: SocketAddr,
        id: u64,
        link: Arc<Link>,
        idle_timeout: Duration,
    ) {
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        let failed = loop {
            tokio::select! {
                // ERROR too: a refusal (ICMP port unreachable) makes the socket report
                // an error, not readable.
                ready = link.upstream.ready(Interest::READABLE | Interest::ERROR) => {
                    match ready {
                        Ok(r) if r.is_error() => {
                            let e = link.upstream.take_error().ok().flatten();
                            break Some(e.unwrap_or_else(|| io::Error::other("socket error")));
                        }
                        Ok(_) => {
                            if let Err(e) = self.relay_batch(&link, client) {
                                break Some(e);
                            }
                        }
                        Err(e) => break Some(e),
                    }
                }
                () = &mut idle => {
                    // One timer per idle period, not one per datagram: on expiry, look at
                    // the last activity and sleep again for what is left.
                    let last = self.epoch + Duration::from_millis(link.last.load(Relaxed));
                    let until = last + idle_timeout;
                    if until <= Instant::now() {
                        break None;
                    }
                    idle.as_mut().reset(until);
                }
            }
        };
        // The entry may be a newer flow of the same client (this one was ended already).
        let mut flows = self.flows();
        let mine = flows.get(&client).is_some_and(|f| f.id == id);
        let Some(flow) = mine.then(|| flows.remove(&client)).flatten() else {
            return;
        };
        drop(flows);
        match failed {
            Some(e) => self.backend_failed(&flow.route, flow.in_flight.backend(), &e),
            None => debug!(port = self.port, %client, "UDP flow idle; ended"),
        }
    }

    /// Relays up to a batch of the backend's datagrams to the client, through the
    /// service-port socket.
    fn relay_batch(&self, link: &Link, client: SocketAddr) -> io::Result<()> {
        BUF.with_borrow_mut(|buf| {
            for _ in 0..BATCH {
                let n = match link.upstream.try_recv(buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) => return Err(e),
                };
                link.touch(self.now_ms());
                match SockRef::from(&self.socket).send_to(&buf[..n], &client.into()) {
                    Ok(_) => self.datagrams_out.inc(),
                    Err(e) => {
                        debug!(port = self.port, %client, error = %e, "UDP reply not sent; dropped");
                        self.drop_datagram(Dropped::Send);
                    }
                }
            }
            Ok(())
        })
    }

    /// Ends the flows whose backend is not in the port's pool any more.
    fn end_removed(&self, table: &RouteTable) {
        let Some(route) = table.lookup_udp(self.port) else {
            // The port left the table; the listener reconciler closes it.
            return;
        };
        let pool: HashSet<SocketAddr> = route.pool.backends().iter().map(|b| b.addr).collect();
        let mut flows = self.flows();
        let before = flows.len();
        flows.retain(|_, f| pool.contains(&f.in_flight.backend().addr));
        let ended = before - flows.len();
        if ended > 0 {
            debug!(
                port = self.port,
                ended, "UDP flows of removed backends ended"
            );
        }
    }

    /// Counts a failed exchange with a flow's backend (ejection included) and reports it.
    fn backend_failed(&self, route: &Route, backend: &Arc<Backend>, e: &io::Error) {
        debug!(port = self.port, backend = %backend.addr, route = %route.name, error = %e, "UDP backend failed; flow ended");
        note_failure(&self.plane, route, backend);
        self.plane
            .metrics
            .upstream_errors
            .with_label_values(&[&route.name, "udp"])
            .inc();
        self.plane.upstream_errors.report(
            &route.name,
            Some(backend.addr),
            Fault::Upstream,
            format_args!("UDP: {e}"),
        );
    }
}

// === impl Link ===

impl Link {
    /// Stamps activity; skips the write when the millisecond is the same.
    fn touch(&self, now: u64) {
        if self.last.load(Relaxed) != now {
            self.last.store(now, Relaxed);
        }
    }
}

/// A socket on an ephemeral port connected to `backend`, so the kernel delivers only that
/// backend's datagrams to it (and its ICMP errors).
fn connect(backend: SocketAddr) -> io::Result<UdpSocket> {
    let any: SocketAddr = match backend {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(any)?;
    socket.connect(backend)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}
