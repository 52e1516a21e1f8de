//! Marathon's apps snapshot (`GET /v2/apps?embed=apps.tasks&embed=apps.readiness`): the
//! serde types and `decode`. The marathon-lb conversion to `catalog::RawApp`
//! (`to_raw_apps`) lives in `source::marathon::convert` and is re-exported here; fetching
//! and the event stream are elsewhere in `source::marathon`.
//!
//! The types accept unknown fields and `null` wherever Marathon has been seen to write one:
//! Marathon adds fields across versions, and a snapshot must not be refused for that.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

pub use super::convert::{
    convert_all, to_raw_app, to_raw_apps, Conversion, ConvertOptions, HealthMemory, OneApp,
};

// === Marathon JSON ===

/// One app of the `/v2/apps` response.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarathonApp {
    pub id: String,
    #[serde(default, deserialize_with = "labels")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub instances: Option<u64>,
    /// Legacy (before 1.5) service ports.
    #[serde(default, deserialize_with = "nullable")]
    pub ports: Vec<u64>,
    /// `None` when the key is absent: then `ports` is used (marathon-lb's test).
    #[serde(default)]
    pub port_definitions: Option<Vec<PortDefinition>>,
    /// Legacy (before 1.5) IP-per-task networking.
    #[serde(default)]
    pub ip_address: Option<IpAddressSpec>,
    /// Marathon 1.5+ networking.
    #[serde(default, deserialize_with = "nullable")]
    pub networks: Vec<Network>,
    #[serde(default)]
    pub container: Option<Container>,
    #[serde(default, deserialize_with = "nullable")]
    pub health_checks: Vec<HealthCheck>,
    #[serde(default, deserialize_with = "nullable")]
    pub readiness_checks: Vec<ReadinessCheck>,
    /// Only with `embed=apps.readiness`, and only during a deployment.
    #[serde(default, deserialize_with = "nullable")]
    pub readiness_check_results: Vec<ReadinessCheckResult>,
    /// Deployments in progress for this app; empty when none.
    #[serde(default, deserialize_with = "nullable")]
    pub deployments: Vec<DeploymentRef>,
    /// `None` without `embed=apps.tasks`: no backends then.
    #[serde(default)]
    pub tasks: Option<Vec<MarathonTask>>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub version_info: Option<VersionInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortDefinition {
    #[serde(default)]
    pub port: Option<u64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpAddressSpec {
    #[serde(default)]
    pub network_name: Option<String>,
    #[serde(default)]
    pub discovery: Option<Discovery>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Discovery {
    #[serde(default, deserialize_with = "nullable")]
    pub ports: Vec<DiscoveryPort>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DiscoveryPort {
    #[serde(default)]
    pub number: Option<u64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Network {
    /// `host`, `container/bridge` or `container`; absent means `container`.
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub docker: Option<Docker>,
    /// Marathon 1.5+.
    #[serde(default)]
    pub port_mappings: Option<Vec<PortMapping>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Docker {
    #[serde(default)]
    pub image: Option<String>,
    /// Legacy: `HOST`, `BRIDGE` or `USER`.
    #[serde(default)]
    pub network: Option<String>,
    /// Legacy place of the port mappings.
    #[serde(default)]
    pub port_mappings: Option<Vec<PortMapping>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    #[serde(default)]
    pub container_port: Option<u64>,
    #[serde(default)]
    pub host_port: Option<u64>,
    #[serde(default)]
    pub service_port: Option<u64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// `HTTP`, `HTTPS`, `TCP`, `COMMAND`, `MESOS_HTTP`, `MESOS_HTTPS`, `MESOS_TCP`.
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub port_index: Option<u64>,
    #[serde(default)]
    pub grace_period_seconds: Option<u64>,
    #[serde(default)]
    pub interval_seconds: Option<u64>,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub max_consecutive_failures: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessCheck {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub port_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessCheckResult {
    #[serde(default)]
    pub name: Option<String>,
    pub task_id: String,
    #[serde(default)]
    pub ready: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DeploymentRef {
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    #[serde(default)]
    pub last_scaling_at: Option<String>,
    #[serde(default)]
    pub last_config_change_at: Option<String>,
}

/// One task of an app (`embed=apps.tasks`). Only what the conversion reads is kept: serde
/// skips the other fields without allocating, which matters at 50,000 tasks.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarathonTask {
    pub id: String,
    /// The agent's host name or IP; empty while Marathon does not know it.
    #[serde(default, deserialize_with = "nullable")]
    pub host: String,
    /// Mesos state, e.g. `TASK_RUNNING`; absent in old Marathon versions.
    #[serde(default)]
    pub state: Option<String>,
    /// Host ports, by port index.
    #[serde(default, deserialize_with = "nullable")]
    pub ports: Vec<u64>,
    #[serde(default, deserialize_with = "nullable")]
    pub ip_addresses: Vec<TaskIpAddress>,
    /// `None` when the key is missing (briefly, after a Marathon failover), which is not
    /// the same as an empty list (no check has passed).
    #[serde(default)]
    pub health_check_results: Option<Vec<HealthCheckResult>>,
    /// The app version the task was launched with.
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskIpAddress {
    #[serde(default, deserialize_with = "nullable")]
    pub ip_address: String,
    #[serde(default)]
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckResult {
    #[serde(default)]
    pub alive: bool,
}

#[derive(Deserialize)]
struct AppsResponse {
    apps: Vec<MarathonApp>,
}

/// `null` reads as the type's default (Marathon writes `null` for several empty fields).
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Labels are strings in Marathon; a number or boolean written by some tool is taken as
/// its JSON text rather than refusing the whole snapshot.
fn labels<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw = Option::<BTreeMap<String, serde_json::Value>>::deserialize(d)?.unwrap_or_default();
    Ok(raw
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}

#[derive(Deserialize)]
struct AppResponse {
    app: MarathonApp,
}

/// A `/v2/apps` body that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Marathon apps response does not decode: {message}")]
pub struct DecodeError {
    /// serde_json's message, with line and column.
    pub message: String,
    pub line: usize,
    pub column: usize,
}

/// Decodes a `/v2/apps` response body (`{"apps": [...]}`).
pub fn decode(body: &[u8]) -> Result<Vec<MarathonApp>, DecodeError> {
    serde_json::from_slice::<AppsResponse>(body)
        .map(|r| r.apps)
        .map_err(|e| DecodeError {
            message: e.to_string(),
            line: e.line(),
            column: e.column(),
        })
}

/// Decodes a `/v2/apps/{id}` response body (`{"app": {...}}`).
pub fn decode_app(body: &[u8]) -> Result<MarathonApp, DecodeError> {
    serde_json::from_slice::<AppResponse>(body)
        .map(|r| r.app)
        .map_err(|e| DecodeError {
            message: e.to_string(),
            line: e.line(),
            column: e.column(),
        })
}

// === The conversion ===
