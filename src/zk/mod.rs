//! ZooKeeper leader detection: who leads a Mesos or Marathon cluster, as the election in
//! ZooKeeper says, seen through a watch (a change arrives in milliseconds, not at the next
//! probe or poll). Used by the Mesos source (`[mesos] zk`) and by master aliases
//! (`[[alias]] zk`); what they do with a leader is theirs.
//!
//! - `layout`: pure; which children of the election path are candidates, their order, and
//!   the address in a candidate's data (Mesos `json.info_*`, Marathon's Curator latch).
//! - `follow`: one task per election path: a session, a children watch, every candidate's
//!   data re-read on each change, published as a [`ZkView`]; reconnects with backoff.
//! - `registry`: [`Zk`], the handle that starts one follower per URL and shares it
//!   between its users, and lists every view for `/debug/routes`.
//! - `members`: for aliases with `zk` and no `backends`, the addresses ZooKeeper names,
//!   handed to `control` so they become the alias's pool.
//!
//! ZooKeeper trouble never stops Drover: a lost session keeps the last leader in the view
//! (marked disconnected) until ZooKeeper answers again.

mod follow;
pub mod layout;
mod members;
mod registry;

use std::fmt;

pub use follow::{Member, ZkView};
pub use layout::Layout;
pub use members::{alias_members, with_alias_members, AliasMembers};
pub use registry::Zk;

/// A parsed `zk://host:port[,host:port…]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ZkUrl {
    /// The ensemble, as the client takes it: `host:port,host:port`.
    pub servers: String,
    /// The election path, e.g. `/mesos` or `/marathon/leader-curator`.
    pub path: String,
    pub layout: Layout,
}

/// An alias that follows an election: `[[alias]] zk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkAlias {
    pub url: ZkUrl,
    /// `backends` were configured: the ZooKeeper leader must be one of them and pass the
    /// alias's probe too. Without, the members ZooKeeper names are the backends, unprobed.
    pub confirm: bool,
}

/// Why a `zk://` URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZkUrlError {
    #[error("not a zk:// URL")]
    NotZk,
    #[error("credentials in the URL are not supported")]
    Credentials,
    #[error("no ZooKeeper server (zk://host:port,…/path)")]
    NoServers,
    #[error("{0:?}: not host:port")]
    BadServer(String),
    #[error("no election path (zk://host:port/mesos)")]
    NoPath,
}

// === impl ZkUrl ===

impl ZkUrl {
    pub fn parse(url: &str) -> Result<ZkUrl, ZkUrlError> {
        let rest = url.strip_prefix("zk://").ok_or(ZkUrlError::NotZk)?;
        let (servers, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if servers.contains('@') {
            return Err(ZkUrlError::Credentials);
        }
        if servers.is_empty() {
            return Err(ZkUrlError::NoServers);
        }
        for server in servers.split(',') {
            let port = server.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
            if !matches!(port, Some((h, Ok(p))) if !h.is_empty() && p > 0) {
                return Err(ZkUrlError::BadServer(server.to_string()));
            }
        }
        let path = path.trim_end_matches('/');
        if path.is_empty() {
            return Err(ZkUrlError::NoPath);
        }
        Ok(ZkUrl {
            servers: servers.to_string(),
            path: path.to_string(),
            layout: Layout::of_path(path),
        })
    }
}

impl fmt::Display for ZkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "zk://{}{}", self.servers, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_servers_path_and_layout() {
        let u = ZkUrl::parse("zk://10.0.0.1:2181,10.0.0.2:2181/mesos").unwrap();
        assert_eq!(u.servers, "10.0.0.1:2181,10.0.0.2:2181");
        assert_eq!((u.path.as_str(), u.layout), ("/mesos", Layout::Mesos));
        assert_eq!(u.to_string(), "zk://10.0.0.1:2181,10.0.0.2:2181/mesos");
        let u = ZkUrl::parse("zk://zk1:2181/marathon/leader-curator/").unwrap();
        assert_eq!(u.path, "/marathon/leader-curator");
        assert_eq!(u.layout, Layout::MarathonLatch);
        assert_eq!(ZkUrl::parse("http://zk:2181/mesos"), Err(ZkUrlError::NotZk));
        assert_eq!(ZkUrl::parse("zk://zk:2181"), Err(ZkUrlError::NoPath));
        assert_eq!(ZkUrl::parse("zk:///mesos"), Err(ZkUrlError::NoServers));
        assert_eq!(
            ZkUrl::parse("zk://zk/mesos"),
            Err(ZkUrlError::BadServer("zk".into()))
        );
        assert_eq!(
            ZkUrl::parse("zk://u:p@zk:2181/mesos"),
            Err(ZkUrlError::Credentials)
        );
    }
}
