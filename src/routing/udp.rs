//! UDP service ports in the route table: which services listen for UDP, on which address,
//! and who keeps a UDP port two apps claim. Mirrors the TCP rules: a UDP port is opened on
//! `[tcp].bind` (or `HAPROXY_{n}_BIND_ADDR`) when it lies in `[tcp].ports`; the holder of
//! a claim in the previous table keeps it, else the first in (app id, index) order. UDP
//! and TCP port numbers are separate: `53/udp` of one app and `53/tcp` of another do not
//! conflict. Master aliases are TCP only.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use super::{conflict, settle, Claim, Conflict, RouteTable};
use crate::catalog::{Catalog, Service};
use crate::config::{Config, UdpConfig};

/// How UDP service ports keep flows (`[udp]`); may change on a config reload, and a
/// change applies to new flows and to the idle checks of open ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpSettings {
    pub idle_timeout: std::time::Duration,
    pub max_flows: usize,
}

impl Default for UdpSettings {
    fn default() -> UdpSettings {
        UdpSettings::of(&UdpConfig::default())
    }
}

impl UdpSettings {
    pub(super) fn of(c: &UdpConfig) -> UdpSettings {
        UdpSettings {
            idle_timeout: c.idle_timeout,
            max_flows: c.max_flows,
        }
    }
}

/// The UDP listen address of `s`, if it has a UDP port Drover serves.
pub(super) fn listen_addr(s: &Service, config: &Config) -> Option<SocketAddr> {
    let tcp = config.tcp.as_ref()?;
    (s.protocol.udp() && tcp.ports.contains(s.port))
        .then(|| SocketAddr::new(s.bind_addr.unwrap_or(tcp.bind), s.port))
}

/// Who holds each claimed UDP port (by route name), and the conflicts.
pub(super) fn settle_ports<'a>(
    catalog: &'a Catalog,
    config: &Config,
    previous: &RouteTable,
) -> (HashMap<u16, &'a str>, Vec<Conflict>) {
    let mut claims: BTreeMap<u16, Vec<&Service>> = BTreeMap::new();
    for s in catalog
        .services
        .iter()
        .filter(|s| listen_addr(s, config).is_some())
    {
        claims.entry(s.port).or_default().push(s);
    }
    let mut holders = HashMap::new();
    let mut conflicts = Vec::new();
    for (port, claimants) in &claims {
        let incumbent = previous.lookup_udp(*port).map(|r| r.name.as_str());
        let kept = settle(claimants, incumbent);
        if claimants.len() > 1 {
            conflicts.push(conflict(Claim::UdpPort(*port), claimants, kept));
        }
        holders.insert(*port, claimants[kept].name.as_str());
    }
    (holders, conflicts)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::config::Groups;
    use crate::metrics::Metrics;

    fn compile(catalog_file: &str) -> RouteTable {
        let snapshot = crate::source::file::parse(catalog_file).expect("catalog parses");
        assert!(snapshot.problems.is_empty(), "{:?}", snapshot.problems);
        let catalog = crate::catalog::build(&snapshot.apps, &Groups::all());
        let config = Config::parse(
            "[tcp]\nbind = \"127.0.0.1\"\nports = \"10000-19999\"\n",
            Path::new("."),
        )
        .expect("config parses");
        let metrics = Metrics::new(prometheus::Registry::new());
        let stats = |name: &str| metrics.route_stats(name);
        super::super::compile(&catalog, &config, 1, &RouteTable::default(), &stats)
    }

    #[test]
    fn udp_ports_get_a_udp_route_and_nothing_tcp() {
        let t = compile(
            r#"
            [[app]]
            id = "/dns"
            labels = { HAPROXY_0_VHOST = "dns.example.com" }
            ports = [{ port = 10053, protocol = "udp" }]
            [[app]]
            id = "/syslog"
            ports = [{ port = 10514, protocol = "udp,tcp" }]
            [[app]]
            id = "/web"
            ports = [10080, { port = 20000, protocol = "udp" }]
            "#,
        );
        let dns = t.lookup_udp(10053).expect("udp route");
        assert_eq!(dns.udp_listen, Some("127.0.0.1:10053".parse().unwrap()));
        assert_eq!(dns.listen, None);
        assert!(
            t.lookup_tcp(10053).is_none(),
            "a udp-only port has no TCP listener"
        );
        assert!(
            t.lookup_http("dns.example.com", "/").is_none(),
            "nor an HTTP route"
        );

        let (udp, tcp) = (t.lookup_udp(10514).unwrap(), t.lookup_tcp(10514).unwrap());
        assert!(
            Arc::ptr_eq(udp, tcp),
            "udp,tcp: one route (one pool) on both listeners"
        );

        assert!(t.lookup_udp(10080).is_none(), "tcp is the default");
        assert!(t.lookup_udp(20000).is_none(), "outside [tcp] ports");
        assert_eq!(t.udp_routes().count(), 2);
        assert!(t.conflicts.is_empty(), "{:?}", t.conflicts);
    }

    #[test]
    fn two_apps_on_one_udp_port_conflict_but_udp_and_tcp_do_not() {
        let t = compile(
            r#"
            [[app]]
            id = "/a"
            ports = [{ port = 10001, protocol = "udp" }]
            [[app]]
            id = "/b"
            ports = [{ port = 10001, protocol = "udp" }]
            [[app]]
            id = "/c"
            ports = [10001]
            "#,
        );
        assert_eq!(t.lookup_udp(10001).unwrap().name, "a_10001");
        assert_eq!(t.lookup_tcp(10001).unwrap().name, "c_10001");
        assert_eq!(t.conflicts.len(), 1, "{:?}", t.conflicts);
        assert_eq!(t.conflicts[0].claim, Claim::UdpPort(10001));
        assert_eq!(t.conflicts[0].refused, ["b_10001"]);
    }
}
