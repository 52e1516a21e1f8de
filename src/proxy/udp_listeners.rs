//! The UDP listener reconciler: keeps one socket open per UDP service-port address in the
//! current route table, as `proxy::listeners` does for TCP. On every table it opens the
//! new addresses, closes the removed ones (their flows end with them), and retries binds
//! that failed, on the next table and on a backoff timer. A bind failure is reported (log
//! and `drover_udp_listeners{state="failed"}`), never fatal.
//!
//! A UDP port is not shared between workers: each open port runs, flows included, on one
//! worker thread (given out in turn), because a flow's datagrams must meet its one flow
//! table. What a port does with datagrams is `proxy::udp`'s job.
//!
//! Every open socket is recorded in the process's `upgrade::Sockets` (kind `udp`), so an
//! upgrade hands it over; a process started by an upgrade takes over the sockets handed
//! down for the addresses its first table wants instead of binding them.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Instrument};

use crate::proxy::listeners::backoff;
use crate::proxy::{udp, DataPlane};
use crate::routing::RouteTable;
use crate::shutdown::Shutdown;
use crate::upgrade::{Kind, Sockets};

/// Opens and closes UDP service-port sockets to match the route table.
pub struct UdpListeners {
    workers: Vec<Handle>,
    /// The worker the next opened port runs on.
    next_worker: usize,
    plane: Arc<DataPlane>,
    shutdown: Shutdown,
    /// Open addresses; cancelling the token ends the port's loop, its flows and its socket.
    open: BTreeMap<SocketAddr, CancellationToken>,
    /// Wanted addresses whose bind failed: the error, the attempts, when to try again.
    failed: BTreeMap<SocketAddr, (String, u32, Instant)>,
    sockets: Sockets,
    /// Sockets handed down by the process this one replaces, until the first table.
    handed_down: BTreeMap<SocketAddr, std::net::UdpSocket>,
}

// === impl UdpListeners ===

impl UdpListeners {
    pub fn new(workers: Vec<Handle>, plane: Arc<DataPlane>, shutdown: Shutdown) -> UdpListeners {
        UdpListeners {
            workers,
            next_worker: 0,
            plane,
            shutdown,
            open: BTreeMap::new(),
            failed: BTreeMap::new(),
            sockets: Sockets::new(),
            handed_down: BTreeMap::new(),
        }
    }

    /// Records open sockets in `sockets`, and takes over `handed_down` (by address) for the
    /// addresses the first route table wants.
    pub fn with_sockets(
        mut self,
        sockets: Sockets,
        handed_down: BTreeMap<SocketAddr, std::net::UdpSocket>,
    ) -> UdpListeners {
        self.sockets = sockets;
        self.handed_down = handed_down;
        self
    }

    /// Reconciles on the current table and on every new one until shutdown.
    pub async fn run(mut self, mut tables: watch::Receiver<Arc<RouteTable>>) {
        let mut wanted = BTreeMap::new();
        let mut table_changed = true;
        let mut tables_open = true;
        loop {
            if table_changed {
                let table = tables.borrow_and_update().clone();
                wanted = wanted_addrs(&table);
                self.reconcile(&wanted, true, &tables);
                if table.version > 0 {
                    for addr in std::mem::take(&mut self.handed_down).into_keys() {
                        info!(%addr, "handed-down UDP service port not in the route table; closed");
                    }
                }
            } else {
                self.reconcile(&wanted, false, &tables);
            }
            let retry_at = self.failed.values().map(|f| f.2).min();
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = tables.changed(), if tables_open => match r {
                    Ok(()) => table_changed = true,
                    Err(_) => {
                        tables_open = false;
                        table_changed = false;
                    }
                },
                _ = retry => table_changed = false,
                _ = self.shutdown.triggered() => break,
            }
        }
        for (addr, stop) in std::mem::take(&mut self.open) {
            stop.cancel();
            self.sockets.remove(Kind::Udp, addr);
        }
        debug!("UDP listeners stopped");
    }

    /// Makes the open set match `wanted`; failed binds are retried when `retry_all`, else
    /// only once their backoff has passed.
    fn reconcile(
        &mut self,
        wanted: &BTreeMap<SocketAddr, u16>,
        retry_all: bool,
        tables: &watch::Receiver<Arc<RouteTable>>,
    ) {
        let removed: Vec<SocketAddr> = self
            .open
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        for addr in removed {
            if let Some(stop) = self.open.remove(&addr) {
                stop.cancel();
                self.sockets.remove(Kind::Udp, addr);
                info!(%addr, "UDP service port closed; its flows end");
            }
        }
        self.failed.retain(|addr, _| wanted.contains_key(addr));
        let now = Instant::now();
        for (&addr, &port) in wanted {
            if self.open.contains_key(&addr) {
                continue;
            }
            if let Some((_, _, retry_at)) = self.failed.get(&addr) {
                if !retry_all && *retry_at > now {
                    continue;
                }
            }
            match self.start(addr, port, tables.clone()) {
                Ok(stop) => {
                    self.open.insert(addr, stop);
                    let after = self.failed.remove(&addr).map_or(0, |f| f.1);
                    info!(%addr, failed_binds = after, "UDP service port listening");
                }
                Err(e) => {
                    let error = e.to_string();
                    let entry = self
                        .failed
                        .entry(addr)
                        .or_insert_with(|| (String::new(), 0, now));
                    entry.1 += 1;
                    entry.2 = now + backoff(entry.1);
                    if entry.0 != error {
                        warn!(%addr, error = %error, "cannot listen on UDP service port; will retry");
                        entry.0 = error;
                    }
                }
            }
        }
        let gauge = &self.plane.metrics.udp_listeners;
        gauge
            .with_label_values(&["open"])
            .set(self.open.len() as i64);
        gauge
            .with_label_values(&["failed"])
            .set(self.failed.len() as i64);
    }

    /// Binds `addr` (or takes the handed-down socket) and starts its loop on the next
    /// worker. Returns the token that closes it.
    fn start(
        &mut self,
        addr: SocketAddr,
        port: u16,
        tables: watch::Receiver<Arc<RouteTable>>,
    ) -> io::Result<CancellationToken> {
        if self.workers.is_empty() {
            return Err(io::Error::other("no worker threads to serve on"));
        }
        let socket = match self.handed_down.remove(&addr) {
            Some(s) => {
                info!(%addr, "UDP service port taken over from the process this one replaces");
                s
            }
            None => {
                let s = std::net::UdpSocket::bind(addr)?;
                s.set_nonblocking(true)?;
                s
            }
        };
        self.sockets.insert(Kind::Udp, addr, &socket)?;
        let worker = self.next_worker % self.workers.len();
        self.next_worker = self.next_worker.wrapping_add(1);
        let stop = self.shutdown.child_token();
        let (plane, token, shutdown) = (self.plane.clone(), stop.clone(), self.shutdown.clone());
        let serve = async move {
            // from_std must run inside the worker's runtime to register with its reactor.
            match tokio::net::UdpSocket::from_std(socket) {
                Ok(s) => udp::serve_port(s, port, plane, tables, token, shutdown).await,
                Err(e) => error!(%addr, error = %e, "cannot register the UDP service-port socket"),
            }
        };
        self.workers[worker]
            .spawn(serve.instrument(tracing::info_span!("udp_port", %addr, worker)));
        Ok(stop)
    }
}

/// The addresses the table wants UDP sockets on, with their service port.
fn wanted_addrs(table: &RouteTable) -> BTreeMap<SocketAddr, u16> {
    table
        .udp_routes()
        .filter_map(|r| r.udp_listen.map(|addr| (addr, r.port)))
        .collect()
}
