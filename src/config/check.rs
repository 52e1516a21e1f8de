//! The checks behind `Config::parse`: every raw value converted into the type it is used
//! as, with a default where it was bad, and each problem recorded with its key path, so
//! that one mistake does not hide the others.

use super::*;

/// Collects problems while converting raw values; each conversion returns a usable value
/// (a default when the input was bad) so that checking goes on.
pub(super) struct Checker<'a> {
    pub(super) problems: Vec<Problem>,
    pub(super) base: &'a Path,
}

// === impl Checker ===

impl Checker<'_> {
    pub(super) fn problem(&mut self, path: &str, value: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_string(),
            value: value.to_string(),
            message: message.into(),
        });
    }

    pub(super) fn section<T: DeserializeOwned>(
        &mut self,
        table: &mut toml::Table,
        name: &str,
    ) -> Option<T> {
        let value = table.remove(name)?;
        self.decode(value, name)
    }

    pub(super) fn decode<T: DeserializeOwned>(
        &mut self,
        value: toml::Value,
        path: &str,
    ) -> Option<T> {
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

    pub(super) fn addr(&mut self, path: &str, raw: Option<&str>, default: &str) -> SocketAddr {
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

    pub(super) fn duration(
        &mut self,
        path: &str,
        raw: Option<&str>,
        default: Duration,
    ) -> Duration {
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

    pub(super) fn path(&self, raw: &str) -> PathBuf {
        let p = Path::new(raw);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    pub(super) fn url(&mut self, path: &str, raw: &str) -> String {
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

    pub(super) fn groups(
        &mut self,
        path: &str,
        raw: Option<Vec<String>>,
        default: Groups,
    ) -> Groups {
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

    pub(super) fn http(&mut self, r: RawHttp) -> HttpConfig {
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

    pub(super) fn max_connections(&mut self, path: &str, raw: Option<i64>) -> usize {
        match raw {
            None => DEFAULT_MAX_CONNECTIONS,
            Some(n) if (1..=1_000_000).contains(&n) => n as usize,
            Some(n) => {
                self.problem(path, &n.to_string(), "must be between 1 and 1000000");
                DEFAULT_MAX_CONNECTIONS
            }
        }
    }

    pub(super) fn cidrs(&mut self, path: &str, raw: &[String]) -> Vec<Cidr> {
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

    pub(super) fn https(&mut self, r: RawHttps) -> HttpsConfig {
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

    pub(super) fn tcp(&mut self, r: RawTcp) -> TcpConfig {
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

    pub(super) fn dns(&mut self, r: RawDns) -> DnsConfig {
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
            healthy_only: r.healthy_only.unwrap_or(false),
        }
    }

    pub(super) fn marathon(&mut self, r: RawMarathon) -> MarathonConfig {
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

    pub(super) fn mesos(&mut self, r: RawMesos) -> MesosConfig {
        let zk = r.zk.as_deref().and_then(|u| self.zk_url("mesos.zk", u));
        if r.masters.is_empty() && zk.is_none() {
            self.problem(
                "mesos.masters",
                "[]",
                "list at least one Mesos master URL (or set mesos.zk)",
            );
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
        let stream = r.stream.unwrap_or(true);
        // Following the stream, a read is only a resync (and a big cluster's state is tens
        // of MiB): once a minute, as Mesos-DNS's refresh. Polling alone: every 5 s.
        let default_poll = Duration::from_secs(if stream { 60 } else { 5 });
        MesosConfig {
            masters,
            poll: self.duration("mesos.poll", r.poll.as_deref(), default_poll),
            principal: r.principal,
            // Both files are read when the masters are first polled: a missing one is a
            // source error there, shown in /debug/routes.
            secret_file: r.secret_file.map(|p| self.path(&p)),
            ca_file: r.ca_file.map(|p| self.path(&p)),
            zk,
            stream,
        }
    }

    /// A `zk://host:port,…/path` URL, or a problem naming `key`.
    fn zk_url(&mut self, key: &str, url: &str) -> Option<crate::zk::ZkUrl> {
        crate::zk::ZkUrl::parse(url)
            .map_err(|e| self.problem(key, &format!("{url:?}"), e.to_string()))
            .ok()
    }

    pub(super) fn catalog(&mut self, r: RawCatalog) -> Option<CatalogConfig> {
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

    pub(super) fn runtime(&mut self, r: RawRuntime) -> RuntimeConfig {
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

    pub(super) fn aliases(&mut self, raw: Option<toml::Value>) -> Vec<AliasConfig> {
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

    pub(super) fn ejection(&mut self, r: RawEjection) -> EjectionConfig {
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

    pub(super) fn udp(&mut self, r: RawUdp) -> UdpConfig {
        let d = UdpConfig::default();
        let max_flows = match r.max_flows {
            None => d.max_flows,
            Some(n) if (1..=10_000_000).contains(&n) => n as usize,
            Some(n) => {
                self.problem(
                    "udp.max_flows",
                    &n.to_string(),
                    "must be between 1 and 10000000 flows per port",
                );
                d.max_flows
            }
        };
        UdpConfig {
            idle_timeout: self.duration(
                "udp.idle_timeout",
                r.idle_timeout.as_deref(),
                d.idle_timeout,
            ),
            max_flows,
        }
    }

    pub(super) fn alias(&mut self, path: &str, r: RawAlias) -> AliasConfig {
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
        let zk =
            r.zk.as_deref()
                .and_then(|u| self.zk_url(&format!("{path}.zk"), u));
        // With zk and no backends the leader's advertised address is the backend, and
        // nothing is probed, so a check would be ignored: say so rather than ignore it.
        let zk_only = r.zk.is_some() && r.backends.is_empty();
        if r.backends.is_empty() && r.zk.is_none() {
            self.problem(
                &format!("{path}.backends"),
                "[]",
                "list the masters (IP:port), or set zk",
            );
        }
        if zk_only && r.check.is_some() {
            self.problem(
                &format!("{path}.check"),
                "",
                "a check confirms the zk leader among backends: list backends, or remove check",
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
            None if zk_only => LeaderCheck::Mesos,
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
            zk: zk.map(|url| crate::zk::ZkAlias {
                url,
                confirm: !zk_only,
            }),
        }
    }
}

/// The key a decode error is about, and its value as written: serde names an unknown field
/// in its message; for any other error, the first key that fails to decode on its own
/// (every field of a section is optional, so a key alone decodes unless it is the bad one).
pub(super) fn bad_key<T: DeserializeOwned>(
    value: &toml::Value,
    message: &str,
) -> Option<(String, String)> {
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
pub(super) const DEFAULT_IP_PER_TASK_PORTS: PortRange = PortRange {
    first: 10050,
    last: 10100,
};

/// `"10000-20000"` or a single `"10001"`.
pub(super) fn parse_port_range(raw: &str) -> Result<PortRange, &'static str> {
    let (a, b) = raw.split_once('-').unwrap_or((raw, raw));
    let port = |s: &str| s.trim().parse::<u16>().ok().filter(|p| *p > 0);
    match (port(a), port(b)) {
        (Some(first), Some(last)) if first <= last => Ok(PortRange { first, last }),
        (Some(_), Some(_)) => Err("the first port is above the last"),
        _ => Err("expected FIRST-LAST with ports 1-65535, e.g. \"10000-20000\""),
    }
}
