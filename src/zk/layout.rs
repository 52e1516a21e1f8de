//! What the leader election looks like in ZooKeeper, pure: which children of the election
//! path are candidates, in what order, and what a candidate's data says about where it
//! listens. No I/O; `follow` reads the znodes and hands them here.
//!
//! - **Mesos** (`zk://…/mesos`): each master creates an ephemeral sequential child
//!   `json.info_NNNNNNNNNN` whose data is its `MasterInfo` as JSON; the lowest sequence
//!   leads. Other children (the old protobuf `info_` nodes, `log_replicas`) are ignored.
//! - **Marathon** (`zk://…/marathon/leader-curator`): Curator's LeaderLatch; each instance
//!   creates `_c_<uuid>-latch-NNNNNNNNNN` whose data is its `host:port`; the lowest
//!   sequence (the numeric suffix, not the name, which starts with a random UUID) leads.
//!
//! The layout is told from the path: one ending in `leader-curator` is Marathon's latch,
//! anything else is Mesos's.

use serde::Deserialize;

/// The two election layouts Drover reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    Mesos,
    MarathonLatch,
}

/// A candidate znode: its name and sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub node: String,
    pub sequence: u64,
}

/// Where a candidate says it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

/// Why a candidate's data names no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("{node}: not MasterInfo JSON: {reason}")]
    BadJson { node: String, reason: String },
    #[error("{node}: MasterInfo names no address (address.ip/port, pid or hostname/port)")]
    NoAddress { node: String },
    #[error("{node}: latch data {data:?} is not host:port")]
    BadHostPort { node: String, data: String },
}

/// The sequence suffix ZooKeeper appends: ten digits (a signed 32-bit counter, so also
/// `-2147483648` after wrapping), or nineteen where the counter is 64-bit (ZOOKEEPER-4706).
const SEQUENCE_DIGITS: [usize; 2] = [10, 19];

// === impl Layout ===

impl Layout {
    /// Marathon's latch when the path's last segment is `leader-curator`, else Mesos.
    pub fn of_path(path: &str) -> Layout {
        if path.trim_end_matches('/').ends_with("leader-curator") {
            Layout::MarathonLatch
        } else {
            Layout::Mesos
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Layout::Mesos => "mesos",
            Layout::MarathonLatch => "marathon",
        }
    }

    /// The election's candidates among `children`, lowest sequence (the leader) first.
    pub fn candidates(self, children: &[String]) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = children
            .iter()
            .filter_map(|node| {
                let sequence = match self {
                    Layout::Mesos => node.strip_prefix("json.info_").and_then(sequence)?,
                    Layout::MarathonLatch => {
                        let (_, tail) = node.rsplit_once("-latch-")?;
                        node.starts_with("_c_").then_some(())?;
                        sequence(tail)?
                    }
                };
                Some(Candidate {
                    node: node.clone(),
                    sequence,
                })
            })
            .collect();
        out.sort_by(|a, b| a.sequence.cmp(&b.sequence).then(a.node.cmp(&b.node)));
        out
    }

    /// Where the candidate `node` listens, from its data.
    pub fn advertised(self, node: &str, data: &[u8]) -> Result<Advertised, PayloadError> {
        match self {
            Layout::Mesos => master_info(node, data),
            Layout::MarathonLatch => {
                let text = String::from_utf8_lossy(data);
                let text = text.trim();
                host_port(text).ok_or_else(|| PayloadError::BadHostPort {
                    node: node.to_string(),
                    data: text.chars().take(100).collect(),
                })
            }
        }
    }
}

/// A sequence suffix: exactly ten digits, or a wrapped negative counter.
fn sequence(s: &str) -> Option<u64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !SEQUENCE_DIGITS.contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = s.parse().ok()?;
    // Wrapped (negative) counters come after every positive one.
    Some(if n < 0 {
        (n + (1 << 33)) as u64
    } else {
        n as u64
    })
}

/// `MasterInfo` as Mesos writes it (`JSON::protobuf`): only what locates the master.
#[derive(Debug, Deserialize)]
struct MasterInfo {
    #[serde(default)]
    address: Option<Address>,
    #[serde(default)]
    pid: Option<String>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    port: Option<u16>,
}

#[derive(Debug, Deserialize)]
struct Address {
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    hostname: Option<String>,
    port: u16,
}

/// The master's address: `address.ip:address.port` (what Mesos-DNS and the masters use),
/// else the host of its `pid` (`master@ip:port`), else `hostname:port`.
fn master_info(node: &str, data: &[u8]) -> Result<Advertised, PayloadError> {
    let info: MasterInfo = serde_json::from_slice(data).map_err(|e| PayloadError::BadJson {
        node: node.to_string(),
        reason: e.to_string(),
    })?;
    if let Some(a) = info.address {
        if let Some(host) = a.ip.or(a.hostname).filter(|h| !h.is_empty()) {
            return Ok(Advertised { host, port: a.port });
        }
    }
    if let Some(at) = info.pid.as_deref().and_then(|p| p.split_once('@')) {
        if let Some(adv) = host_port(at.1) {
            return Ok(adv);
        }
    }
    match (info.hostname.filter(|h| !h.is_empty()), info.port) {
        (Some(host), Some(port)) => Ok(Advertised { host, port }),
        _ => Err(PayloadError::NoAddress {
            node: node.to_string(),
        }),
    }
}

/// `host:port` or `[v6]:port`.
fn host_port(s: &str) -> Option<Advertised> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    ok.then(|| Advertised {
        host: host.to_string(),
        port,
    })
}

// === impl Advertised ===

impl Advertised {
    /// `host:port`, brackets around an IPv6 host.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A MasterInfo as a Mesos 1.x master writes it to `json.info_*` (127.0.0.1:5050; `ip`
    /// is the IPv4 address as a network-order uint32).
    const MASTER_INFO: &str = include_str!("../../tests/fixtures/zk/mesos-master-info.json");

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn layout_follows_the_path() {
        assert_eq!(Layout::of_path("/mesos"), Layout::Mesos);
        assert_eq!(
            Layout::of_path("/marathon/leader-curator"),
            Layout::MarathonLatch
        );
        assert_eq!(
            Layout::of_path("/marathon/leader-curator/"),
            Layout::MarathonLatch
        );
        assert_eq!(Layout::of_path("/marathon/leader"), Layout::Mesos);
    }

    #[test]
    fn mesos_candidates_are_json_info_children_by_sequence() {
        let c = Layout::Mesos.candidates(&names(&[
            "log_replicas",
            "json.info_0000000012",
            "info_0000000001",
            "json.info_0000000009",
            "json.info_junk",
            "json.info_000000001",
        ]));
        let got: Vec<(&str, u64)> = c.iter().map(|c| (c.node.as_str(), c.sequence)).collect();
        assert_eq!(
            got,
            vec![("json.info_0000000009", 9), ("json.info_0000000012", 12)]
        );
    }

    #[test]
    fn marathon_candidates_sort_by_the_numeric_suffix_not_the_name() {
        let c = Layout::MarathonLatch.candidates(&names(&[
            "_c_ffffffff-0000-4000-8000-000000000001-latch-0000000003",
            "_c_00000000-0000-4000-8000-000000000002-latch-0000000007",
            "_c_88888888-0000-4000-8000-000000000003-latch-0000000001",
            "unrelated",
            "_c_bad-latch-12",
        ]));
        let seqs: Vec<u64> = c.iter().map(|c| c.sequence).collect();
        assert_eq!(seqs, vec![1, 3, 7]);
        assert!(c[0].node.starts_with("_c_8888"));
    }

    #[test]
    fn a_wrapped_sequence_sorts_after_the_positive_ones() {
        let c =
            Layout::Mesos.candidates(&names(&["json.info_-2147483648", "json.info_2147483647"]));
        assert_eq!(c[0].node, "json.info_2147483647");
    }

    #[test]
    fn master_info_gives_the_address() {
        let a = Layout::Mesos
            .advertised("json.info_0000000001", MASTER_INFO.as_bytes())
            .unwrap();
        assert_eq!(a.authority(), "127.0.0.1:5050");
        // Without `address`: the pid's host and port.
        let a = Layout::Mesos
            .advertised(
                "n",
                br#"{"id":"x","ip":1,"port":5050,"pid":"master@10.0.0.2:5051"}"#,
            )
            .unwrap();
        assert_eq!(a.authority(), "10.0.0.2:5051");
        let a = Layout::Mesos
            .advertised("n", br#"{"hostname":"m3.example.com","port":5050}"#)
            .unwrap();
        assert_eq!(a.authority(), "m3.example.com:5050");
    }

    #[test]
    fn bad_payloads_are_clear_errors() {
        let e = Layout::Mesos.advertised("json.info_0000000001", b"\x08\x01protobuf");
        assert!(matches!(e, Err(PayloadError::BadJson { .. })), "{e:?}");
        assert!(e
            .unwrap_err()
            .to_string()
            .starts_with("json.info_0000000001: not MasterInfo JSON"));
        let e = Layout::Mesos.advertised("n", br#"{"id":"x"}"#);
        assert!(matches!(e, Err(PayloadError::NoAddress { .. })), "{e:?}");
        let e = Layout::MarathonLatch.advertised("n", b"no port here");
        assert!(matches!(e, Err(PayloadError::BadHostPort { .. })), "{e:?}");
        let e = Layout::MarathonLatch.advertised("n", b"host:0");
        assert!(e.is_err());
    }

    #[test]
    fn latch_data_is_host_and_port() {
        let a = Layout::MarathonLatch
            .advertised("n", b"marathon-2.example.com:8080\n")
            .unwrap();
        assert_eq!((a.host.as_str(), a.port), ("marathon-2.example.com", 8080));
        let a = Layout::MarathonLatch
            .advertised("n", b"[::1]:8080")
            .unwrap();
        assert_eq!(a.authority(), "[::1]:8080");
    }
}
