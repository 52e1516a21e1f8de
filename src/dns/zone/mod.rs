//! The compiled zone: every name of the domain with its records, ready to answer. `compile`
//! runs `dns::records::generate`, adds the apex (SOA, NS), the SRV answers' additional
//! records and the empty non-terminals, and drops names that cannot go on the wire.
//! `lookup` is one hash-map probe on the lower-cased name; the types are plain Rust
//! (`Ipv4Addr`, `Ipv6Addr`, our `Srv`, `Soa`) so a DNS server can encode them as it likes.
//! `ZoneState` (`state`) keeps what a compile produced and patches the Marathon-only apps
//! into a new zone without recompiling the rest.
//!
//! The storage is shared between a zone and the zones patched from it: the compile's names
//! and records are never written again; a patch adds the names it needs to a small second
//! name table, copies the node chunks it changes, and puts the records of the names it
//! rewrites in a new segment.
//!
//! Answers follow the RFCs where Mesos-DNS does not (EXPECTED.md's [Q] rows): the apex
//! answers SOA, NS and ANY; a name without the asked type is NODATA and a name that does
//! not exist NXDOMAIN for every type, SRV included; a name with only names below it (an
//! empty non-terminal, such as `marathon.slave.mesos`) exists. Negative answers carry
//! `Zone::soa`, whose owner is the apex.

mod build;
mod chunked;
mod state;
#[cfg(test)]
mod state_tests;

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use chunked::Chunked;
pub use state::ZoneState;

use crate::catalog::cluster::{Cluster, MarathonOnlyApp};
use crate::config::DnsConfig;
pub use crate::dns::intern::NameId;
use crate::dns::intern::NameTable;
use crate::dns::name::LabelRules;
use crate::dns::records::{HostRecord, IpSource, RecordOptions};

/// Everything a zone is compiled from.
#[derive(Debug, Clone, Copy)]
pub struct ZoneInput<'a> {
    /// What the leading Mesos master reported; `None` without `[mesos]` or before the first
    /// good read.
    pub cluster: Option<&'a Cluster>,
    /// Apps known only from Marathon.
    pub marathon_apps: &'a [MarathonOnlyApp],
    pub options: &'a ZoneOptions,
    /// Backends Drover's active checks prove down: with `healthy_only`, their tasks fail.
    pub checked_down: &'a BTreeSet<SocketAddr>,
    /// The SOA serial. `control` starts it at the Unix time in seconds when Drover starts and
    /// adds one per zone build, so it grows across restarts too; it is not tied to the
    /// route table's version.
    pub serial: u32,
}

/// The zone's fixed settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneOptions {
    /// Names, sources and label rules.
    pub records: RecordOptions,
    /// Seconds, for every record.
    pub ttl: u32,
    /// SRV priority and weight (Mesos-DNS: 0 and `SRVRecordDefaultWeight`, default 1).
    pub srv_priority: u16,
    pub srv_weight: u16,
    pub soa: SoaOptions,
}

/// The SOA fields other than the serial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoaOptions {
    /// The primary name server, also the NS record's target.
    pub mname: String,
    /// The responsible mailbox in name form (`root.ns1.mesos.`).
    pub rname: String,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    /// The negative-caching TTL.
    pub minimum: u32,
}

// === impl ZoneOptions ===

impl ZoneOptions {
    /// Mesos-DNS's defaults for `domain`: TTL 60, SRV 0/1, SOA `ns1.{domain}.`
    /// `root.ns1.{domain}.` 60 600 86400, minimum = TTL.
    pub fn mesos_dns_defaults(domain: &str) -> ZoneOptions {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        ZoneOptions {
            records: RecordOptions {
                domain: domain.clone(),
                ..RecordOptions::default()
            },
            ttl: 60,
            srv_priority: 0,
            srv_weight: 1,
            soa: SoaOptions {
                mname: format!("ns1.{domain}."),
                rname: format!("root.ns1.{domain}."),
                refresh: 60,
                retry: 600,
                expire: 86400,
                minimum: 60,
            },
        }
    }

    /// The settings `[dns]` asks for, with Mesos-DNS's defaults elsewhere.
    pub fn from_config(dns: &DnsConfig) -> ZoneOptions {
        let mut options = ZoneOptions::mesos_dns_defaults(dns.domain.as_str());
        options.ttl = dns.ttl.as_secs().clamp(0, u32::MAX as u64) as u32;
        options.soa.minimum = options.ttl;
        options.records.ip_sources = dns
            .ip_sources
            .iter()
            .filter_map(|s| IpSource::from_name(s))
            .collect();
        options.records.labels = LabelRules::from_name(&dns.labels).unwrap_or_default();
        options.records.legacy_discovery_names = dns.legacy_names;
        options.records.healthy_only = dns.healthy_only;
        // The name server's own name answers with the address DNS listens on, when that is
        // one address (not 0.0.0.0 / ::).
        let ip = dns.listen.ip();
        if !ip.is_unspecified() {
            options.records.name_server = Some(HostRecord {
                name: options.soa.mname.clone(),
                ips: vec![ip],
            });
        }
        options
    }
}

/// One resource record. The owner (and an SRV or NS target) is a name of the zone's
/// table: `Zone::name` gives its text. The TTL and the SRV priority and weight are the
/// same for every record of a zone (`Zone::ttl`, `Zone::srv_priority`, `Zone::srv_weight`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    pub owner: NameId,
    pub data: RecordData,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Ns(NameId),
    /// The zone's one SOA record; its fields are `Zone::soa_fields` (inline here they
    /// would make every record half as big again).
    Soa,
    Srv(Srv),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Srv {
    pub port: u16,
    pub target: NameId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    /// Also the NS record's target.
    pub mname: NameId,
    /// A mailbox in name form, not a name of the zone.
    pub rname: Box<str>,
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
}

/// The record types a zone holds, in the order a node keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    A,
    Aaaa,
    Ns,
    Soa,
    Srv,
}

// Records are most of a zone's memory: keep them at 24 bytes.
const _: () = assert!(std::mem::size_of::<Record>() == 24);

/// A question's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryType {
    Record(RecordType),
    /// `ANY` (255): every record of the name.
    Any,
    /// Any other type code: never held, so NODATA where the name exists.
    Other(u16),
}

// === impl RecordType, QueryType, RecordData ===

impl RecordType {
    const ALL: [RecordType; 5] = [
        RecordType::A,
        RecordType::Aaaa,
        RecordType::Ns,
        RecordType::Soa,
        RecordType::Srv,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// The wire type code.
    pub fn code(self) -> u16 {
        match self {
            RecordType::A => 1,
            RecordType::Ns => 2,
            RecordType::Soa => 6,
            RecordType::Aaaa => 28,
            RecordType::Srv => 33,
        }
    }
}

impl QueryType {
    pub const A: QueryType = QueryType::Record(RecordType::A);
    pub const AAAA: QueryType = QueryType::Record(RecordType::Aaaa);
    pub const NS: QueryType = QueryType::Record(RecordType::Ns);
    pub const SOA: QueryType = QueryType::Record(RecordType::Soa);
    pub const SRV: QueryType = QueryType::Record(RecordType::Srv);

    /// From the wire type code.
    pub fn from_code(code: u16) -> QueryType {
        match code {
            255 => QueryType::Any,
            _ => RecordType::ALL
                .into_iter()
                .find(|t| t.code() == code)
                .map_or(QueryType::Other(code), QueryType::Record),
        }
    }
}

impl RecordData {
    pub fn record_type(&self) -> RecordType {
        match self {
            RecordData::A(_) => RecordType::A,
            RecordData::Aaaa(_) => RecordType::Aaaa,
            RecordData::Ns(_) => RecordType::Ns,
            RecordData::Soa => RecordType::Soa,
            RecordData::Srv(_) => RecordType::Srv,
        }
    }
}

/// One name of the zone and its records: a view into the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node<'z> {
    id: NameId,
    name: &'z str,
    data: &'z NodeData,
    /// The zone's record segment that holds this node's records.
    arena: &'z [Record],
}

/// What a name of the zone's table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeState {
    /// Only referred to (an SRV target without addresses, an SOA mname outside the zone):
    /// not a name of the zone.
    Absent,
    Records,
    /// No records of its own, names below it (`marathon.slave.mesos`).
    EmptyNonTerminal,
    /// Generated with records, but it cannot go on the wire.
    Dropped,
}

/// Where a node's records are in the zone's record segments (one `Vec<Record>` for the
/// whole compile, one more per patch: no allocation per name, and the records of a node,
/// and its additional records, are contiguous in one segment).
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeData {
    /// The records of type `t` are `bounds[t.index()]..bounds[t.index() + 1]`: the types
    /// follow each other in `RecordType` order.
    bounds: [u32; 6],
    /// What answers about this name carry in the additional section: one A and one AAAA
    /// of each SRV target, or the addresses of the NS target.
    additional: (u32, u32),
    /// The segment `bounds` and `additional` index.
    segment: u32,
    state: NodeState,
}

// === impl Node, NodeData ===

impl NodeData {
    const ABSENT: NodeData = NodeData {
        bounds: [0; 6],
        additional: (0, 0),
        segment: 0,
        state: NodeState::Absent,
    };

    fn is_node(&self) -> bool {
        matches!(self.state, NodeState::Records | NodeState::EmptyNonTerminal)
    }

    fn range(&self, t: RecordType) -> std::ops::Range<usize> {
        self.bounds[t.index()] as usize..self.bounds[t.index() + 1] as usize
    }
}

impl<'z> Node<'z> {
    pub fn id(&self) -> NameId {
        self.id
    }

    /// Lower case, trailing dot.
    pub fn name(&self) -> &'z str {
        self.name
    }

    /// Every record, grouped by type. Empty for an empty non-terminal.
    pub fn records(&self) -> &'z [Record] {
        let b = &self.data.bounds;
        &self.arena[b[0] as usize..b[5] as usize]
    }

    pub fn of_type(&self, t: RecordType) -> &'z [Record] {
        &self.arena[self.data.range(t)]
    }

    pub fn additional(&self) -> &'z [Record] {
        let (start, end) = self.data.additional;
        &self.arena[start as usize..end as usize]
    }
}

/// The outcome of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'z> {
    /// NOERROR with answers (all of one owner, the question's name).
    Found {
        answers: &'z [Record],
        additional: &'z [Record],
    },
    /// NOERROR, no answers: the name exists but has no record of the type. Authority: `soa`.
    NoData,
    /// The name does not exist in the zone. Authority: `soa`.
    NxDomain,
    /// Not in the zone's domain: for the server to refuse or forward.
    OutsideZone,
}

/// A compiled, immutable zone. Cloning one is cheap: the storage is shared.
#[derive(Debug, Clone)]
pub struct Zone {
    /// `mesos.`
    apex: NameId,
    /// `.mesos.`, for the in-zone test.
    dot_apex: Box<str>,
    /// Every name the records mention, empty non-terminals included.
    names: Names,
    /// By `NameId::index`.
    nodes: Chunked<NodeData>,
    /// The compile's records (every node's records, then every node's additional
    /// records), then one segment per patch with the names it rewrote.
    segments: Vec<Arc<Vec<Record>>>,
    soa_fields: Soa,
    ttl: u32,
    srv_priority: u16,
    srv_weight: u16,
    record_count: usize,
    dropped: Arc<Vec<String>>,
    /// With `healthy_only`: names answered with all their tasks, every one failing.
    all_failing_names: usize,
}

/// A zone's names: the compile's table, then the names patches added (ids after the
/// compile's). Both shared between the zones patched from one compile.
#[derive(Debug, Clone, Default)]
struct Names {
    compiled: Arc<NameTable>,
    added: Arc<NameTable>,
}

// === impl Names ===

impl Names {
    #[inline]
    fn get(&self, name: &str) -> Option<NameId> {
        match self.compiled.get(name) {
            Some(id) => Some(id),
            // Only names a patch added, or no name at all, get here.
            None if self.added.is_empty() => None,
            None => self
                .added
                .get(name)
                .map(|id| NameId::from_index(self.compiled.len() + id.index())),
        }
    }

    #[inline]
    fn name(&self, id: NameId) -> &str {
        let compiled = self.compiled.len();
        if id.index() < compiled {
            self.compiled.name(id)
        } else {
            self.added.name(NameId::from_index(id.index() - compiled))
        }
    }

    /// The id of `name`, adding it (to the patches' table) when it is new.
    fn intern(&mut self, name: &str) -> NameId {
        if let Some(id) = self.get(name) {
            return id;
        }
        let added = Arc::make_mut(&mut self.added).intern(name);
        NameId::from_index(self.compiled.len() + added.index())
    }
}

// === impl Zone ===

impl Zone {
    /// Answers a question. `name` in any case, with or without the trailing dot; every
    /// `.*` in it is removed first (Mesos-DNS: `bob.*.mesos` is `bob.mesos`).
    pub fn lookup(&self, name: &str, qtype: QueryType) -> Lookup<'_> {
        let mut buf = [0u8; KEY_BUF];
        let key = lookup_key(name, &mut buf);
        if !(*key == *self.apex() || key.ends_with(&*self.dot_apex)) {
            return Lookup::OutsideZone;
        }
        let Some(node) = self.node_at(&key) else {
            return Lookup::NxDomain;
        };
        let (answers, additional) = match qtype {
            QueryType::Record(t) => {
                let carries_additional = matches!(t, RecordType::Srv | RecordType::Ns);
                (
                    node.of_type(t),
                    if carries_additional {
                        node.additional()
                    } else {
                        &[][..]
                    },
                )
            }
            QueryType::Any => (node.records(), node.additional()),
            QueryType::Other(_) => (&[][..], &[][..]),
        };
        if answers.is_empty() {
            Lookup::NoData
        } else {
            Lookup::Found {
                answers,
                additional,
            }
        }
    }

    /// The node of a name (same normalisation as `lookup`), empty non-terminals included.
    pub fn node(&self, name: &str) -> Option<Node<'_>> {
        let mut buf = [0u8; KEY_BUF];
        self.node_at(&lookup_key(name, &mut buf))
    }

    /// The node of a lookup key.
    fn node_at(&self, key: &str) -> Option<Node<'_>> {
        self.node_by_id(self.names.get(key)?)
    }

    /// The node of a record's owner or target, if that name is a node of the zone.
    pub fn node_by_id(&self, id: NameId) -> Option<Node<'_>> {
        let data = self.nodes.get(id.index()).filter(|n| n.is_node())?;
        Some(self.view(id, data))
    }

    /// `data` (of `id`) as a node, whatever its state.
    fn view<'z>(&'z self, id: NameId, data: &'z NodeData) -> Node<'z> {
        Node {
            id,
            name: self.names.name(id),
            data,
            arena: &self.segments[data.segment as usize],
        }
    }

    /// The text of a record's owner or target: lower case, trailing dot.
    pub fn name(&self, id: NameId) -> &str {
        self.names.name(id)
    }

    /// The SOA record (owner: the apex), for the authority section of negative answers.
    pub fn soa(&self) -> &Record {
        let apex = self.node_by_id(self.apex).expect("the apex is a node");
        &apex.of_type(RecordType::Soa)[0]
    }

    /// The SOA record's fields.
    pub fn soa_fields(&self) -> &Soa {
        &self.soa_fields
    }

    /// `mesos.`
    pub fn apex(&self) -> &str {
        self.names.name(self.apex)
    }

    /// Seconds, for every record.
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// Every SRV record's priority.
    pub fn srv_priority(&self) -> u16 {
        self.srv_priority
    }

    /// Every SRV record's weight.
    pub fn srv_weight(&self) -> u16 {
        self.srv_weight
    }

    /// Every name with its records, empty non-terminals included; in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = Node<'_>> {
        (0..self.nodes.len()).filter_map(|i| self.node_by_id(NameId::from_index(i)))
    }

    /// Every record of the zone, SOA and NS included.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.nodes().flat_map(|n| n.records().iter())
    }

    /// How many records `records` yields.
    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// Generated names that were left out because they cannot be published, sorted.
    pub fn dropped_names(&self) -> &[String] {
        &self.dropped
    }

    /// With `healthy_only`: how many names answer with all their tasks because every one
    /// fails its health checks (the rule pools follow too).
    pub fn all_failing_names(&self) -> usize {
        self.all_failing_names
    }
}

/// Lower case with exactly one trailing dot.
fn fqdn(name: &str) -> String {
    let mut s = name.trim_end_matches('.').to_ascii_lowercase();
    s.push('.');
    s
}

/// Room for any legal name (255 bytes on the wire) plus a trailing dot; longer questions
/// take the heap path.
const KEY_BUF: usize = 256;

/// The map key of a question name: ASCII lower-cased, every `.*` removed, one trailing
/// dot. Built in `buf` without allocating when it fits.
fn lookup_key<'b>(name: &str, buf: &'b mut [u8; KEY_BUF]) -> Cow<'b, str> {
    let bytes = name.as_bytes();
    let mut len = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'.' && bytes.get(i + 1) == Some(&b'*') {
            i += 2;
            continue;
        }
        if len == KEY_BUF - 1 {
            return Cow::Owned(slow_lookup_key(name));
        }
        buf[len] = b.to_ascii_lowercase();
        len += 1;
        i += 1;
    }
    if len == 0 || buf[len - 1] != b'.' {
        buf[len] = b'.';
        len += 1;
    }
    // Only ASCII bytes were changed or removed, so the rest is still UTF-8.
    Cow::Borrowed(std::str::from_utf8(&buf[..len]).expect("UTF-8 preserved"))
}

fn slow_lookup_key(name: &str) -> String {
    let mut key = name.replace(".*", "").to_ascii_lowercase();
    if !key.ends_with('.') {
        key.push('.');
    }
    key
}

/// An address record's value, for the HTTP API and tests.
pub(crate) fn address_of(record: &Record) -> Option<IpAddr> {
    match record.data {
        RecordData::A(ip) => Some(IpAddr::V4(ip)),
        RecordData::Aaaa(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}
