//! A decoded Mesos state as the catalog's `Cluster`: pids and port ranges parsed, each
//! task's addresses read from its newest running status, and the host names that pids and
//! the configured masters use instead of addresses resolved. Done once per read, so
//! nothing downstream (the DNS zone above all) parses Mesos's strings again.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use tracing::warn;

use super::state::{self, split_host_port, MesosState, Pid, Status};
use crate::catalog::cluster::{
    Agent, Cluster, Discovery, DiscoveryPort, Endpoint, Framework, Task, TaskIps,
};

/// Host names resolved for one state: name -> addresses.
pub type ResolvedHosts = HashMap<String, Vec<IpAddr>>;

/// How long resolving one host name may take before the cluster is built without it.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Lookups in flight at once (each holds a blocking thread for `getaddrinfo`).
const RESOLVE_AT_ONCE: usize = 16;

const DOCKER_IP_LABEL: &str = "Docker.NetworkSettings.IPAddress";
const MESOS_IP_LABEL: &str = "MesosContainerizer.NetworkSettings.IPAddress";

/// The configured master URLs as the `host:port` texts `masterN` names are built from:
/// `http://m1:5050/` -> `m1:5050`.
pub fn master_addresses(urls: &[String]) -> Vec<String> {
    urls.iter()
        .map(|u| {
            u.trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}

/// Resolves what `hosts_to_resolve` lists for `state` and `masters`, then converts.
pub async fn resolve_and_convert(state: &MesosState, masters: &[String]) -> Cluster {
    let resolved = resolve(hosts_to_resolve(state, masters)).await;
    convert(state, masters, &resolved)
}

/// The host names (not IP literals) in `state`'s pids and hostnames and in `masters`.
pub fn hosts_to_resolve(state: &MesosState, masters: &[String]) -> BTreeSet<String> {
    let mut hosts = BTreeSet::new();
    let mut want = |host: &str| {
        if !host.is_empty() && parse_ip(host).is_none() {
            hosts.insert(host.to_string());
        }
    };
    for agent in &state.agents {
        if let Ok(pid) = Pid::parse(&agent.pid) {
            want(&pid.host);
        }
    }
    for f in &state.frameworks {
        match f.pid.as_deref().map(Pid::parse) {
            Some(Ok(pid)) => want(&pid.host),
            _ => want(&f.hostname),
        }
    }
    if let Ok(pid) = Pid::parse(&state.leader) {
        want(&pid.host);
    }
    for master in masters {
        if let Some((host, _)) = split_host_port(master) {
            want(host);
        }
    }
    hosts
}

/// Looks the names up, [`RESOLVE_AT_ONCE`] at a time, each within [`RESOLVE_TIMEOUT`]; a
/// name that fails is logged and left out (its records are then missing, the rest are
/// built). At once, so that a state naming many slow hosts holds a poll for about one
/// timeout rather than one per host.
pub async fn resolve(hosts: BTreeSet<String>) -> ResolvedHosts {
    let mut resolved = ResolvedHosts::new();
    let mut lookups = tokio::task::JoinSet::new();
    let mut hosts = hosts.into_iter();
    loop {
        while lookups.len() < RESOLVE_AT_ONCE {
            let Some(host) = hosts.next() else { break };
            lookups.spawn(async move {
                let lookup = tokio::net::lookup_host((host.clone(), 0));
                let answer = tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await;
                (host, answer)
            });
        }
        let Some(done) = lookups.join_next().await else {
            return resolved;
        };
        let Ok((host, answer)) = done else { continue };
        match answer {
            Ok(Ok(addrs)) => {
                resolved.insert(host, addrs.map(|a| a.ip().to_canonical()).collect());
            }
            Ok(Err(e)) => {
                warn!(%host, error = %e, "cannot resolve a host named in the Mesos state")
            }
            Err(_) => warn!(%host, "resolving a host named in the Mesos state timed out"),
        }
    }
}

/// The cluster `state` describes, host names looked up in `resolved`.
pub fn convert(state: &MesosState, masters: &[String], resolved: &ResolvedHosts) -> Cluster {
    let ips_of = |host: &str| host_ips(host, resolved);
    Cluster {
        leader: pid_endpoint(&state.leader, resolved),
        masters: masters
            .iter()
            .filter_map(|m| {
                let (host, port) = split_host_port(m)?;
                Some(Endpoint {
                    address: m.clone(),
                    ips: ips_of(host),
                    port: port.parse().ok()?,
                })
            })
            .collect(),
        agents: state
            .agents
            .iter()
            .map(|a| Agent {
                id: a.id.clone(),
                endpoint: pid_endpoint(&a.pid, resolved),
            })
            .collect(),
        frameworks: state
            .frameworks
            .iter()
            .map(|f| {
                let (ips, port) = match f.pid.as_deref().map(Pid::parse) {
                    Some(Ok(pid)) => (ips_of(&pid.host), Some(pid.port)),
                    _ => (ips_of(&f.hostname), None),
                };
                Framework {
                    name: f.name.clone(),
                    ips,
                    port,
                    tasks: f.tasks.iter().map(task).collect(),
                }
            })
            .collect(),
    }
}

/// Where the pid `name@host:port` listens; `None` when it does not parse.
pub fn pid_endpoint(pid: &str, resolved: &ResolvedHosts) -> Option<Endpoint> {
    let parsed = Pid::parse(pid).ok()?;
    let address = pid.trim().split_once('@').map_or("", |(_, a)| a);
    Some(Endpoint {
        address: address.to_string(),
        ips: host_ips(&parsed.host, resolved),
        port: parsed.port,
    })
}

/// A host's addresses: itself when it is an IP literal, else what it resolved to.
fn host_ips(host: &str, resolved: &ResolvedHosts) -> Vec<IpAddr> {
    match parse_ip(host) {
        Some(ip) => vec![ip],
        None => resolved
            .get(host)
            .map(|ips| ips.iter().map(|ip| ip.to_canonical()).collect())
            .unwrap_or_default(),
    }
}

/// An IP address literal (no brackets, no zone); IPv4-mapped IPv6 reads as IPv4.
fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

fn task(t: &state::Task) -> Task {
    Task {
        id: t.id.clone(),
        name: t.name.clone(),
        agent_id: t.slave_id.clone(),
        state: t.state.clone(),
        ips: task_ips(t),
        healthy: task_health(t),
        ports: state::parse_port_ranges(&t.resources.ports),
        discovery: t
            .discovery
            .as_ref()
            .filter(|d| !d.name.is_empty())
            .map(|d| Discovery {
                name: d.name.clone(),
                ports: d
                    .ports
                    .ports
                    .iter()
                    .filter_map(|p| {
                        // An out-of-range number names no port; the task keeps the rest.
                        Some(DiscoveryPort {
                            number: u16::try_from(p.number).ok()?,
                            protocol: p.protocol.clone(),
                            name: p.name.clone(),
                        })
                    })
                    .collect(),
            }),
    }
}

/// A task's newest (by timestamp) `TASK_RUNNING` status; of equal timestamps, the first.
fn newest_running(task: &state::Task) -> Option<&Status> {
    task.statuses
        .iter()
        .filter(|s| s.state == "TASK_RUNNING")
        .fold(None::<&Status>, |best, s| match best {
            Some(b) if b.timestamp >= s.timestamp => Some(b),
            _ => Some(s),
        })
}

/// What a task's newest `TASK_RUNNING` status says of its health: `None` when that status
/// has no `healthy` (a task without health checks, or not checked yet) or there is none.
pub fn task_health(task: &state::Task) -> Option<bool> {
    newest_running(task).and_then(|s| s.healthy)
}

/// A task's addresses from its newest (by timestamp) `TASK_RUNNING` status.
pub fn task_ips(task: &state::Task) -> TaskIps {
    let Some(status) = newest_running(task) else {
        return TaskIps::default();
    };
    let label_ips = |key: &str| -> Vec<IpAddr> {
        status
            .labels
            .iter()
            .filter(|l| l.key == key)
            .filter_map(|l| parse_ip(&l.value))
            .collect()
    };
    TaskIps {
        netinfo: status
            .container_status
            .network_infos
            .iter()
            .flat_map(|n| {
                // The 0.26 list wins; the 0.25 single address only without it.
                let listed = n.ip_addresses.iter().map(|a| a.ip_address.as_str());
                let legacy = n.ip_addresses.is_empty().then_some(n.ip_address.as_str());
                listed.chain(legacy)
            })
            .filter_map(parse_ip)
            .collect(),
        docker: label_ips(DOCKER_IP_LABEL),
        mesos: label_ips(MESOS_IP_LABEL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names are looked up together: literal-free names resolve, a name that does not
    /// exist is left out, and the answer keeps every name that did resolve.
    #[tokio::test]
    async fn resolve_keeps_what_resolved_and_leaves_out_the_rest() {
        let hosts: BTreeSet<String> = ["localhost", "no-such-host.invalid"]
            .iter()
            .map(|h| h.to_string())
            .collect();
        let resolved = resolve(hosts).await;
        assert!(resolved
            .get("localhost")
            .is_some_and(|ips| ips.iter().any(|ip| ip.is_loopback())));
        assert!(!resolved.contains_key("no-such-host.invalid"));
    }
}
