//! The catalog: what the sources discovered, in our words. `build` turns source-neutral raw
//! apps (what every source decodes its scheduler's JSON into) plus the group selection into
//! services: one per (app, service-port index), with its bind port, mode, vhosts, path,
//! balance and the backend addresses of its usable tasks.
//!
//! Label meanings follow marathon-lb (`HAPROXY_{n}_*`), so existing app definitions need no
//! edits. This module is pure: no I/O, no clocks. Routing (`routing::compile`) decides what
//! listens where; the catalog only describes.
//!
//! `build_selected` adds marathon-lb's `--strict-mode` (a port needs `HAPROXY_{n}_ENABLED`);
//! `build` is the same without it.

pub mod backend_proto;
pub mod cluster;
pub mod protocol;

pub use protocol::Protocol;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::cidr::Cidr;
use crate::config::Groups;
use crate::host::HostName;

pub use backend_proto::BackendProto;

/// One application as a source reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawApp {
    /// Scheduler id, e.g. `/shop/web`.
    pub id: String,
    pub labels: BTreeMap<String, String>,
    /// Service ports, by index.
    pub ports: Vec<u16>,
    pub tasks: Vec<RawTask>,
    /// The scheduler health-checks the app over plain HTTP (Marathon `protocol: "HTTP"`,
    /// exactly). marathon-lb then defaults every port of the app to http mode.
    pub http_health_check: bool,
    /// Checks Drover runs itself against the app's tasks, by service-port index.
    pub checks: Vec<PortCheck>,
    /// Each service port's protocol, by index; a port past the end is TCP.
    pub protocols: Vec<Protocol>,
}

/// An active health check of one service port's backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCheck {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Failures in a row that take a backend out.
    pub fall: u32,
    /// Passes in a row that bring it back.
    pub rise: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// `GET path` must answer 200-399.
    Http { path: String },
    /// A TCP connect must succeed.
    Tcp,
}

/// An [`ActiveCheck`] for the service port at `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortCheck {
    pub index: usize,
    pub check: ActiveCheck,
}

/// One task (running instance) of an app.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawTask {
    pub id: String,
    /// Where it runs: an IP address (sources resolve host names before `build`).
    pub host: String,
    /// Host ports, by service-port index.
    pub ports: Vec<u16>,
    /// Mesos task state, e.g. `TASK_RUNNING`.
    pub state: String,
    /// What its health checks say: `None` without checks or results (always so from the
    /// catalog file). Only DNS reads it (`[dns] healthy_only`); routing filters by health
    /// in the source.
    pub healthy: Option<bool>,
}

/// How a service is proxied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Http,
    Tcp,
}

/// How a pool picks a backend (`HAPROXY_{n}_BALANCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Balance {
    RoundRobin,
    LeastConn,
    Random,
    /// Hash of the client IP: a client keeps its backend while the pool is unchanged.
    Source,
    /// Power of two choices: of two random backends, the one with the lower outstanding
    /// requests x recent latency (EWMA). Not a marathon-lb value; Drover's own.
    P2c,
}

/// One service port of one app: the unit that gets a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub app_id: String,
    /// Service-port index (`n` in `HAPROXY_{n}_*`).
    pub index: usize,
    /// marathon-lb's backend name: `shop_api_10002`. Used as the route label in metrics.
    pub name: String,
    /// Bind port (after `HAPROXY_{n}_PORT`).
    pub port: u16,
    pub bind_addr: Option<IpAddr>,
    pub mode: Mode,
    pub vhosts: Vec<HostName>,
    /// Path prefix on the vhosts (`HAPROXY_{n}_PATH`).
    pub path: Option<String>,
    pub balance: Balance,
    /// Usable tasks' addresses, sorted.
    pub backends: Vec<SocketAddr>,
    /// Rule order on the shared HTTP listeners, larger first (`HAPROXY_{n}_BACKEND_WEIGHT`;
    /// a `PATH` makes it 1 unless the label is set). See `Catalog::http_rule_order`.
    pub weight: i32,
    /// `HAPROXY_{n}_REDIRECT_TO_HTTPS`: plain-HTTP requests get a 301 to https.
    pub redirect_to_https: bool,
    /// `HAPROXY_{n}_STICKY`: a client keeps its backend (a cookie names it).
    pub sticky: bool,
    /// `HAPROXY_{n}_USE_HSTS`: HTTPS answers carry `Strict-Transport-Security`.
    pub hsts: bool,
    /// `HAPROXY_{n}_AUTH` (`realm:user:hash`): HTTP basic auth in front of the service.
    pub auth: Option<AuthLabel>,
    /// `HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL`: the source networks allowed (empty = all).
    pub allowed: Vec<Cidr>,
    /// `HAPROXY_{n}_HTTP_BACKEND_PROXYPASS_PATH`: a path prefix removed before forwarding.
    pub proxypass_path: Option<String>,
    /// `HAPROXY_{n}_SSL_CERT`: a PEM (certificate chain and key) on the Drover host; the
    /// service port's listener then terminates TLS with it.
    pub ssl_cert: Option<std::path::PathBuf>,
    /// Drover's own health check of the backends, if the app has one for this port.
    pub check: Option<ActiveCheck>,
    /// TCP (listener and HTTP routes), UDP (a UDP listener only), or both.
    pub protocol: Protocol,
    /// `DROVER_{n}_BACKEND_PROTO` (and `_BACKEND_CA`): HTTP/1.1, h2c or h2 to the backends.
    pub backend_proto: BackendProto,
}

/// `HAPROXY_{n}_AUTH`: `realm:user:hash`, the hash a crypt(3) SHA-512 or SHA-256 string
/// (`mkpasswd -m sha-512`), as marathon-lb passes to HAProxy's userlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthLabel {
    pub realm: String,
    pub user: String,
    pub hash: String,
}

/// Something wrong with one app; the app's other services are unaffected unless it says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppProblem {
    pub app_id: String,
    pub message: String,
}

impl fmt::Display for AppProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "app {}: {}", self.app_id, self.message)
    }
}

/// The immutable model of everything discovered. It carries no version: `control` numbers
/// each route table it compiles from a catalog, and the DNS zone has its own SOA serial.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalog {
    /// Services ordered by (app id, index).
    pub services: Vec<Service>,
    /// Apps (or tasks) left out, and why.
    pub problems: Vec<AppProblem>,
}

// === impl Catalog ===

impl Catalog {
    /// The services with vhosts in marathon-lb's rule order for `:80`/`:443`: weight
    /// descending, ties by (app id, bind port). Two rules can both match one request only
    /// when vhost and path overlap; this is the order marathon-lb would test them in.
    pub fn http_rule_order(&self) -> Vec<&Service> {
        let mut rules: Vec<&Service> = self
            .services
            .iter()
            .filter(|s| !s.vhosts.is_empty())
            .collect();
        rules.sort_by(|a, b| {
            b.weight
                .cmp(&a.weight)
                .then_with(|| a.app_id.cmp(&b.app_id))
                .then_with(|| a.port.cmp(&b.port))
        });
        rules
    }
}

/// Which apps and ports a catalog serves: marathon-lb's `--group` and `--strict-mode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub groups: Groups,
    /// Expose a port only when its `HAPROXY_{n}_ENABLED` is true (without it, a port is
    /// exposed unless the label says false).
    pub strict: bool,
}

/// Task states whose tasks serve traffic. `TASK_LOST`/`TASK_UNREACHABLE` are kept on
/// purpose: an agent that lost contact with the master usually still runs the task.
fn is_serving(state: &str) -> bool {
    matches!(state, "TASK_RUNNING" | "TASK_LOST" | "TASK_UNREACHABLE")
}

/// One source's apps as `merge` takes them.
pub struct SourceApps<'a> {
    pub apps: &'a [std::sync::Arc<RawApp>],
    /// What the source found wrong while decoding them.
    pub problems: &'a [AppProblem],
    /// Which of them to serve.
    pub selection: Selection,
}

/// The catalog of several sources: each source's apps built with its own selection (its
/// decode problems before its build problems), the services in one order across sources
/// (by app id, then index) so that conflicts settle the same way on every rebuild.
pub fn merge<'a>(sources: impl IntoIterator<Item = SourceApps<'a>>) -> Catalog {
    let mut catalog = Catalog::default();
    for source in sources {
        let built = build_selected(source.apps, &source.selection);
        catalog.problems.extend(source.problems.iter().cloned());
        catalog.problems.extend(built.problems);
        catalog.services.extend(built.services);
    }
    catalog
        .services
        .sort_by(|a, b| (&a.app_id, a.index).cmp(&(&b.app_id, b.index)));
    catalog
}

/// Builds the catalog from every source's apps. Apps whose group is not selected are left
/// out silently (that is what groups are for); apps with bad labels are left out with a
/// problem naming the label. Not strict: see `build_selected`.
pub fn build<A: std::borrow::Borrow<RawApp>>(apps: &[A], groups: &Groups) -> Catalog {
    build_selected(
        apps,
        &Selection {
            groups: groups.clone(),
            strict: false,
        },
    )
}

/// `build` with the whole selection, strict mode included.
pub fn build_selected<A: std::borrow::Borrow<RawApp>>(
    apps: &[A],
    selection: &Selection,
) -> Catalog {
    let mut catalog = Catalog::default();
    let mut sorted: Vec<&RawApp> = apps.iter().map(|a| a.borrow()).collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    for app in sorted {
        add_app(&mut catalog, app, selection);
    }
    catalog
}

/// The catalog of one app alone: its services and its problems, exactly as `build_selected`
/// gives them for this app among others (an app's services and problems depend on nothing
/// but the app and the selection). What `control` rebuilds when only some apps changed.
pub fn build_app(app: &RawApp, selection: &Selection) -> Catalog {
    let mut catalog = Catalog::default();
    add_app(&mut catalog, app, selection);
    catalog
}

fn add_app(catalog: &mut Catalog, app: &RawApp, selection: &Selection) {
    match app_services(app, selection, &mut catalog.problems) {
        Ok(services) => catalog.services.extend(services),
        Err(message) => catalog.problems.push(AppProblem {
            app_id: app.id.clone(),
            message,
        }),
    }
}

/// The services of one app, or why the whole app is disabled.
// A String: the reason is the product, an `AppProblem` message shown to the operator as is.
fn app_services(
    app: &RawApp,
    selection: &Selection,
    problems: &mut Vec<AppProblem>,
) -> Result<Vec<Service>, String> {
    let labels = Labels(&app.labels);
    let mut services = Vec::new();
    for (index, &service_port) in app.ports.iter().enumerate() {
        let group = labels
            .port(index, "GROUP")
            .or_else(|| labels.get("HAPROXY_GROUP"));
        if !selection.groups.selects(group) {
            continue;
        }
        let enabled = labels.port_bool(index, "ENABLED")?;
        if !enabled.unwrap_or(!selection.strict) {
            continue;
        }
        let port = match labels.port(index, "PORT") {
            Some(raw) => raw
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| labels.bad(index, "PORT", raw, "not a TCP port (1-65535)"))?,
            None => service_port,
        };
        if port == 0 {
            // Marathon gives 0 for "no service port"; nothing can bind it.
            continue;
        }
        let bind_addr = labels
            .port(index, "BIND_ADDR")
            .map(|raw| {
                raw.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| labels.bad(index, "BIND_ADDR", raw, "not an IP address"))
            })
            .transpose()?;
        let vhosts = labels
            .port(index, "VHOST")
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(|v| HostName::parse(v).map_err(|e| labels.bad(index, "VHOST", v, e)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let path = labels
            .port(index, "PATH")
            .map(|raw| {
                let p = raw.trim();
                if p.starts_with('/') && !p.contains(char::is_whitespace) {
                    Ok(p.to_string())
                } else {
                    Err(labels.bad(index, "PATH", raw, "must start with / and hold no spaces"))
                }
            })
            .transpose()?;
        let mode = match labels.port(index, "MODE") {
            Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
                "http" => Mode::Http,
                "tcp" => Mode::Tcp,
                _ => return Err(labels.bad(index, "MODE", raw, "expected http or tcp")),
            },
            // marathon-lb: an HTTP health check (exactly `HTTP`) or a vhost means http.
            None if !vhosts.is_empty() || app.http_health_check => Mode::Http,
            None => Mode::Tcp,
        };
        let balance = match labels.port(index, "BALANCE") {
            Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
                "roundrobin" => Balance::RoundRobin,
                "leastconn" => Balance::LeastConn,
                "random" => Balance::Random,
                "source" => Balance::Source,
                "p2c" => Balance::P2c,
                _ => {
                    return Err(labels.bad(
                        index,
                        "BALANCE",
                        raw,
                        "expected roundrobin, leastconn, random, source or p2c",
                    ))
                }
            },
            None => Balance::RoundRobin,
        };
        let weight = match labels.port(index, "BACKEND_WEIGHT") {
            Some(raw) => raw
                .trim()
                .parse::<i32>()
                .map_err(|_| labels.bad(index, "BACKEND_WEIGHT", raw, "not an integer"))?,
            None if path.is_some() => 1,
            None => 0,
        };
        let redirect_to_https = labels
            .port_bool(index, "REDIRECT_TO_HTTPS")?
            .unwrap_or(false);
        let sticky = labels.port_bool(index, "STICKY")?.unwrap_or(false);
        let hsts = labels.port_bool(index, "USE_HSTS")?.unwrap_or(false);
        let auth = labels
            .port(index, "AUTH")
            .map(|raw| {
                let mut parts = raw.trim().splitn(3, ':');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(realm), Some(user), Some(hash))
                        if !user.is_empty() && (hash.starts_with("$6$") || hash.starts_with("$5$")) =>
                    {
                        Ok(AuthLabel {
                            realm: realm.to_string(),
                            user: user.to_string(),
                            hash: hash.to_string(),
                        })
                    }
                    _ => Err(labels.bad(
                        index,
                        "AUTH",
                        "(not shown)",
                        "expected realm:user:hash with a SHA-512 or SHA-256 crypt hash ($6$ or $5$, e.g. from mkpasswd -m sha-512)",
                    )),
                }
            })
            .transpose()?;
        let allowed = labels
            .port(index, "BACKEND_NETWORK_ALLOWED_ACL")
            .map(|raw| {
                raw.split([',', ' '])
                    .filter(|p| !p.trim().is_empty())
                    .map(|p| {
                        p.trim()
                            .parse::<Cidr>()
                            .map_err(|e| labels.bad(index, "BACKEND_NETWORK_ALLOWED_ACL", raw, e))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let ssl_cert = labels
            .port(index, "SSL_CERT")
            .map(|raw| {
                let p = std::path::PathBuf::from(raw.trim());
                if p.is_absolute() {
                    Ok(p)
                } else {
                    Err(labels.bad(
                        index,
                        "SSL_CERT",
                        raw,
                        "must be an absolute path to a PEM file",
                    ))
                }
            })
            .transpose()?;
        let proxypass_path = labels
            .port(index, "HTTP_BACKEND_PROXYPASS_PATH")
            .map(|raw| {
                let p = raw.trim().trim_end_matches('/');
                if p.starts_with('/') && !p.contains(char::is_whitespace) {
                    Ok(p.to_string())
                } else {
                    Err(labels.bad(
                        index,
                        "HTTP_BACKEND_PROXYPASS_PATH",
                        raw,
                        "must start with / and hold no spaces",
                    ))
                }
            })
            .transpose()?;
        let backend_proto = backend_proto::parse(&app.labels, index, mode)?;
        let protocol = app.protocols.get(index).copied().unwrap_or_default();
        let backends = backends(app, index, problems);
        services.push(Service {
            app_id: app.id.clone(),
            index,
            name: backend_name(&app.id, port),
            port,
            bind_addr,
            mode,
            vhosts,
            path,
            balance,
            backends,
            weight,
            redirect_to_https,
            sticky,
            hsts,
            auth,
            allowed,
            proxypass_path,
            ssl_cert,
            // A TCP or HTTP probe says nothing of a UDP-only port's service (it would fail
            // and mark every backend down): such a port's pool follows the scheduler alone.
            check: app
                .checks
                .iter()
                .find(|c| c.index == index && protocol != Protocol::Udp)
                .map(|c| c.check.clone()),
            protocol,
            backend_proto,
        });
    }
    Ok(services)
}

/// The sorted addresses of the app's usable tasks for service-port `index`.
fn backends(app: &RawApp, index: usize, problems: &mut Vec<AppProblem>) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for task in app.tasks.iter().filter(|t| is_serving(&t.state)) {
        if task.host.is_empty() {
            continue;
        }
        let Ok(ip) = task.host.parse::<IpAddr>() else {
            if index == 0 {
                problems.push(AppProblem {
                    app_id: app.id.clone(),
                    message: format!(
                        "task {}: host {:?} is not an IP address; task left out",
                        task.id, task.host
                    ),
                });
            }
            continue;
        };
        match task.ports.get(index) {
            Some(&port) if port > 0 => out.push(SocketAddr::new(ip, port)),
            _ => problems.push(AppProblem {
                app_id: app.id.clone(),
                message: format!(
                    "task {} has no host port for service-port index {index}; task left out",
                    task.id
                ),
            }),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// marathon-lb's backend name: id without the leading `/`, other `/` as `_`, then `_port`.
pub fn backend_name(app_id: &str, port: u16) -> String {
    format!(
        "{}_{port}",
        app_id.trim_start_matches('/').replace('/', "_")
    )
}

/// A label boolean. marathon-lb's truthy strings (`true`, `t`, `yes`, `y`, any case) plus
/// the `1`/`on` this catalog always took. Unlike marathon-lb, which reads any other string
/// as false, an unknown word is an error: `HAPROXY_0_ENABLED=ture` should not hide a port.
fn parse_bool(raw: &str) -> Result<bool, &'static str> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" | "on" => Ok(true),
        "false" | "f" | "no" | "n" | "0" | "off" => Ok(false),
        _ => Err("expected true or false"),
    }
}

/// Label lookups for one app.
struct Labels<'a>(&'a BTreeMap<String, String>);

impl Labels<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// `HAPROXY_{index}_{suffix}`.
    fn port(&self, index: usize, suffix: &str) -> Option<&str> {
        self.get(&format!("HAPROXY_{index}_{suffix}"))
    }

    /// `HAPROXY_{index}_{suffix}` as a boolean, if set; a bad value disables the app.
    // A String: the label parser's message is the product (the app's problem, as is).
    fn port_bool(&self, index: usize, suffix: &str) -> Result<Option<bool>, String> {
        self.port(index, suffix)
            .map(|raw| parse_bool(raw).map_err(|m| self.bad(index, suffix, raw, m)))
            .transpose()
    }

    /// The message that disables an app for one bad label value.
    fn bad(&self, index: usize, suffix: &str, value: &str, why: impl fmt::Display) -> String {
        format!("label HAPROXY_{index}_{suffix} = {value:?}: {why}; app disabled")
    }
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
