//! The compiled zone: every name of the domain with its records, ready to answer. `compile`
//! runs `dns::records::generate`, adds the apex (SOA, NS), the SRV answers' additional
//! records and the empty non-terminals, and drops names that cannot go on the wire.
//! `lookup` is one hash-map probe on the lower-cased name; the types are plain Rust
//! (`Ipv4Addr`, `Ipv6Addr`, our `Srv`, `Soa`) so a DNS server can encode them as it likes.
//!
//! Answers follow the RFCs where Mesos-DNS does not (EXPECTED.md's [Q] rows): the apex
//! answers SOA, NS and ANY; a name without the asked type is NODATA and a name that does
//! not exist NXDOMAIN for every type, SRV included; a name with only names below it (an
//! empty non-terminal, such as `marathon.slave.mesos`) exists. Negative answers carry
//! `Zone::soa`, whose owner is the apex.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::dns::name::{FastMap, FastState};
use crate::dns::records::{self, MarathonOnlyApp, RecordOptions, RecordSets, ResolvedHosts};
use crate::source::mesos::state::MesosState;

/// Everything a zone is compiled from.
#[derive(Debug, Clone, Copy)]
pub struct ZoneInput<'a> {
    /// The leading master's state; `None` before the first good read.
    pub state: Option<&'a MesosState>,
    /// Apps known only from Marathon.
    pub marathon_apps: &'a [MarathonOnlyApp],
    /// Host names (from `records::hosts_to_resolve`) the caller resolved.
    pub resolved: &'a ResolvedHosts,
    pub options: &'a ZoneOptions,
    /// The SOA serial: the catalog version.
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
}

/// One resource record; `name` is the owner, lower case with a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: Arc<str>,
    pub ttl: u32,
    pub data: RecordData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Ns(Arc<str>),
    /// Boxed: one per zone, and unboxed it would double every record's size.
    Soa(Box<Soa>),
    Srv(Srv),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Lower case with a trailing dot.
    pub target: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    pub mname: Arc<str>,
    pub rname: Arc<str>,
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
            RecordData::Soa(_) => RecordType::Soa,
            RecordData::Srv(_) => RecordType::Srv,
        }
    }
}

/// One name of the zone and its records: a view into the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node<'z> {
    name: &'z str,
    data: &'z NodeData,
    /// The zone's record arena.
    arena: &'z [Record],
}

/// Where a node's records are in the zone's arena (one `Vec<Record>` for the whole zone:
/// no allocation per name, and the records of a node are contiguous).
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeData {
    /// Start and end of each type's records, by `RecordType::index`; the types follow
    /// each other in `RecordType` order, so `spans[0].0..spans[4].1` is every record.
    spans: [(u32, u32); 5],
    /// What answers about this name carry in the additional section: one A and one AAAA
    /// of each SRV target, or the addresses of the NS target.
    additional: (u32, u32),
}

// === impl Node, NodeData ===

impl NodeData {
    const EMPTY: NodeData = NodeData {
        spans: [(0, 0); 5],
        additional: (0, 0),
    };

    /// Appends `records` (in any order) and `additional` to the arena.
    fn push(arena: &mut Vec<Record>, mut records: Vec<Record>, additional: Vec<Record>) -> Self {
        records.sort_by_key(|r| r.data.record_type().index());
        let base = arena.len();
        let mut spans = [(0u32, 0u32); 5];
        for t in RecordType::ALL {
            let start = records.partition_point(|r| r.data.record_type().index() < t.index());
            let end = records.partition_point(|r| r.data.record_type().index() <= t.index());
            spans[t.index()] = ((base + start) as u32, (base + end) as u32);
        }
        arena.extend(records);
        let add_start = arena.len() as u32;
        arena.extend(additional);
        NodeData {
            spans,
            additional: (add_start, arena.len() as u32),
        }
    }
}

impl<'z> Node<'z> {
    /// Lower case, trailing dot.
    pub fn name(&self) -> &'z str {
        self.name
    }

    /// Every record, grouped by type. Empty for an empty non-terminal.
    pub fn records(&self) -> &'z [Record] {
        let s = &self.data.spans;
        &self.arena[s[0].0 as usize..s[4].1 as usize]
    }

    pub fn of_type(&self, t: RecordType) -> &'z [Record] {
        let (start, end) = self.data.spans[t.index()];
        &self.arena[start as usize..end as usize]
    }

    pub fn additional(&self) -> &'z [Record] {
        let (start, end) = self.data.additional;
        &self.arena[start as usize..end as usize]
    }
}

/// The outcome of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'z> {
    /// NOERROR with answers.
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

/// A compiled, immutable zone.
#[derive(Debug, Clone)]
pub struct Zone {
    /// `mesos.`
    apex: Arc<str>,
    /// `.mesos.`, for the in-zone test.
    dot_apex: Box<str>,
    nodes: FastMap<Arc<str>, NodeData>,
    /// Every node's records and additional records.
    arena: Vec<Record>,
    soa: Record,
    record_count: usize,
    dropped: Vec<String>,
}

// === impl Zone ===

impl Zone {
    /// Builds the zone. Never fails: a name that cannot be published (outside the domain,
    /// a label longer than 63 bytes or not a host-name label, more than 253 characters) is
    /// left out and listed in `dropped_names`.
    pub fn compile(input: &ZoneInput) -> Zone {
        let sets = records::generate(
            input.state,
            input.marathon_apps,
            input.resolved,
            &input.options.records,
        );
        Zone::from_record_sets(&sets, input.options, input.serial)
    }

    /// Builds the zone from already generated record sets.
    pub fn from_record_sets(sets: &RecordSets, options: &ZoneOptions, serial: u32) -> Zone {
        let domain = options
            .records
            .domain
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let apex: Arc<str> = Arc::from(format!("{domain}."));
        let dot_apex: Box<str> = format!(".{apex}").into();
        let ttl = options.ttl;
        let in_zone = |name: &str| name == &*apex || name.ends_with(&*dot_apex);
        let publishable = |name: &str| in_zone(name) && is_publishable(name);

        let mut dropped: Vec<String> = sets
            .names
            .keys()
            .filter(|name| !publishable(name))
            .map(|name| name.to_string())
            .collect();
        dropped.sort();
        // Whether an SRV target's addresses may go in the additional section: it is a name
        // of the zone (has records) and is not dropped.
        let target_sets = |target: &str| {
            sets.names
                .get(target)
                .filter(|_| dropped.is_empty() || publishable(target))
        };

        let (mut total, mut srv_total) = (0, 0);
        for r in sets.names.values() {
            total += r.a.len() + r.aaaa.len() + r.srv.len();
            srv_total += r.srv.len();
        }
        // Additional records: at most one A and one AAAA per SRV; typically one.
        let mut arena: Vec<Record> = Vec::with_capacity(total + srv_total + 8);
        let mut nodes: FastMap<Arc<str>, NodeData> = FastMap::with_capacity_and_hasher(
            sets.names.len() + sets.names.len() / 4 + 16,
            FastState::default(),
        );
        let mut record_count = 0;
        for (owner, sets_here) in &sets.names {
            if (!dropped.is_empty() && !publishable(owner)) || *owner == apex {
                continue;
            }
            // Straight into the arena: addresses, then SRV, is `RecordType` order.
            let base = arena.len();
            push_addresses(&mut arena, owner, ttl, sets_here, usize::MAX);
            let a_end = base + sets_here.a.len();
            let aaaa_end = arena.len();
            arena.extend(sets_here.srv.iter().map(|(target, port)| Record {
                name: owner.clone(),
                ttl,
                data: RecordData::Srv(Srv {
                    priority: options.srv_priority,
                    weight: options.srv_weight,
                    port: *port,
                    target: target.clone(),
                }),
            }));
            let end = arena.len();
            let mut last_target: Option<&str> = None;
            for (target, _) in &sets_here.srv {
                // SRV sets are sorted by target: each target's addresses go in once.
                if last_target == Some(&**target) {
                    continue;
                }
                last_target = Some(target);
                if let Some(t) = target_sets(target) {
                    push_addresses(&mut arena, target, ttl, t, 1);
                }
            }
            record_count += end - base;
            let at = |i: usize| i as u32;
            let data = NodeData {
                spans: [
                    (at(base), at(a_end)),
                    (at(a_end), at(aaaa_end)),
                    (at(aaaa_end), at(aaaa_end)),
                    (at(aaaa_end), at(aaaa_end)),
                    (at(aaaa_end), at(end)),
                ],
                additional: (at(end), at(arena.len())),
            };
            nodes.insert(owner.clone(), data);
        }

        // The apex: NS and SOA, beside anything generated there.
        let mname = Arc::<str>::from(fqdn(&options.soa.mname));
        let soa = Record {
            name: apex.clone(),
            ttl,
            data: RecordData::Soa(Box::new(Soa {
                mname: mname.clone(),
                rname: Arc::from(fqdn(&options.soa.rname)),
                serial,
                refresh: options.soa.refresh,
                retry: options.soa.retry,
                expire: options.soa.expire,
                minimum: options.soa.minimum,
            })),
        };
        let mut apex_records = Vec::new();
        if let Some(generated) = sets.names.get(&*apex) {
            push_addresses(&mut apex_records, &apex, ttl, generated, usize::MAX);
            apex_records.extend(generated.srv.iter().map(|(target, port)| Record {
                name: apex.clone(),
                ttl,
                data: RecordData::Srv(Srv {
                    priority: options.srv_priority,
                    weight: options.srv_weight,
                    port: *port,
                    target: target.clone(),
                }),
            }));
        }
        apex_records.push(Record {
            name: apex.clone(),
            ttl,
            data: RecordData::Ns(mname.clone()),
        });
        apex_records.push(soa.clone());
        record_count += apex_records.len();
        let mut glue = Vec::new();
        if let Some((owner, t)) = sets.names.get_key_value(&*mname) {
            if dropped.is_empty() || publishable(owner) {
                push_addresses(&mut glue, owner, ttl, t, usize::MAX);
            }
        }
        nodes.insert(apex.clone(), NodeData::push(&mut arena, apex_records, glue));

        // Empty non-terminals: every name between an owner and the apex exists. The
        // parents are found first (borrowing the generated names), then inserted.
        let mut empty: HashSet<&str, FastState> = HashSet::default();
        // Only the published names' parents: a dropped name's exist only if some
        // published name is below them.
        let published = |n: &&Arc<str>| dropped.is_empty() || publishable(n);
        for owner in sets.names.keys().filter(published) {
            let mut rest: &str = owner;
            while let Some((_, parent)) = rest.split_once('.') {
                if parent.len() <= apex.len() || nodes.contains_key(parent) || !empty.insert(parent)
                {
                    break;
                }
                rest = parent;
            }
        }
        let empty: Vec<Arc<str>> = empty.into_iter().map(Arc::from).collect();
        for parent in empty {
            nodes.insert(parent, NodeData::EMPTY);
        }

        Zone {
            apex,
            dot_apex,
            nodes,
            arena,
            soa,
            record_count,
            dropped,
        }
    }

    /// Answers a question. `name` in any case, with or without the trailing dot; every
    /// `.*` in it is removed first (Mesos-DNS: `bob.*.mesos` is `bob.mesos`).
    pub fn lookup(&self, name: &str, qtype: QueryType) -> Lookup<'_> {
        let mut buf = [0u8; KEY_BUF];
        let key = lookup_key(name, &mut buf);
        if !(*key == *self.apex || key.ends_with(&*self.dot_apex)) {
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
        self.nodes.get_key_value(key).map(|(name, data)| Node {
            name,
            data,
            arena: &self.arena,
        })
    }

    /// The SOA record (owner: the apex), for the authority section of negative answers.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// `mesos.`
    pub fn apex(&self) -> &str {
        &self.apex
    }

    /// Every name with its records, empty non-terminals included; in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = Node<'_>> {
        self.nodes.iter().map(|(name, data)| Node {
            name,
            data,
            arena: &self.arena,
        })
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
}

/// Appends up to `per_family` A and as many AAAA records of `sets` under `owner`.
fn push_addresses(
    out: &mut Vec<Record>,
    owner: &Arc<str>,
    ttl: u32,
    sets: &records::NameRecords,
    per_family: usize,
) {
    let a = sets.a.iter().take(per_family).map(|&ip| RecordData::A(ip));
    let aaaa = sets
        .aaaa
        .iter()
        .take(per_family)
        .map(|&ip| RecordData::Aaaa(ip));
    out.extend(a.chain(aaaa).map(|data| Record {
        name: owner.clone(),
        ttl,
        data,
    }));
}

/// Lower case with exactly one trailing dot.
fn fqdn(name: &str) -> String {
    let mut s = name.trim_end_matches('.').to_ascii_lowercase();
    s.push('.');
    s
}

/// Whether a generated name can go on the wire as it is: labels of 1 to 63 host-name
/// characters (letters, digits, `-`, `_`), at most 253 characters without the root dot.
fn is_publishable(name: &str) -> bool {
    let Some(body) = name.strip_suffix('.') else {
        return false;
    };
    body.len() <= 253
        && body.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
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
