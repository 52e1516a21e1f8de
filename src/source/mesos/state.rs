//! The Mesos master's `/master/state` (formerly `state.json`): serde types for the parts
//! that name things (leader, frameworks, their tasks, agents), `decode`, and the two small
//! string formats inside it, the libprocess pid (`name@host:port`) and the port-range
//! string (`[31000-31005, 31010-31010]`). `cluster` turns the decoded state into the
//! catalog's terms; fetching the document is `poll`'s job.
//!
//! Tolerance, chosen so a big state is not refused for one odd entry:
//! - unknown fields are skipped, missing fields and `null` read as empty;
//! - each framework, task and agent is decoded on its own: one that does not decode (a
//!   field of the wrong type, say) is left out and named in `MesosState::problems`, and
//!   the rest of the state is kept;
//! - the document itself must be JSON with a non-empty `leader`: a master that knows no
//!   leader is mid-election, and its state must not replace a good one.
//!
//! Pids and port ranges are kept as the strings Mesos wrote; `cluster::convert` reads them
//! with `Pid::parse` and `parse_port_ranges`, once per state.

use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// The parts of a master's state that DNS names come from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MesosState {
    /// Pid of the elected master, e.g. `master@10.0.0.1:5050`; never empty after `decode`.
    pub leader: String,
    /// Pid of the master that answered; equal to `leader` when it leads. Empty when the
    /// state does not say (then `source::mesos::poll` compares addresses instead).
    pub pid: String,
    /// Host name of the master that answered.
    pub hostname: String,
    pub frameworks: Vec<Framework>,
    /// Agents (`slaves` in the JSON).
    pub agents: Vec<Agent>,
    /// Entries left out because they did not decode.
    pub problems: Vec<DecodeProblem>,
}

/// A registered framework (scheduler) and its current tasks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Framework {
    pub id: String,
    pub name: String,
    /// The scheduler's pid; frameworks on the HTTP API have none.
    pub pid: Option<String>,
    pub hostname: String,
    /// The tasks that decoded; completed tasks are not read.
    pub tasks: Vec<Task>,
}

/// One task of a framework.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Task {
    #[serde(default, deserialize_with = "nullable")]
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub framework_id: String,
    /// The agent it runs on.
    #[serde(default, deserialize_with = "nullable")]
    pub slave_id: String,
    /// `TASK_RUNNING`, `TASK_KILLED`, ...
    #[serde(default, deserialize_with = "nullable")]
    pub state: String,
    /// In no promised order; readers pick by `timestamp`.
    #[serde(default, deserialize_with = "nullable")]
    pub statuses: Vec<Status>,
    #[serde(default, deserialize_with = "nullable")]
    pub resources: Resources,
    #[serde(default)]
    pub discovery: Option<Discovery>,
    #[serde(default, deserialize_with = "labels")]
    pub labels: Vec<Label>,
}

/// A task status update.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Status {
    #[serde(default, deserialize_with = "nullable")]
    pub state: String,
    /// Seconds since the epoch, fractional.
    #[serde(default, deserialize_with = "nullable")]
    pub timestamp: f64,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: Vec<Label>,
    #[serde(default, deserialize_with = "nullable")]
    pub container_status: ContainerStatus,
    /// Set on the statuses of tasks with health checks; missing and `null` read as `None`.
    #[serde(default)]
    pub healthy: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ContainerStatus {
    #[serde(default, deserialize_with = "nullable")]
    pub network_infos: Vec<NetworkInfo>,
}

/// One network a container is attached to.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct NetworkInfo {
    /// Mesos 0.26 and later.
    #[serde(default, deserialize_with = "nullable")]
    pub ip_addresses: Vec<IpAddress>,
    /// Mesos 0.25: one address per network.
    #[serde(default, deserialize_with = "nullable")]
    pub ip_address: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct IpAddress {
    #[serde(default, deserialize_with = "nullable")]
    pub ip_address: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Label {
    #[serde(default, deserialize_with = "nullable")]
    pub key: String,
    #[serde(default, deserialize_with = "nullable")]
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Resources {
    /// The port ranges as Mesos writes them, e.g. `[31354-31355]`; see `parse_port_ranges`.
    #[serde(default, deserialize_with = "nullable")]
    pub ports: String,
}

/// A task's `DiscoveryInfo`: the name and ports it asks service discovery to publish.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Discovery {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub ports: DiscoveryPorts,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DiscoveryPorts {
    #[serde(default, deserialize_with = "nullable")]
    pub ports: Vec<DiscoveryPort>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DiscoveryPort {
    /// Kept wide: an out-of-range number is the reader's to skip, not a reason to drop
    /// the task.
    #[serde(default, deserialize_with = "nullable")]
    pub number: u64,
    /// `tcp`, `udp`, or empty for both.
    #[serde(default, deserialize_with = "nullable")]
    pub protocol: String,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
}

/// An agent (`slaves[]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Agent {
    #[serde(default, deserialize_with = "nullable")]
    pub id: String,
    /// E.g. `slave(1)@10.0.0.5:5051`; the agent's address for DNS comes from here.
    #[serde(default, deserialize_with = "nullable")]
    pub pid: String,
    #[serde(default, deserialize_with = "nullable")]
    pub hostname: String,
}

/// An entry of the state left out by `decode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeProblem {
    /// Which entry: `frameworks[2]`, `frameworks[0].tasks[5]`, `slaves[1]`.
    pub path: String,
    /// serde_json's message.
    pub message: String,
}

impl fmt::Display for DecodeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} left out: {}", self.path, self.message)
    }
}

/// Why a state document was refused whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("Mesos state does not decode: {message}")]
    Json {
        /// serde_json's message, with line and column.
        message: String,
        line: usize,
        column: usize,
    },
    #[error(
        "Mesos state names no leader (the master is not leading, or an election is under way)"
    )]
    NoLeader,
}

impl From<serde_json::Error> for StateError {
    fn from(e: serde_json::Error) -> Self {
        StateError::Json {
            message: e.to_string(),
            line: e.line(),
            column: e.column(),
        }
    }
}

/// The top level, with frameworks and agents left undecoded for `decode` to take one by one.
#[derive(Deserialize)]
struct RawState<'a> {
    #[serde(default, deserialize_with = "nullable")]
    leader: String,
    #[serde(default, deserialize_with = "nullable")]
    pid: String,
    #[serde(default, deserialize_with = "nullable")]
    hostname: String,
    #[serde(default, borrow, deserialize_with = "nullable_raw")]
    frameworks: Vec<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "nullable_raw")]
    slaves: Vec<&'a RawValue>,
}

/// A framework with its tasks left undecoded.
#[derive(Deserialize)]
struct RawFramework<'a> {
    #[serde(default, deserialize_with = "nullable")]
    id: String,
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    #[serde(default)]
    pid: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    hostname: String,
    #[serde(default, borrow, deserialize_with = "nullable_raw")]
    tasks: Vec<&'a RawValue>,
}

/// Decodes a `/master/state` body. See the module doc for what is tolerated.
pub fn decode(body: &[u8]) -> Result<MesosState, StateError> {
    let raw: RawState = serde_json::from_slice(body)?;
    if raw.leader.trim().is_empty() {
        return Err(StateError::NoLeader);
    }
    let mut problems = Vec::new();
    let mut note = |path: String, e: serde_json::Error| {
        problems.push(DecodeProblem {
            path,
            message: e.to_string(),
        })
    };

    let mut frameworks = Vec::with_capacity(raw.frameworks.len());
    for (i, text) in raw.frameworks.iter().enumerate() {
        let raw_framework = match serde_json::from_str::<RawFramework>(text.get()) {
            Ok(f) => f,
            Err(e) => {
                note(format!("frameworks[{i}]"), e);
                continue;
            }
        };
        let mut framework = Framework {
            id: raw_framework.id,
            name: raw_framework.name,
            pid: raw_framework.pid,
            hostname: raw_framework.hostname,
            tasks: Vec::new(),
        };
        let tasks = raw_framework.tasks;
        framework.tasks.reserve(tasks.len());
        for (j, task) in tasks.iter().enumerate() {
            match serde_json::from_str::<Task>(task.get()) {
                Ok(t) => framework.tasks.push(t),
                Err(e) => note(format!("frameworks[{i}].tasks[{j}]"), e),
            }
        }
        frameworks.push(framework);
    }

    let mut agents = Vec::with_capacity(raw.slaves.len());
    for (i, text) in raw.slaves.iter().enumerate() {
        match serde_json::from_str::<Agent>(text.get()) {
            Ok(a) => agents.push(a),
            Err(e) => note(format!("slaves[{i}]"), e),
        }
    }

    Ok(MesosState {
        leader: raw.leader.trim().to_string(),
        pid: raw.pid.trim().to_string(),
        hostname: raw.hostname,
        frameworks,
        agents,
        problems,
    })
}

/// `null` reads as the type's default (Mesos and hand-made states write a few).
pub(super) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn nullable_raw<'de, D>(d: D) -> Result<Vec<&'de RawValue>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<Vec<&'de RawValue>>::deserialize(d)?.unwrap_or_default())
}

/// Task labels are `[{key, value}]` in `/master/state` but `{"labels": [...]}` in the
/// protobuf JSON some tools write; both read.
fn labels<'de, D>(d: D) -> Result<Vec<Label>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<Label>),
        Wrapped {
            #[serde(default)]
            labels: Vec<Label>,
        },
    }
    Ok(match Option::<Either>::deserialize(d)? {
        None => Vec::new(),
        Some(Either::List(l)) | Some(Either::Wrapped { labels: l }) => l,
    })
}

// === pids ===

/// A libprocess pid, `name@host:port`: how Mesos writes where a master, agent or
/// scheduler listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pid {
    /// The process name before `@`, e.g. `slave(1)`.
    pub id: String,
    /// An IP address or a host name; IPv6 without its brackets.
    pub host: String,
    pub port: u16,
}

/// Why a pid string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PidError {
    #[error("pid {0:?} does not have exactly one '@'")]
    At(String),
    #[error("pid {0:?} does not end in host:port")]
    HostPort(String),
    #[error("pid {0:?} has a port that is not a number from 0 to 65535")]
    Port(String),
}

// === impl Pid ===

impl Pid {
    /// Parses `name@host:port` or `name@[v6]:port`; spaces around it are ignored.
    pub fn parse(text: &str) -> Result<Pid, PidError> {
        let text = text.trim();
        let (id, address) = match text.split_once('@') {
            Some((id, address)) if !address.contains('@') => (id, address),
            _ => return Err(PidError::At(text.to_string())),
        };
        let (host, port) =
            split_host_port(address).ok_or_else(|| PidError::HostPort(text.to_string()))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| PidError::Port(text.to_string()))?;
        Ok(Pid {
            id: id.to_string(),
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.id, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.id, self.host, self.port)
        }
    }
}

/// Splits `host:port` or `[v6]:port` into a non-empty host (brackets removed) and the
/// port text. A bare IPv6 address (colons outside brackets) is refused, as Go's
/// `net.SplitHostPort` refuses it.
pub fn split_host_port(address: &str) -> Option<(&str, &str)> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':')?)
    } else {
        let (host, port) = address.rsplit_once(':')?;
        if host.contains(':') {
            return None;
        }
        (host, port)
    };
    (!host.is_empty() && !host.contains(['[', ']'])).then_some((host, port))
}

// === port ranges ===

/// Expands Mesos's port-range text, `[31111-31111, 31115-31117]`, into its ports in
/// order. `""` and `[]` are no ports; a part that does not read as `lo-hi` (or a single
/// port) is skipped, as is a range whose `lo` is above `hi`.
pub fn parse_port_ranges(text: &str) -> Vec<u16> {
    let inner = text.trim();
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let inner = inner.strip_suffix(']').unwrap_or(inner);
    let mut ports = Vec::new();
    for part in inner.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(lo), Ok(hi)) = (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()) {
            ports.extend(lo..=hi);
        }
    }
    ports
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
