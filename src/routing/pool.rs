//! `Pool`: the immutable list of backends of one route, and how a request picks one.
//! A pool is built once per table change; picking is a few atomic operations, no lock and
//! no allocation. `Backend` carries the state that must outlive a rebuild (in-flight count,
//! consecutive failures), so `routing::compile` reuses the same `Arc<Backend>` per address.

use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use crate::catalog::Balance;

/// One backend address and its live state.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    in_flight: AtomicUsize,
    /// Consecutive failed connects; reset by a successful one.
    failures: AtomicU32,
}

// === impl Backend ===

impl Backend {
    pub fn new(addr: SocketAddr) -> Backend {
        Backend {
            addr,
            in_flight: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
        }
    }

    /// Requests or connections now being served by this backend.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    pub fn failures(&self) -> u32 {
        self.failures.load(Relaxed)
    }

    /// Marks the start of a request or connection; the guard ends it.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }

    pub fn connect_failed(&self) {
        self.failures.fetch_add(1, Relaxed);
    }

    pub fn connect_succeeded(&self) {
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
        }
    }
}

/// Counts one request or connection as in flight on a backend until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Backend>);

impl InFlight {
    pub fn backend(&self) -> &Arc<Backend> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// The backends of one route and its balance algorithm.
#[derive(Debug)]
pub struct Pool {
    backends: Box<[Arc<Backend>]>,
    balance: Balance,
    cursor: AtomicUsize,
}

// === impl Pool ===

impl Pool {
    pub fn new(backends: Vec<Arc<Backend>>, balance: Balance) -> Pool {
        Pool {
            backends: backends.into_boxed_slice(),
            balance,
            cursor: AtomicUsize::new(0),
        }
    }

    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    pub fn balance(&self) -> Balance {
        self.balance
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// The index of the backend for a new request from `client`; `None` for an empty pool.
    /// A retry takes the next index, `(first + attempt) % len`, so it reaches another
    /// backend.
    pub fn pick(&self, client: IpAddr) -> Option<usize> {
        let n = self.backends.len();
        if n == 0 {
            return None;
        }
        if n == 1 {
            return Some(0);
        }
        Some(match self.balance {
            Balance::RoundRobin => self.cursor.fetch_add(1, Relaxed) % n,
            Balance::Random => random_below(n),
            Balance::Source => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                client.hash(&mut h);
                (h.finish() % n as u64) as usize
            }
            Balance::LeastConn => {
                // Start the scan at a rotating offset so ties spread instead of all
                // landing on the first backend.
                let start = self.cursor.fetch_add(1, Relaxed) % n;
                (0..n)
                    .map(|i| (start + i) % n)
                    .min_by_key(|&i| self.backends[i].in_flight())
                    .unwrap_or(start)
            }
        })
    }

    /// The backend `attempt` places after `first`, wrapping around.
    pub fn nth_after(&self, first: usize, attempt: usize) -> &Arc<Backend> {
        &self.backends[(first + attempt) % self.backends.len()]
    }
}

/// A fast per-thread xorshift; balance randomness need not be cryptographic.
fn random_below(n: usize) -> usize {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(rand::random::<u64>() | 1);
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x % n as u64) as usize
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize, balance: Balance) -> Pool {
        let backends = (0..n)
            .map(|i| {
                Arc::new(Backend::new(SocketAddr::from((
                    [127, 0, 0, 1],
                    1000 + i as u16,
                ))))
            })
            .collect();
        Pool::new(backends, balance)
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn round_robin_visits_every_backend_in_turn() {
        let p = pool(3, Balance::RoundRobin);
        let picks: Vec<usize> = (0..6).map(|_| p.pick(CLIENT).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_conn_avoids_busy_backends() {
        let p = pool(3, Balance::LeastConn);
        let _a = p.backends()[0].start();
        let _b = p.backends()[1].start();
        for _ in 0..5 {
            assert_eq!(p.pick(CLIENT), Some(2));
        }
    }

    #[test]
    fn random_stays_in_range_and_spreads() {
        let p = pool(4, Balance::Random);
        let mut seen = [0; 4];
        for _ in 0..400 {
            seen[p.pick(CLIENT).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&c| c > 0), "{seen:?}");
    }

    #[test]
    fn source_is_stable_per_client() {
        let p = pool(5, Balance::Source);
        let first = p.pick(CLIENT);
        assert!((0..10).all(|_| p.pick(CLIENT) == first));
    }

    #[test]
    fn empty_pool_picks_nothing_and_retries_wrap() {
        assert_eq!(pool(0, Balance::RoundRobin).pick(CLIENT), None);
        let p = pool(3, Balance::RoundRobin);
        assert_eq!(p.nth_after(2, 1).addr.port(), 1000);
    }

    #[test]
    fn in_flight_guard_counts_down() {
        let p = pool(1, Balance::RoundRobin);
        let b = p.backends()[0].clone();
        let g = b.start();
        assert_eq!(b.in_flight(), 1);
        drop(g);
        assert_eq!(b.in_flight(), 0);
    }
}
