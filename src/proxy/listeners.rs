//! The listener reconciler: keeps one TCP listener open per service-port address in the
//! current route table. On every table it opens the new addresses (one accept loop per
//! worker thread, all on the same socket), closes the removed ones (their open connections
//! run on), and retries binds that failed, on the next table and on a backoff timer. A bind
//! failure is reported, never fatal.
//!
//! What a connection does once accepted is `proxy::tcp`'s job. The state of every address
//! ("open" or the bind error) is published through a `ListenerStatusWriter` (admin shows
//! it) and in the `drover_tcp_listeners` gauge.
//!
//! Every open listener is also recorded in the process's `upgrade::Sockets`, so an upgrade
//! hands it over; a process started by an upgrade takes over the listeners handed down for
//! the addresses its first table wants instead of binding them, and closes the rest.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Instrument};

use crate::accept::{Place, Spread};
use crate::handles::ListenerStatusWriter;
use crate::proxy::{tcp, DataPlane};
use crate::routing::RouteTable;
use crate::shutdown::Shutdown;
use crate::upgrade::{Kind, Sockets};

/// First retry of a failed bind; doubles per failure up to `RETRY_MAX`. Short at first
/// because the usual cause is our own listener for that port still closing on a worker.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Opens and closes service-port listeners to match the route table.
pub struct Listeners {
    /// The data-plane runtimes; every open address has an accept loop on each.
    workers: Vec<Handle>,
    /// Handed to each port's accept loops.
    plane: Arc<DataPlane>,
    status: ListenerStatusWriter,
    shutdown: Shutdown,
    /// Open addresses; cancelling the token stops their accept loops and closes the port.
    open: BTreeMap<SocketAddr, CancellationToken>,
    /// Wanted addresses whose bind failed, with when to try again.
    failed: BTreeMap<SocketAddr, Failed>,
    /// Where every open listener is recorded for an upgrade to hand over.
    sockets: Sockets,
    /// Listeners handed down by the process this one replaces, until the first table.
    handed_down: BTreeMap<SocketAddr, std::net::TcpListener>,
}

/// A wanted address that could not be bound.
#[derive(Debug)]
struct Failed {
    error: String,
    attempts: u32,
    retry_at: Instant,
}

// === impl Listeners ===

impl Listeners {
    pub fn new(
        workers: Vec<Handle>,
        plane: Arc<DataPlane>,
        status: ListenerStatusWriter,
        shutdown: Shutdown,
    ) -> Listeners {
        Listeners {
            workers,
            plane,
            status,
            shutdown,
            open: BTreeMap::new(),
            failed: BTreeMap::new(),
            sockets: Sockets::new(),
            handed_down: BTreeMap::new(),
        }
    }

    /// Records open listeners in `sockets`, and takes over `handed_down` (by address) for
    /// the addresses the first route table wants.
    pub fn with_sockets(
        mut self,
        sockets: Sockets,
        handed_down: BTreeMap<SocketAddr, std::net::TcpListener>,
    ) -> Listeners {
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
                // A new table retries every failed bind at once: it may be what fixed it.
                self.reconcile(&wanted, true);
                // The first real table took what it wants of the handed-down listeners.
                if table.version > 0 {
                    for addr in std::mem::take(&mut self.handed_down).into_keys() {
                        info!(%addr, "handed-down service port not in the route table; closed");
                    }
                }
            } else {
                self.reconcile(&wanted, false);
            }
            let retry_at = self.failed.values().map(|f| f.retry_at).min();
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
                        // control has stopped (it does so at shutdown): keep what is open.
                        debug!("route table channel closed; listeners stay as they are");
                        tables_open = false;
                        table_changed = false;
                    }
                },
                _ = retry => table_changed = false,
                _ = self.shutdown.triggered() => break,
            }
        }
        // The accept loops stop on the shutdown themselves (their tokens are its children);
        // cancelling here only makes that explicit.
        for (addr, stop) in std::mem::take(&mut self.open) {
            stop.cancel();
            self.sockets.remove(Kind::Tcp, addr);
            debug!(%addr, "listener closed for shutdown");
        }
        info!("listeners stopped");
    }

    /// Makes the open set match `wanted`. Failed addresses are retried when `retry_all`,
    /// else only those whose backoff has passed.
    fn reconcile(&mut self, wanted: &BTreeMap<SocketAddr, u16>, retry_all: bool) {
        let removed: Vec<SocketAddr> = self
            .open
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        for addr in removed {
            if let Some(stop) = self.open.remove(&addr) {
                stop.cancel();
                self.sockets.remove(Kind::Tcp, addr);
                info!(%addr, "service port closed; open connections continue");
            }
        }
        self.failed.retain(|addr, _| wanted.contains_key(addr));

        let now = Instant::now();
        for (&addr, &port) in wanted {
            if self.open.contains_key(&addr) {
                continue;
            }
            if let Some(f) = self.failed.get(&addr) {
                if !retry_all && f.retry_at > now {
                    continue;
                }
            }
            match self.start(addr, port) {
                Ok(stop) => {
                    self.open.insert(addr, stop);
                    match self.failed.remove(&addr) {
                        Some(f) => {
                            info!(%addr, attempts = f.attempts, "service port listening after failed binds")
                        }
                        None => {
                            info!(%addr, workers = self.workers.len(), "service port listening")
                        }
                    }
                }
                Err(e) => self.bind_failed(addr, e, now),
            }
        }
        self.publish();
    }

    /// Records a failed bind and when to try again; warns when the error is new.
    fn bind_failed(&mut self, addr: SocketAddr, e: io::Error, now: Instant) {
        let error = e.to_string();
        let f = self.failed.entry(addr).or_insert_with(|| Failed {
            error: String::new(),
            attempts: 0,
            retry_at: now,
        });
        f.attempts += 1;
        f.retry_at = now + backoff(f.attempts);
        if f.error != error {
            warn!(%addr, error = %error, retry_in = %crate::logfmt::duration(backoff(f.attempts)),
                "cannot listen on service port; will retry");
            f.error = error;
        } else {
            debug!(%addr, error = %error, attempts = f.attempts, "service port bind failed again");
        }
    }

    /// Binds `addr` and starts an accept loop for it on every worker. Returns the token that
    /// closes it.
    fn start(&mut self, addr: SocketAddr, port: u16) -> io::Result<CancellationToken> {
        if self.workers.is_empty() {
            return Err(io::Error::other("no worker threads to accept on"));
        }
        let listener = match self.handed_down.remove(&addr) {
            Some(l) => {
                info!(%addr, "service port taken over from the process this one replaces");
                l
            }
            None => {
                let l = std::net::TcpListener::bind(addr)?;
                l.set_nonblocking(true)?;
                crate::accept::deepen_backlog(&l)?;
                l
            }
        };
        self.sockets.insert(Kind::Tcp, addr, &listener)?;
        // Clone every handle before spawning anything, so a failure leaves nothing half open.
        let clones = self
            .workers
            .iter()
            .map(|_| listener.try_clone())
            .collect::<io::Result<Vec<_>>>()?;
        drop(listener);
        let stop = self.shutdown.child_token();
        let spread = Spread::new(self.workers.clone());
        for (i, (worker, listener)) in self.workers.iter().zip(clones).enumerate() {
            let (plane, stop, shutdown) = (self.plane.clone(), stop.clone(), self.shutdown.clone());
            let place = Place {
                spread: spread.clone(),
                me: i,
            };
            let accept = async move {
                // from_std must run inside the worker's runtime to register with its reactor.
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => tcp::serve_port(l, port, place, plane, stop, shutdown).await,
                    Err(e) => {
                        error!(%addr, error = %e, "cannot register the service-port listener on this worker")
                    }
                }
            };
            worker.spawn(accept.instrument(tracing::info_span!("tcp_port", %addr, worker = i)));
        }
        Ok(stop)
    }

    /// Publishes every address's state, and the gauge.
    fn publish(&self) {
        let states: BTreeMap<SocketAddr, String> = self
            .open
            .keys()
            .map(|a| (*a, "open".to_string()))
            .chain(self.failed.iter().map(|(a, f)| (*a, f.error.clone())))
            .collect();
        // Gauge first: whoever sees the new map also sees the matching counts.
        let gauge = &self.plane.metrics.tcp_listeners;
        gauge
            .with_label_values(&["open"])
            .set(self.open.len() as i64);
        gauge
            .with_label_values(&["failed"])
            .set(self.failed.len() as i64);
        self.status.publish(states);
    }
}

/// The addresses the table wants listened on, with their service port.
fn wanted_addrs(table: &RouteTable) -> BTreeMap<SocketAddr, u16> {
    table
        .tcp_routes()
        .filter_map(|r| r.listen.map(|addr| (addr, r.port)))
        .collect()
}

/// The wait before retry number `attempts + 1` of a failed bind.
pub(super) fn backoff(attempts: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1 << attempts.saturating_sub(1).min(16))
        .min(RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let waits: Vec<u64> = (1..=7).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(backoff(u32::MAX), RETRY_MAX);
    }
}
