//! The serde mirror of the TOML config file: one struct per section, unknown keys rejected,
//! values kept as they were written. No meaning lives here: `config::Config::parse` decodes
//! each section into these types, then checks and converts every value into the validated
//! `Config`, reporting all problems at once.

use serde::Deserialize;

/// `[http]`: the Host-routing HTTP listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
    pub appid_listen: Option<String>,
    /// Longest a client may take to send a request head (slowloris guard).
    pub header_timeout: Option<String>,
    /// Longest we wait for a backend's TCP connect.
    pub connect_timeout: Option<String>,
    /// Longest we wait for a backend's response head.
    pub response_timeout: Option<String>,
    /// Largest request head we accept, in bytes.
    pub max_header_bytes: Option<i64>,
    /// Longest a request body may stall between two reads.
    pub body_timeout: Option<String>,
    /// Header names with `_`: "pass", "drop" or "reject".
    pub underscore_headers: Option<String>,
    /// Most client connections open at once on each HTTP listener.
    pub max_connections: Option<i64>,
    /// Peers (CIDRs) that must send a PROXY protocol header; empty = off.
    #[serde(default)]
    pub proxy_protocol: Vec<String>,
}

/// `[https]`: TLS termination (arrives with the TLS issue).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttps {
    pub listen: Option<String>,
    pub certs: Option<String>,
    #[serde(default)]
    pub proxy_protocol: Vec<String>,
}

/// `[tcp]`: one listener per service port.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcp {
    pub bind: Option<String>,
    pub ports: Option<String>,
    pub connect_timeout: Option<String>,
    #[serde(default)]
    pub proxy_protocol: Vec<String>,
    /// `v1` or `v2`: announce each client to the backend with a PROXY header.
    pub send_proxy_protocol: Option<String>,
    /// Most client connections open at once on each service port.
    pub max_connections: Option<i64>,
}

/// `[dns]`: the authoritative DNS server (arrives with the DNS issue).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    pub listen: Option<String>,
    pub domain: Option<String>,
    pub ttl: Option<String>,
    #[serde(default)]
    pub forward: Vec<String>,
    pub ip_sources: Option<Vec<String>>,
    pub labels: Option<String>,
    pub legacy_names: Option<bool>,
    pub healthy_only: Option<bool>,
}

/// `[admin]`: metrics, health, readiness and the route dump.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
}

/// `[marathon]` (arrives with the Marathon issue).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMarathon {
    #[serde(default)]
    pub urls: Vec<String>,
    pub groups: Option<Vec<String>>,
    pub resync: Option<String>,
    /// Longest silence on the event stream before it is reopened.
    pub idle_timeout: Option<String>,
    pub strict: Option<bool>,
    /// marathon-lb `--health-check`: honour Marathon health check results.
    pub health_check: Option<bool>,
    pub active_checks: Option<bool>,
    /// marathon-lb `--min/max-serv-port-ip-per-task`, as `"FIRST-LAST"`.
    pub ip_per_task_ports: Option<String>,
    pub user: Option<String>,
    pub password_file: Option<String>,
    pub ca_file: Option<String>,
}

/// `[mesos]` (arrives with the Mesos issue).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMesos {
    #[serde(default)]
    pub masters: Vec<String>,
    pub poll: Option<String>,
    pub principal: Option<String>,
    pub secret_file: Option<String>,
    pub ca_file: Option<String>,
    /// `zk://host:port,…/mesos`: the leader from ZooKeeper.
    pub zk: Option<String>,
    /// Follow the leader's operator API event stream (default true).
    pub stream: Option<bool>,
}

/// `[catalog]`: the static catalog file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCatalog {
    pub file: Option<String>,
    pub groups: Option<Vec<String>>,
}

/// `[access_log]`: one line per HTTP request and per TCP connection.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    pub path: Option<String>,
    pub format: Option<String>,
}

/// `[log]`: Drover's own log lines.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

/// `[runtime]`: threads and shutdown.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuntime {
    pub workers: Option<i64>,
    pub drain_timeout: Option<String>,
}

/// `[ejection]`: passive ejection of failing backends.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEjection {
    pub after: Option<i64>,
    pub base: Option<String>,
    pub max: Option<String>,
}

/// `[udp]`: UDP service ports (ports whose protocol is udp).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUdp {
    /// A flow with no datagram either way for this long ends.
    pub idle_timeout: Option<String>,
    /// Most flows at once per UDP service port.
    pub max_flows: Option<i64>,
}

/// One `[[alias]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlias {
    pub host: Option<String>,
    pub port: Option<i64>,
    #[serde(default)]
    pub backends: Vec<String>,
    pub check: Option<RawCheck>,
    pub interval: Option<String>,
    /// `zk://…/mesos` or `zk://…/marathon/leader-curator`: follow that election.
    pub zk: Option<String>,
}

/// An alias check: a built-in name or a custom HTTP rule.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawCheck {
    Named(String),
    Custom(RawCustomCheck),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCustomCheck {
    pub path: String,
    pub expect_status: Option<i64>,
    pub expect_body: Option<String>,
}
