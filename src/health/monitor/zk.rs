//! Aliases that follow an election in ZooKeeper (`[[alias]] zk`): the leader is the one
//! ZooKeeper names, applied as soon as the election changes (no probe interval to wait
//! for). With `backends` (`confirm`), the named leader must also be one of them and pass
//! the alias's leader probe: a new leader is probed at once, and the regular rounds go on.
//! Fails closed: no leader in ZooKeeper, a leader outside the pool, or a failed
//! confirmation is no leader (503). A lost ZooKeeper session keeps the last leader.

use super::*;
use crate::zk::{ZkAlias, ZkUrl};

/// The round number of a one-off confirmation probe (never a real tick count).
pub(super) const CONFIRM_ROUND: u64 = u64::MAX;

/// An alias's election, as the monitor follows it.
pub(super) struct ZkFollow {
    pub(super) alias: ZkAlias,
    /// The resolved address ZooKeeper names as leader (kept while disconnected).
    pub(super) leader: Option<SocketAddr>,
    /// Stops the task that forwards the election's views.
    pub(super) forwarder: CancellationToken,
}

/// A new view of an alias's election, from its forwarder.
pub(super) struct ZkEvent {
    route: String,
    url: ZkUrl,
    leader: Option<SocketAddr>,
}

/// The alias's election, if it follows one.
pub(super) fn alias_zk(route: &Route) -> Option<&ZkAlias> {
    match &route.kind {
        RouteKind::Alias { zk, .. } => zk.as_ref(),
        RouteKind::Service { .. } => None,
    }
}

/// Whether an alias's masters are probed: always, except with `zk` and no `backends`.
pub(super) fn probed(route: &Route) -> bool {
    alias_zk(route).is_none_or(|z| z.confirm)
}

impl Monitor {
    /// Starts following `alias`'s election for the route `name`: a task forwards every view.
    pub(super) fn follow_zk(&self, name: &str, alias: &ZkAlias) -> ZkFollow {
        let forwarder = self.stop.child_token();
        let mut view = self.zk.follow(&alias.url);
        let (tx, stop) = (self.zk_tx.clone(), forwarder.clone());
        let (route, url) = (name.to_string(), alias.url.clone());
        tokio::spawn(async move {
            loop {
                let leader = view
                    .borrow_and_update()
                    .leader
                    .as_ref()
                    .and_then(|m| m.addr);
                let event = ZkEvent {
                    route: route.clone(),
                    url: url.clone(),
                    leader,
                };
                if tx.send(event).is_err() {
                    return;
                }
                tokio::select! {
                    r = view.changed() => if r.is_err() { return },
                    _ = stop.cancelled() => return,
                }
            }
        });
        ZkFollow {
            alias: alias.clone(),
            leader: None,
            forwarder,
        }
    }

    /// Takes a new view of an alias's election: decides at once, and with `confirm` probes
    /// a newly named leader at once rather than at the next round.
    pub(super) fn observe_zk(&mut self, event: ZkEvent) {
        let Some(w) = self.aliases.get_mut(&event.route) else {
            return;
        };
        let Some(z) = w.zk.as_mut().filter(|z| z.alias.url == event.url) else {
            return;
        };
        if z.leader == event.leader {
            return;
        }
        z.leader = event.leader;
        let confirm = z.alias.confirm;
        if let Some(addr) = event.leader.filter(|_| confirm) {
            if w.route.pool.backends().iter().any(|b| b.addr == addr) {
                self.confirm_now(&event.route, addr);
            }
        }
        self.decide(&event.route);
        self.dirty = true;
    }

    /// One leader probe of `addr` now, outside the rounds.
    fn confirm_now(&self, route: &str, addr: SocketAddr) {
        let Some(w) = self.aliases.get(route) else {
            return;
        };
        let (tx, token, spec) = (self.tx.clone(), w.probes.clone(), w.spec.clone());
        let (key, generation) = ((route.to_string(), addr), w.generation);
        tokio::spawn(async move {
            let host = addr.to_string();
            let result = tokio::select! {
                _ = token.cancelled() => return,
                r = probe::run(addr, &spec.probe, &host, spec.timeout) => r,
            };
            let _ = tx.send(Outcome {
                key,
                generation,
                round: CONFIRM_ROUND,
                result,
            });
        });
    }
}

/// The leader of a zk alias by the rule above.
pub(super) fn zk_leader(w: &AliasWatch) -> Option<SocketAddr> {
    let z = w.zk.as_ref()?;
    let leader = z.leader?;
    if !w.route.pool.backends().iter().any(|b| b.addr == leader) {
        return None;
    }
    if !z.alias.confirm {
        return Some(leader);
    }
    w.tracker
        .backends()
        .any(|(addr, h)| addr == leader && h.is_up())
        .then_some(leader)
}

impl Monitor {
    /// After an alias's watch is (re)made: follows its election, carrying over the one
    /// it followed before with the leader it had (when still in the pool), so a change of
    /// the members in ZooKeeper is not a moment without a leader.
    pub(super) fn resume_zk(
        &mut self,
        route: &Arc<Route>,
        kept: Option<(ZkFollow, Option<SocketAddr>)>,
    ) {
        let Some(alias) = alias_zk(route).cloned() else {
            return;
        };
        let name = route.name.clone();
        let (follow, previous) = match kept {
            Some((z, previous)) => (z, previous),
            None => (self.follow_zk(&name, &alias), None),
        };
        let Some(w) = self.aliases.get_mut(&name) else {
            follow.forwarder.cancel();
            return;
        };
        w.zk = Some(follow);
        let now = Instant::now();
        if previous.is_some() && zk_leader(w) == previous {
            w.tracker.set_leader(previous, now);
            apply_leader(&w.route, previous);
            let route = w.route.clone();
            for backend in route.pool.backends() {
                self.set_alias_gauge(&route, backend, Some(backend.addr) == previous);
            }
        }
        self.decide(&name);
    }
}

/// For the log: why a zk alias has no leader.
pub(super) fn why_no_leader(w: &AliasWatch) -> Option<String> {
    let z = w.zk.as_ref()?;
    Some(match z.leader {
        None => format!("ZooKeeper {} names no leader", z.alias.url),
        Some(l) if !w.route.pool.backends().iter().any(|b| b.addr == l) => {
            format!("ZooKeeper's leader {l} is not among the alias's backends")
        }
        Some(l) => format!("ZooKeeper's leader {l} is not confirmed by its probe (yet)"),
    })
}
