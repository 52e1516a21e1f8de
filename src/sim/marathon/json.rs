//! Marathon's JSON shapes for the fake: apps and tasks (`app`, `task`, `FakeTask`), and the
//! event-stream events (`status_update`, `health_status_changed`, `api_post`, deployment
//! results...), as Marathon 1.5+ writes them, with loopback hosts only.

use std::net::{Ipv4Addr, SocketAddr};

use serde_json::{json, Value};

use super::{TIMESTAMP, VERSION};

/// One task of a built app. `host` must be a 127.0.0.0/8 address (or empty, which
/// Marathon sends for a task not yet placed).
#[derive(Clone, Debug)]
pub struct FakeTask {
    pub id: String,
    pub host: String,
    pub port: u16,
    /// `TASK_RUNNING`, `TASK_KILLING`, ...
    pub state: String,
    /// `Some`: one `healthCheckResults` entry with this `alive` (and the app gets a health
    /// check). `None`: no `healthCheckResults` key at all.
    pub alive: Option<bool>,
}

impl FakeTask {
    /// A `TASK_RUNNING` task at `addr` with no health results.
    pub fn new(id: &str, addr: SocketAddr) -> FakeTask {
        FakeTask {
            id: id.to_string(),
            host: addr.ip().to_string(),
            port: addr.port(),
            state: "TASK_RUNNING".to_string(),
            alive: None,
        }
    }

    pub fn state(mut self, state: &str) -> FakeTask {
        self.state = state.to_string();
        self
    }

    pub fn alive(mut self, alive: bool) -> FakeTask {
        self.alive = Some(alive);
        self
    }
}

/// A Marathon-style task id: `/shop/api`, 3 -> `shop_api.instance-<uuid>._app.1`.
pub fn task_id(app_id: &str, n: u32) -> String {
    let name = app_id.trim_start_matches('/').replace('/', "_");
    format!("{name}.instance-0a000000-0000-0000-0000-{n:012x}._app.1")
}

/// The instance id Marathon pairs with a task id in health results and events
/// (`web.instance-U._app.1` -> `web.marathon-U`, as in the fixtures).
pub fn instance_id(task_id: &str) -> String {
    let base = task_id
        .split_once("._app.")
        .map_or(task_id, |(base, _)| base);
    base.replacen(".instance-", ".marathon-", 1)
}

fn assert_loopback(host: &str) {
    let ok = host.is_empty() || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback());
    assert!(
        ok,
        "fake Marathon tasks must live on 127.0.0.0/8, not {host:?}"
    );
}

/// An app in the Marathon 1.5+ shape with host networking and one service port, as in
/// `own/apps_vhost_routing.json`. It has a TCP health check (mode-neutral for marathon-lb
/// rules) exactly when some task carries a health result.
pub fn app(id: &str, labels: &[(&str, &str)], service_port: u16, tasks: &[FakeTask]) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    let checked = tasks.iter().any(|t| t.alive.is_some());
    let health_checks = if checked {
        json!([{
            "protocol": "TCP", "portIndex": 0, "gracePeriodSeconds": 30,
            "intervalSeconds": 5, "timeoutSeconds": 3, "maxConsecutiveFailures": 2,
            "delaySeconds": 15
        }])
    } else {
        json!([])
    };
    let running = tasks.iter().filter(|t| t.state == "TASK_RUNNING").count();
    let healthy = tasks.iter().filter(|t| t.alive == Some(true)).count();
    let unhealthy = tasks.iter().filter(|t| t.alive == Some(false)).count();
    let tasks: Vec<Value> = tasks.iter().map(|t| task(id, service_port, t)).collect();
    json!({
        "id": id,
        "cmd": "python3 -m http.server $PORT0",
        "instances": tasks.len(),
        "cpus": 0.1,
        "mem": 64,
        "disk": 0,
        "networks": [{ "mode": "host" }],
        "portDefinitions": [{ "port": service_port, "protocol": "tcp", "name": "http" }],
        "requirePorts": false,
        "labels": labels,
        "healthChecks": health_checks,
        "version": VERSION,
        "versionInfo": { "lastScalingAt": VERSION, "lastConfigChangeAt": VERSION },
        "tasksStaged": tasks.len() - running,
        "tasksRunning": running,
        "tasksHealthy": healthy,
        "tasksUnhealthy": unhealthy,
        "deployments": [],
        "tasks": tasks,
    })
}

fn task(app_id: &str, service_port: u16, t: &FakeTask) -> Value {
    assert_loopback(&t.host);
    let mut v = json!({
        "id": t.id,
        "appId": app_id,
        "host": t.host,
        "slaveId": format!("agent-{}", t.host),
        "state": t.state,
        "ports": [t.port],
        "servicePorts": [service_port],
        "ipAddresses": if t.host.is_empty() {
            json!([])
        } else {
            json!([{ "ipAddress": t.host, "protocol": "IPv4" }])
        },
        "stagedAt": VERSION,
        "version": VERSION,
    });
    // Marathon sets startedAt only once the task has started.
    if !matches!(t.state.as_str(), "TASK_STAGING" | "TASK_STARTING") {
        v["startedAt"] = json!(TIMESTAMP);
    }
    if let Some(alive) = t.alive {
        v["healthCheckResults"] = json!([{
            "alive": alive,
            "consecutiveFailures": if alive { 0 } else { 3 },
            "firstSuccess": if alive { json!(TIMESTAMP) } else { Value::Null },
            "lastSuccess": if alive { json!(TIMESTAMP) } else { Value::Null },
            "lastFailure": if alive { Value::Null } else { json!(TIMESTAMP) },
            "lastFailureCause": if alive { Value::Null } else { json!("ConnectionAttemptFailedException") },
            "instanceId": instance_id(&t.id),
        }]);
    }
    v
}

/// Replaces an app's `healthChecks` with one check of `protocol` (`HTTP` makes marathon-lb
/// pick http mode) on `path`.
pub fn with_health_check(mut app: Value, protocol: &str, path: &str) -> Value {
    app["healthChecks"] = json!([{
        "protocol": protocol, "path": path, "portIndex": 0, "gracePeriodSeconds": 30,
        "intervalSeconds": 5, "timeoutSeconds": 3, "maxConsecutiveFailures": 2,
        "ignoreHttp1xx": false, "delaySeconds": 15
    }]);
    app
}

/// The `/v2/apps` body for these apps.
pub fn apps_json(apps: &[Value]) -> Value {
    json!({ "apps": apps })
}

// === event builders (shapes of fixtures/marathon/api/events/*.json) ===

pub fn status_update(app_id: &str, task_id: &str, status: &str, host: &str, port: u16) -> Value {
    assert_loopback(host);
    json!({
        "eventType": "status_update_event",
        "timestamp": TIMESTAMP,
        "slaveId": format!("agent-{host}"),
        "taskId": task_id,
        "taskStatus": status,
        "message": "",
        "appId": app_id,
        "host": host,
        "ipAddresses": [{ "ipAddress": host, "protocol": "IPv4" }],
        "ports": [port],
        "version": VERSION,
    })
}

pub fn health_status_changed(app_id: &str, task_id: &str, alive: bool) -> Value {
    json!({
        "eventType": "health_status_changed_event",
        "timestamp": TIMESTAMP,
        "appId": app_id,
        "instanceId": instance_id(task_id),
        "version": VERSION,
        "alive": alive,
    })
}

pub fn instance_health_changed(app_id: &str, task_id: &str, healthy: bool) -> Value {
    json!({
        "eventType": "instance_health_changed_event",
        "timestamp": TIMESTAMP,
        "instanceId": instance_id(task_id),
        "runSpecId": app_id,
        "runSpecVersion": VERSION,
        "healthy": healthy,
    })
}

/// `condition` is Marathon's word: `Staging`, `Running`, `Killing`, `Killed`, ...
pub fn instance_changed(app_id: &str, task_id: &str, condition: &str, host: &str) -> Value {
    assert_loopback(host);
    json!({
        "eventType": "instance_changed_event",
        "timestamp": TIMESTAMP,
        "instanceId": instance_id(task_id),
        "condition": condition,
        "runSpecId": app_id,
        "agentId": format!("agent-{host}"),
        "host": host,
        "runSpecVersion": VERSION,
    })
}

/// An `api_post_event` for an app definition (its `tasks` are not part of it).
pub fn api_post(app: &Value) -> Value {
    let mut definition = app.clone();
    if let Some(obj) = definition.as_object_mut() {
        for runtime in [
            "tasks",
            "tasksStaged",
            "tasksRunning",
            "tasksHealthy",
            "tasksUnhealthy",
            "deployments",
        ] {
            obj.remove(runtime);
        }
    }
    let id = app["id"].as_str().unwrap_or("/");
    json!({
        "eventType": "api_post_event",
        "timestamp": TIMESTAMP,
        "clientIp": "127.0.0.1",
        "uri": format!("/v2/apps{id}"),
        "appDefinition": definition,
    })
}

pub fn app_terminated(app_id: &str) -> Value {
    json!({ "eventType": "app_terminated_event", "timestamp": TIMESTAMP, "appId": app_id })
}

pub fn deployment_success(id: &str) -> Value {
    json!({ "eventType": "deployment_success", "timestamp": TIMESTAMP, "id": id })
}

pub fn deployment_failed(id: &str) -> Value {
    json!({ "eventType": "deployment_failed", "timestamp": TIMESTAMP, "id": id })
}
