//! The cluster as its Mesos master describes it, in our words: the leader and the configured
//! masters, the agents, the frameworks and their tasks, with every address already parsed
//! and every host name already resolved by the source that read it. Plus the apps that only
//! Marathon knows (`marathon_only_apps`). The DNS zone compiles from these and nothing else:
//! no pid, port-range or status parsing happens after a source has decoded its answer.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::net::IpAddr;

use super::RawApp;

/// What the leading Mesos master reported, converted once when it was read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cluster {
    /// The elected master; `None` when the state's leader pid does not parse.
    pub leader: Option<Endpoint>,
    /// The configured masters (`[mesos] masters`), in the order `masterN` follows.
    pub masters: Vec<Endpoint>,
    pub agents: Vec<Agent>,
    pub frameworks: Vec<Framework>,
}

/// Where a master, agent or scheduler listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port` as Mesos or the config wrote it (IPv6 in brackets): masters are matched
    /// to the leader by this text.
    pub address: String,
    /// The host's addresses: the literal, or what the source resolved its name to (empty
    /// when it did not resolve). IPv4-mapped IPv6 addresses are stored as IPv4.
    pub ips: Vec<IpAddr>,
    pub port: u16,
}

/// An agent (`slaves[]` in the state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: String,
    /// From the agent's pid; `None` when that does not parse.
    pub endpoint: Option<Endpoint>,
}

/// A registered framework (scheduler) and its tasks.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Framework {
    pub name: String,
    /// The scheduler's addresses: its pid's host, or the framework's `hostname` when it has
    /// no pid (frameworks on the HTTP API).
    pub ips: Vec<IpAddr>,
    /// The scheduler's port, from its pid.
    pub port: Option<u16>,
    pub tasks: Vec<Task>,
}

/// One task of a framework.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Task {
    pub id: String,
    pub name: String,
    /// The agent it runs on.
    pub agent_id: String,
    /// `TASK_RUNNING`, `TASK_KILLED`, ...
    pub state: String,
    /// The task's own addresses, by where they were read from.
    pub ips: TaskIps,
    /// Its resource (host) ports, in order.
    pub ports: Vec<u16>,
    /// Its `DiscoveryInfo`, when it names itself (a non-empty name).
    pub discovery: Option<Discovery>,
    /// The `healthy` of its newest `TASK_RUNNING` status: `None` when the task has no
    /// health checks (or no result yet). Read by DNS's `healthy_only`.
    pub healthy: Option<bool>,
}

/// A task's addresses from its newest `TASK_RUNNING` status, one list per place Mesos puts
/// them. Which place wins is DNS's choice (`[dns] ip_sources`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskIps {
    /// `container_status.network_infos`.
    pub netinfo: Vec<IpAddr>,
    /// The `Docker.NetworkSettings.IPAddress` label.
    pub docker: Vec<IpAddr>,
    /// The `MesosContainerizer.NetworkSettings.IPAddress` label.
    pub mesos: Vec<IpAddr>,
}

/// The name and ports a task asks service discovery to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// Never empty.
    pub name: String,
    pub ports: Vec<DiscoveryPort>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryPort {
    pub number: u16,
    /// `tcp`, `udp`, or empty for both.
    pub protocol: String,
    pub name: String,
}

// === impl Cluster ===

impl Cluster {
    /// How many tasks the frameworks hold, in any state.
    pub fn task_count(&self) -> usize {
        self.frameworks.iter().map(|f| f.tasks.len()).sum()
    }
}

/// An app known only from Marathon (no Mesos state lists its tasks). Mesos-DNS names
/// Marathon's tasks by the app id reversed: `/group/app` becomes task name `app.group`, so
/// `app-group.marathon.<domain>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MarathonOnlyApp {
    /// Marathon app id, e.g. `/group/app`.
    pub id: String,
    pub tasks: Vec<MarathonOnlyTask>,
}

/// One running task of a `MarathonOnlyApp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarathonOnlyTask {
    /// Unique per task: it is hashed into the canonical name.
    pub id: String,
    /// The agent's address.
    pub host: IpAddr,
    /// The task's own addresses (IP-per-task networking); the `netinfo` source.
    pub ip_addresses: Vec<IpAddr>,
    /// Host ports.
    pub ports: Vec<u16>,
    /// The agent id, for the canonical name's tail; without it the name ends at the hash.
    pub agent_id: Option<String>,
    /// Marathon's health check results: all alive `Some(true)`, any not `Some(false)`,
    /// none `None`.
    pub healthy: Option<bool>,
}

/// The Marathon apps whose running tasks the Mesos state does not list (all of them without
/// one), each with only those tasks. Tasks whose host is not an IP address are left out, as
/// the route table leaves them out.
pub fn marathon_only_apps<A: Borrow<RawApp>>(
    apps: &[A],
    cluster: Option<&Cluster>,
) -> Vec<MarathonOnlyApp> {
    let known: HashSet<&str> = cluster
        .map(|c| {
            c.frameworks
                .iter()
                .flat_map(|f| f.tasks.iter().map(|t| t.id.as_str()))
                .collect()
        })
        .unwrap_or_default();
    apps.iter()
        .map(|app| app.borrow())
        .filter_map(|app| {
            let tasks: Vec<MarathonOnlyTask> = app
                .tasks
                .iter()
                .filter(|t| t.state == "TASK_RUNNING" && !known.contains(t.id.as_str()))
                .filter_map(|t| {
                    Some(MarathonOnlyTask {
                        id: t.id.clone(),
                        host: t.host.parse::<IpAddr>().ok()?.to_canonical(),
                        ip_addresses: Vec::new(),
                        ports: t.ports.clone(),
                        agent_id: None,
                        healthy: t.healthy,
                    })
                })
                .collect();
            (!tasks.is_empty()).then(|| MarathonOnlyApp {
                id: app.id.clone(),
                tasks,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::RawTask;

    fn task(id: &str, host: &str, state: &str) -> RawTask {
        RawTask {
            id: id.into(),
            host: host.into(),
            ports: vec![31000],
            state: state.into(),
            healthy: None,
        }
    }

    #[test]
    fn marathon_only_apps_keep_the_running_tasks_mesos_does_not_list() {
        let apps = [
            RawApp {
                id: "/shop/web".into(),
                tasks: vec![
                    task("web.1", "10.0.0.1", "TASK_RUNNING"),
                    task("web.2", "10.0.0.2", "TASK_RUNNING"),
                    task("web.3", "10.0.0.3", "TASK_STAGING"),
                    task("web.4", "agent-4.example", "TASK_RUNNING"),
                    task("web.5", "::ffff:10.0.0.5", "TASK_RUNNING"),
                ],
                ..RawApp::default()
            },
            RawApp {
                id: "/listed".into(),
                tasks: vec![task("listed.1", "10.0.0.9", "TASK_RUNNING")],
                ..RawApp::default()
            },
        ];
        let cluster = Cluster {
            frameworks: vec![Framework {
                name: "marathon".into(),
                tasks: vec![
                    Task {
                        id: "web.2".into(),
                        ..Task::default()
                    },
                    Task {
                        id: "listed.1".into(),
                        ..Task::default()
                    },
                ],
                ..Framework::default()
            }],
            ..Cluster::default()
        };
        let only = marathon_only_apps(&apps, Some(&cluster));
        assert_eq!(only.len(), 1, "{only:?}");
        let ids: Vec<(&str, IpAddr)> = only[0]
            .tasks
            .iter()
            .map(|t| (t.id.as_str(), t.host))
            .collect();
        assert_eq!(
            ids,
            [
                ("web.1", "10.0.0.1".parse().unwrap()),
                ("web.5", "10.0.0.5".parse().unwrap())
            ]
        );
        // Marathon's health rides along, for DNS.
        let mut unhealthy = apps.clone();
        unhealthy[0].tasks[0].healthy = Some(false);
        let only = marathon_only_apps(&unhealthy, Some(&cluster));
        let health: Vec<Option<bool>> = only[0].tasks.iter().map(|t| t.healthy).collect();
        assert_eq!(health, [Some(false), None]);
        // Without a Mesos state every running task is Marathon's alone.
        assert_eq!(marathon_only_apps(&apps, None).len(), 2);
    }
}
