//! `[mesos] zk`: the leader named in ZooKeeper as a hint to the poller. On a change of the
//! ZooKeeper leader the source polls at once, starting with that master, so the cluster's
//! leader (and `leader.<domain>`) follows within one read of its state. The state is still
//! read and checked as from any master: ZooKeeper says where to look, the master's own
//! state says it leads.
//!
//! Masters seen in ZooKeeper but not configured are added after the configured ones (in
//! sequence order), reached as the configured masters are (https when any is; http when
//! only `zk` is given). With only `zk`, the `masterN` records are the masters in ZooKeeper,
//! in sequence order; a lost session keeps the last ones (and the last leader first).

use std::sync::Arc;

use tokio::sync::watch;

use super::{Master, Poller};
use crate::config::MesosConfig;
use crate::zk::{Zk, ZkView};

/// The ZooKeeper view the source follows, when `[mesos] zk` is set.
pub(in crate::source::mesos) struct LeaderHint {
    view: Option<watch::Receiver<Arc<ZkView>>>,
}

impl LeaderHint {
    pub(in crate::source::mesos) fn new(zk: &Zk, cfg: &MesosConfig) -> LeaderHint {
        LeaderHint {
            view: cfg.zk.as_ref().map(|url| zk.follow(url)),
        }
    }

    /// The next view; never resolves without `zk`.
    pub(in crate::source::mesos) async fn changed(&mut self) -> Arc<ZkView> {
        match &mut self.view {
            Some(rx) => match rx.changed().await {
                Ok(()) => rx.borrow_and_update().clone(),
                Err(_) => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }
}

impl Poller {
    /// Takes in a ZooKeeper view: its masters join the list and its leader is tried first.
    /// True when the leader moved to another master, so a read is due now.
    pub(in crate::source::mesos) fn follow_zk(&mut self, view: &ZkView) -> bool {
        let tls = self
            .masters
            .iter()
            .take(self.configured)
            .any(|m| m.as_ref().is_ok_and(|m| m.tls));
        let seen: Vec<Master> = view
            .members
            .iter()
            .filter_map(|m| Master::at(&m.advertised.authority(), tls))
            .collect();
        if seen.is_empty() {
            // Disconnected or no election: keep what was learnt.
            return false;
        }
        self.masters.truncate(self.configured);
        for m in &seen {
            let known = self
                .masters
                .iter()
                .any(|c| c.as_ref().is_ok_and(|c| c.authority == m.authority));
            if !known {
                self.masters.push(Ok(m.clone()));
            }
        }
        if self.configured == 0 {
            self.master_addresses = seen.iter().map(|m| m.authority.clone()).collect();
        }
        let Some(leader) = view.leader.as_ref() else {
            return false;
        };
        let authority = leader.advertised.authority();
        let Some(index) = self
            .masters
            .iter()
            .position(|m| m.as_ref().is_ok_and(|m| m.authority == authority))
        else {
            return false;
        };
        let moved = self.zk_leader.as_deref() != Some(authority.as_str());
        self.zk_leader = Some(authority);
        self.preferred = index;
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zk::layout::Advertised;
    use crate::zk::Member;

    fn member(n: u64, host: &str) -> Member {
        Member {
            node: format!("json.info_{n:010}"),
            sequence: n,
            advertised: Advertised {
                host: host.into(),
                port: 5050,
            },
            addr: None,
        }
    }

    fn cfg(masters: &[&str]) -> MesosConfig {
        MesosConfig {
            masters: masters.iter().map(|m| m.to_string()).collect(),
            poll: std::time::Duration::from_secs(5),
            principal: None,
            secret_file: None,
            ca_file: None,
            zk: None,
            stream: false,
        }
    }

    fn view(members: Vec<Member>) -> ZkView {
        ZkView {
            connected: true,
            leader: members.first().cloned(),
            members,
            ..ZkView::default()
        }
    }

    #[test]
    fn with_zk_only_the_masters_are_those_in_zookeeper() {
        let mut p = Poller::new(&cfg(&[]));
        assert!(p.follow_zk(&view(vec![member(3, "10.0.0.2"), member(5, "10.0.0.1")])));
        assert_eq!(p.master_addresses, vec!["10.0.0.2:5050", "10.0.0.1:5050"]);
        assert_eq!(p.preferred, 0);
        // The same leader again: nothing to read now.
        assert!(!p.follow_zk(&view(vec![member(3, "10.0.0.2"), member(5, "10.0.0.1")])));
        // The leader's node goes: the next one leads, and is tried first.
        assert!(p.follow_zk(&view(vec![member(5, "10.0.0.1")])));
        assert_eq!(p.master_addresses, vec!["10.0.0.1:5050"]);
        assert_eq!(p.masters.len(), 1);
        // A lost session (no members in the view) keeps the last masters.
        let lost = ZkView {
            leader: Some(member(5, "10.0.0.1")),
            ..ZkView::default()
        };
        assert!(!p.follow_zk(&lost));
        assert_eq!(p.master_addresses, vec!["10.0.0.1:5050"]);
    }

    #[test]
    fn configured_masters_stay_and_name_the_records() {
        let mut p = Poller::new(&cfg(&["https://10.0.0.1:5050", "https://10.0.0.2:5050"]));
        assert!(p.follow_zk(&view(vec![member(7, "10.0.0.2"), member(8, "10.0.0.9")])));
        assert_eq!(p.preferred, 1, "the ZooKeeper leader is tried first");
        assert_eq!(p.master_addresses, vec!["10.0.0.1:5050", "10.0.0.2:5050"]);
        let extra = p.masters[2].as_ref().unwrap();
        assert_eq!(
            (extra.authority.as_str(), extra.tls),
            ("10.0.0.9:5050", true)
        );
        assert!(p.follow_zk(&view(vec![member(8, "10.0.0.9")])));
        assert_eq!(p.preferred, 2);
    }
}
