//! The ZooKeeper elections Drover follows, for `/debug/routes` and the `/readyz` detail:
//! each URL's session state, leader, members and last problem.

use serde::Serialize;

use crate::zk::Zk;

#[derive(Debug, Serialize)]
pub struct ZkDump {
    pub url: String,
    /// The session is up and the last read succeeded; false = the leader shown is the last
    /// one known (kept while ZooKeeper is unreachable).
    pub connected: bool,
    /// `host:port` of the leader ZooKeeper names; null = none known.
    pub leader: Option<String>,
    /// Its znode (`json.info_0000000003`, `_c_…-latch-0000000001`).
    pub leader_node: Option<String>,
    /// Unix time of the last leader change.
    pub leader_since: Option<f64>,
    pub leader_changes: u64,
    /// Every candidate's `host:port`, in sequence order.
    pub members: Vec<String>,
    pub error: Option<String>,
}

pub fn zk_dump(zk: &Zk) -> Vec<ZkDump> {
    zk.views()
        .into_iter()
        .map(|(url, v)| ZkDump {
            url,
            connected: v.connected,
            leader: v.leader.as_ref().map(|m| m.advertised.authority()),
            leader_node: v.leader.as_ref().map(|m| m.node.clone()),
            leader_since: v.leader_since.and_then(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs_f64())
            }),
            leader_changes: v.leader_changes,
            members: v.members.iter().map(|m| m.advertised.authority()).collect(),
            error: v.error.clone(),
        })
        .collect()
}

/// One line per election whose session is down, for the `/readyz` body. Readiness itself
/// does not change: the last leader is kept and served, and the masters are still polled.
pub fn readiness_detail(zk: &Zk) -> String {
    zk.views()
        .into_iter()
        .filter(|(_, v)| !v.connected)
        .map(|(url, v)| {
            let leader = v
                .leader
                .as_ref()
                .map_or("none".to_string(), |m| m.advertised.authority());
            format!(
                "zookeeper {url}: disconnected, keeping the last leader {leader} ({})\n",
                v.error.as_deref().unwrap_or("no session yet")
            )
        })
        .collect()
}
