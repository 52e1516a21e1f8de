//! `Pool`: the immutable list of backends of one route, and how a request picks one.
//! A pool is built once per table change; picking is a few atomic operations, no lock and
//! no allocation. `Backend` carries the state that must outlive a rebuild (in-flight count,
//! failures, ejection, health-check verdict, leadership), so `routing::compile` reuses the
//! same `Arc<Backend>` per (route, address).
//!
//! Health reaches the data path only through those atomics:
//! - *passive ejection*: consecutive failed exchanges (connect errors, timeouts, 5xx) eject
//!   a backend for a backoff that doubles with each ejection in a row, never more than half
//!   of a pool at once;
//! - *active checks* (`health::monitor`) set `check_down`; the monitor leaves it clear when
//!   more than half of a pool fails, so the pool routes to all rather than to a few;
//! - a *leader* pool (a master alias) routes only to the backend whose `leader` flag the
//!   monitor set, and never tries another.
//!
//! Ejection reads time from tokio's clock (`tokio::time::Instant`): the real monotonic
//! clock in production, the paused clock in tests, which then step time with
//! `tokio::time::advance` instead of sleeping.

use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::catalog::Balance;

/// Passive ejection settings (`[ejection]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EjectPolicy {
    /// Consecutive failed exchanges that eject a backend.
    pub after: u32,
    /// The first ejection's length; each ejection in a row doubles it.
    pub base: Duration,
    /// The longest ejection; a backend not ejected for this long starts again at `base`.
    pub max: Duration,
}

/// What one failed exchange did to its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Counted; below the threshold, already ejected, or ejection is off.
    Counted,
    /// Out of rotation for this long.
    Ejected(Duration),
    /// Over the threshold, but half of the pool is already ejected: it stays in. Reported
    /// once per failure streak.
    Capped,
}

/// One backend address and its live state.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    /// The epoch of the millisecond stamps below. Per backend, not per process: each test
    /// runtime has its own paused clock, and a backend lives on one runtime.
    born: Instant,
    in_flight: AtomicUsize,
    /// Consecutive failed exchanges; reset by a good one.
    failures: AtomicU32,
    /// [`Backend::now_ms`] until which the backend is out of rotation; 0 = in rotation.
    ejected_until: AtomicU64,
    /// Ejections in a row, for the doubling backoff.
    ejections: AtomicU32,
    /// When the latest ejection ended (or ends); 0 = never ejected.
    last_ejection_end: AtomicU64,
    /// The backend's active health check proved it down.
    check_down: AtomicBool,
    /// In a leader pool: this backend is the proven leader.
    leader: AtomicBool,
    /// Recent latency (microseconds, exponentially weighted) for `p2c`; 0 = none seen yet.
    latency_us: AtomicU64,
}

// === impl Backend ===

impl Backend {
    pub fn new(addr: SocketAddr) -> Backend {
        Backend {
            addr,
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            last_ejection_end: AtomicU64::new(0),
            check_down: AtomicBool::new(false),
            leader: AtomicBool::new(false),
            latency_us: AtomicU64::new(0),
        }
    }

    /// Folds one latency sample (time to the response head, or to connect) into the
    /// average `p2c` compares. Racy on purpose: a lost update only loses one sample.
    pub fn observe_latency(&self, took: Duration) {
        let sample = took.as_micros().min(u64::MAX as u128) as u64;
        let old = self.latency_us.load(Relaxed);
        let new = if old == 0 {
            sample.max(1)
        } else {
            // alpha = 1/4: recent enough to follow a slow-down within a few requests.
            (old * 3 + sample) / 4
        };
        self.latency_us.store(new.max(1), Relaxed);
    }

    /// The weighted recent latency, in microseconds (0 before the first sample).
    pub fn latency_us(&self) -> u64 {
        self.latency_us.load(Relaxed)
    }

    /// What `p2c` minimises: outstanding requests (this one included) times latency. A
    /// backend with no sample yet counts as fast, so a new one is tried soon.
    fn p2c_cost(&self) -> u64 {
        (self.in_flight() as u64 + 1).saturating_mul(self.latency_us().max(1))
    }

    /// Requests or connections now being served by this backend.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    /// Consecutive failed exchanges.
    pub fn failures(&self) -> u32 {
        self.failures.load(Relaxed)
    }

    /// Marks the start of a request or connection; the guard ends it.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }

    /// A good exchange (a connection for TCP, a non-5xx answer for HTTP) ends a streak.
    pub fn succeeded(&self) {
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
        }
    }

    /// How long the backend stays ejected from now; `None` when in rotation. An ejection
    /// that has run out is cleared here.
    pub fn ejected_for(&self) -> Option<Duration> {
        let until = self.ejected_until.load(Relaxed);
        if until == 0 {
            return None;
        }
        let now = self.now_ms();
        if now >= until {
            // Back in rotation (a race with another clear is harmless).
            let _ = self
                .ejected_until
                .compare_exchange(until, 0, Relaxed, Relaxed);
            return None;
        }
        Some(Duration::from_millis(until - now))
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected_for().is_some()
    }

    /// Set by the health monitor from the backend's active check.
    pub fn set_check_down(&self, down: bool) {
        self.check_down.store(down, Relaxed);
    }

    pub fn is_check_down(&self) -> bool {
        self.check_down.load(Relaxed)
    }

    /// Set by the health monitor on a leader pool's backends.
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Relaxed);
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Relaxed)
    }

    /// Whether new requests may go here: not ejected, not failing its active check.
    pub fn is_available(&self) -> bool {
        !self.check_down.load(Relaxed) && !self.is_ejected()
    }

    /// Milliseconds since `born` on tokio's clock, never 0 (0 marks "not set" above).
    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64 + 1
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

/// How a pool chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Balance(Balance),
    /// Only the backend flagged leader; nobody when none is.
    Leader,
}

/// The backends of one route and how it picks among them.
#[derive(Debug)]
pub struct Pool {
    backends: Box<[Arc<Backend>]>,
    choice: Choice,
    eject: Option<EjectPolicy>,
    cursor: AtomicUsize,
}

// === impl Pool ===

impl Pool {
    /// A service pool balanced by `balance`, with passive ejection when `eject` is set.
    pub fn new(backends: Vec<Arc<Backend>>, balance: Balance, eject: Option<EjectPolicy>) -> Pool {
        Pool {
            backends: backends.into_boxed_slice(),
            choice: Choice::Balance(balance),
            eject,
            cursor: AtomicUsize::new(0),
        }
    }

    /// A master alias's pool: routes only to the backend flagged leader.
    pub fn leader(backends: Vec<Arc<Backend>>) -> Pool {
        Pool {
            backends: backends.into_boxed_slice(),
            choice: Choice::Leader,
            eject: None,
            cursor: AtomicUsize::new(0),
        }
    }

    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// The balance algorithm; `None` for a leader pool.
    pub fn balance(&self) -> Option<Balance> {
        match self.choice {
            Choice::Balance(b) => Some(b),
            Choice::Leader => None,
        }
    }

    /// Whether exchanges should report their latency (`p2c` pools).
    pub fn tracks_latency(&self) -> bool {
        self.choice == Choice::Balance(Balance::P2c)
    }

    pub fn is_leader_pool(&self) -> bool {
        self.choice == Choice::Leader
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// The leader of a leader pool, if one is proven.
    pub fn current_leader(&self) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|b| b.is_leader())
    }

    /// How many backends one request may try: all of a service pool, only the leader of a
    /// leader pool.
    pub fn max_attempts(&self) -> usize {
        match self.choice {
            Choice::Balance(_) => self.backends.len(),
            Choice::Leader => 1,
        }
    }

    /// The index of the backend for a new request from `client`; `None` for an empty pool,
    /// or a leader pool without a leader. Skips unavailable backends; when none is available
    /// it routes by the balance anyway (better a slim chance than none).
    pub fn pick(&self, client: IpAddr) -> Option<usize> {
        let n = self.backends.len();
        let balance = match self.choice {
            Choice::Leader => return self.backends.iter().position(|b| b.is_leader()),
            Choice::Balance(_) if n == 0 => return None,
            Choice::Balance(_) if n == 1 => return Some(0),
            Choice::Balance(b) => b,
        };
        let first = match balance {
            Balance::RoundRobin => self.cursor.fetch_add(1, Relaxed) % n,
            Balance::Random => random_below(n),
            Balance::Source => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                client.hash(&mut h);
                (h.finish() % n as u64) as usize
            }
            Balance::P2c => {
                let a = random_below(n);
                let b = (a + 1 + random_below(n - 1)) % n;
                let (x, y) = (&self.backends[a], &self.backends[b]);
                return Some(match (x.is_available(), y.is_available()) {
                    (true, false) => a,
                    (false, true) => b,
                    (false, false) => (0..n)
                        .map(|i| (a + i) % n)
                        .find(|&i| self.backends[i].is_available())
                        .unwrap_or(a),
                    (true, true) if y.p2c_cost() < x.p2c_cost() => b,
                    (true, true) => a,
                });
            }
            Balance::LeastConn => {
                // Start the scan at a rotating offset so ties spread instead of all
                // landing on the first backend; unavailable backends only as a last resort.
                let start = self.cursor.fetch_add(1, Relaxed) % n;
                return (0..n)
                    .map(|i| (start + i) % n)
                    .min_by_key(|&i| {
                        let b = &self.backends[i];
                        (!b.is_available(), b.in_flight())
                    })
                    .or(Some(start));
            }
        };
        if self.backends[first].is_available() {
            return Some(first);
        }
        (1..n)
            .map(|i| (first + i) % n)
            .find(|&i| self.backends[i].is_available())
            .or(Some(first))
    }

    /// The backend for retry `attempt` (0 = the pick) after `first`, wrapping around;
    /// `None` when that one is unavailable and should be skipped.
    pub fn attempt(&self, first: usize, attempt: usize) -> Option<&Arc<Backend>> {
        let b = &self.backends[(first + attempt) % self.backends.len()];
        (attempt == 0 || b.is_available()).then_some(b)
    }

    /// Counts a failed exchange with `backend` and ejects it when the streak reaches the
    /// policy's threshold, unless half of the pool is out already.
    pub fn failed(&self, backend: &Backend) -> Failure {
        let streak = backend.failures.fetch_add(1, Relaxed).saturating_add(1);
        let Some(policy) = self.eject else {
            return Failure::Counted;
        };
        if streak < policy.after.max(1) || backend.is_ejected() {
            return Failure::Counted;
        }
        let out = self.backends.iter().filter(|b| b.is_ejected()).count();
        if (out + 1) * 2 > self.backends.len() {
            return if streak == policy.after.max(1) {
                Failure::Capped
            } else {
                Failure::Counted
            };
        }
        let now = backend.now_ms();
        // A backend that stayed in for `max` since its last ejection starts again at `base`.
        let last_end = backend.last_ejection_end.load(Relaxed);
        let mut in_a_row = backend.ejections.load(Relaxed);
        if last_end != 0 && now.saturating_sub(last_end) > policy.max.as_millis() as u64 {
            in_a_row = 0;
        }
        let length = policy
            .base
            .saturating_mul(1u32 << in_a_row.min(16))
            .min(policy.max);
        backend.ejections.store(in_a_row.saturating_add(1), Relaxed);
        let until = now + length.as_millis() as u64;
        backend.ejected_until.store(until, Relaxed);
        backend.last_ejection_end.store(until, Relaxed);
        backend.failures.store(0, Relaxed);
        Failure::Ejected(length)
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
        Pool::new(backends, balance, None)
    }

    fn ejecting(n: usize, after: u32, base_ms: u64) -> Pool {
        let mut p = pool(n, Balance::RoundRobin);
        p.eject = Some(EjectPolicy {
            after,
            base: Duration::from_millis(base_ms),
            max: Duration::from_millis(base_ms * 4),
        });
        p
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
    fn p2c_prefers_the_fast_and_idle_and_never_picks_one_twice() {
        let p = pool(3, Balance::P2c);
        let b = p.backends();
        b[0].observe_latency(Duration::from_millis(50));
        b[1].observe_latency(Duration::from_millis(1));
        b[2].observe_latency(Duration::from_millis(50));
        let mut seen = [0; 3];
        for _ in 0..300 {
            seen[p.pick(CLIENT).unwrap()] += 1;
        }
        // b1 wins every pair it is in (two of three pairs): about 200 of 300.
        assert!(seen[1] > 150, "{seen:?}");
        assert!(seen[0] + seen[2] > 0, "the pair without b1 still picks one");

        // Busy makes it costly: 60 outstanding x 1 ms is worse than 1 x 50 ms.
        let _busy: Vec<_> = (0..60).map(|_| b[1].start()).collect();
        let mut seen = [0; 3];
        for _ in 0..300 {
            seen[p.pick(CLIENT).unwrap()] += 1;
        }
        assert!(seen[1] < 30, "{seen:?}");

        // The average follows a slow-down.
        let c = Backend::new(SocketAddr::from(([127, 0, 0, 1], 1)));
        c.observe_latency(Duration::from_micros(100));
        for _ in 0..10 {
            c.observe_latency(Duration::from_micros(10_000));
        }
        assert!(c.latency_us() > 9_000, "{}", c.latency_us());
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
        assert_eq!(p.attempt(2, 1).unwrap().addr.port(), 1000);
        assert_eq!(p.max_attempts(), 3);
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

    #[tokio::test(start_paused = true)]
    async fn ejection_after_a_streak_and_only_for_a_while() {
        let p = ejecting(4, 3, 60_000);
        let b = p.backends()[1].clone();
        assert_eq!(p.failed(&b), Failure::Counted);
        b.succeeded();
        assert_eq!(
            p.failed(&b),
            Failure::Counted,
            "a good exchange restarts the streak"
        );
        assert_eq!(p.failed(&b), Failure::Counted);
        let Failure::Ejected(d) = p.failed(&b) else {
            panic!("third failure in a row ejects")
        };
        assert_eq!(d, Duration::from_secs(60));
        assert!(b.is_ejected() && !b.is_available());
        // Picks and retries go around it.
        for _ in 0..8 {
            assert_ne!(p.pick(CLIENT), Some(1));
        }
        assert!(p.attempt(0, 1).is_none());
        assert_eq!(p.failed(&b), Failure::Counted, "already out");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(b.is_available(), "a minute later it is back");
    }

    // Paused time: `advance` moves tokio's clock exactly, so the test needs no sleeps and
    // can check each ejection's last millisecond.
    #[tokio::test(start_paused = true)]
    async fn ejection_ends_and_doubles_when_it_comes_again() {
        let ms = Duration::from_millis;
        let p = ejecting(2, 1, 30);
        let b = p.backends()[0].clone();
        assert_eq!(p.failed(&b), Failure::Ejected(ms(30)));
        tokio::time::advance(ms(29)).await;
        assert_eq!(b.ejected_for(), Some(ms(1)), "out for the whole backoff");
        tokio::time::advance(ms(1)).await;
        assert!(b.is_available(), "back in rotation after the backoff");
        assert_eq!(p.failed(&b), Failure::Ejected(ms(60)));
        tokio::time::advance(ms(60)).await;
        assert_eq!(p.failed(&b), Failure::Ejected(ms(120)));
        tokio::time::advance(ms(120)).await;
        assert_eq!(p.failed(&b), Failure::Ejected(ms(120)), "capped at max");
        // Long good behaviour (more than max after the last ejection) restarts at base.
        tokio::time::advance(ms(120 + 121)).await;
        assert_eq!(p.failed(&b), Failure::Ejected(ms(30)));
    }

    #[test]
    fn never_more_than_half_of_a_pool_is_ejected() {
        let p = ejecting(5, 1, 60_000);
        let b = p.backends();
        assert!(matches!(p.failed(&b[0]), Failure::Ejected(_)));
        assert!(matches!(p.failed(&b[1]), Failure::Ejected(_)));
        assert_eq!(
            p.failed(&b[2]),
            Failure::Capped,
            "a third of five would be over half"
        );
        assert_eq!(
            p.failed(&b[2]),
            Failure::Counted,
            "reported once per streak"
        );
        assert!(b[2].is_available());
        let one = ejecting(1, 1, 60_000);
        assert_eq!(one.failed(&one.backends()[0]), Failure::Capped);
        assert!(one.backends()[0].is_available());
    }

    #[test]
    fn check_down_backends_are_skipped_unless_all_are() {
        let p = pool(3, Balance::RoundRobin);
        p.backends()[0].set_check_down(true);
        for _ in 0..6 {
            assert_ne!(p.pick(CLIENT), Some(0));
        }
        let lc = pool(3, Balance::LeastConn);
        lc.backends()[2].set_check_down(true);
        for _ in 0..6 {
            assert_ne!(lc.pick(CLIENT), Some(2));
        }
        for b in p.backends() {
            b.set_check_down(true);
        }
        assert!(p.pick(CLIENT).is_some(), "none available: route anyway");
    }

    #[test]
    fn leader_pool_routes_only_to_the_leader() {
        let backends: Vec<_> = pool(3, Balance::RoundRobin).backends().to_vec();
        let p = Pool::leader(backends);
        assert_eq!(p.pick(CLIENT), None, "no leader yet");
        p.backends()[2].set_leader(true);
        for _ in 0..5 {
            assert_eq!(p.pick(CLIENT), Some(2));
        }
        assert_eq!(p.max_attempts(), 1, "a follower is never a retry target");
        assert_eq!(p.current_leader().unwrap().addr.port(), 1002);
        assert_eq!(p.failed(&p.backends()[2]), Failure::Counted, "no ejection");
    }
}
