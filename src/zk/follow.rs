//! One election path followed: a ZooKeeper session, a children watch on the path, and on
//! every change (and every reconnection) the candidates and their data read again and
//! published whole as a [`ZkView`].
//!
//! - The leader is the lowest candidate whose data names an address. If the lowest
//!   candidate's data is bad, the leader stays as it was and the view says why (a bad
//!   payload never moves traffic).
//! - A lost connection keeps the last leader and members, marked disconnected; an expired
//!   session or a failed connect starts a new session after a backoff (0.1 s doubling to
//!   2 s). The follower never gives up while someone reads its view, and stops when nobody
//!   does.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{debug, info, warn};
use zookeeper_client as zkc;

use super::layout::{Advertised, Candidate};
use super::ZkUrl;
use crate::logfmt;
use crate::metrics::Metrics;

/// The session timeout asked for (Mesos's own default; the server may bound it).
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// First and largest wait between failed sessions or reads.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How long a candidate's host name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// What one election path says now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZkView {
    /// A session is established and the last read succeeded.
    pub connected: bool,
    /// The leader: the lowest candidate with a usable address. Kept while disconnected.
    pub leader: Option<Member>,
    /// Every candidate with a usable address, in sequence order (the leader first).
    pub members: Vec<Member>,
    /// Why the view may be stale or incomplete (connection, path, bad payloads).
    pub error: Option<String>,
    /// Leader changes seen by this follower (to and from none included).
    pub leader_changes: u64,
    /// When the leader last changed.
    pub leader_since: Option<SystemTime>,
}

/// One candidate of the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The znode name (`json.info_0000000003`).
    pub node: String,
    pub sequence: u64,
    /// Where it says it listens.
    pub advertised: Advertised,
    /// That address resolved (`None` when the name does not resolve).
    pub addr: Option<SocketAddr>,
}

/// What one read of the path found.
struct Read {
    candidates: Vec<Candidate>,
    members: Vec<Member>,
    /// Why candidates were left out (bad data), one line each.
    problems: Vec<String>,
    /// Whether the path exists.
    exists: bool,
}

/// Follows `url`, publishing on `tx`, until every receiver is gone.
pub(super) async fn run(url: ZkUrl, tx: Arc<watch::Sender<Arc<ZkView>>>, metrics: Metrics) {
    let label = url.path.clone();
    let gauge = metrics.zk_connected.with_label_values(&[&label]);
    gauge.set(0);
    let mut backoff = BACKOFF_MIN;
    loop {
        let connect = zkc::Client::connector()
            .with_session_timeout(SESSION_TIMEOUT)
            .with_fail_eagerly()
            .connect(&url.servers);
        let client = tokio::select! {
            c = connect => c,
            _ = tx.closed() => break,
        };
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                lost(
                    &tx,
                    &gauge,
                    format!("cannot connect to ZooKeeper {}: {e}", url.servers),
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = tx.closed() => break,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        info!(zk = %url, session = %client.session_id(), "ZooKeeper session established");
        let mut states = client.state_watcher();
        'session: loop {
            match read(&client, &url).await {
                Ok((found, watcher)) => {
                    backoff = BACKOFF_MIN;
                    gauge.set(1);
                    publish(&tx, &url, found, &metrics);
                    tokio::select! {
                        _ = watcher.changed() => {}
                        _ = states.changed() => {}
                        _ = tx.closed() => break 'session,
                    }
                }
                Err(e) => {
                    lost(&tx, &gauge, format!("ZooKeeper {}: {e}", url.servers));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = tx.closed() => break 'session,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
            // What to do next depends on the session: read again, wait for it to come
            // back, or start a new one.
            loop {
                match client.state() {
                    zkc::SessionState::SyncConnected | zkc::SessionState::ConnectedReadOnly => {
                        continue 'session
                    }
                    zkc::SessionState::Disconnected => {
                        lost(
                            &tx,
                            &gauge,
                            format!(
                                "connection to ZooKeeper {} lost; keeping the last leader",
                                url.servers
                            ),
                        );
                        tokio::select! {
                            _ = states.changed() => {}
                            _ = tx.closed() => break 'session,
                        }
                    }
                    other => {
                        lost(
                            &tx,
                            &gauge,
                            format!("ZooKeeper session {other}; starting a new one"),
                        );
                        break 'session;
                    }
                }
            }
        }
        if tx.is_closed() {
            break;
        }
    }
    gauge.set(0);
    let _ = metrics.zk_connected.remove_label_values(&[&label]);
    debug!(zk = %url, "nobody follows this election any more; follower stopped");
}

/// Marks the view disconnected (leader and members kept) and says why, once per reason.
fn lost(tx: &watch::Sender<Arc<ZkView>>, gauge: &prometheus::IntGauge, why: String) {
    gauge.set(0);
    tx.send_if_modified(|view| {
        if !view.connected && view.error.as_deref() == Some(why.as_str()) {
            return false;
        }
        let leader = logfmt::or_none(view.leader.as_ref().map(|m| m.advertised.authority()));
        warn!(error = %why, leader = %leader,
            "ZooKeeper unavailable; keeping the last leader");
        let mut next = (**view).clone();
        next.connected = false;
        next.error = Some(why);
        *view = Arc::new(next);
        true
    });
}

/// Publishes one good read; the leader moves only to a lowest candidate with good data
/// (or to none when there is no candidate at all).
fn publish(tx: &watch::Sender<Arc<ZkView>>, url: &ZkUrl, found: Read, metrics: &Metrics) {
    tx.send_if_modified(|view| {
        let lowest = found.candidates.first();
        let leader = match lowest {
            None => None,
            Some(c) => match found.members.first().filter(|m| m.node == c.node) {
                Some(m) => Some(m.clone()),
                // The lowest candidate's data is unusable: nobody is proven to lead
                // instead of it, so the last leader stays.
                None => view.leader.clone(),
            },
        };
        let mut problems = found.problems;
        if !found.exists {
            problems.insert(0, format!("{} does not exist (no election yet)", url.path));
        } else if lowest.is_none() {
            problems.insert(
                0,
                format!("{} has no candidates: no leader is elected", url.path),
            );
        }
        let mut next = ZkView {
            connected: true,
            leader,
            members: found.members,
            error: (!problems.is_empty()).then(|| problems.join("; ")),
            leader_changes: view.leader_changes,
            leader_since: view.leader_since,
        };
        if next.leader != view.leader {
            next.leader_changes += 1;
            next.leader_since = Some(SystemTime::now());
            metrics
                .zk_leader_changes
                .with_label_values(&[&url.path])
                .inc();
            let authority =
                |v: &ZkView| logfmt::or_none(v.leader.as_ref().map(|m| m.advertised.authority()));
            let node = logfmt::or_none(next.leader.as_ref().map(|m| m.node.as_str()));
            info!(zk = %url, from = %authority(view), to = %authority(&next), node = %node,
                "ZooKeeper leader changed");
        }
        if let Some(e) = &next.error {
            if view.error.as_ref() != Some(e) {
                warn!(zk = %url, error = %e, "ZooKeeper election read with problems");
            }
        }
        if **view == next {
            return false;
        }
        *view = Arc::new(next);
        true
    });
}

/// Lists the path with a watch and reads every candidate's data. A missing path is
/// watched for its creation instead.
async fn read(
    client: &zkc::Client,
    url: &ZkUrl,
) -> Result<(Read, zkc::OneshotWatcher), zkc::Error> {
    let (children, watcher) = match client.list_and_watch_children(&url.path).await {
        Ok(found) => found,
        Err(zkc::Error::NoNode) => {
            let (stat, watcher) = client.check_and_watch_stat(&url.path).await?;
            if stat.is_some() {
                // Created between the two calls: the next read lists it.
                return Ok((empty(true), watcher));
            }
            return Ok((empty(false), watcher));
        }
        Err(e) => return Err(e),
    };
    let candidates = url.layout.candidates(&children);
    let mut members = Vec::with_capacity(candidates.len());
    let mut problems = Vec::new();
    for c in &candidates {
        let data = match client.get_data(&format!("{}/{}", url.path, c.node)).await {
            Ok((data, _)) => data,
            // Gone since the listing: the watch has fired already, the next read sees it.
            Err(zkc::Error::NoNode) => continue,
            Err(e) => return Err(e),
        };
        match url.layout.advertised(&c.node, &data) {
            Ok(advertised) => {
                let addr = resolve(&advertised).await;
                members.push(Member {
                    node: c.node.clone(),
                    sequence: c.sequence,
                    advertised,
                    addr,
                });
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    Ok((
        Read {
            candidates,
            members,
            problems,
            exists: true,
        },
        watcher,
    ))
}

fn empty(exists: bool) -> Read {
    Read {
        candidates: Vec::new(),
        members: Vec::new(),
        problems: Vec::new(),
        exists,
    }
}

/// The candidate's address as a socket address: its IP, or its host name looked up.
async fn resolve(a: &Advertised) -> Option<SocketAddr> {
    if let Ok(ip) = a.host.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, a.port));
    }
    let lookup = tokio::net::lookup_host((a.host.as_str(), a.port));
    match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Ok(Ok(mut addrs)) => addrs.next(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zk::layout::Layout;

    fn url() -> ZkUrl {
        ZkUrl::parse("zk://127.0.0.1:2181/mesos").unwrap()
    }

    fn member(seq: u64, ip: &str) -> Member {
        Member {
            node: format!("json.info_{seq:010}"),
            sequence: seq,
            advertised: Advertised {
                host: ip.into(),
                port: 5050,
            },
            addr: Some(SocketAddr::new(ip.parse().unwrap(), 5050)),
        }
    }

    /// A read of `nodes`, where the ones in `bad` had unusable data.
    fn read(nodes: &[(u64, &str)], bad: &[u64]) -> Read {
        let names: Vec<String> = nodes
            .iter()
            .map(|(s, _)| format!("json.info_{s:010}"))
            .collect();
        Read {
            candidates: Layout::Mesos.candidates(&names),
            members: nodes
                .iter()
                .filter(|(s, _)| !bad.contains(s))
                .map(|(s, ip)| member(*s, ip))
                .collect(),
            problems: bad
                .iter()
                .map(|s| format!("json.info_{s:010}: not MasterInfo JSON"))
                .collect(),
            exists: true,
        }
    }

    fn leader(tx: &watch::Sender<Arc<ZkView>>) -> Option<String> {
        tx.borrow()
            .leader
            .as_ref()
            .map(|m| m.advertised.authority())
    }

    #[test]
    fn the_lowest_good_candidate_leads_and_a_bad_head_changes_nothing() {
        let metrics = Metrics::new(prometheus::Registry::new());
        let (tx, _rx) = watch::channel(Arc::new(ZkView::default()));
        publish(
            &tx,
            &url(),
            read(&[(1, "10.0.0.1"), (2, "10.0.0.2")], &[]),
            &metrics,
        );
        assert_eq!(leader(&tx).as_deref(), Some("10.0.0.1:5050"));
        assert_eq!(tx.borrow().leader_changes, 1);
        // The leader's node goes and the next one's data is bad: the leader stays, said why.
        publish(
            &tx,
            &url(),
            read(&[(2, "10.0.0.2"), (3, "10.0.0.3")], &[2]),
            &metrics,
        );
        assert_eq!(leader(&tx).as_deref(), Some("10.0.0.1:5050"));
        let error = tx.borrow().error.clone().unwrap_or_default();
        assert!(error.contains("not MasterInfo JSON"), "{error}");
        assert_eq!(tx.borrow().members.len(), 1);
        // A good head again: it leads, and the error is gone.
        publish(&tx, &url(), read(&[(3, "10.0.0.3")], &[]), &metrics);
        assert_eq!(leader(&tx).as_deref(), Some("10.0.0.3:5050"));
        assert_eq!(tx.borrow().error, None);
        // No candidate at all: no leader (an alias fails closed), and why.
        publish(&tx, &url(), read(&[], &[]), &metrics);
        assert_eq!(leader(&tx), None);
        assert!(tx
            .borrow()
            .error
            .as_deref()
            .unwrap_or("")
            .contains("no leader"));
        assert_eq!(tx.borrow().leader_changes, 3);
        let changes = metrics
            .zk_leader_changes
            .with_label_values(&["/mesos"])
            .get();
        assert_eq!(changes, 3);
    }

    #[test]
    fn a_lost_session_keeps_the_leader_and_members() {
        let metrics = Metrics::new(prometheus::Registry::new());
        let gauge = metrics.zk_connected.with_label_values(&["/mesos"]);
        let (tx, _rx) = watch::channel(Arc::new(ZkView::default()));
        publish(&tx, &url(), read(&[(1, "10.0.0.1")], &[]), &metrics);
        lost(&tx, &gauge, "connection lost".into());
        let view = tx.borrow().clone();
        assert!(!view.connected);
        assert_eq!(leader(&tx).as_deref(), Some("10.0.0.1:5050"));
        assert_eq!(view.members.len(), 1);
        assert_eq!(view.error.as_deref(), Some("connection lost"));
        assert_eq!(gauge.get(), 0);
    }
}
