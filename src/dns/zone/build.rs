//! Building a zone: the generated record sets laid out in one arena sorted by owner, the
//! apex's SOA and NS, the empty non-terminals, the SRV answers' additional records, and the
//! names that cannot go on the wire left out.

use std::cmp::Ordering;
use std::net::Ipv4Addr;

use crate::dns::intern::NameTable;
use crate::dns::records::{self, RecordSets};

use super::*;

impl Zone {
    /// Builds the zone. Never fails: a name that cannot be published (outside the domain,
    /// a label longer than 63 bytes or not a host-name label, more than 253 characters) is
    /// left out and listed in `dropped_names`.
    pub fn compile(input: &ZoneInput) -> Zone {
        let sets = records::generate(
            input.cluster,
            input.marathon_apps,
            &input.options.records,
            input.checked_down,
        );
        Zone::from_record_sets(sets, input.options, input.serial)
    }

    /// Builds the zone from already generated record sets: the apex's NS and SOA are
    /// added, each name's records sorted and freed of duplicates into one arena, the
    /// additional records appended, and the empty non-terminals marked.
    pub fn from_record_sets(sets: RecordSets, options: &ZoneOptions, serial: u32) -> Zone {
        Zone::build(sets, options, serial, None)
    }

    /// `from_record_sets`, also filling `book` (for `ZoneState`) when given.
    pub(super) fn build(
        sets: RecordSets,
        options: &ZoneOptions,
        serial: u32,
        mut book: Option<&mut Bookkeeping>,
    ) -> Zone {
        let RecordSets {
            mut names,
            mut records,
            all_failing_names,
        } = sets;
        let domain = options
            .records
            .domain
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let apex_text = format!("{domain}.");
        let dot_apex: Box<str> = format!(".{apex_text}").into();
        let in_zone = |name: &str| name == apex_text || name.ends_with(&*dot_apex);

        // Which generated names have records, and which of those cannot be published.
        let generated = names.len();
        let mut state = vec![NodeState::Absent; generated];
        for r in &records {
            state[r.owner.index()] = NodeState::Records;
        }
        let mut dropped = Vec::new();
        for (id, name) in names.iter() {
            if state[id.index()] == NodeState::Records && !(in_zone(name) && is_publishable(name)) {
                state[id.index()] = NodeState::Dropped;
                dropped.push(name.to_string());
            }
        }
        dropped.sort();

        // The apex: NS and SOA, beside anything generated there.
        let apex = names.intern(&apex_text);
        let mname = names.intern(&fqdn(&options.soa.mname));
        records.push(Record {
            owner: apex,
            data: RecordData::Ns(mname),
        });
        records.push(Record {
            owner: apex,
            data: RecordData::Soa,
        });
        let soa_fields = Soa {
            mname,
            rname: fqdn(&options.soa.rname).into(),
            serial,
            refresh: options.soa.refresh,
            retry: options.soa.retry,
            expire: options.soa.expire,
            minimum: options.soa.minimum,
        };
        state.resize(names.len(), NodeState::Absent);
        state[apex.index()] = NodeState::Records;

        // Empty non-terminals: every name between a published one and the apex exists.
        // A walk stops at the first parent that is already a node: its own walk (or an
        // earlier one) goes on from there. So each node below the apex is counted once as
        // its parent's child.
        let mut children = Vec::new();
        let mut owner = String::new();
        for i in 0..generated {
            if state[i] != NodeState::Records {
                continue;
            }
            owner.clear();
            owner.push_str(names.name(NameId::from_index(i)));
            let mut rest = owner.as_str();
            while let Some(dot) = rest.bytes().position(|b| b == b'.') {
                let parent = &rest[dot + 1..];
                if parent.len() <= apex_text.len() {
                    break;
                }
                let id = names.intern(parent);
                if id.index() == state.len() {
                    state.push(NodeState::Absent);
                }
                if book.is_some() {
                    children.resize(names.len(), 0);
                    children[id.index()] += 1;
                }
                if state[id.index()] != NodeState::Absent {
                    break;
                }
                state[id.index()] = NodeState::EmptyNonTerminal;
                rest = parent;
            }
        }

        let counts = book.as_mut().map(|b| &mut b.counts);
        let (mut arena, mut nodes) = sorted_arena(records, &names, state, counts);
        let record_count = nodes
            .iter()
            .filter(|n| n.state == NodeState::Records)
            .map(|n| (n.bounds[5] - n.bounds[0]) as usize)
            .sum();
        append_additional(&mut arena, &mut nodes, apex, mname);
        if let Some(book) = book {
            children.resize(names.len(), 0);
            book.children = children;
        }
        let mut chunked = Chunked::with_capacity(nodes.len());
        nodes.into_iter().for_each(|n| chunked.push(n));
        Zone {
            apex,
            dot_apex,
            names: Names {
                compiled: Arc::new(names),
                added: Arc::default(),
            },
            nodes: chunked,
            segments: vec![Arc::new(arena)],
            soa_fields,
            ttl: options.ttl,
            srv_priority: options.srv_priority,
            srv_weight: options.srv_weight,
            record_count,
            dropped: Arc::new(dropped),
            all_failing_names,
        }
    }
}

/// What a compile knows that a later patch needs (`ZoneState`), beyond the zone.
#[derive(Debug, Default)]
pub(super) struct Bookkeeping {
    /// For each of the first segment's node records (not the additional ones): how many
    /// times it was generated. A patch that stops generating it once takes one off; it
    /// stays while another app (or the cluster) still generates it.
    pub(super) counts: Vec<u32>,
    /// For each name: how many of the names one label below it are nodes.
    pub(super) children: Vec<u32>,
}

/// The order of a node's records: by type (`RecordType` order), then by value.
pub(super) fn record_order(a: &Record, b: &Record) -> Ordering {
    let (ta, tb) = (a.data.record_type(), b.data.record_type());
    ta.index()
        .cmp(&tb.index())
        .then_with(|| match (&a.data, &b.data) {
            (RecordData::A(x), RecordData::A(y)) => x.cmp(y),
            (RecordData::Aaaa(x), RecordData::Aaaa(y)) => x.cmp(y),
            // By target id, not text: any order that keeps a target's records
            // together will do, and ids compare without reading the names.
            (RecordData::Srv(x), RecordData::Srv(y)) => (x.target, x.port).cmp(&(y.target, y.port)),
            (RecordData::Ns(x), RecordData::Ns(y)) => x.cmp(y),
            _ => Ordering::Equal,
        })
}

/// Appends each node's additional records to the arena: one A and one AAAA of each
/// SRV target that is a published name, and all the addresses of the apex's NS target.
pub(super) fn append_additional(
    arena: &mut Vec<Record>,
    nodes: &mut [NodeData],
    apex: NameId,
    mname: NameId,
) {
    let published = |nodes: &[NodeData], id: NameId| {
        nodes
            .get(id.index())
            .filter(|n| n.state == NodeState::Records)
            .cloned()
    };
    for i in 0..nodes.len() {
        if nodes[i].state != NodeState::Records {
            continue;
        }
        let start = arena.len();
        if i == apex.index() {
            if let Some(glue) = published(nodes, mname) {
                for k in glue
                    .range(RecordType::A)
                    .chain(glue.range(RecordType::Aaaa))
                {
                    let record = arena[k].clone();
                    arena.push(record);
                }
            }
        } else {
            let mut last_target = None;
            for k in nodes[i].range(RecordType::Srv) {
                let RecordData::Srv(srv) = arena[k].data else {
                    continue;
                };
                // SRV sets are sorted by target: each target's addresses go in once.
                if last_target == Some(srv.target) {
                    continue;
                }
                last_target = Some(srv.target);
                let Some(target) = published(nodes, srv.target) else {
                    continue;
                };
                for t in [RecordType::A, RecordType::Aaaa] {
                    if let Some(k) = target.range(t).next() {
                        let record = arena[k].clone();
                        arena.push(record);
                    }
                }
            }
        }
        nodes[i].additional = (start as u32, arena.len() as u32);
    }
}

/// `records` grouped by owner (a counting sort: one pass to count, one to place), each
/// owner's records sorted by type and value with duplicates removed (how many times each
/// was generated goes to `counts`, when given); the records of names that are neither
/// `Records` nor `Dropped` are left out. Returns the arena and each name's node data.
pub(super) fn sorted_arena(
    records: Vec<Record>,
    names: &NameTable,
    state: Vec<NodeState>,
    mut counts: Option<&mut Vec<u32>>,
) -> (Vec<Record>, Vec<NodeData>) {
    let mut starts = vec![0u32; names.len() + 1];
    let mut srv_count = 0;
    for r in &records {
        starts[r.owner.index() + 1] += 1;
        srv_count += usize::from(matches!(r.data, RecordData::Srv(_)));
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let placeholder = Record {
        owner: NameId::from_index(0),
        data: RecordData::A(Ipv4Addr::UNSPECIFIED),
    };
    // Additional records: typically one per SRV target, appended later.
    let mut arena = Vec::with_capacity(records.len() + srv_count);
    arena.resize(records.len(), placeholder);
    let mut next = starts.clone();
    for r in records {
        let at = &mut next[r.owner.index()];
        arena[*at as usize] = r;
        *at += 1;
    }

    let mut nodes = Vec::with_capacity(names.len());
    // Compacts in place: `kept` never passes the record being looked at.
    let mut kept = 0;
    for (i, node_state) in state.into_iter().enumerate() {
        let begin = kept;
        // A dropped name's records are kept (out of sight) for a patch to count on.
        if matches!(node_state, NodeState::Records | NodeState::Dropped) {
            let (start, end) = (starts[i] as usize, starts[i + 1] as usize);
            arena[start..end].sort_unstable_by(record_order);
            for k in start..end {
                if kept > begin && arena[kept - 1] == arena[k] {
                    if let Some(counts) = counts.as_deref_mut() {
                        counts[kept - 1] += 1;
                    }
                    continue;
                }
                arena.swap(kept, k);
                kept += 1;
                if let Some(counts) = counts.as_deref_mut() {
                    counts.push(1);
                }
            }
        }
        let mut bounds = [begin as u32; 6];
        for r in &arena[begin..kept] {
            for b in &mut bounds[r.data.record_type().index() + 1..] {
                *b += 1;
            }
        }
        nodes.push(NodeData {
            bounds,
            state: node_state,
            ..NodeData::ABSENT
        });
    }
    arena.truncate(kept);
    (arena, nodes)
}

/// Whether a generated name can go on the wire as it is: labels of 1 to 63 host-name
/// characters (letters, digits, `-`, `_`), at most 253 characters without the root dot.
pub(super) fn is_publishable(name: &str) -> bool {
    let Some(body) = name.strip_suffix('.') else {
        return false;
    };
    if body.len() > 253 {
        return false;
    }
    // One pass over the bytes (every generated name is checked, so no split).
    let mut label_len = 0;
    for b in body.bytes() {
        if b == b'.' {
            if label_len == 0 {
                return false;
            }
            label_len = 0;
        } else if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            label_len += 1;
            if label_len > 63 {
                return false;
            }
        } else {
            return false;
        }
    }
    label_len > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishable_names_are_host_name_labels_within_the_lengths() {
        let label63 = "a".repeat(63);
        let long = format!("{}.", vec!["b".repeat(49); 5].join("."));
        assert_eq!(long.len() - 1, 249);
        for ok in [
            "a.",
            "app-1.marathon.mesos.",
            "_http._tcp.x.",
            "A9.",
            &format!("{label63}.m."),
        ] {
            assert!(is_publishable(ok), "{ok}");
        }
        assert!(is_publishable(&long));
        let too_long = format!("abcde.{long}");
        for bad in [
            "",
            ".",
            "a",
            "a..b.",
            ".a.",
            "a b.",
            "a!.",
            "é.",
            &format!("{label63}a.m."),
            &too_long,
        ] {
            assert!(!is_publishable(bad), "{bad}");
        }
    }
}
