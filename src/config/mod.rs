//! The validated configuration: every value parsed into the type it is used as
//! (`SocketAddr`, `Duration`, `PortRange`, `HostName`), defaults applied, and every problem
//! in the file collected into one `ConfigError`, each naming its key path and the bad value.
//!
//! The file may be absent, and `DROVER_<SECTION>__<KEY>` variables go over it (`env`):
//! `Config::load_layered` builds one TOML table from both and checks it as a file's, each
//! problem about a variable's value naming the variable.
//!
//! Parsing goes section by section so that a mistake in one section does not hide the
//! mistakes in the others. What the file means at run time is left to `control`.

mod check;
mod check_logs;
pub mod env;
pub mod file;
pub mod reload;
pub mod render;

use check::Checker;
pub use env::{Env, Origin, Origins};

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

pub use crate::access_log::{
    AccessLogConfig, Format as AccessLogFormat, Target as AccessLogTarget,
};
use crate::cidr::Cidr;
use crate::host::HostName;
use file::*;

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `http.listen` or `alias[1].backends[0]`.
    pub path: String,
    /// The offending value as written (empty when there is none to show).
    pub value: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.path, self.message)
        } else {
            write!(f, "{} = {}: {}", self.path, self.value, self.message)
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [only] = &self.problems[..] {
            if only.path.starts_with("--config ") {
                // An unreadable file has no keys: the flag that named it is the key.
                return write!(f, "{only}");
            }
        }
        let n = self.problems.len();
        write!(
            f,
            "{}: {n} problem{}",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// The whole validated configuration. A `None` section means that feature is off.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub http: Option<HttpConfig>,
    pub https: Option<HttpsConfig>,
    pub tcp: Option<TcpConfig>,
    pub dns: Option<DnsConfig>,
    pub admin: Option<AdminConfig>,
    pub marathon: Option<MarathonConfig>,
    pub mesos: Option<MesosConfig>,
    pub catalog: Option<CatalogConfig>,
    pub access_log: Option<AccessLogConfig>,
    pub log: LogConfig,
    pub runtime: RuntimeConfig,
    pub ejection: EjectionConfig,
    pub aliases: Vec<AliasConfig>,
    pub udp: UdpConfig,
}

/// `[log]`: how Drover's own log lines look.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter (`info`, `debug,hyper=warn`); `RUST_LOG` wins over it.
    pub level: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// For people: one line per event, `key=value` fields.
    #[default]
    Text,
    /// For log shippers: one JSON object per line.
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub appid_listen: Option<SocketAddr>,
    pub header_timeout: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub max_header_bytes: usize,
    /// Longest a request body may stall between two reads before the request gets 408.
    pub body_timeout: Duration,
    pub underscore_headers: UnderscoreHeaders,
    /// Most client connections open at once per HTTP listener; more wait in the backlog.
    pub max_connections: usize,
    /// Load balancers in front whose connections start with a PROXY protocol header; a
    /// listener with any requires the header from them and closes on everyone else.
    pub proxy_protocol: Vec<Cidr>,
}

/// Request header names with `_`: some backends (CGI and its heirs) read `X_User` and
/// `X-User` as one variable, so one could slip past a proxy that checks only the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnderscoreHeaders {
    /// Forwarded as they are (HAProxy's default, so marathon-lb's).
    #[default]
    Pass,
    /// Removed before the request is forwarded (nginx's default).
    Drop,
    /// The request is refused with 400.
    Reject,
}

/// Default `max_connections` of a listener: well under a typical `ulimit -n` of 65536, so
/// upstream connections and the admin port always find descriptors.
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;

#[derive(Debug, Clone, PartialEq)]
pub struct HttpsConfig {
    pub listen: SocketAddr,
    pub certs: PathBuf,
    pub proxy_protocol: Vec<Cidr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TcpConfig {
    pub bind: IpAddr,
    pub ports: PortRange,
    pub connect_timeout: Duration,
    pub proxy_protocol: Vec<Cidr>,
    /// PROXY protocol version sent to backends before the client's bytes (1 or 2).
    pub send_proxy_protocol: Option<u8>,
    /// Most client connections open at once per service port; more wait in the backlog.
    pub max_connections: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    pub listen: SocketAddr,
    pub domain: HostName,
    pub ttl: Duration,
    pub forward: Vec<SocketAddr>,
    pub ip_sources: Vec<String>,
    pub labels: String,
    /// Also publish Mesos-DNS's legacy names built from unsanitized discovery names
    /// (`liquor.store.marathon.mesos`); off by default.
    pub legacy_names: bool,
    /// Answers leave out tasks that fail their health checks, unless all of a name's tasks
    /// fail; off by default (Mesos-DNS answers every running task).
    pub healthy_only: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MarathonConfig {
    pub urls: Vec<String>,
    pub groups: Groups,
    pub resync: Duration,
    /// Longest silence on the event stream (not even a keep-alive) before it is reopened.
    pub idle_timeout: Duration,
    pub strict: bool,
    /// Apps with Marathon health checks route only to tasks with a passing result.
    pub health_check: bool,
    /// Drover probes tasks itself with the apps' HTTP/TCP health checks (marathon-lb's
    /// HAProxy checks).
    pub active_checks: bool,
    /// Where service ports of IP-per-task apps without one are auto-assigned from.
    pub ip_per_task_ports: PortRange,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MesosConfig {
    pub masters: Vec<String>,
    pub poll: Duration,
    /// HTTP basic auth for masters started with `--authenticate_http_readonly`.
    pub principal: Option<String>,
    pub secret_file: Option<PathBuf>,
    /// The only CA trusted for https masters (system roots when `None`).
    pub ca_file: Option<PathBuf>,
    /// The leader from ZooKeeper (`json.info_*`), with or instead of `masters`.
    pub zk: Option<crate::zk::ZkUrl>,
    /// Follow the leader's operator API stream (`POST /api/v1` `SUBSCRIBE`), with `poll` as
    /// the resync interval; `false` polls only. A master without the API is polled anyway.
    pub stream: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CatalogConfig {
    /// Absolute, or relative to the config file's directory.
    pub file: PathBuf,
    pub groups: Groups,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// Data-plane threads, each with its own single-threaded runtime.
    pub workers: usize,
    /// How long in-flight requests and connections may run after a shutdown signal.
    pub drain_timeout: Duration,
}

/// Passive ejection: a backend whose exchanges fail `after` times in a row (connect errors,
/// timeouts, 5xx answers) leaves its pool for `base`, doubling per ejection in a row up to
/// `max`; never more than half of a pool at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EjectionConfig {
    /// 0 turns passive ejection off.
    pub after: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for EjectionConfig {
    fn default() -> EjectionConfig {
        EjectionConfig {
            after: 5,
            base: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }
}

/// `[udp]`: how UDP service ports keep their flows. The ports themselves listen on
/// `[tcp].bind` within `[tcp].ports`, as TCP service ports do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpConfig {
    /// A flow (one client address) with no datagram either way for this long ends.
    pub idle_timeout: Duration,
    /// Most flows at once per UDP service port; datagrams that would start more are dropped.
    pub max_flows: usize,
}

impl Default for UdpConfig {
    fn default() -> UdpConfig {
        UdpConfig {
            idle_timeout: Duration::from_secs(30),
            max_flows: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AliasConfig {
    pub host: HostName,
    pub port: Option<u16>,
    pub backends: Vec<SocketAddr>,
    pub check: LeaderCheck,
    pub interval: Duration,
    /// Follow the leader this election names; `backends` (then probed as a confirmation)
    /// may be empty, when the leader's advertised address is the backend.
    pub zk: Option<crate::zk::ZkAlias>,
}

/// How an alias tells the leader from the other masters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderCheck {
    Mesos,
    Marathon,
    Http {
        path: String,
        expect_status: u16,
        expect_body: Option<String>,
    },
}

/// An inclusive range of TCP ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Which `HAPROXY_GROUP` values are served (marathon-lb `--group`); `*` means every app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Groups(pub Vec<String>);

impl Groups {
    pub fn all() -> Groups {
        Groups(vec!["*".to_string()])
    }

    pub fn is_all(&self) -> bool {
        self.0.iter().any(|g| g == "*")
    }

    /// True when an app or port in `group` (possibly none) is selected.
    pub fn selects(&self, group: Option<&str>) -> bool {
        if self.is_all() {
            return true;
        }
        match group {
            Some(g) => g
                .split(',')
                .any(|g| self.0.iter().any(|want| want == g.trim())),
            None => false,
        }
    }
}

// === impl Config ===

impl Config {
    /// Reads and validates a config file. Relative paths inside it are taken from the
    /// file's own directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base).map_err(|problems| ConfigError {
            file: path.to_path_buf(),
            problems,
        })
    }

    /// The configuration from an optional file with the `DROVER_*` variables of `env` over
    /// it (see `env`), and where each value came from. Relative paths in the file are
    /// taken from its directory, in variables from `env`'s working directory. With no file,
    /// the errors are labelled as the environment's.
    pub fn load_layered(file: Option<&Path>, env: &Env) -> Result<(Config, Origins), ConfigError> {
        let (mut table, base, label) = match file {
            Some(path) => {
                let text = read(path)?;
                let table = toml_table(&text).map_err(|problems| ConfigError {
                    file: path.to_path_buf(),
                    problems,
                })?;
                let base = path.parent().unwrap_or(Path::new("."));
                (table, base, path.to_path_buf())
            }
            None => (
                toml::Table::new(),
                env.cwd(),
                PathBuf::from("the DROVER_* environment"),
            ),
        };
        let overlay = env::overlay(&mut table, env);
        let mut problems = overlay.problems.clone();
        let checked = Config::check(table, base);
        if let Err(p) = &checked {
            problems.extend(p.iter().cloned());
        }
        overlay.name_variables(&mut problems);
        match checked {
            Ok(config) if problems.is_empty() => Ok((config, overlay.origins)),
            _ => Err(ConfigError {
                file: label,
                problems,
            }),
        }
    }

    /// Validates config text; `base` is the directory relative paths start from.
    pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<Problem>> {
        Config::check(toml_table(text)?, base)
    }

    /// Validates a parsed config table, section by section.
    fn check(mut table: toml::Table, base: &Path) -> Result<Config, Vec<Problem>> {
        let mut c = Checker {
            problems: Vec::new(),
            base,
        };
        const SECTIONS: [&str; 14] = [
            "http",
            "https",
            "tcp",
            "dns",
            "admin",
            "marathon",
            "mesos",
            "catalog",
            "access_log",
            "log",
            "runtime",
            "ejection",
            "alias",
            "udp",
        ];
        for key in table.keys() {
            if !SECTIONS.contains(&key.as_str()) {
                c.problem(
                    key,
                    "",
                    format!("unknown section (known: {})", SECTIONS.join(", ")),
                );
            }
        }
        let http = c.section::<RawHttp>(&mut table, "http").map(|r| c.http(r));
        let https = c
            .section::<RawHttps>(&mut table, "https")
            .map(|r| c.https(r));
        let tcp = c.section::<RawTcp>(&mut table, "tcp").map(|r| c.tcp(r));
        let dns = c.section::<RawDns>(&mut table, "dns").map(|r| c.dns(r));
        let admin = c
            .section::<RawAdmin>(&mut table, "admin")
            .map(|r| AdminConfig {
                listen: c.addr("admin.listen", r.listen.as_deref(), "127.0.0.1:9090"),
            });
        let marathon = c
            .section::<RawMarathon>(&mut table, "marathon")
            .map(|r| c.marathon(r));
        let mesos = c
            .section::<RawMesos>(&mut table, "mesos")
            .map(|r| c.mesos(r));
        let catalog = c
            .section::<RawCatalog>(&mut table, "catalog")
            .and_then(|r| c.catalog(r));
        let access_log = c
            .section::<RawAccessLog>(&mut table, "access_log")
            .map(|r| c.access_log(r));
        let log = c.section::<RawLog>(&mut table, "log").unwrap_or_default();
        let log = c.log(log);
        let runtime = c
            .section::<RawRuntime>(&mut table, "runtime")
            .unwrap_or_default();
        let runtime = c.runtime(runtime);
        let ejection = c
            .section::<RawEjection>(&mut table, "ejection")
            .unwrap_or_default();
        let ejection = c.ejection(ejection);
        let aliases = c.aliases(table.remove("alias"));
        let udp = c.section::<RawUdp>(&mut table, "udp").unwrap_or_default();
        let udp = c.udp(udp);
        if tcp.is_none() {
            // The bind address of an alias's TCP listener is [tcp].bind; without it the
            // alias would open a port on every interface nobody chose.
            for (i, a) in aliases.iter().enumerate() {
                if let Some(port) = a.port {
                    c.problem(
                        &format!("alias[{i}].port"),
                        &port.to_string(),
                        "needs a [tcp] section (its bind address is [tcp].bind)",
                    );
                }
            }
        }
        if c.problems.is_empty() {
            Ok(Config {
                http,
                https,
                tcp,
                dns,
                admin,
                marathon,
                mesos,
                catalog,
                access_log,
                log,
                runtime,
                ejection,
                aliases,
                udp,
            })
        } else {
            Err(c.problems)
        }
    }
}

/// A config file's text; a file that cannot be read is named by the flag that named it.
fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        problems: vec![Problem {
            path: format!("--config {}", path.display()),
            value: String::new(),
            message: format!("cannot read: {e}"),
        }],
    })
}

/// Config text as a TOML table; a syntax error is named by its line.
fn toml_table(text: &str) -> Result<toml::Table, Vec<Problem>> {
    text.parse().map_err(|e: toml::de::Error| {
        let path = match e.span() {
            Some(span) => format!("line {}", text[..span.start].matches('\n').count() + 1),
            None => String::new(),
        };
        vec![Problem {
            path,
            value: String::new(),
            message: format!("not valid TOML: {}", e.message()),
        }]
    })
}

#[cfg(test)]
mod tests;
