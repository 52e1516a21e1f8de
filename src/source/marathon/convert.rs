//! marathon-lb's conversion of Marathon apps (`apps::MarathonApp`) into `catalog::RawApp`:
//! service ports by its precedence (and auto-assigned for IP-per-task apps without any),
//! the task-state and health filters, readiness during a deployment, blue/green
//! deployment groups with draining, the backend address of each task, and the apps' own
//! health checks. What a label means is left to `catalog`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use sha1::{Digest, Sha1};

use crate::catalog::protocol::UnknownProtocol;
use crate::catalog::{ActiveCheck, AppProblem, CheckKind, PortCheck, Protocol, RawApp, RawTask};

use super::apps::*;

/// marathon-lb's run flags that change the conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertOptions {
    /// marathon-lb `--health-check`: apps with Marathon health checks need a passing result.
    pub health_check: bool,
    /// Drover probes the tasks itself with the app's HTTP/TCP `healthChecks`, as marathon-lb's
    /// HAProxy does (`check inter ... fall ...`).
    pub active_checks: bool,
    /// `--min-serv-port-ip-per-task` / `--max-serv-port-ip-per-task`: the range service
    /// ports are auto-assigned from for IP-per-task apps that have none.
    pub min_ip_per_task_port: u16,
    pub max_ip_per_task_port: u16,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            health_check: true,
            active_checks: true,
            min_ip_per_task_port: 10050,
            max_ip_per_task_port: 10100,
        }
    }
}

/// The last health verdict seen per task id, for snapshots where Marathon briefly omits
/// `healthCheckResults` (after a leader failover). A task missing from a snapshot is
/// forgotten only after `FORGET_AFTER` more conversions, so one empty answer from a
/// Marathon in the middle of an election does not wipe what is known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthMemory {
    /// Task id -> (alive, the conversion that last saw the task).
    alive: HashMap<String, (bool, u64)>,
    conversion: u64,
}

/// How many conversions a task may be absent before its verdict is dropped.
const FORGET_AFTER: u64 = 3;

// === impl HealthMemory ===

impl HealthMemory {
    pub fn new() -> HealthMemory {
        HealthMemory::default()
    }

    /// The last verdict for a task, if one was seen.
    pub fn get(&self, task_id: &str) -> Option<bool> {
        self.alive.get(task_id).map(|&(alive, _)| alive)
    }

    pub fn len(&self) -> usize {
        self.alive.len()
    }

    pub fn is_empty(&self) -> bool {
        self.alive.is_empty()
    }

    fn record(&mut self, task_id: &str, alive: bool) {
        self.alive
            .insert(task_id.to_string(), (alive, self.conversion));
    }

    /// Marks a task as present in the current conversion.
    fn seen(&mut self, task_id: &str) {
        let now = self.conversion;
        if let Some(entry) = self.alive.get_mut(task_id) {
            entry.1 = now;
        }
    }

    fn start_conversion(&mut self) {
        self.conversion += 1;
        let now = self.conversion;
        self.alive
            .retain(|_, &mut (_, seen)| now - seen <= FORGET_AFTER);
    }
}

/// How an app's tasks are addressed (marathon-lb's networking mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Networking {
    Host,
    /// Docker `BRIDGE` or `container/bridge`: agent host + host port.
    Bridge,
    /// IP per task (legacy `ipAddress`, Docker `USER`, `container` networks): task IP +
    /// container port.
    Container,
}

/// One app after its own filters, before deployment groups are merged.
struct Converted {
    /// Deployment group (as an id, with a leading `/`), if the app is in one.
    group: Option<String>,
    raw: RawApp,
    /// Every task id of the app, filtered or not (deployment draining counts them).
    all_task_ids: Vec<String>,
    instances: u64,
    last_scaling_at: String,
}

/// marathon-lb's labels that draining reads.
const DEPLOYMENT_GROUP: &str = "HAPROXY_DEPLOYMENT_GROUP";
const DEPLOYMENT_STARTED_AT: &str = "HAPROXY_DEPLOYMENT_STARTED_AT";
const DEPLOYMENT_TARGET_INSTANCES: &str = "HAPROXY_DEPLOYMENT_TARGET_INSTANCES";
const DEPLOYMENT_NEW_INSTANCES: &str = "HAPROXY_DEPLOYMENT_NEW_INSTANCES";

/// Converts a snapshot into raw apps with marathon-lb's semantics. Tasks in the result are
/// the serving ones only, each with `host` = the address to connect to (an agent host
/// name is passed through for the caller to resolve) and `ports` = the port to connect to
/// for each service-port index. `memory` is read for tasks without health results and
/// refreshed from this snapshot.
pub fn to_raw_apps(
    apps: &[MarathonApp],
    memory: &mut HealthMemory,
    opts: &ConvertOptions,
) -> (Vec<RawApp>, Vec<AppProblem>) {
    let all = convert_all(apps, memory, opts);
    (all.apps, all.problems)
}

/// A whole snapshot converted, with what a later per-app re-read needs to know.
pub struct Conversion {
    pub apps: Vec<RawApp>,
    pub problems: Vec<AppProblem>,
    /// Marathon app ids whose conversion depends on other apps (a blue/green deployment
    /// group, or auto-assigned service ports): they cannot be re-read alone.
    pub linked: HashSet<String>,
}

/// `to_raw_apps`, also naming the apps that cannot be re-read alone.
pub fn convert_all(
    apps: &[MarathonApp],
    memory: &mut HealthMemory,
    opts: &ConvertOptions,
) -> Conversion {
    let mut problems = Vec::new();
    let mut linked = HashSet::new();
    let mut assigner = PortAssigner::new(opts);
    memory.start_conversion();
    let mut converted = Vec::with_capacity(apps.len());
    for app in apps {
        if let Some(p) = template_label_warning(app) {
            problems.push(p);
        }
        let assigned = assigner.used.len();
        let result = convert_app(app, memory, opts, &mut assigner);
        if assigner.used.len() != assigned || app.labels.contains_key(DEPLOYMENT_GROUP) {
            linked.insert(app.id.clone());
        }
        match result {
            Ok(c) => converted.push(c),
            Err(e) => problems.push(AppProblem {
                app_id: app.id.clone(),
                message: e.to_string(),
            }),
        }
    }
    Conversion {
        apps: merge_deployment_groups(converted),
        problems,
        linked,
    }
}

/// One app converted on its own, from a per-app re-read.
#[derive(Debug)]
pub enum OneApp {
    /// The app as a whole snapshot would give it (`None`: left out) with its problems.
    Alone {
        app: Option<RawApp>,
        problems: Vec<AppProblem>,
    },
    /// Its conversion depends on other apps (a deployment group, or auto-assigned service
    /// ports): only a whole snapshot converts it right.
    Linked,
}

/// Converts one app alone. Health verdicts are read and recorded as in `to_raw_apps`, but
/// no other task's verdict ages.
pub fn to_raw_app(app: &MarathonApp, memory: &mut HealthMemory, opts: &ConvertOptions) -> OneApp {
    if app.labels.contains_key(DEPLOYMENT_GROUP) {
        return OneApp::Linked;
    }
    let mut problems: Vec<AppProblem> = template_label_warning(app).into_iter().collect();
    let mut assigner = PortAssigner::new(opts);
    let result = convert_app(app, memory, opts, &mut assigner);
    if !assigner.used.is_empty() {
        return OneApp::Linked;
    }
    let app = match result {
        Ok(c) => Some(c.raw),
        Err(e) => {
            problems.push(AppProblem {
                app_id: app.id.clone(),
                message: e.to_string(),
            });
            None
        }
    };
    OneApp::Alone { app, problems }
}

/// What DNS's `healthy_only` reads of a task's health: with health checks and results,
/// `Some(true)` when every result is alive and `Some(false)` when any is not; `None`
/// without checks or results (unknown: such a task is always answered). Routing's rule is
/// marathon-lb's (any result alive) and is applied above, not from this.
fn task_health(has_checks: bool, task: &MarathonTask) -> Option<bool> {
    let results = task.health_check_results.as_deref()?;
    (has_checks && !results.is_empty()).then(|| results.iter().all(|r| r.alive))
}

/// Why an app is left out of the conversion; its Display is the app's problem.
#[derive(Debug, thiserror::Error)]
enum ConvertError {
    #[error("service port {0} is out of range; app left out")]
    ServicePort(u64),
    #[error("task {0}: a port is out of range; app left out")]
    TaskPort(String),
    #[error("{0}; app left out")]
    Protocol(#[from] UnknownProtocol),
}

fn convert_app(
    app: &MarathonApp,
    memory: &mut HealthMemory,
    opts: &ConvertOptions,
    assigner: &mut PortAssigner,
) -> Result<Converted, ConvertError> {
    let networking = networking(app);
    let ports = service_ports(app, networking, assigner)?;
    let protocols = port_protocols(app, networking)?;
    let has_checks = !app.health_checks.is_empty();
    let tasks = app.tasks.as_deref().unwrap_or_default();
    let mut raw_tasks = Vec::new();
    for task in tasks {
        memory.seen(&task.id);
        // Record before any filter, so the memory holds the latest verdict of every task.
        let alive = task
            .health_check_results
            .as_ref()
            .map(|results| results.iter().any(|r| r.alive));
        if let (true, Some(alive)) = (has_checks, alive) {
            memory.record(&task.id, alive);
        }
        if task.host.is_empty() || !serving_state(task.state.as_deref()) {
            continue;
        }
        if opts.health_check && has_checks && !alive.or(memory.get(&task.id)).unwrap_or(false) {
            continue;
        }
        if !ready(app, task) {
            continue;
        }
        let Some((host, task_ports)) = task_address(app, task, networking) else {
            continue;
        };
        let ports = task_ports
            .iter()
            .map(|&p| u16::try_from(p).ok())
            .collect::<Option<Vec<u16>>>()
            .ok_or_else(|| ConvertError::TaskPort(task.id.clone()))?;
        raw_tasks.push(RawTask {
            id: task.id.clone(),
            host,
            ports,
            state: task.state.clone().unwrap_or_else(|| "TASK_RUNNING".into()),
            healthy: task_health(has_checks, task),
        });
    }
    let group = app.labels.get(DEPLOYMENT_GROUP).map(|g| {
        if g.starts_with('/') {
            g.clone()
        } else {
            format!("/{g}")
        }
    });
    Ok(Converted {
        group,
        raw: RawApp {
            id: app.id.clone(),
            labels: app.labels.clone(),
            ports,
            tasks: raw_tasks,
            http_health_check: app
                .health_checks
                .iter()
                .any(|h| h.protocol.as_deref() == Some("HTTP")),
            checks: if opts.active_checks {
                active_checks(&app.health_checks)
            } else {
                Vec::new()
            },
            protocols,
        },
        all_task_ids: tasks.iter().map(|t| t.id.clone()).collect(),
        instances: app.instances.unwrap_or(0),
        last_scaling_at: app
            .version_info
            .as_ref()
            .and_then(|v| v.last_scaling_at.clone())
            .unwrap_or_default(),
    })
}

/// marathon-lb's task-state filter: these states are dropped, any other kept (a task
/// without a state, from an old Marathon, is kept).
fn serving_state(state: Option<&str>) -> bool {
    !matches!(
        state,
        Some(
            "TASK_STAGING"
                | "TASK_STARTING"
                | "TASK_KILLING"
                | "TASK_FINISHED"
                | "TASK_FAILED"
                | "TASK_KILLED"
                | "TASK_ERROR"
                | "TASK_DROPPED"
                | "TASK_GONE"
                | "TASK_GONE_BY_OPERATOR"
                | "TASK_UNKNOWN"
        )
    )
}

/// Readiness during a deployment: a task with a readiness result joins once it says ready;
/// a task launched by the deployment (its version is the app's) waits for that result.
/// Tasks of earlier versions are not held back, and outside a deployment nothing is.
fn ready(app: &MarathonApp, task: &MarathonTask) -> bool {
    if app.deployments.is_empty() {
        return true;
    }
    let mut results = app
        .readiness_check_results
        .iter()
        .filter(|r| r.task_id == task.id)
        .peekable();
    if results.peek().is_some() {
        return results.all(|r| r.ready);
    }
    let launched_by_deployment =
        app.version.is_some() && task.version.is_some() && app.version == task.version;
    app.readiness_checks.is_empty() || !launched_by_deployment
}

fn networking(app: &MarathonApp) -> Networking {
    let mut mode = if app.ip_address.is_some() {
        Networking::Container
    } else {
        Networking::Host
    };
    match app
        .container
        .as_ref()
        .and_then(|c| c.docker.as_ref())
        .and_then(|d| d.network.as_deref())
    {
        Some("USER") => mode = Networking::Container,
        Some("BRIDGE") => mode = Networking::Bridge,
        _ => {}
    }
    // Marathon 1.5+: modes cannot be mixed, so the last network decides.
    if let Some(n) = app.networks.last() {
        mode = match n.mode.as_deref() {
            Some("host") => Networking::Host,
            Some("container/bridge") => Networking::Bridge,
            _ => Networking::Container,
        };
    }
    mode
}

fn port_mappings(app: &MarathonApp) -> &[PortMapping] {
    let Some(c) = &app.container else {
        return &[];
    };
    c.port_mappings
        .as_deref()
        .or_else(|| c.docker.as_ref().and_then(|d| d.port_mappings.as_deref()))
        .unwrap_or_default()
}

/// Service ports in marathon-lb's precedence: `portMappings[].servicePort` on
/// bridge/container networks, else `portDefinitions[].port`, else `ports`; for an
/// IP-per-task app with none, auto-assigned from the container ports.
fn service_ports(
    app: &MarathonApp,
    networking: Networking,
    assigner: &mut PortAssigner,
) -> Result<Vec<u16>, ConvertError> {
    let mut ports: Vec<u64> = Vec::new();
    if networking != Networking::Host {
        ports = port_mappings(app)
            .iter()
            .filter_map(|m| m.service_port)
            .collect();
    }
    if ports.is_empty() {
        ports = match &app.port_definitions {
            Some(defs) => defs.iter().filter_map(|d| d.port).collect(),
            None => app.ports.clone(),
        };
    }
    if ports.is_empty() && networking == Networking::Container {
        if let Some(task) = app.tasks.as_deref().and_then(<[_]>::first) {
            let container_ports = task_ports(app, task, networking);
            return Ok(container_ports
                .into_iter()
                .map(|p| assigner.assign(&app.id, p))
                .collect());
        }
    }
    ports
        .into_iter()
        .map(|p| u16::try_from(p).map_err(|_| ConvertError::ServicePort(p)))
        .collect()
}

/// Each service port's protocol, read from the list `service_ports` took the ports from
/// (`portMappings`, `portDefinitions`, or for auto-assigned ports the discovery ports or
/// mappings); absent means tcp, as in Marathon, and legacy `ports` have none.
fn port_protocols(
    app: &MarathonApp,
    networking: Networking,
) -> Result<Vec<Protocol>, ConvertError> {
    let parse = |raw: Option<&String>| -> Result<Protocol, ConvertError> {
        Ok(raw
            .map(|r| Protocol::parse(r))
            .transpose()?
            .unwrap_or_default())
    };
    if networking != Networking::Host {
        let mapped: Vec<&PortMapping> = port_mappings(app)
            .iter()
            .filter(|m| m.service_port.is_some())
            .collect();
        if !mapped.is_empty() {
            return mapped.iter().map(|m| parse(m.protocol.as_ref())).collect();
        }
    }
    let defined: Vec<Option<&String>> = match &app.port_definitions {
        Some(defs) => defs
            .iter()
            .filter(|d| d.port.is_some())
            .map(|d| d.protocol.as_ref())
            .collect(),
        None => app.ports.iter().map(|_| None).collect(),
    };
    if !defined.is_empty() {
        return defined.into_iter().map(parse).collect();
    }
    if networking != Networking::Container {
        return Ok(Vec::new());
    }
    let discovery = app
        .ip_address
        .as_ref()
        .and_then(|ip| ip.discovery.as_ref())
        .map(|d| d.ports.as_slice())
        .unwrap_or_default();
    if !discovery.is_empty() {
        return discovery
            .iter()
            .map(|p| parse(p.protocol.as_ref()))
            .collect();
    }
    port_mappings(app)
        .iter()
        .map(|m| parse(m.protocol.as_ref()))
        .collect()
}

/// The ports to connect to on a task, by port index.
fn task_ports(app: &MarathonApp, task: &MarathonTask, networking: Networking) -> Vec<u64> {
    match networking {
        Networking::Container => {
            let discovery = app
                .ip_address
                .as_ref()
                .and_then(|ip| ip.discovery.as_ref())
                .map(|d| d.ports.as_slice())
                .unwrap_or_default();
            if !discovery.is_empty() {
                return discovery.iter().map(|p| p.number.unwrap_or(0)).collect();
            }
            port_mappings(app)
                .iter()
                .map(|m| m.container_port.unwrap_or(0))
                .collect()
        }
        // Marathon before 1.5 may leave a bridge task's ports out; the mappings have them.
        Networking::Bridge if task.ports.is_empty() => port_mappings(app)
            .iter()
            .map(|m| m.host_port.unwrap_or(0))
            .collect(),
        _ => task.ports.clone(),
    }
}

/// The host (an IP for IP-per-task; the agent host otherwise) and ports to connect to.
/// `None` for an IP-per-task task that has no IP yet.
fn task_address(
    app: &MarathonApp,
    task: &MarathonTask,
    networking: Networking,
) -> Option<(String, Vec<u64>)> {
    let host = match networking {
        Networking::Container => task
            .ip_addresses
            .iter()
            .map(|a| a.ip_address.as_str())
            .find(|ip| !ip.is_empty())?
            .to_string(),
        _ => task.host.clone(),
    };
    Some((host, task_ports(app, task, networking)))
}

/// marathon-lb's service-port assignment for IP-per-task apps without service ports:
/// `min + (first 8 hex digits of SHA-1 of "{app id}-{container port}-{attempt}") mod size`,
/// the next attempt on a port already given out in this conversion.
struct PortAssigner {
    min: u16,
    size: u32,
    used: BTreeSet<u16>,
}

impl PortAssigner {
    fn new(opts: &ConvertOptions) -> PortAssigner {
        let (min, max) = (opts.min_ip_per_task_port, opts.max_ip_per_task_port);
        PortAssigner {
            min,
            size: if max >= min {
                u32::from(max - min) + 1
            } else {
                0
            },
            used: BTreeSet::new(),
        }
    }

    /// A free port for one container port of an app; 0 (no service) when the range is full.
    fn assign(&mut self, app_id: &str, container_port: u64) -> u16 {
        for attempt in 0..self.size {
            let digest = Sha1::digest(format!("{app_id}-{container_port}-{attempt}").as_bytes());
            let head = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
            // head % size < size <= 65536 - min, so this stays a u16.
            let port = self.min + (head % self.size) as u16;
            if self.used.insert(port) {
                return port;
            }
        }
        // The hashed attempts can miss a free port; take the first one left, if any.
        let max = self.min.saturating_add(self.size.saturating_sub(1) as u16);
        match (self.min..=max).find(|p| !self.used.contains(p)) {
            Some(port) if self.size > 0 => {
                self.used.insert(port);
                port
            }
            _ => 0,
        }
    }
}

/// Merges each `HAPROXY_DEPLOYMENT_GROUP` (blue/green deploys) into one app named after
/// the group, with the older app's labels and ports and the tasks of both; old tasks the
/// new app has replaced are drained (left out), as marathon-lb emits them `disabled`.
fn merge_deployment_groups(converted: Vec<Converted>) -> Vec<RawApp> {
    let mut out: Vec<RawApp> = Vec::new();
    let mut groups: BTreeMap<String, Converted> = BTreeMap::new();
    for c in converted {
        let Some(group) = c.group.clone() else {
            out.push(c.raw);
            continue;
        };
        let mut merged = match groups.remove(&group) {
            None => c,
            Some(prev) => merge(prev, c),
        };
        merged.raw.id = group.clone();
        groups.insert(group, merged);
    }
    out.extend(groups.into_values().map(|c| c.raw));
    out
}

/// marathon-lb's merge of two apps of one deployment group (`prev` may be a merge already).
fn merge(prev: Converted, cur: Converted) -> Converted {
    let started = |c: &Converted| {
        c.raw
            .labels
            .get(DEPLOYMENT_STARTED_AT)
            .cloned()
            .unwrap_or_default()
    };
    // ISO-8601 strings as zdd.py writes them compare in time order; a missing one is
    // oldest. On a tie `cur` counts as old, as in marathon-lb.
    let (mut old, mut new) = if started(&prev) < started(&cur) {
        (prev, cur)
    } else {
        (cur, prev)
    };
    let new_instances = new.raw.labels.contains_key(DEPLOYMENT_NEW_INSTANCES);
    if new_instances && old.last_scaling_at > new.last_scaling_at {
        std::mem::swap(&mut old, &mut new);
    }
    let target: u64 = if new_instances {
        new.raw
            .labels
            .get(DEPLOYMENT_TARGET_INSTANCES)
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(1)
    } else {
        1
    };
    // Healthy new tasks: the ones that passed every filter (marathon-lb counts results
    // only, or `instances` without checks; counting serving tasks drains no earlier).
    let healthy_new = new.raw.tasks.len() as u64;
    let drainable = (healthy_new + old.instances).saturating_sub(target);
    let drain = (old.all_task_ids.len() as u64)
        .min(healthy_new)
        .min(drainable) as usize;
    let mut old_ids = old.all_task_ids.clone();
    old_ids.sort();
    let drained: HashSet<&String> = old_ids.iter().take(drain).collect();

    let mut tasks: Vec<RawTask> = old
        .raw
        .tasks
        .into_iter()
        .filter(|t| !drained.contains(&t.id))
        .collect();
    tasks.extend(new.raw.tasks);
    let mut all_task_ids = old.all_task_ids.clone();
    all_task_ids.extend(new.all_task_ids);
    Converted {
        group: old.group,
        raw: RawApp {
            id: old.raw.id,
            labels: old.raw.labels,
            ports: old.raw.ports,
            tasks,
            http_health_check: old.raw.http_health_check,
            checks: old.raw.checks,
            protocols: old.raw.protocols,
        },
        all_task_ids,
        instances: old.instances,
        last_scaling_at: old.last_scaling_at,
    }
}

/// The checks Drover runs itself, mapped from Marathon `healthChecks` as marathon-lb maps
/// them to HAProxy: the first HTTP (or MESOS_HTTP) or TCP (or MESOS_TCP) check of each port
/// index, probed every `intervalSeconds` with `timeoutSeconds`, failing after
/// `maxConsecutiveFailures + 1` misses, passing again after 2 (HAProxy's `rise`). Marathon's
/// defaults fill gaps (HTTP, `/`, port index 0, 60 s, 20 s, 3). HTTPS and COMMAND checks
/// cannot be repeated from here and are left to Marathon's own results.
fn active_checks(checks: &[HealthCheck]) -> Vec<PortCheck> {
    let mut out: Vec<PortCheck> = Vec::new();
    for c in checks {
        let kind = match c.protocol.as_deref().unwrap_or("HTTP") {
            "HTTP" | "MESOS_HTTP" => CheckKind::Http {
                path: c
                    .path
                    .clone()
                    .filter(|p| p.starts_with('/'))
                    .unwrap_or_else(|| "/".to_string()),
            },
            "TCP" | "MESOS_TCP" => CheckKind::Tcp,
            _ => continue,
        };
        let index = c.port_index.unwrap_or(0) as usize;
        if out.iter().any(|p| p.index == index) {
            continue;
        }
        let fails = c.max_consecutive_failures.unwrap_or(3);
        out.push(PortCheck {
            index,
            check: ActiveCheck {
                kind,
                interval: Duration::from_secs(c.interval_seconds.unwrap_or(60).max(1)),
                timeout: Duration::from_secs(c.timeout_seconds.unwrap_or(20).max(1)),
                fall: u32::try_from(fails.saturating_add(1)).unwrap_or(u32::MAX),
                rise: 2,
            },
        });
    }
    out
}

/// marathon-lb's templates (without `HAPROXY_`); as `HAPROXY_{T}` or `HAPROXY_{n}_{T}` on an
/// app they change the generated HAProxy config, which Drover does not have.
const TEMPLATES: &[&str] = &[
    "HEAD",
    "BACKEND_HEAD",
    "BACKEND_HSTS_OPTIONS",
    "BACKEND_HTTP_HEALTHCHECK_OPTIONS",
    "BACKEND_HTTP_OPTIONS",
    "BACKEND_REDIRECT_HTTP_TO_HTTPS",
    "BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH",
    "BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS",
    "BACKEND_SERVER_OPTIONS",
    "BACKEND_SERVER_TCP_HEALTHCHECK_OPTIONS",
    "BACKEND_STICKY_OPTIONS",
    "BACKEND_TCP_HEALTHCHECK_OPTIONS",
    "FRONTEND_BACKEND_GLUE",
    "FRONTEND_HEAD",
    "HTTPS_FRONTEND_ACL",
    "HTTPS_FRONTEND_ACL_ONLY_WITH_PATH",
    "HTTPS_FRONTEND_ACL_WITH_AUTH",
    "HTTPS_FRONTEND_ACL_WITH_AUTH_AND_PATH",
    "HTTPS_FRONTEND_ACL_WITH_PATH",
    "HTTPS_FRONTEND_AUTH_ACL_ONLY",
    "HTTPS_FRONTEND_AUTH_REQUEST_ONLY",
    "HTTPS_FRONTEND_HEAD",
    "HTTPS_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH",
    "HTTP_BACKEND_ACL_ALLOW_DENY",
    "HTTP_BACKEND_NETWORK_ALLOWED_ACL",
    "HTTP_BACKEND_PROXYPASS_GLUE",
    "HTTP_BACKEND_REDIR",
    "HTTP_BACKEND_REVPROXY_GLUE",
    "HTTP_FRONTEND_ACL",
    "HTTP_FRONTEND_ACL_ONLY",
    "HTTP_FRONTEND_ACL_ONLY_WITH_PATH",
    "HTTP_FRONTEND_ACL_ONLY_WITH_PATH_AND_AUTH",
    "HTTP_FRONTEND_ACL_WITH_AUTH",
    "HTTP_FRONTEND_ACL_WITH_AUTH_AND_PATH",
    "HTTP_FRONTEND_ACL_WITH_PATH",
    "HTTP_FRONTEND_APPID_ACL",
    "HTTP_FRONTEND_APPID_HEAD",
    "HTTP_FRONTEND_HEAD",
    "HTTP_FRONTEND_ROUTING_ONLY",
    "HTTP_FRONTEND_ROUTING_ONLY_WITH_AUTH",
    "HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH",
    "HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH",
    "MAP_HTTPS_FRONTEND_ACL",
    "MAP_HTTP_FRONTEND_ACL",
    "MAP_HTTP_FRONTEND_ACL_ONLY",
    "MAP_HTTP_FRONTEND_APPID_ACL",
    "TCP_BACKEND_ACL_ALLOW_DENY",
    "TCP_BACKEND_NETWORK_ALLOWED_ACL",
    "USERLIST_HEAD",
];

/// True for `HAPROXY_{T}` and `HAPROXY_{n}_{T}` with `T` a marathon-lb template.
fn is_template_label(key: &str) -> bool {
    let Some(rest) = key.strip_prefix("HAPROXY_") else {
        return false;
    };
    let rest = match rest.split_once('_') {
        Some((n, tail)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => tail,
        _ => rest,
    };
    TEMPLATES.contains(&rest)
}

/// One warning per app naming its raw template labels; the app itself is still served.
fn template_label_warning(app: &MarathonApp) -> Option<AppProblem> {
    let found: Vec<&str> = app
        .labels
        .keys()
        .map(String::as_str)
        .filter(|k| is_template_label(k))
        .collect();
    (!found.is_empty()).then(|| AppProblem {
        app_id: app.id.clone(),
        message: format!(
            "raw HAProxy template labels cannot apply: {}; the app is served without them",
            found.join(", ")
        ),
    })
}

#[cfg(test)]
#[path = "apps_tests.rs"]
mod tests;
