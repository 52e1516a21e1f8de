//! The leader decision of each alias: probe results collected into rounds, a round decided
//! once every master has answered (or a short wait after the first answer has passed), and
//! the leader gauges that follow the decision.

use super::*;

impl Monitor {
    /// Collects one leader-probe result into its alias's round; decides the round when every
    /// master has answered, and a collected round when a result of a later one arrives.
    pub(super) fn observe_alias(&mut self, outcome: Outcome, now: Instant) {
        let (route_name, addr) = outcome.key;
        let Some(w) = self.aliases.get(&route_name) else {
            return;
        };
        if w.generation != outcome.generation {
            return;
        }
        if outcome.round == zk::CONFIRM_ROUND {
            if let Some(w) = self.aliases.get_mut(&route_name) {
                w.tracker.record(addr, &outcome.result, now);
            }
            self.decide(&route_name);
            self.dirty = true;
            return;
        }
        if outcome.round > w.round && !w.pending.is_empty() {
            self.decide(&route_name);
        }
        let Some(w) = self.aliases.get_mut(&route_name) else {
            return;
        };
        w.round = w.round.max(outcome.round);
        // The latest word of each master counts (a late answer of an earlier round too).
        w.pending.retain(|(a, _)| *a != addr);
        w.pending.push((addr, outcome.result));
        if w.pending.len() >= w.route.pool.backends().len() {
            self.decide(&route_name);
        } else if w.decide_at.is_none() {
            w.decide_at = Some(now + settle(w.spec.interval));
        }
        self.dirty = true;
    }

    /// When the next alias round must be decided even if a master has not answered.
    pub(super) fn next_decision(&self) -> Option<Instant> {
        self.aliases.values().filter_map(|w| w.decide_at).min()
    }

    /// Decides every alias round whose settle time has passed.
    pub(super) fn decide_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .aliases
            .iter()
            .filter(|(_, w)| w.decide_at.is_some_and(|at| at <= now))
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            self.decide(&name);
        }
    }

    /// Records an alias's collected results, decides its leader once, and acts on a change.
    pub(super) fn decide(&mut self, route_name: &str) {
        let now = Instant::now();
        let Some(w) = self.aliases.get_mut(route_name) else {
            return;
        };
        w.decide_at = None;
        let results = std::mem::take(&mut w.pending);
        for (addr, result) in &results {
            w.tracker.record(*addr, result, now);
        }
        let change = if w.zk.is_some() {
            let next = zk::zk_leader(w);
            w.tracker.set_leader(next, now)
        } else {
            w.tracker.decide(now)
        };
        let host = alias_host(&w.route).to_string();
        if w.tracker.conflict_began() {
            let claimants: Vec<String> = w
                .tracker
                .conflict()
                .unwrap_or_default()
                .iter()
                .map(|a| a.to_string())
                .collect();
            warn!(alias = %host, claimants = %logfmt::list(&claimants),
                kept = %logfmt::or_none(w.tracker.leader()),
                "more than one master claims leadership; the incumbent keeps the role");
            self.metrics
                .leader_conflicts
                .with_label_values(&[&host])
                .inc();
        }
        let Some(change) = change else {
            return;
        };
        apply_leader(&w.route, change.to);
        w.since = std::time::SystemTime::now();
        match change.to {
            Some(to) => info!(
                alias = %host,
                from = %logfmt::or_none(change.from),
                %to,
                "alias leader changed"
            ),
            None => {
                let mut why: Vec<String> = results
                    .iter()
                    .map(|(a, r)| format!("{a}: {}", r.detail))
                    .collect();
                why.extend(zk::why_no_leader(w));
                warn!(alias = %host, from = %logfmt::or_none(change.from), probes = %why.join("; "),
                    "alias has no elected leader; answering 503")
            }
        }
        self.metrics
            .leader_changes
            .with_label_values(&[&host])
            .inc();
        let route = w.route.clone();
        for backend in route.pool.backends() {
            self.set_alias_gauge(&route, backend, Some(backend.addr) == change.to);
        }
        self.dirty = true;
    }

    pub(super) fn set_alias_gauge(&self, route: &Route, backend: &Backend, leader: bool) {
        let m = &self.metrics;
        let addr = backend.addr.to_string();
        let host = alias_host(route);
        m.alias_leader
            .with_label_values(&[host, &addr])
            .set(i64::from(leader));
        m.backend_up
            .with_label_values(&[&route.name, &addr])
            .set(i64::from(leader));
    }
}
