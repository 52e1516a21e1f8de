//! The bodies of Mesos-DNS's HTTP lookups, `/v1/hosts/{host}` and `/v1/services/{service}`,
//! computed from a zone. Serving them (routes, `/v1/version`, `/v1/config`) is the admin
//! server's job.
//!
//! Shapes as Mesos-DNS has them: a list of entries, one empty entry when nothing is found
//! (not a 404), ports as strings, `host` as the FQDN, `service` echoing the request.

use serde::{Deserialize, Serialize};

use crate::dns::zone::{address_of, RecordData, RecordType, Zone};

/// One address of `/v1/hosts/{host}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    pub host: String,
    pub ip: String,
}

/// One (target, address, port) of `/v1/services/{service}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEntry {
    /// The service name as requested.
    pub service: String,
    /// The SRV target.
    pub host: String,
    pub ip: String,
    pub port: String,
}

/// `/v1/hosts/{host}`: every A then AAAA address of the name (any case, trailing dot
/// optional, `.*` removed).
pub fn hosts(zone: &Zone, host: &str) -> Vec<HostEntry> {
    let mut entries: Vec<HostEntry> = zone
        .node(host)
        .map(|node| {
            node.of_type(RecordType::A)
                .iter()
                .chain(node.of_type(RecordType::Aaaa))
                .filter_map(|r| {
                    address_of(r).map(|ip| HostEntry {
                        host: node.name().to_string(),
                        ip: ip.to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    if entries.is_empty() {
        entries.push(HostEntry::default());
    }
    entries
}

/// `/v1/services/{service}`: for each SRV record of the name, one entry with the target's
/// first IPv4 address and one with its first IPv6 address (a target with neither gives
/// none).
pub fn services(zone: &Zone, service: &str) -> Vec<ServiceEntry> {
    let mut entries = Vec::new();
    if let Some(node) = zone.node(service) {
        for record in node.of_type(RecordType::Srv) {
            let RecordData::Srv(srv) = &record.data else {
                continue;
            };
            let Some(target) = zone.node_by_id(srv.target) else {
                continue;
            };
            for family in [RecordType::A, RecordType::Aaaa] {
                if let Some(ip) = target.of_type(family).first().and_then(address_of) {
                    entries.push(ServiceEntry {
                        service: service.to_string(),
                        host: target.name().to_string(),
                        ip: ip.to_string(),
                        port: srv.port.to_string(),
                    });
                }
            }
        }
    }
    if entries.is_empty() {
        entries.push(ServiceEntry::default());
    }
    entries
}
