//! Which master behind one alias is the elected leader, from its probe results; `None` when
//! unsure. Pure: results and `now` go in. Running the probes, publishing the leader and
//! logging or counting changes and conflicts is the caller's job.
//!
//! The rule (fails closed, DESIGN §7: an alias never reaches a non-leader):
//! - the leader is the one backend whose [`Health`] is Up; a new tracker has none;
//! - none Up: no leader (the alias answers 503);
//! - two or more Up (a *conflict*, e.g. an old leader that has not noticed it lost the
//!   election): keep the incumbent if it is one of them, else no leader.
//!
//! Thresholds: [`LEADER_RISE`] = [`LEADER_FALL`] = 1. A leader probe is not a liveness guess
//! but the master's own statement, so one answer is enough either way: `fall` 1 drops a master
//! the moment it stops claiming the role (any larger value would route to a known non-leader
//! for another interval), and `rise` 1 follows a failover within one probe interval (rise 2
//! would double it). Flapping between masters is damped by the incumbent rule instead: a
//! second claimant never displaces a leader that still passes its probe.

use std::net::SocketAddr;

use tokio::time::Instant;

use super::probe::ProbeResult;
use super::Health;

/// Passing leader probes in a row before a master may lead.
pub const LEADER_RISE: u32 = 1;
/// Failing leader probes in a row before a master stops leading.
pub const LEADER_FALL: u32 = 1;

/// A change of an alias's leader; either side may be `None` (no leader).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderChange {
    pub from: Option<SocketAddr>,
    pub to: Option<SocketAddr>,
}

/// The leader of one alias.
#[derive(Debug, Clone)]
pub struct LeaderTracker {
    /// Every backend in config order, with its leader-probe health.
    backends: Vec<(SocketAddr, Health)>,
    leader: Option<SocketAddr>,
    /// The backends Up at once when more than one is (in config order).
    conflict: Option<Vec<SocketAddr>>,
    /// Whether the last `observe` started a conflict or changed its claimants.
    conflict_began: bool,
    /// When `leader` last changed (or the tracker was made).
    changed_at: Instant,
}

// === impl LeaderTracker ===

impl LeaderTracker {
    /// A tracker over `backends` (duplicates are kept once) with the given thresholds.
    pub fn new(backends: &[SocketAddr], rise: u32, fall: u32, now: Instant) -> LeaderTracker {
        let mut list: Vec<(SocketAddr, Health)> = Vec::with_capacity(backends.len());
        for &addr in backends {
            if !list.iter().any(|(a, _)| *a == addr) {
                list.push((addr, Health::new(rise, fall, now)));
            }
        }
        LeaderTracker {
            backends: list,
            leader: None,
            conflict: None,
            conflict_began: false,
            changed_at: now,
        }
    }

    /// Counts one probe result of `backend` and decides at once; returns the change when
    /// the leader changes. A result for an address that is not a backend is ignored.
    pub fn observe(
        &mut self,
        backend: SocketAddr,
        result: &ProbeResult,
        now: Instant,
    ) -> Option<LeaderChange> {
        if !self.record(backend, result, now) {
            self.conflict_began = false;
            return None;
        }
        self.decide(now)
    }

    /// Counts one probe result without deciding (a round's results are recorded one by one,
    /// then [`LeaderTracker::decide`] runs once). False for an address that is not a backend.
    pub fn record(&mut self, backend: SocketAddr, result: &ProbeResult, now: Instant) -> bool {
        match self.backends.iter_mut().find(|(a, _)| *a == backend) {
            Some((_, health)) => {
                health.record(result, now);
                true
            }
            None => false,
        }
    }

    /// Applies the rule to the recorded results; returns the change when the leader changes.
    pub fn decide(&mut self, now: Instant) -> Option<LeaderChange> {
        let up: Vec<SocketAddr> = self
            .backends
            .iter()
            .filter(|(_, h)| h.is_up())
            .map(|(a, _)| *a)
            .collect();
        let next = match up.as_slice() {
            [] => None,
            [only] => Some(*only),
            // Two claimants: the incumbent keeps the role; with no incumbent among them,
            // nobody is proven, so nobody leads.
            many => self.leader.filter(|l| many.contains(l)),
        };
        let conflict = (up.len() > 1).then_some(up);
        self.conflict_began = conflict.is_some() && conflict != self.conflict;
        self.conflict = conflict;

        if next == self.leader {
            return None;
        }
        let from = std::mem::replace(&mut self.leader, next);
        self.changed_at = now;
        Some(LeaderChange { from, to: next })
    }

    /// Takes a leader decided elsewhere (an election in ZooKeeper, `[[alias]] zk`), so the
    /// status and the change log read the same as for a probed alias. Returns the change.
    pub fn set_leader(&mut self, next: Option<SocketAddr>, now: Instant) -> Option<LeaderChange> {
        self.conflict = None;
        self.conflict_began = false;
        if next == self.leader {
            return None;
        }
        let from = std::mem::replace(&mut self.leader, next);
        self.changed_at = now;
        Some(LeaderChange { from, to: next })
    }

    /// The proven leader, if any.
    pub fn leader(&self) -> Option<SocketAddr> {
        self.leader
    }

    /// The backends that all claim the role right now, when more than one does.
    pub fn conflict(&self) -> Option<&[SocketAddr]> {
        self.conflict.as_deref()
    }

    /// Whether the last [`LeaderTracker::observe`] began a conflict (or changed its
    /// claimants): the moment to log it and count it once.
    pub fn conflict_began(&self) -> bool {
        self.conflict_began
    }

    /// When the leader last changed.
    pub fn changed_at(&self) -> Instant {
        self.changed_at
    }

    /// Each backend with its health, in config order (for /debug/routes and metrics).
    pub fn backends(&self) -> impl Iterator<Item = (SocketAddr, &Health)> {
        self.backends.iter().map(|(a, h)| (*a, h))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::health::probe::{self, leader_probe};
    use crate::health::State;

    const INTERVAL: Duration = Duration::from_secs(1);

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, n], 5050))
    }

    fn res(ok: bool) -> ProbeResult {
        ProbeResult {
            ok,
            detail: if ok { "HTTP 200" } else { "HTTP 307" }.into(),
            took: Duration::from_millis(2),
        }
    }

    fn masters() -> [SocketAddr; 3] {
        [addr(1), addr(2), addr(3)]
    }

    /// One probe round: every master probed once, leader claims as given.
    fn round(t: &mut LeaderTracker, claims: [bool; 3]) -> Vec<LeaderChange> {
        let now = Instant::now();
        masters()
            .iter()
            .zip(claims)
            .filter_map(|(&a, ok)| t.observe(a, &res(ok), now))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn starts_with_no_leader_and_elects() {
        let mut t = LeaderTracker::new(&masters(), LEADER_RISE, LEADER_FALL, Instant::now());
        assert_eq!(t.leader(), None);
        assert!(t.backends().all(|(_, h)| h.state() == State::Unknown));
        tokio::time::advance(INTERVAL).await;
        let changes = round(&mut t, [false, true, false]);
        assert_eq!(
            changes,
            vec![LeaderChange {
                from: None,
                to: Some(addr(2))
            }]
        );
        assert_eq!(t.leader(), Some(addr(2)));
        assert_eq!(t.changed_at(), Instant::now());
        assert_eq!(t.conflict(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn failover_is_followed_within_one_interval() {
        let mut t = LeaderTracker::new(&masters(), LEADER_RISE, LEADER_FALL, Instant::now());
        round(&mut t, [true, false, false]);
        assert_eq!(t.leader(), Some(addr(1)));
        for _ in 0..5 {
            tokio::time::advance(INTERVAL).await;
            assert!(round(&mut t, [true, false, false]).is_empty());
        }
        // Leadership moves to master 3 just after a round; the next round follows it.
        let moved_at = Instant::now();
        tokio::time::advance(INTERVAL).await;
        let changes = round(&mut t, [false, false, true]);
        assert_eq!(
            changes,
            vec![
                LeaderChange {
                    from: Some(addr(1)),
                    to: None
                },
                LeaderChange {
                    from: None,
                    to: Some(addr(3))
                },
            ]
        );
        assert_eq!(t.leader(), Some(addr(3)));
        assert!(t.changed_at() - moved_at <= INTERVAL);
    }

    #[tokio::test(start_paused = true)]
    async fn old_leader_down_before_new_one_is_up_means_no_leader_between() {
        let mut t = LeaderTracker::new(&masters(), LEADER_RISE, LEADER_FALL, Instant::now());
        round(&mut t, [true, false, false]);
        tokio::time::advance(INTERVAL).await;
        // Mid-election: nobody claims the role.
        round(&mut t, [false, false, false]);
        assert_eq!(t.leader(), None);
        tokio::time::advance(INTERVAL).await;
        round(&mut t, [false, true, false]);
        assert_eq!(t.leader(), Some(addr(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn no_leader_when_none_claims() {
        let mut t = LeaderTracker::new(&masters(), LEADER_RISE, LEADER_FALL, Instant::now());
        for _ in 0..3 {
            tokio::time::advance(INTERVAL).await;
            assert!(round(&mut t, [false, false, false]).is_empty());
        }
        assert_eq!(t.leader(), None);
        assert!(t.backends().all(|(_, h)| h.state() == State::Down));
    }

    #[tokio::test(start_paused = true)]
    async fn two_claimants_keep_the_incumbent_and_report_the_conflict() {
        let mut t = LeaderTracker::new(&masters(), LEADER_RISE, LEADER_FALL, Instant::now());
        round(&mut t, [true, false, false]);
        assert!(!t.conflict_began());
        tokio::time::advance(INTERVAL).await;

        let now = Instant::now();
        assert_eq!(t.observe(addr(1), &res(true), now), None);
        assert_eq!(t.observe(addr(2), &res(true), now), None);
        assert!(t.conflict_began(), "reported once, when it begins");
        assert_eq!(t.conflict(), Some(&[addr(1), addr(2)][..]));
        assert_eq!(t.leader(), Some(addr(1)), "the incumbent keeps the role");
        assert_eq!(t.observe(addr(3), &res(false), now), None);
        assert!(!t.conflict_began(), "same claimants: not a new conflict");
        assert!(t.conflict().is_some());

        // The incumbent steps down: the remaining claimant leads, the conflict is over.
        tokio::time::advance(INTERVAL).await;
        let changes = round(&mut t, [false, true, false]);
        assert_eq!(changes.last().and_then(|c| c.to), Some(addr(2)));
        assert_eq!(t.leader(), Some(addr(2)));
        assert_eq!(t.conflict(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn two_claimants_without_an_incumbent_means_no_leader() {
        let mut t = LeaderTracker::new(&masters(), LEADER_RISE, LEADER_FALL, Instant::now());
        let now = Instant::now();
        // From no leader, the first claimant of a round leads at once; a second claimant
        // later in the round finds an incumbent.
        t.observe(addr(2), &res(true), now);
        t.observe(addr(3), &res(true), now);
        assert_eq!(t.leader(), Some(addr(2)), "the first claimant led alone");

        let mut fresh = LeaderTracker::new(&masters(), LEADER_RISE, LEADER_FALL, now);
        fresh.observe(addr(1), &res(true), now);
        fresh.observe(addr(2), &res(true), now);
        fresh.observe(addr(1), &res(false), now);
        fresh.observe(addr(3), &res(true), now);
        // 2 became leader when 1 fell; 3 claims too: the incumbent 2 stays.
        assert_eq!(fresh.leader(), Some(addr(2)));

        // Incumbent falls while two others claim: nobody is proven.
        fresh.observe(addr(1), &res(true), now);
        fresh.observe(addr(2), &res(false), now);
        assert_eq!(fresh.leader(), None);
        assert_eq!(fresh.conflict(), Some(&[addr(1), addr(3)][..]));
    }

    #[tokio::test(start_paused = true)]
    async fn rise_two_damps_a_one_probe_claim() {
        let mut t = LeaderTracker::new(&masters(), 2, 1, Instant::now());
        round(&mut t, [true, false, false]);
        assert_eq!(t.leader(), None, "one claim is not enough with rise 2");
        tokio::time::advance(INTERVAL).await;
        round(&mut t, [true, false, false]);
        assert_eq!(t.leader(), Some(addr(1)));
        tokio::time::advance(INTERVAL).await;
        // A single stray claim from master 2 alternating with denials never makes it Up.
        for claims in [[true, true, false], [true, false, false]].repeat(3) {
            round(&mut t, claims);
            assert_eq!(t.conflict(), None);
        }
        assert_eq!(t.leader(), Some(addr(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_backends_are_ignored() {
        let mut t = LeaderTracker::new(&masters(), 1, 1, Instant::now());
        assert_eq!(t.observe(addr(9), &res(true), Instant::now()), None);
        assert_eq!(t.leader(), None);
        let dup = LeaderTracker::new(&[addr(1), addr(1)], 1, 1, Instant::now());
        assert_eq!(dup.backends().count(), 1);
    }

    /// Real sockets, so real time: a leader Marathon and a standby that answers the same
    /// `/ping` with 200 plus `X-Marathon-Via`. The standby is never chosen.
    #[tokio::test]
    async fn marathon_standby_is_never_leader() {
        use bytes::Bytes;
        use http_body_util::Full;
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;
        use tokio::net::TcpListener;

        async fn marathon(standby: bool) -> SocketAddr {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let service = service_fn(move |_req| {
                        let mut b = hyper::Response::builder().status(200);
                        if standby {
                            b = b.header("X-Marathon-Via", "1.1 10.0.0.1:8080");
                        }
                        let r = b.body(Full::new(Bytes::from_static(b"pong"))).unwrap();
                        async move { Ok::<_, std::convert::Infallible>(r) }
                    });
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            addr
        }

        let standby_a = marathon(true).await;
        let leader = marathon(false).await;
        let standby_b = marathon(true).await;
        let backends = [standby_a, leader, standby_b];
        let check = leader_probe(&crate::config::LeaderCheck::Marathon);
        let mut t = LeaderTracker::new(&backends, LEADER_RISE, LEADER_FALL, Instant::now());
        for _ in 0..3 {
            for b in backends {
                let r = probe::run(b, &check, "marathon.example.com", INTERVAL).await;
                t.observe(b, &r, Instant::now());
                assert_ne!(t.leader(), Some(standby_a));
                assert_ne!(t.leader(), Some(standby_b));
            }
            assert_eq!(t.leader(), Some(leader));
            assert_eq!(t.conflict(), None);
        }
        let standby = t.backends().find(|(a, _)| *a == standby_a).unwrap().1;
        assert_eq!(standby.state(), State::Down);
        assert!(standby.last().unwrap().detail.contains("x-marathon-via"));
    }
}
