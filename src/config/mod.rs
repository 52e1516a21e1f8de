//! The validated configuration: every value parsed into the type it is used as
//! (`SocketAddr`, `Duration`, `PortRange`, `HostName`), defaults applied, and every problem
//! in the file collected into one `ConfigError`, each naming its key path and the bad value.
//!
//! Parsing goes section by section so that a mistake in one section does not hide the
//! mistakes in the others. What the file means at run time is left to `control`.

pub mod file;
pub mod reload;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::cidr::Cidr;
use crate::routing::host::HostName;
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
    pub runtime: RuntimeConfig,
    pub ejection: EjectionConfig,
    pub aliases: Vec<AliasConfig>,
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

#[derive(Debug, Clone, PartialEq)]
pub struct AliasConfig {
    pub host: HostName,
    pub port: Option<u16>,
    pub backends: Vec<SocketAddr>,
    pub check: LeaderCheck,
    pub interval: Duration,
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
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            problems: vec![Problem {
                path: format!("--config {}", path.display()),
                value: String::new(),
                message: format!("cannot read: {e}"),
            }],
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base).map_err(|problems| ConfigError {
            file: path.to_path_buf(),
            problems,
        })
    }

    /// Validates config text; `base` is the directory relative paths start from.
    pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<Problem>> {
        let mut c = Checker {
            problems: Vec::new(),
            base,
        };
        let mut table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                c.problem("", "", format!("not valid TOML: {}", e.message()));
                if let Some(span) = e.span() {
                    let line = text[..span.start].matches('\n').count() + 1;
                    c.problems[0].path = format!("line {line}");
                }
                return Err(c.problems);
            }
        };
        const SECTIONS: [&str; 11] = [
            "http", "https", "tcp", "dns", "admin", "marathon", "mesos", "catalog", "runtime",
            "ejection", "alias",
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
        let runtime = c
            .section::<RawRuntime>(&mut table, "runtime")
            .unwrap_or_default();
        let runtime = c.runtime(runtime);
        let ejection = c
            .section::<RawEjection>(&mut table, "ejection")
            .unwrap_or_default();
        let ejection = c.ejection(ejection);
        let aliases = c.aliases(table.remove("alias"));
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
                runtime,
                ejection,
                aliases,
            })
        } else {
            Err(c.problems)
        }
    }
}

/// Collects problems while converting raw values; each conversion returns a usable value
/// (a default when the input was bad) so that checking goes on.
struct Checker<'a> {
    problems: Vec<Problem>,
    base: &'a Path,
}

// === impl Checker ===

impl Checker<'_> {
    fn problem(&mut self, path: &str, value: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_string(),
            value: value.to_string(),
            message: message.into(),
        });
    }

    fn section<T: DeserializeOwned>(&mut self, table: &mut toml::Table, name: &str) -> Option<T> {
        let value = table.remove(name)?;
        self.decode(value, name)
    }

    fn decode<T: DeserializeOwned>(&mut self, value: toml::Value, path: &str) -> Option<T> {
        if !value.is_table() {
            self.problem(path, &value.to_string(), "expected a table");
            return None;
        }
        match value.clone().try_into::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                let message = e.message().trim().to_string();
                let (path, shown) = match bad_key::<T>(&value, &message) {
                    Some((key, shown)) => (format!("{path}.{key}"), shown),
                    None => (path.to_string(), String::new()),
                };
                self.problem(&path, &shown, message);
                None
            }
        }
    }

    fn addr(&mut self, path: &str, raw: Option<&str>, default: &str) -> SocketAddr {
        let raw = raw.unwrap_or(default);
        raw.parse().unwrap_or_else(|_| {
            self.problem(
                path,
                &format!("{raw:?}"),
                "not a socket address (expected IP:port, e.g. 0.0.0.0:80 or [::]:80)",
            );
            default.parse().expect("default address parses")
        })
    }

    fn duration(&mut self, path: &str, raw: Option<&str>, default: Duration) -> Duration {
        let Some(raw) = raw else { return default };
        match humantime::parse_duration(raw) {
            Ok(d) if d.is_zero() => {
                self.problem(path, &format!("{raw:?}"), "must be longer than zero");
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.problem(
                    path,
                    &format!("{raw:?}"),
                    format!("not a duration ({e}); write e.g. \"500ms\", \"5s\", \"2m\""),
                );
                default
            }
        }
    }

    fn path(&self, raw: &str) -> PathBuf {
        let p = Path::new(raw);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn url(&mut self, path: &str, raw: &str) -> String {
        let rest = raw
            .strip_prefix("http://")
            .or_else(|| raw.strip_prefix("https://"));
        match rest {
            Some(hostport) if !hostport.is_empty() && !hostport.starts_with('/') => {
                raw.trim_end_matches('/').to_string()
            }
            _ => {
                self.problem(
                    path,
                    &format!("{raw:?}"),
                    "not an http:// or https:// URL with a host",
                );
                raw.to_string()
            }
        }
    }

    fn groups(&mut self, path: &str, raw: Option<Vec<String>>, default: Groups) -> Groups {
        match raw {
            None => default,
            Some(v) if v.is_empty() => {
                self.problem(
                    path,
                    "[]",
                    "list at least one group, or \"*\" for every app",
                );
                default
            }
            Some(v) => Groups(v),
        }
    }

    fn http(&mut self, r: RawHttp) -> HttpConfig {
        let appid_listen = r
            .appid_listen
            .as_deref()
            .map(|a| self.addr("http.appid_listen", Some(a), "0.0.0.0:9091"));
        let max_header_bytes = match r.max_header_bytes {
            None => 64 * 1024,
            Some(n) if (1024..=1024 * 1024).contains(&n) => n as usize,
            Some(n) => {
                self.problem(
                    "http.max_header_bytes",
                    &n.to_string(),
                    "must be between 1024 and 1048576",
                );
                64 * 1024
            }
        };
        HttpConfig {
            listen: self.addr("http.listen", r.listen.as_deref(), "0.0.0.0:80"),
            appid_listen,
            header_timeout: self.duration(
                "http.header_timeout",
                r.header_timeout.as_deref(),
                Duration::from_secs(10),
            ),
            connect_timeout: self.duration(
                "http.connect_timeout",
                r.connect_timeout.as_deref(),
                Duration::from_secs(2),
            ),
            response_timeout: self.duration(
                "http.response_timeout",
                r.response_timeout.as_deref(),
                Duration::from_secs(60),
            ),
            max_header_bytes,
            body_timeout: self.duration(
                "http.body_timeout",
                r.body_timeout.as_deref(),
                Duration::from_secs(30),
            ),
            underscore_headers: match r.underscore_headers.as_deref() {
                None | Some("pass") => UnderscoreHeaders::Pass,
                Some("drop") => UnderscoreHeaders::Drop,
                Some("reject") => UnderscoreHeaders::Reject,
                Some(other) => {
                    self.problem(
                        "http.underscore_headers",
                        &format!("{other:?}"),
                        "expected \"pass\", \"drop\" or \"reject\"",
                    );
                    UnderscoreHeaders::Pass
                }
            },
            max_connections: self.max_connections("http.max_connections", r.max_connections),
            proxy_protocol: self.cidrs("http.proxy_protocol", &r.proxy_protocol),
        }
    }

    fn max_connections(&mut self, path: &str, raw: Option<i64>) -> usize {
        match raw {
            None => DEFAULT_MAX_CONNECTIONS,
            Some(n) if (1..=1_000_000).contains(&n) => n as usize,
            Some(n) => {
                self.problem(path, &n.to_string(), "must be between 1 and 1000000");
                DEFAULT_MAX_CONNECTIONS
            }
        }
    }

    fn cidrs(&mut self, path: &str, raw: &[String]) -> Vec<Cidr> {
        raw.iter()
            .enumerate()
            .filter_map(|(i, c)| match c.trim().parse::<Cidr>() {
                Ok(c) => Some(c),
                Err(e) => {
                    self.problem(&format!("{path}[{i}]"), &format!("{c:?}"), e.to_string());
                    None
                }
            })
            .collect()
    }

    fn https(&mut self, r: RawHttps) -> HttpsConfig {
        let certs = match r.certs {
            Some(c) => self.path(&c),
            None => {
                self.problem("https.certs", "", "missing: the directory of certificates");
                PathBuf::new()
            }
        };
        HttpsConfig {
            listen: self.addr("https.listen", r.listen.as_deref(), "0.0.0.0:443"),
            certs,
            proxy_protocol: self.cidrs("https.proxy_protocol", &r.proxy_protocol),
        }
    }

    fn tcp(&mut self, r: RawTcp) -> TcpConfig {
        let bind = match r.bind.as_deref() {
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(b) => b.parse().unwrap_or_else(|_| {
                self.problem("tcp.bind", &format!("{b:?}"), "not an IP address");
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            }),
        };
        let default_ports = PortRange {
            first: 10000,
            last: 20000,
        };
        let ports = match r.ports.as_deref() {
            None => default_ports,
            Some(raw) => parse_port_range(raw).unwrap_or_else(|msg| {
                self.problem("tcp.ports", &format!("{raw:?}"), msg);
                default_ports
            }),
        };
        let send_proxy_protocol = match r.send_proxy_protocol.as_deref() {
            None => None,
            Some("v1") => Some(1),
            Some("v2") => Some(2),
            Some(other) => {
                self.problem(
                    "tcp.send_proxy_protocol",
                    &format!("{other:?}"),
                    "expected \"v1\" or \"v2\"",
                );
                None
            }
        };
        TcpConfig {
            bind,
            ports,
            connect_timeout: self.duration(
                "tcp.connect_timeout",
                r.connect_timeout.as_deref(),
                Duration::from_secs(2),
            ),
            proxy_protocol: self.cidrs("tcp.proxy_protocol", &r.proxy_protocol),
            max_connections: self.max_connections("tcp.max_connections", r.max_connections),
            send_proxy_protocol,
        }
    }

    fn dns(&mut self, r: RawDns) -> DnsConfig {
        let domain_raw = r.domain.unwrap_or_else(|| "mesos".to_string());
        let domain = HostName::parse(&domain_raw).unwrap_or_else(|e| {
            self.problem("dns.domain", &format!("{domain_raw:?}"), e.to_string());
            HostName::parse("mesos").expect("valid")
        });
        let forward = r
            .forward
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let addr = f
                    .parse::<SocketAddr>()
                    .ok()
                    .or_else(|| f.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)));
                if addr.is_none() {
                    self.problem(
                        &format!("dns.forward[{i}]"),
                        &format!("{f:?}"),
                        "not an IP or IP:port",
                    );
                }
                addr
            })
            .collect();
        const SOURCES: [&str; 4] = ["netinfo", "mesos", "docker", "host"];
        let ip_sources = r
            .ip_sources
            .unwrap_or_else(|| vec!["netinfo".into(), "mesos".into(), "host".into()]);
        for (i, s) in ip_sources.iter().enumerate() {
            if !SOURCES.contains(&s.as_str()) {
                self.problem(
                    &format!("dns.ip_sources[{i}]"),
                    &format!("{s:?}"),
                    format!("unknown IP source (known: {})", SOURCES.join(", ")),
                );
            }
        }
        let labels = r.labels.unwrap_or_else(|| "rfc1123".into());
        if labels != "rfc1123" && labels != "rfc952" {
            self.problem(
                "dns.labels",
                &format!("{labels:?}"),
                "expected \"rfc1123\" or \"rfc952\"",
            );
        }
        DnsConfig {
            listen: self.addr("dns.listen", r.listen.as_deref(), "0.0.0.0:53"),
            domain,
            ttl: self.duration("dns.ttl", r.ttl.as_deref(), Duration::from_secs(60)),
            forward,
            ip_sources,
            labels,
            legacy_names: r.legacy_names.unwrap_or(false),
        }
    }

    fn marathon(&mut self, r: RawMarathon) -> MarathonConfig {
        if r.urls.is_empty() {
            self.problem("marathon.urls", "[]", "list at least one Marathon URL");
        }
        let urls = r
            .urls
            .iter()
            .enumerate()
            .map(|(i, u)| self.url(&format!("marathon.urls[{i}]"), u))
            .collect();
        if r.user.is_some() != r.password_file.is_some() {
            self.problem(
                "marathon.user",
                "",
                "user and password_file go together: set both or neither",
            );
        }
        MarathonConfig {
            urls,
            groups: self.groups("marathon.groups", r.groups, Groups(vec!["external".into()])),
            resync: self.duration(
                "marathon.resync",
                r.resync.as_deref(),
                Duration::from_secs(300),
            ),
            idle_timeout: self.duration(
                "marathon.idle_timeout",
                r.idle_timeout.as_deref(),
                Duration::from_secs(60),
            ),
            strict: r.strict.unwrap_or(false),
            health_check: r.health_check.unwrap_or(true),
            active_checks: r.active_checks.unwrap_or(true),
            ip_per_task_ports: match r.ip_per_task_ports.as_deref() {
                None => DEFAULT_IP_PER_TASK_PORTS,
                Some(raw) => parse_port_range(raw).unwrap_or_else(|msg| {
                    self.problem("marathon.ip_per_task_ports", &format!("{raw:?}"), msg);
                    DEFAULT_IP_PER_TASK_PORTS
                }),
            },
            user: r.user,
            password_file: r.password_file.map(|p| self.path(&p)),
            ca_file: r.ca_file.map(|p| {
                // The file itself is read when Marathon is first followed (a missing or
                // certificate-less one is a source error there); an empty name is a typo.
                if p.trim().is_empty() {
                    self.problem(
                        "marathon.ca_file",
                        &format!("{p:?}"),
                        "empty: name a PEM file of CA certificates, or remove the key",
                    );
                }
                self.path(&p)
            }),
        }
    }

    fn mesos(&mut self, r: RawMesos) -> MesosConfig {
        if r.masters.is_empty() {
            self.problem("mesos.masters", "[]", "list at least one Mesos master URL");
        }
        let masters = r
            .masters
            .iter()
            .enumerate()
            .map(|(i, u)| self.url(&format!("mesos.masters[{i}]"), u))
            .collect();
        if r.principal.is_some() != r.secret_file.is_some() {
            self.problem(
                "mesos.principal",
                "",
                "principal and secret_file go together: set both or neither",
            );
        }
        for (key, value) in [
            ("mesos.secret_file", &r.secret_file),
            ("mesos.ca_file", &r.ca_file),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                self.problem(key, "\"\"", "empty: name a file, or remove the key");
            }
        }
        MesosConfig {
            masters,
            poll: self.duration("mesos.poll", r.poll.as_deref(), Duration::from_secs(5)),
            principal: r.principal,
            // Both files are read when the masters are first polled: a missing one is a
            // source error there, shown in /debug/routes.
            secret_file: r.secret_file.map(|p| self.path(&p)),
            ca_file: r.ca_file.map(|p| self.path(&p)),
        }
    }

    fn catalog(&mut self, r: RawCatalog) -> Option<CatalogConfig> {
        let groups = self.groups("catalog.groups", r.groups, Groups::all());
        match r.file {
            Some(f) if !f.is_empty() => Some(CatalogConfig {
                file: self.path(&f),
                groups,
            }),
            _ => {
                self.problem("catalog.file", "", "missing: the path of the catalog file");
                None
            }
        }
    }

    fn runtime(&mut self, r: RawRuntime) -> RuntimeConfig {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = match r.workers {
            None | Some(0) => cores,
            Some(n) if (1..=256).contains(&n) => n as usize,
            Some(n) => {
                self.problem(
                    "runtime.workers",
                    &n.to_string(),
                    "must be between 0 (one per core) and 256",
                );
                cores
            }
        };
        RuntimeConfig {
            workers,
            drain_timeout: self.duration(
                "runtime.drain_timeout",
                r.drain_timeout.as_deref(),
                Duration::from_secs(10),
            ),
        }
    }

    fn aliases(&mut self, raw: Option<toml::Value>) -> Vec<AliasConfig> {
        let items = match raw {
            None => return Vec::new(),
            Some(toml::Value::Array(items)) => items,
            Some(other) => {
                self.problem(
                    "alias",
                    &other.to_string(),
                    "expected [[alias]] tables (an array of tables)",
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let path = format!("alias[{i}]");
            if let Some(r) = self.decode::<RawAlias>(item, &path) {
                let alias = self.alias(&path, r);
                // One host (or port) leads to one set of masters; a second would be a guess.
                if let Some(j) = out.iter().position(|a: &AliasConfig| a.host == alias.host) {
                    self.problem(
                        &format!("{path}.host"),
                        &format!("{:?}", alias.host.as_str()),
                        format!("alias[{j}] has the same host"),
                    );
                }
                if let Some(j) = out
                    .iter()
                    .position(|a| a.port.is_some() && a.port == alias.port)
                {
                    self.problem(
                        &format!("{path}.port"),
                        &alias.port.unwrap_or(0).to_string(),
                        format!("alias[{j}] has the same port"),
                    );
                }
                out.push(alias);
            }
        }
        out
    }

    fn ejection(&mut self, r: RawEjection) -> EjectionConfig {
        let d = EjectionConfig::default();
        let after = match r.after {
            None => d.after,
            Some(n) if (0..=1000).contains(&n) => n as u32,
            Some(n) => {
                self.problem(
                    "ejection.after",
                    &n.to_string(),
                    "must be between 0 (off) and 1000 failures in a row",
                );
                d.after
            }
        };
        let base = self.duration("ejection.base", r.base.as_deref(), d.base);
        let max = self.duration("ejection.max", r.max.as_deref(), d.max);
        if max < base {
            self.problem(
                "ejection.max",
                &humantime::format_duration(max).to_string(),
                format!(
                    "must not be shorter than ejection.base ({})",
                    humantime::format_duration(base)
                ),
            );
        }
        EjectionConfig { after, base, max }
    }

    fn alias(&mut self, path: &str, r: RawAlias) -> AliasConfig {
        let host = match r.host.as_deref() {
            Some(h) => HostName::parse(h).unwrap_or_else(|e| {
                self.problem(&format!("{path}.host"), &format!("{h:?}"), e.to_string());
                HostName::parse("invalid").expect("valid")
            }),
            None => {
                self.problem(&format!("{path}.host"), "", "missing: the alias host name");
                HostName::parse("invalid").expect("valid")
            }
        };
        let port = r.port.and_then(|p| match u16::try_from(p) {
            Ok(p) if p > 0 => Some(p),
            _ => {
                self.problem(
                    &format!("{path}.port"),
                    &p.to_string(),
                    "not a TCP port (1-65535)",
                );
                None
            }
        });
        if r.backends.is_empty() {
            self.problem(
                &format!("{path}.backends"),
                "[]",
                "list the masters (IP:port)",
            );
        }
        let backends = r
            .backends
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let parsed = b.parse::<SocketAddr>().ok();
                if parsed.is_none() {
                    self.problem(
                        &format!("{path}.backends[{i}]"),
                        &format!("{b:?}"),
                        "not a socket address (IP:port)",
                    );
                }
                parsed
            })
            .collect();
        let check = match r.check {
            None => {
                self.problem(
                    &format!("{path}.check"),
                    "",
                    "missing: \"mesos\", \"marathon\" or { path = ..., expect_body = ... }",
                );
                LeaderCheck::Mesos
            }
            Some(RawCheck::Named(n)) => match n.as_str() {
                "mesos" => LeaderCheck::Mesos,
                "marathon" => LeaderCheck::Marathon,
                _ => {
                    self.problem(
                        &format!("{path}.check"),
                        &format!("{n:?}"),
                        "unknown check (built-in: mesos, marathon; or a table with path)",
                    );
                    LeaderCheck::Mesos
                }
            },
            Some(RawCheck::Custom(c)) => {
                if !c.path.starts_with('/') {
                    self.problem(
                        &format!("{path}.check.path"),
                        &format!("{:?}", c.path),
                        "must start with /",
                    );
                }
                let expect_status = match c.expect_status {
                    None => 200,
                    Some(s) if (100..=599).contains(&s) => s as u16,
                    Some(s) => {
                        self.problem(
                            &format!("{path}.check.expect_status"),
                            &s.to_string(),
                            "not an HTTP status (100-599)",
                        );
                        200
                    }
                };
                LeaderCheck::Http {
                    path: c.path,
                    expect_status,
                    expect_body: c.expect_body,
                }
            }
        };
        AliasConfig {
            host,
            port,
            backends,
            check,
            interval: self.duration(
                &format!("{path}.interval"),
                r.interval.as_deref(),
                Duration::from_secs(1),
            ),
        }
    }
}

/// The key a decode error is about, and its value as written: serde names an unknown field
/// in its message; for any other error, the first key that fails to decode on its own
/// (every field of a section is optional, so a key alone decodes unless it is the bad one).
fn bad_key<T: DeserializeOwned>(value: &toml::Value, message: &str) -> Option<(String, String)> {
    let table = value.as_table()?;
    let key = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
        .map(str::to_string)
        .or_else(|| {
            table.iter().find_map(|(k, v)| {
                let alone = toml::Table::from_iter([(k.clone(), v.clone())]);
                toml::Value::Table(alone)
                    .try_into::<T>()
                    .is_err()
                    .then(|| k.clone())
            })
        })?;
    let shown = table.get(&key).map(|v| v.to_string()).unwrap_or_default();
    Some((key, shown))
}

/// marathon-lb's defaults for `--min/max-serv-port-ip-per-task`.
const DEFAULT_IP_PER_TASK_PORTS: PortRange = PortRange {
    first: 10050,
    last: 10100,
};

/// `"10000-20000"` or a single `"10001"`.
fn parse_port_range(raw: &str) -> Result<PortRange, &'static str> {
    let (a, b) = raw.split_once('-').unwrap_or((raw, raw));
    let port = |s: &str| s.trim().parse::<u16>().ok().filter(|p| *p > 0);
    match (port(a), port(b)) {
        (Some(first), Some(last)) if first <= last => Ok(PortRange { first, last }),
        (Some(_), Some(_)) => Err("the first port is above the last"),
        _ => Err("expected FIRST-LAST with ports 1-65535, e.g. \"10000-20000\""),
    }
}

#[cfg(test)]
mod tests;
