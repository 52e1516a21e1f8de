//! Discovery sources: each turns its input into `catalog::RawApp`s and publishes them on a
//! `watch` channel. Only this module knows an input's format.

use crate::catalog::{AppProblem, RawApp};

pub mod file;
pub mod https;
pub mod marathon;
pub mod mesos;

/// What one good read of a source gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub apps: Vec<RawApp>,
    /// Apps (or tasks) the source had to leave out, and why.
    pub problems: Vec<AppProblem>,
}

/// Replaces task host names by their first IP address, so the catalog sees addresses. A
/// name that does not resolve stays as it is, and the catalog reports its task.
pub async fn resolve_hosts(apps: &mut [RawApp]) {
    for task in apps.iter_mut().flat_map(|a| a.tasks.iter_mut()) {
        if task.host.is_empty() || task.host.parse::<std::net::IpAddr>().is_ok() {
            continue;
        }
        let found = tokio::net::lookup_host((task.host.as_str(), 0))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next());
        if let Some(addr) = found {
            task.host = addr.ip().to_string();
        }
    }
}
