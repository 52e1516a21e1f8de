//! The pool of an alias with `zk` and no `backends`: the masters ZooKeeper names (their
//! advertised addresses, resolved). `alias_members` follows the config and each such alias's
//! election and publishes the addresses; `control` compiles with [`with_alias_members`],
//! which fills those aliases' backends in. Which member leads is the health monitor's job
//! (it follows the same election): a leader change that stays within the members needs no
//! new table, only a flag flip.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Zk, ZkView};
use crate::config::Config;
use crate::host::HostName;
use crate::shutdown::Shutdown;

/// The addresses ZooKeeper names for each zk-only alias, by alias host.
pub type AliasMembers = BTreeMap<HostName, Vec<SocketAddr>>;

/// Publishes the members of every zk-only alias on `tx` until shutdown; follows config
/// changes (an alias removed or given backends leaves the map).
pub async fn alias_members(
    mut config: watch::Receiver<Arc<Config>>,
    zk: Zk,
    tx: watch::Sender<Arc<AliasMembers>>,
    shutdown: Shutdown,
) {
    let tx = Arc::new(tx);
    loop {
        let cfg = config.borrow_and_update().clone();
        let followers = CancellationToken::new();
        let wanted: Vec<_> = cfg
            .aliases
            .iter()
            .filter_map(|a| a.zk.as_ref().filter(|z| !z.confirm).map(|z| (a, z)))
            .collect();
        tx.send_if_modified(|m| {
            let before = m.len();
            let mut next = (**m).clone();
            next.retain(|host, _| wanted.iter().any(|(a, _)| a.host == *host));
            let changed = next.len() != before;
            if changed {
                *m = Arc::new(next);
            }
            changed
        });
        for (alias, z) in wanted {
            let (host, mut view) = (alias.host.clone(), zk.follow(&z.url));
            let (tx, stop) = (tx.clone(), followers.clone());
            tokio::spawn(async move {
                loop {
                    let addrs = addresses(&view.borrow_and_update());
                    tx.send_if_modified(|m| {
                        if m.get(&host) == Some(&addrs) {
                            return false;
                        }
                        let mut next = (**m).clone();
                        next.insert(host.clone(), addrs);
                        *m = Arc::new(next);
                        true
                    });
                    tokio::select! {
                        r = view.changed() => if r.is_err() { return },
                        _ = stop.cancelled() => return,
                    }
                }
            });
        }
        let _stop = followers.drop_guard();
        tokio::select! {
            r = config.changed() => if r.is_err() { return },
            _ = shutdown.triggered() => return,
        }
    }
}

/// The members' resolved addresses in sequence order, the leader's first in line when it
/// is not among them (its data was kept from before).
fn addresses(view: &ZkView) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = view.members.iter().filter_map(|m| m.addr).collect();
    if let Some(addr) = view.leader.as_ref().and_then(|l| l.addr) {
        if !out.contains(&addr) {
            out.insert(0, addr);
        }
    }
    out.dedup();
    out
}

/// `config` with each zk-only alias's backends set to what ZooKeeper names (none yet: an
/// empty pool, which answers 503 like an alias with no leader).
pub fn with_alias_members(config: &Arc<Config>, members: &AliasMembers) -> Arc<Config> {
    let zk_only = |a: &crate::config::AliasConfig| a.zk.as_ref().is_some_and(|z| !z.confirm);
    if !config.aliases.iter().any(zk_only) {
        return config.clone();
    }
    let mut c = (**config).clone();
    for a in c.aliases.iter_mut().filter(|a| zk_only(a)) {
        a.backends = members.get(&a.host).cloned().unwrap_or_default();
    }
    Arc::new(c)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn only_zk_aliases_without_backends_get_the_members() {
        let config = Arc::new(
            Config::parse(
                r#"
[[alias]]
host = "zk.test"
zk = "zk://127.0.0.1:2181/mesos"

[[alias]]
host = "confirmed.test"
zk = "zk://127.0.0.1:2181/mesos"
backends = ["127.0.0.9:5050"]
check = "mesos"
"#,
                Path::new("/"),
            )
            .expect("valid"),
        );
        let none = with_alias_members(&config, &AliasMembers::new());
        assert!(
            none.aliases[0].backends.is_empty(),
            "nothing known: no pool"
        );
        let mut members = AliasMembers::new();
        let seen: Vec<SocketAddr> = vec!["127.0.0.2:5050".parse().unwrap()];
        for host in ["zk.test", "confirmed.test"] {
            members.insert(HostName::parse(host).unwrap(), seen.clone());
        }
        let routed = with_alias_members(&config, &members);
        assert_eq!(routed.aliases[0].backends, seen);
        assert_eq!(
            routed.aliases[1].backends, config.aliases[1].backends,
            "configured backends are never replaced"
        );
    }
}
