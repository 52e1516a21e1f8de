//! The master's operator API (v1) events, as Mesos writes them in JSON (`POST /api/v1`
//! `SUBSCRIBE`; snake_case proto field names, ids as `{"value": ...}`), and what each does
//! to the model the stream keeps: a [`Model`] holding a `state::MesosState`, so that the one
//! converter (`cluster::convert`) turns a streamed cluster into DNS names exactly as it
//! turns a polled `/master/state`.
//!
//! - `SUBSCRIBED` carries the whole state (`get_state`): a new model ([`Model::from_subscribed`]).
//! - `TASK_ADDED` adds (or replaces) a task; `TASK_UPDATED` changes only its state and adds
//!   the status (every other field stays as it was); a task in a terminal state leaves.
//! - `AGENT_ADDED` / `AGENT_REMOVED`: the agent comes or goes; tasks on an agent that is not
//!   listed get no names (as in Mesos-DNS), so its tasks' records go with it.
//! - `FRAMEWORK_ADDED` / `_UPDATED` / `_REMOVED`: the framework (and on removal its tasks).
//!
//! The v1 framework info carries no `pid`: a framework's pid comes from the last
//! `/master/state` read ([`Pids`]). Decoding is tolerant as in `state`: unknown fields are
//! skipped, `null` reads as empty, and an entry of `SUBSCRIBED` that does not decode is left
//! out and named in the state's `problems`.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::state::{
    self, nullable, Agent, ContainerStatus, DecodeProblem, Discovery, Framework, Label, MesosState,
    Resources, Status, Task,
};

/// Framework id -> the scheduler's pid, from a `/master/state` read.
pub type Pids = HashMap<String, String>;

/// Statuses kept per task: the newest running one is all DNS reads; health-check updates
/// would otherwise grow the list for as long as the stream lives.
const MAX_STATUSES: usize = 16;

/// Mesos's default heartbeat interval, used when `SUBSCRIBED` does not say.
pub const DEFAULT_HEARTBEAT_SECS: f64 = 15.0;

/// The event types counted in metrics by name; any other counts as `other`.
pub const EVENT_TYPES: [&str; 9] = [
    "SUBSCRIBED",
    "HEARTBEAT",
    "TASK_ADDED",
    "TASK_UPDATED",
    "AGENT_ADDED",
    "AGENT_REMOVED",
    "FRAMEWORK_ADDED",
    "FRAMEWORK_UPDATED",
    "FRAMEWORK_REMOVED",
];

/// Task states after which a task never runs again (Mesos's terminal states).
const TERMINAL: [&str; 7] = [
    "TASK_FINISHED",
    "TASK_FAILED",
    "TASK_KILLED",
    "TASK_ERROR",
    "TASK_DROPPED",
    "TASK_GONE",
    "TASK_GONE_BY_OPERATOR",
];

/// One decoded event.
#[derive(Debug, Deserialize)]
pub struct Event<'a> {
    #[serde(default, rename = "type", deserialize_with = "nullable")]
    pub kind: String,
    #[serde(default, borrow)]
    subscribed: Option<Subscribed<'a>>,
    #[serde(default, borrow)]
    task_added: Option<TaskAdded<'a>>,
    #[serde(default)]
    task_updated: Option<TaskUpdated>,
    #[serde(default)]
    agent_added: Option<AgentAdded>,
    #[serde(default)]
    agent_removed: Option<AgentRemoved>,
    #[serde(default)]
    framework_added: Option<FrameworkEntry>,
    #[serde(default)]
    framework_updated: Option<FrameworkEntry>,
    #[serde(default)]
    framework_removed: Option<FrameworkRemoved>,
}

#[derive(Debug, Deserialize)]
struct Subscribed<'a> {
    #[serde(default, borrow)]
    get_state: Option<GetState<'a>>,
    #[serde(default)]
    heartbeat_interval_seconds: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
struct GetState<'a> {
    #[serde(default, borrow)]
    get_tasks: Option<Listed<'a>>,
    #[serde(default, borrow)]
    get_frameworks: Option<Listed<'a>>,
    #[serde(default, borrow)]
    get_agents: Option<Listed<'a>>,
}

/// `get_tasks`, `get_frameworks` or `get_agents`, entries left undecoded to take one by one.
#[derive(Debug, Default, Deserialize)]
struct Listed<'a> {
    #[serde(default, borrow)]
    tasks: Option<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    frameworks: Option<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    agents: Option<Vec<&'a RawValue>>,
}

#[derive(Debug, Deserialize)]
struct TaskAdded<'a> {
    #[serde(borrow)]
    task: &'a RawValue,
}

#[derive(Debug, Deserialize)]
struct TaskUpdated {
    #[serde(default)]
    framework_id: Option<Id>,
    #[serde(default)]
    status: Option<V1Status>,
    #[serde(default, deserialize_with = "nullable")]
    state: String,
    /// Not in master.proto: the operator API document's example puts the id here.
    #[serde(default)]
    task_id: Option<Id>,
}

#[derive(Debug, Deserialize)]
struct AgentAdded {
    agent: V1Agent,
}

#[derive(Debug, Deserialize)]
struct AgentRemoved {
    agent_id: Id,
}

#[derive(Debug, Deserialize)]
struct FrameworkEntry {
    framework: V1Framework,
}

#[derive(Debug, Deserialize)]
struct FrameworkRemoved {
    framework_info: FrameworkInfo,
}

#[derive(Debug, Default, Clone, Deserialize)]
struct Id {
    #[serde(default, deserialize_with = "nullable")]
    value: String,
}

/// `mesos.v1.Task`.
#[derive(Debug, Deserialize)]
struct V1Task {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    task_id: Id,
    #[serde(default, deserialize_with = "nullable")]
    framework_id: Id,
    #[serde(default, deserialize_with = "nullable")]
    agent_id: Id,
    #[serde(default, deserialize_with = "nullable")]
    state: String,
    #[serde(default, deserialize_with = "nullable")]
    resources: Vec<Resource>,
    #[serde(default, deserialize_with = "nullable")]
    statuses: Vec<V1Status>,
    #[serde(default, deserialize_with = "nullable")]
    labels: Labels,
    #[serde(default)]
    discovery: Option<Discovery>,
}

/// `mesos.v1.TaskStatus`, the parts DNS reads.
#[derive(Debug, Clone, Deserialize)]
struct V1Status {
    #[serde(default, deserialize_with = "nullable")]
    task_id: Id,
    #[serde(default, deserialize_with = "nullable")]
    state: String,
    #[serde(default, deserialize_with = "nullable")]
    timestamp: f64,
    #[serde(default, deserialize_with = "nullable")]
    labels: Labels,
    #[serde(default, deserialize_with = "nullable")]
    container_status: ContainerStatus,
    #[serde(default)]
    healthy: Option<bool>,
}

/// `mesos.v1.Labels`: the list is wrapped in v1 (`{"labels": [...]}`).
#[derive(Debug, Default, Clone, Deserialize)]
struct Labels {
    #[serde(default, deserialize_with = "nullable")]
    labels: Vec<Label>,
}

/// `mesos.v1.Resource`; only `ports` ranges are read.
#[derive(Debug, Deserialize)]
struct Resource {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    ranges: Ranges,
}

#[derive(Debug, Default, Deserialize)]
struct Ranges {
    #[serde(default, deserialize_with = "nullable")]
    range: Vec<Range>,
}

#[derive(Debug, Deserialize)]
struct Range {
    #[serde(default, deserialize_with = "nullable")]
    begin: u64,
    #[serde(default, deserialize_with = "nullable")]
    end: u64,
}

/// `GetAgents.Agent`.
#[derive(Debug, Deserialize)]
struct V1Agent {
    #[serde(default, deserialize_with = "nullable")]
    agent_info: AgentInfo,
    /// `slave(1)@10.0.0.5:5051`; older masters may leave it out.
    #[serde(default, deserialize_with = "nullable")]
    pid: String,
}

#[derive(Debug, Default, Deserialize)]
struct AgentInfo {
    #[serde(default, deserialize_with = "nullable")]
    hostname: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default, deserialize_with = "nullable")]
    id: Id,
}

/// `GetFrameworks.Framework`.
#[derive(Debug, Deserialize)]
struct V1Framework {
    #[serde(default, deserialize_with = "nullable")]
    framework_info: FrameworkInfo,
}

#[derive(Debug, Default, Deserialize)]
struct FrameworkInfo {
    #[serde(default, deserialize_with = "nullable")]
    id: Id,
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    hostname: String,
}

/// Why an event was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("operator API event does not decode: {0}")]
    Json(String),
    #[error("{0} event without its {1} field")]
    Missing(String, &'static str),
}

impl From<serde_json::Error> for EventError {
    fn from(e: serde_json::Error) -> Self {
        EventError::Json(e.to_string())
    }
}

/// Decodes one record of the stream.
pub fn decode(record: &[u8]) -> Result<Event<'_>, EventError> {
    Ok(serde_json::from_slice(record)?)
}

/// What the stream knows of the cluster: a state in `/master/state`'s terms, plus tasks
/// whose framework has not been announced yet (they join it when it is).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    pub state: MesosState,
    orphans: Vec<Task>,
}

// === impl Event ===

impl Event<'_> {
    /// The type's metric label: one of [`EVENT_TYPES`] or `other`.
    pub fn label(&self) -> &'static str {
        EVENT_TYPES
            .iter()
            .copied()
            .find(|t| *t == self.kind)
            .unwrap_or("other")
    }

    /// `SUBSCRIBED`'s heartbeat interval in seconds (Mesos's default when it does not say).
    pub fn heartbeat_secs(&self) -> f64 {
        self.subscribed
            .as_ref()
            .and_then(|s| s.heartbeat_interval_seconds)
            .filter(|s| s.is_finite() && *s > 0.0)
            .unwrap_or(DEFAULT_HEARTBEAT_SECS)
    }
}

// === impl Model ===

impl Model {
    /// A model from a `/master/state` read.
    pub fn from_state(state: MesosState) -> Model {
        Model {
            state,
            orphans: Vec::new(),
        }
    }

    /// The model `SUBSCRIBED` describes. `leader` is the leader's pid, from the
    /// `/master/state` read (the v1 state does not name it); `pids` gives the frameworks'.
    pub fn from_subscribed(event: &Event, leader: &str, pids: &Pids) -> Result<Model, EventError> {
        let get_state = event
            .subscribed
            .as_ref()
            .ok_or_else(|| EventError::Missing(event.kind.clone(), "subscribed"))?
            .get_state
            .as_ref();
        let empty = GetState::default();
        let get_state = get_state.unwrap_or(&empty);
        let frameworks = get_state
            .get_frameworks
            .as_ref()
            .and_then(|l| l.frameworks.clone())
            .unwrap_or_default();
        let agents = get_state
            .get_agents
            .as_ref()
            .and_then(|l| l.agents.clone())
            .unwrap_or_default();
        let tasks = get_state
            .get_tasks
            .as_ref()
            .and_then(|l| l.tasks.clone())
            .unwrap_or_default();
        let mut model = Model {
            state: MesosState {
                leader: leader.to_string(),
                pid: leader.to_string(),
                ..MesosState::default()
            },
            orphans: Vec::new(),
        };
        let mut problems = Vec::new();
        let mut note = |path: String, e: serde_json::Error| {
            problems.push(DecodeProblem {
                path,
                message: e.to_string(),
            })
        };
        for (i, raw) in frameworks.iter().enumerate() {
            match serde_json::from_str::<V1Framework>(raw.get()) {
                Ok(f) => model.upsert_framework(f.framework_info, pids),
                Err(e) => note(format!("get_frameworks.frameworks[{i}]"), e),
            }
        }
        for (i, raw) in agents.iter().enumerate() {
            match serde_json::from_str::<V1Agent>(raw.get()) {
                Ok(a) => model.upsert_agent(a),
                Err(e) => note(format!("get_agents.agents[{i}]"), e),
            }
        }
        for (i, raw) in tasks.iter().enumerate() {
            match serde_json::from_str::<V1Task>(raw.get()) {
                Ok(t) => model.add_task(task(t)),
                Err(e) => note(format!("get_tasks.tasks[{i}]"), e),
            }
        }
        model.state.problems = problems;
        Ok(model)
    }

    /// Applies one event after `SUBSCRIBED`. Returns whether the model changed.
    pub fn apply(&mut self, event: &Event, pids: &Pids) -> Result<bool, EventError> {
        let missing = |field| EventError::Missing(event.kind.clone(), field);
        match event.kind.as_str() {
            "TASK_ADDED" => {
                let added = event
                    .task_added
                    .as_ref()
                    .ok_or_else(|| missing("task_added"))?;
                let t: V1Task = serde_json::from_str(added.task.get())?;
                self.add_task(task(t));
                Ok(true)
            }
            "TASK_UPDATED" => {
                let u = event
                    .task_updated
                    .as_ref()
                    .ok_or_else(|| missing("task_updated"))?;
                Ok(self.update_task(u))
            }
            "AGENT_ADDED" => {
                let a = event
                    .agent_added
                    .as_ref()
                    .ok_or_else(|| missing("agent_added"))?;
                let agent = V1Agent {
                    agent_info: AgentInfo {
                        hostname: a.agent.agent_info.hostname.clone(),
                        port: a.agent.agent_info.port,
                        id: a.agent.agent_info.id.clone(),
                    },
                    pid: a.agent.pid.clone(),
                };
                self.upsert_agent(agent);
                Ok(true)
            }
            "AGENT_REMOVED" => {
                let r = event
                    .agent_removed
                    .as_ref()
                    .ok_or_else(|| missing("agent_removed"))?;
                let before = self.state.agents.len();
                self.state.agents.retain(|a| a.id != r.agent_id.value);
                Ok(self.state.agents.len() != before)
            }
            "FRAMEWORK_ADDED" | "FRAMEWORK_UPDATED" => {
                let entry = event
                    .framework_added
                    .as_ref()
                    .or(event.framework_updated.as_ref())
                    .ok_or_else(|| missing("framework_added or framework_updated"))?;
                let info = &entry.framework.framework_info;
                self.upsert_framework(
                    FrameworkInfo {
                        id: info.id.clone(),
                        name: info.name.clone(),
                        hostname: info.hostname.clone(),
                    },
                    pids,
                );
                Ok(true)
            }
            "FRAMEWORK_REMOVED" => {
                let r = event
                    .framework_removed
                    .as_ref()
                    .ok_or_else(|| missing("framework_removed"))?;
                let id = &r.framework_info.id.value;
                let before = self.state.frameworks.len();
                self.state.frameworks.retain(|f| &f.id != id);
                self.orphans.retain(|t| &t.framework_id != id);
                Ok(self.state.frameworks.len() != before)
            }
            // HEARTBEAT, and types a newer master may add.
            _ => Ok(false),
        }
    }

    /// How many tasks the model holds (as `Cluster::task_count` counts them).
    pub fn task_count(&self) -> usize {
        self.state.frameworks.iter().map(|f| f.tasks.len()).sum()
    }

    fn upsert_framework(&mut self, info: FrameworkInfo, pids: &Pids) {
        let id = info.id.value;
        let pid = pids.get(&id).cloned();
        let index = match self.state.frameworks.iter().position(|f| f.id == id) {
            Some(i) => i,
            None => {
                self.state.frameworks.push(Framework {
                    id: id.clone(),
                    ..Framework::default()
                });
                self.state.frameworks.len() - 1
            }
        };
        let framework = &mut self.state.frameworks[index];
        framework.name = info.name;
        framework.hostname = info.hostname;
        // A pid learned before stays until a state read says otherwise.
        if pid.is_some() {
            framework.pid = pid;
        }
        let (mine, rest): (Vec<Task>, Vec<Task>) = std::mem::take(&mut self.orphans)
            .into_iter()
            .partition(|t| t.framework_id == id);
        self.orphans = rest;
        framework.tasks.extend(mine);
    }

    fn upsert_agent(&mut self, a: V1Agent) {
        let info = a.agent_info;
        let pid = if a.pid.is_empty() {
            // The agent's libprocess id is `slave(1)` unless it runs several in a process.
            let host = if info.hostname.contains(':') {
                format!("[{}]", info.hostname)
            } else {
                info.hostname.clone()
            };
            format!("slave(1)@{host}:{}", info.port.unwrap_or(5051))
        } else {
            a.pid
        };
        let agent = Agent {
            id: info.id.value,
            pid,
            hostname: info.hostname,
        };
        match self.state.agents.iter_mut().find(|x| x.id == agent.id) {
            Some(existing) => *existing = agent,
            None => self.state.agents.push(agent),
        }
    }

    fn add_task(&mut self, task: Task) {
        if TERMINAL.contains(&task.state.as_str()) {
            return;
        }
        let tasks = match self
            .state
            .frameworks
            .iter_mut()
            .find(|f| f.id == task.framework_id)
        {
            Some(f) => &mut f.tasks,
            None => &mut self.orphans,
        };
        match tasks.iter_mut().find(|t| t.id == task.id) {
            Some(existing) => *existing = task,
            None => tasks.push(task),
        }
    }

    fn update_task(&mut self, u: &TaskUpdated) -> bool {
        let status = u.status.as_ref();
        let id = status
            .map(|s| s.task_id.value.as_str())
            .filter(|id| !id.is_empty())
            .or(u.task_id.as_ref().map(|t| t.value.as_str()))
            .unwrap_or_default();
        let framework_id = u.framework_id.as_ref().map(|f| f.value.as_str());
        let state = if u.state.is_empty() {
            status.map(|s| s.state.clone()).unwrap_or_default()
        } else {
            u.state.clone()
        };
        let lists = self
            .state
            .frameworks
            .iter_mut()
            .filter(|f| framework_id.is_none_or(|id| f.id == id))
            .map(|f| &mut f.tasks)
            .chain(std::iter::once(&mut self.orphans));
        for tasks in lists {
            let Some(i) = tasks.iter().position(|t| t.id == id) else {
                continue;
            };
            if TERMINAL.contains(&state.as_str()) {
                tasks.remove(i);
                return true;
            }
            let task = &mut tasks[i];
            if !state.is_empty() {
                task.state = state;
            }
            if let Some(s) = status {
                let s = self::status(s.clone());
                if !task.statuses.contains(&s) {
                    task.statuses.push(s);
                    if task.statuses.len() > MAX_STATUSES {
                        // Statuses come in no promised order: the oldest by time goes.
                        let oldest = task
                            .statuses
                            .iter()
                            .enumerate()
                            .min_by(|a, b| a.1.timestamp.total_cmp(&b.1.timestamp))
                            .map_or(0, |(i, _)| i);
                        task.statuses.remove(oldest);
                    }
                }
            }
            return true;
        }
        // A task we never saw added: the next state read will list it.
        false
    }
}

fn task(t: V1Task) -> Task {
    Task {
        id: t.task_id.value,
        name: t.name,
        framework_id: t.framework_id.value,
        slave_id: t.agent_id.value,
        state: t.state,
        statuses: t.statuses.into_iter().map(status).collect(),
        resources: Resources {
            ports: port_ranges(&t.resources),
        },
        discovery: t.discovery,
        labels: t.labels.labels,
    }
}

fn status(s: V1Status) -> Status {
    Status {
        state: s.state,
        timestamp: s.timestamp,
        labels: s.labels.labels,
        container_status: s.container_status,
        healthy: s.healthy,
    }
}

/// The `ports` resource's ranges in `/master/state`'s text form (`[31000-31001, 31005-31005]`),
/// which `state::parse_port_ranges` reads.
fn port_ranges(resources: &[Resource]) -> String {
    let ranges: Vec<String> = resources
        .iter()
        .filter(|r| r.name == "ports")
        .flat_map(|r| r.ranges.range.iter())
        .map(|r| format!("{}-{}", r.begin, r.end))
        .collect();
    format!("[{}]", ranges.join(", "))
}

/// Framework id -> pid, from a `/master/state` read.
pub fn pids_of(state: &state::MesosState) -> Pids {
    state
        .frameworks
        .iter()
        .filter_map(|f| Some((f.id.clone(), f.pid.clone()?)))
        .collect()
}

#[cfg(test)]
#[path = "v1_tests.rs"]
mod tests;
