//! Discovery sources: each turns its input into `catalog::RawApp`s and publishes them on a
//! `watch` channel. Only this module knows an input's format.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use crate::catalog::{AppProblem, RawApp};

pub mod file;
pub mod https;
pub mod marathon;
pub mod mesos;

/// What one good read of a source gave.
///
/// Apps sit behind `Arc`s so that a source changing one app publishes a snapshot that
/// shares every other app with the previous one (a pointer copy each, no deep clone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Marathon's are sorted by id: `control` finds a changed app by binary search.
    pub apps: Vec<Arc<RawApp>>,
    /// Apps (or tasks) the source had to leave out, and why.
    pub problems: Vec<AppProblem>,
    /// Which apps changed from one snapshot of this source to the next (empty for sources
    /// that do not say; `control` then rebuilds in full).
    pub changes: Changes,
}

/// How many steps of change history a snapshot carries. `control` skips intermediate
/// snapshots (the `watch` keeps only the latest); it can patch its table across at most
/// this many of them, and rebuilds in full beyond.
pub const CHANGE_HISTORY: usize = 32;

/// Which apps changed, step by step, along one source's sequence of snapshots: enough for
/// `control` to tell, from the snapshot its table was built from, which apps differ in
/// this one, even when it never saw the snapshots in between.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Which run of the source this is (a new one after every restart of the source), so
    /// generations of two runs are never compared.
    pub origin: u64,
    /// This snapshot's number within `origin`; each published snapshot adds one.
    pub generation: u64,
    /// The last steps, oldest first: `(generation, changed)` where `changed` lists the app
    /// ids that differ from generation − 1, or is `None` when the step may have changed
    /// anything (the first snapshot, for one).
    pub steps: VecDeque<(u64, Option<Vec<String>>)>,
}

// === impl Changes ===

impl Changes {
    /// The first snapshot of a run of a source: everything is new.
    pub fn first(origin: u64) -> Changes {
        Changes {
            origin,
            generation: 1,
            steps: VecDeque::from([(1, None)]),
        }
    }

    /// The next step: `changed` app ids (`None`: unknown, anything may have changed).
    pub fn next(&self, changed: Option<Vec<String>>) -> Changes {
        let generation = self.generation + 1;
        let mut steps = self.steps.clone();
        if steps.len() == CHANGE_HISTORY {
            steps.pop_front();
        }
        steps.push_back((generation, changed));
        Changes {
            origin: self.origin,
            generation,
            steps,
        }
    }

    /// The app ids that may differ between the snapshot `(origin, generation)` and this
    /// one, or `None` when that cannot be told (another run of the source, a step with
    /// unknown changes, or a gap longer than the history).
    pub fn changed_since(&self, origin: u64, generation: u64) -> Option<BTreeSet<&str>> {
        if origin != self.origin || generation > self.generation {
            return None;
        }
        let mut changed = BTreeSet::new();
        let mut expect = generation + 1;
        for (step, ids) in self.steps.iter().filter(|(g, _)| *g > generation) {
            if *step != expect {
                return None;
            }
            changed.extend(ids.as_ref()?.iter().map(String::as_str));
            expect += 1;
        }
        (expect == self.generation + 1).then_some(changed)
    }
}

/// A fresh `origin` for `Changes`: unique within this process.
pub fn new_origin() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Replaces task host names by their first IP address, so the catalog sees addresses. A
/// name that does not resolve stays as it is, and the catalog reports its task.
pub async fn resolve_hosts(apps: &mut [RawApp]) {
    for task in apps.iter_mut().flat_map(|a| a.tasks.iter_mut()) {
        if task.host.is_empty() || task.host.parse::<std::net::IpAddr>().is_ok() {
            continue;
        }
        let found = tokio::net::lookup_host((task.host.as_str(), 0))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next());
        if let Some(addr) = found {
            task.host = addr.ip().to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_since_an_earlier_generation_are_the_union_of_the_steps() {
        let first = Changes::first(7);
        let second = first.next(Some(vec!["/a".into()]));
        let third = second.next(Some(vec!["/b".into(), "/a".into()]));
        assert_eq!(third.changed_since(7, 3), Some(BTreeSet::new()));
        assert_eq!(
            third.changed_since(7, 2),
            Some(BTreeSet::from(["/a", "/b"]))
        );
        assert_eq!(
            third.changed_since(7, 1),
            Some(BTreeSet::from(["/a", "/b"]))
        );
        assert_eq!(
            third.changed_since(7, 0),
            None,
            "the first step changed anything"
        );
        assert_eq!(third.changed_since(8, 2), None, "another run of the source");
        assert_eq!(
            second.changed_since(7, 3),
            None,
            "a generation from the future"
        );
        let unknown = third.next(None).next(Some(vec!["/c".into()]));
        assert_eq!(unknown.changed_since(7, 3), None);
        assert_eq!(unknown.changed_since(7, 4), Some(BTreeSet::from(["/c"])));
    }

    #[test]
    fn the_history_is_bounded() {
        let mut c = Changes::first(1);
        for _ in 0..CHANGE_HISTORY * 2 {
            c = c.next(Some(vec!["/a".into()]));
        }
        assert_eq!(c.steps.len(), CHANGE_HISTORY);
        let oldest = c.generation - CHANGE_HISTORY as u64;
        assert!(c.changed_since(1, oldest).is_some());
        assert_eq!(
            c.changed_since(1, oldest - 1),
            None,
            "older than the history"
        );
    }
}
