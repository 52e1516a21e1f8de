//! The route table and the pure `compile` that builds it from the catalog.
//!
//! `RouteTable` holds everything the proxies need, in one snapshot: vhost → path prefixes →
//! route, service port → route, and the proxy settings. `control` compiles a new table on
//! every change and stores it whole; the proxies only `load()` it.
//!
//! Conflicts (two services claiming one listening port, or one vhost+path) are settled by
//! one rule and always reported: the service that held the claim in the previous table keeps
//! it; on a fresh start the first in (app id, port index) order does. The others keep their
//! remaining routes and are listed in `conflicts`. A master alias (`[[alias]]`, operator
//! config) always keeps its host, on every path, and its port.

pub mod auth;
pub mod backend_tls;
mod patch;
pub mod pool;
mod shards;
mod udp;

pub use patch::patch;

pub use udp::UdpSettings;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use shards::ShardedMap;

use crate::catalog::{ActiveCheck, AppProblem, Catalog, Mode, Service};
use crate::cidr::Cidr;
use crate::config::{AliasConfig, Config, LeaderCheck, UnderscoreHeaders};
use crate::host::{lookup_key, HostName};
use crate::metrics::RouteStats;
use pool::{Backend, EjectPolicy, Pool};

/// Settings of the HTTP router that may change on a config reload.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    pub header_timeout: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub max_header_bytes: usize,
    pub body_timeout: Duration,
    pub underscore_headers: UnderscoreHeaders,
    /// Peers that must open `[http]` connections with a PROXY header (empty = off).
    pub proxy_protocol: Vec<Cidr>,
    /// The same for `[https]`.
    pub https_proxy_protocol: Vec<Cidr>,
}

/// Settings of the TCP proxy that may change on a config reload.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpSettings {
    pub connect_timeout: Duration,
    pub proxy_protocol: Vec<Cidr>,
    pub send_proxy_protocol: Option<u8>,
    pub max_connections: usize,
}

/// What a route fronts.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteKind {
    /// An app's service port; `check` is Drover's own health check of its backends.
    Service { check: Option<ActiveCheck> },
    /// A master alias: its pool routes only to the proven leader.
    Alias {
        check: LeaderCheck,
        interval: Duration,
        /// The election that names the leader (`[[alias]] zk`), when it follows one.
        zk: Option<crate::zk::ZkAlias>,
    },
}

/// What the HTTP router does for a route besides forwarding (marathon-lb's labels).
#[derive(Debug, Default)]
pub struct HttpRules {
    /// A plain-HTTP request gets a 301 to the same URL over https.
    pub redirect_to_https: bool,
    /// HTTPS answers carry `Strict-Transport-Security`.
    pub hsts: bool,
    /// A cookie keeps a client on its backend.
    pub sticky: bool,
    pub auth: Option<auth::BasicAuth>,
    /// Source networks allowed; empty = everyone.
    pub allowed: Vec<Cidr>,
    /// Removed from the start of the path before forwarding.
    pub proxypass_path: Option<String>,
    /// The service port's listener terminates TLS with this PEM (`HAPROXY_{n}_SSL_CERT`).
    pub ssl_cert: Option<std::path::PathBuf>,
    /// HTTP/1.1, h2c or h2 to the backends (`DROVER_{n}_BACKEND_PROTO`).
    pub backend: crate::catalog::BackendProto,
}

impl HttpRules {
    fn of(s: &Service) -> HttpRules {
        HttpRules {
            redirect_to_https: s.redirect_to_https,
            hsts: s.hsts,
            sticky: s.sticky,
            auth: s.auth.as_ref().map(auth::BasicAuth::new),
            allowed: s.allowed.clone(),
            proxypass_path: s.proxypass_path.clone(),
            ssl_cert: s.ssl_cert.clone(),
            backend: s.backend_proto.clone(),
        }
    }

    /// Whether a client at `ip` may use the route.
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.allowed.is_empty() || self.allowed.iter().any(|n| n.contains(ip))
    }
}

/// One service's (or alias's) route: its pool and what it answers for.
#[derive(Debug)]
pub struct Route {
    /// marathon-lb backend name, e.g. `shop_api_10002` (`alias:mesos.example.com` for an
    /// alias); the route label in metrics.
    pub name: String,
    pub kind: RouteKind,
    pub app_id: String,
    pub index: usize,
    pub mode: Mode,
    pub port: u16,
    pub vhosts: Vec<HostName>,
    pub path: Option<String>,
    /// The TCP listener address, when this service port is listened on.
    pub listen: Option<SocketAddr>,
    /// The UDP listener address, when the port's protocol includes udp and it is served.
    pub udp_listen: Option<SocketAddr>,
    pub pool: Pool,
    pub stats: RouteStats,
    pub rules: HttpRules,
    /// The access log's name: the app id and service port (`/shop/web:10001`), or an
    /// alias's route name (`alias:mesos.example.com`).
    pub log_name: String,
}

/// A path prefix on a vhost; the empty prefix matches every path.
#[derive(Debug, Clone)]
pub struct PathRoute {
    pub prefix: String,
    pub route: Arc<Route>,
}

/// What two or more services claimed at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Port(u16),
    UdpPort(u16),
    Vhost { host: HostName, path: String },
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Claim::Port(p) => write!(f, "service port {p}"),
            Claim::UdpPort(p) => write!(f, "UDP service port {p}"),
            Claim::Vhost { host, path } if path.is_empty() => write!(f, "vhost {host}"),
            Claim::Vhost { host, path } => write!(f, "vhost {host} path {path}"),
        }
    }
}

/// A claim made by several services, who got it, and who did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub claim: Claim,
    /// Route name of the service that serves the claim.
    pub kept: String,
    /// Route names of the services refused.
    pub refused: Vec<String>,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is claimed by {} and {}; {} keeps it, the others get no route for it",
            self.claim,
            self.kept,
            self.refused.join(", "),
            self.kept
        )
    }
}

/// Everything the proxies route with; immutable once built.
#[derive(Debug, Default)]
pub struct RouteTable {
    pub version: u64,
    /// Vhost -> its path routes, longest prefix first. In shards, with shared keys and
    /// values: a patch copies the shards its apps' names land in, and no name or list.
    vhosts: ShardedMap<HostName, Arc<[PathRoute]>>,
    tcp: BTreeMap<u16, Arc<Route>>,
    /// UDP service ports (protocol `udp` or `udp,tcp`) -> route.
    udp: BTreeMap<u16, Arc<Route>>,
    /// App id -> the app's first http-mode service (marathon-lb's `X-Marathon-App-Id` rule).
    app_ids: ShardedMap<Arc<str>, Arc<Route>>,
    /// Every service's route, in catalog order.
    pub routes: Vec<Arc<Route>>,
    /// `routes` are in `patch::sort_key` order (aliases, then services by app id and
    /// index), so a patch can find an app's routes by binary search.
    routes_sorted: bool,
    pub conflicts: Vec<Conflict>,
    pub problems: Vec<AppProblem>,
    pub http: Option<HttpSettings>,
    pub tcp_settings: Option<TcpSettings>,
    pub udp_settings: UdpSettings,
    /// TLS setups of the `h2` routes' backends, by CA file (set by `control`, see
    /// `backend_tls`).
    pub backend_tls: backend_tls::BackendTlsSet,
}

// === impl RouteTable ===

impl RouteTable {
    /// The route for a request's `Host` header (any case, any `:port`) and path: the
    /// longest matching path prefix on that vhost.
    pub fn lookup_http(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        let paths = self.vhosts.get(lookup_key(host).as_ref())?;
        paths
            .iter()
            .find(|p| path.starts_with(p.prefix.as_str()))
            .map(|p| &p.route)
    }

    /// The route for an `X-Marathon-App-Id` value: the app's first http-mode service.
    pub fn lookup_app_id(&self, app_id: &str) -> Option<&Arc<Route>> {
        self.app_ids.get(app_id)
    }

    /// The route behind a listening service port.
    pub fn lookup_tcp(&self, port: u16) -> Option<&Arc<Route>> {
        self.tcp.get(&port)
    }

    /// Every listening service port with its route, by port.
    pub fn tcp_routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.tcp.values()
    }

    /// The route behind a listening UDP service port.
    pub fn lookup_udp(&self, port: u16) -> Option<&Arc<Route>> {
        self.udp.get(&port)
    }

    /// Every listening UDP service port with its route, by port.
    pub fn udp_routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.udp.values()
    }

    /// Every vhost with its path routes (longest prefix first), by name.
    pub fn vhosts(&self) -> Vec<(&HostName, &[PathRoute])> {
        let mut v: Vec<_> = self.vhosts.iter().map(|(h, p)| (h, &**p)).collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// How many vhosts are routed (without sorting them, as `vhosts` does).
    pub fn vhost_count(&self) -> usize {
        self.vhosts.len()
    }

    /// Every route by name (for state reuse across builds).
    fn routes_by_name(&self) -> HashMap<&str, &Route> {
        self.routes
            .iter()
            .map(|r| (r.name.as_str(), &**r))
            .collect()
    }

    /// The alias routes, in config order.
    pub fn aliases(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes
            .iter()
            .filter(|r| matches!(r.kind, RouteKind::Alias { .. }))
    }
}

/// The route name of an alias.
pub fn alias_route_name(host: &HostName) -> String {
    format!("alias:{host}")
}

/// The backends for `addrs`, reusing `old`'s state object for every address it had, so
/// in-flight counts, failure streaks, ejections, check verdicts and leadership carry over.
fn reuse_backends(old: Option<&Route>, addrs: &[SocketAddr]) -> Vec<Arc<Backend>> {
    let old = old.map_or(&[][..], |r| r.pool.backends());
    // Small pools (the common case) search linearly; big ones get a map.
    let map: Option<HashMap<SocketAddr, &Arc<Backend>>> =
        (old.len() > 16).then(|| old.iter().map(|b| (b.addr, b)).collect());
    addrs
        .iter()
        .map(|addr| {
            let found = match &map {
                Some(m) => m.get(addr).copied(),
                None => old.iter().find(|b| b.addr == *addr),
            };
            found
                .cloned()
                .unwrap_or_else(|| Arc::new(Backend::new(*addr)))
        })
        .collect()
}

/// Builds the route table for `catalog` under `config`. Backends whose address is in
/// `previous` keep their state object; conflicts are settled in favour of `previous`'s
/// holder.
///
/// `stats` gives each route (by name) its metric handles. It is passed in, as a clock would
/// be, so that compiling never touches the metrics registry itself, while a request still
/// reaches its route's handles in `Route::stats` without a lookup.
pub fn compile(
    catalog: &Catalog,
    config: &Config,
    version: u64,
    previous: &RouteTable,
    stats: &dyn Fn(&str) -> RouteStats,
) -> RouteTable {
    let old_routes = previous.routes_by_name();
    let eject = eject_policy(config);
    let mut conflicts = Vec::new();
    let mut routes = Vec::with_capacity(catalog.services.len() + config.aliases.len());
    let mut tcp = BTreeMap::new();
    let mut vhosts: HashMap<HostName, Vec<PathRoute>> = HashMap::new();

    // Aliases first: operator config outranks discovered apps.
    for alias in &config.aliases {
        let route = alias_route(alias, config, &old_routes, stats);
        if let Some(addr) = route.listen {
            tcp.insert(addr.port(), route.clone());
        }
        vhosts
            .entry(alias.host.clone())
            .or_default()
            .push(PathRoute {
                prefix: String::new(),
                route: route.clone(),
            });
        routes.push(route);
    }
    let alias_port = |port: u16| tcp.get(&port).map(|r: &Arc<Route>| r.name.clone());
    let alias_host = |host: &HostName| {
        config
            .aliases
            .iter()
            .find(|a| a.host == *host)
            .map(|a| alias_route_name(&a.host))
    };

    let listen_addr = |s: &Service| tcp_listen_addr(s, config);

    // Settle port claims first: a refused service has no listener.
    let mut port_claims: BTreeMap<u16, Vec<&Service>> = BTreeMap::new();
    for s in catalog.services.iter().filter(|s| listen_addr(s).is_some()) {
        port_claims.entry(s.port).or_default().push(s);
    }
    let mut port_holder: HashMap<u16, &str> = HashMap::new();
    for (port, claimants) in &port_claims {
        if let Some(alias) = alias_port(*port) {
            conflicts.push(Conflict {
                claim: Claim::Port(*port),
                kept: alias,
                refused: claimants.iter().map(|s| s.name.clone()).collect(),
            });
            continue;
        }
        let incumbent = previous.lookup_tcp(*port).map(|r| r.name.as_str());
        let kept = settle(claimants, incumbent);
        if claimants.len() > 1 {
            conflicts.push(conflict(Claim::Port(*port), claimants, kept));
        }
        port_holder.insert(*port, &claimants[kept].name);
    }

    let (udp_holder, udp_conflicts) = udp::settle_ports(catalog, config, previous);
    conflicts.extend(udp_conflicts);
    let mut udp = BTreeMap::new();
    let mut app_ids = ShardedMap::with_capacity(catalog.services.len());
    let mut vhost_claims: BTreeMap<VhostKey, Vec<(&Service, Arc<Route>)>> = BTreeMap::new();
    for s in &catalog.services {
        let listen = listen_addr(s).filter(|_| port_holder.get(&s.port) == Some(&&*s.name));
        let udp_listen =
            udp::listen_addr(s, config).filter(|_| udp_holder.get(&s.port) == Some(&&*s.name));
        let old = old_routes.get(s.name.as_str()).copied();
        let route = service_route(s, (listen, udp_listen), old, eject, stats);
        if listen.is_some() {
            tcp.insert(s.port, route.clone());
        }
        if route.udp_listen.is_some() {
            udp.insert(s.port, route.clone());
        }
        // A UDP-only port gets no HTTP route.
        if s.mode == Mode::Http && s.protocol.tcp() {
            app_ids.get_or_insert_with(Arc::from(s.app_id.as_str()), || route.clone());
        }
        for host in s.vhosts.iter().filter(|_| s.protocol.tcp()) {
            let key = (host.clone(), s.path.clone().unwrap_or_default());
            vhost_claims
                .entry(key)
                .or_default()
                .push((s, route.clone()));
        }
        routes.push(route);
    }

    for ((host, path), claimants) in vhost_claims {
        let services: Vec<&Service> = claimants.iter().map(|(s, _)| *s).collect();
        if let Some(alias) = alias_host(&host) {
            conflicts.push(Conflict {
                claim: Claim::Vhost { host, path },
                kept: alias,
                refused: services.iter().map(|s| s.name.clone()).collect(),
            });
            continue;
        }
        let incumbent = previous
            .vhosts
            .get(&host)
            .and_then(|paths| paths.iter().find(|p| p.prefix == path))
            .map(|p| p.route.name.as_str());
        let kept = settle(&services, incumbent);
        if claimants.len() > 1 {
            let claim = Claim::Vhost {
                host: host.clone(),
                path: path.clone(),
            };
            conflicts.push(conflict(claim, &services, kept));
        }
        let route = claimants[kept].1.clone();
        vhosts.entry(host).or_default().push(PathRoute {
            prefix: path,
            route,
        });
    }
    let vhosts = vhosts
        .into_iter()
        .map(|(host, mut paths)| {
            paths.sort_by_key(|p| std::cmp::Reverse(p.prefix.len()));
            (host, Arc::from(paths))
        })
        .collect();

    let routes_sorted = routes
        .windows(2)
        .all(|w| patch::sort_key(&w[0]) <= patch::sort_key(&w[1]));
    RouteTable {
        version,
        vhosts,
        tcp,
        udp,
        app_ids,
        routes,
        routes_sorted,
        conflicts,
        problems: catalog.problems.clone(),
        http: config.http.as_ref().map(|h| HttpSettings {
            header_timeout: h.header_timeout,
            connect_timeout: h.connect_timeout,
            response_timeout: h.response_timeout,
            max_header_bytes: h.max_header_bytes,
            body_timeout: h.body_timeout,
            underscore_headers: h.underscore_headers,
            proxy_protocol: h.proxy_protocol.clone(),
            https_proxy_protocol: config
                .https
                .as_ref()
                .map_or_else(Vec::new, |s| s.proxy_protocol.clone()),
        }),
        tcp_settings: config.tcp.as_ref().map(|t| TcpSettings {
            connect_timeout: t.connect_timeout,
            proxy_protocol: t.proxy_protocol.clone(),
            send_proxy_protocol: t.send_proxy_protocol,
            max_connections: t.max_connections,
        }),
        udp_settings: UdpSettings::of(&config.udp),
        backend_tls: backend_tls::BackendTlsSet::default(),
    }
}

/// The ejection policy `[ejection]` asks for (`None`: off).
fn eject_policy(config: &Config) -> Option<EjectPolicy> {
    (config.ejection.after > 0).then_some(EjectPolicy {
        after: config.ejection.after,
        base: config.ejection.base,
        max: config.ejection.max,
    })
}

/// The TCP listen address of `s`, if it has a TCP port Drover serves (whether it holds the
/// port is settled apart).
fn tcp_listen_addr(s: &Service, config: &Config) -> Option<SocketAddr> {
    let tcp = config.tcp.as_ref()?;
    (s.protocol.tcp() && tcp.ports.contains(s.port))
        .then(|| SocketAddr::new(s.bind_addr.unwrap_or(tcp.bind), s.port))
}

/// The route of one service, listening on the `(tcp, udp)` addresses it holds; backends
/// known to `old` keep their state.
fn service_route(
    s: &Service,
    (listen, udp_listen): (Option<SocketAddr>, Option<SocketAddr>),
    old: Option<&Route>,
    eject: Option<EjectPolicy>,
    stats: &dyn Fn(&str) -> RouteStats,
) -> Arc<Route> {
    let backends = reuse_backends(old, &s.backends);
    Arc::new(Route {
        name: s.name.clone(),
        kind: RouteKind::Service {
            check: s.check.clone(),
        },
        app_id: s.app_id.clone(),
        index: s.index,
        mode: s.mode,
        port: s.port,
        vhosts: s.vhosts.clone(),
        path: s.path.clone(),
        listen,
        udp_listen,
        pool: Pool::new(backends, s.balance, eject),
        stats: stats(&s.name),
        rules: HttpRules::of(s),
        log_name: format!("{}:{}", s.app_id, s.port),
    })
}

/// The route of one master alias: every master in its pool, routed to only when proven
/// leader.
fn alias_route(
    alias: &AliasConfig,
    config: &Config,
    old_routes: &HashMap<&str, &Route>,
    stats: &dyn Fn(&str) -> RouteStats,
) -> Arc<Route> {
    let name = alias_route_name(&alias.host);
    let kind = RouteKind::Alias {
        check: alias.check.clone(),
        interval: alias.interval,
        zk: alias.zk.clone(),
    };
    let mut masters: Vec<SocketAddr> = Vec::with_capacity(alias.backends.len());
    for addr in &alias.backends {
        if !masters.contains(addr) {
            masters.push(*addr);
        }
    }
    // A changed check or master list must prove its leader afresh: no state carries over.
    // (A changed interval keeps it: the masters and what proves leadership are the same.)
    let same_check = |k: &RouteKind| match k {
        RouteKind::Alias { check, zk, .. } => *check == alias.check && *zk == alias.zk,
        RouteKind::Service { .. } => false,
    };
    let old = old_routes.get(name.as_str()).copied().filter(|r| {
        same_check(&r.kind)
            && r.pool
                .backends()
                .iter()
                .map(|b| b.addr)
                .eq(masters.iter().copied())
    });
    let bind = config
        .tcp
        .as_ref()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |t| t.bind);
    Arc::new(Route {
        kind,
        app_id: String::new(),
        index: 0,
        mode: Mode::Http,
        port: alias.port.unwrap_or(0),
        vhosts: vec![alias.host.clone()],
        path: None,
        listen: alias.port.map(|p| SocketAddr::new(bind, p)),
        udp_listen: None,
        pool: Pool::leader(reuse_backends(old, &masters)),
        stats: stats(&name),
        rules: HttpRules::default(),
        log_name: name.clone(),
        name,
    })
}

/// A vhost and path prefix ("" for none): what one HTTP route claims.
type VhostKey = (HostName, String);

/// Which claimant keeps a claim: the incumbent if it still claims, else the first.
fn settle(claimants: &[&Service], incumbent: Option<&str>) -> usize {
    incumbent
        .and_then(|name| claimants.iter().position(|s| s.name == name))
        .unwrap_or(0)
}

fn conflict(claim: Claim, claimants: &[&Service], kept: usize) -> Conflict {
    Conflict {
        claim,
        kept: claimants[kept].name.clone(),
        refused: claimants
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != kept)
            .map(|(_, s)| s.name.clone())
            .collect(),
    }
}

#[cfg(test)]
mod tests;
