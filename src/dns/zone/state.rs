//! A zone kept with what a later change needs, so that one Marathon-only app's tasks
//! changing costs about that app's records, not a compile of the whole cluster.
//!
//! A patch regenerates the records of the apps it replaces, old and new, and of the apps
//! that share their task label (with `healthy_only`, a label's tasks are answered together),
//! and applies the difference. Every record carries how many times it is generated (two
//! apps can generate the same record), so a record stays while anything still generates
//! it. Each name counts its child nodes, so an empty non-terminal appears with its first
//! child and goes with its last. Each name counts the published names with an SRV record
//! pointing at it, so a change of its addresses rewrites exactly the additional records
//! that copy them.
//!
//! The new zone shares the old one's storage (see the `zone` module): the names it
//! rewrites go to a new record segment, and the records they had stay behind, unused,
//! until the next full compile. `should_recompile` says when that is worth doing; the
//! caller's periodic full compile (resync, config change, Mesos snapshot) folds it all.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;

use crate::dns::intern::NameTable;
use crate::dns::records::{self, LabelHealth, MarathonFrameworkLabels, RecordSets};

use super::build::{is_publishable, record_order, Bookkeeping};
use super::*;

/// A zone plus what a later change to its Marathon-only apps needs.
#[derive(Debug)]
pub struct ZoneState {
    zone: Arc<Zone>,
    options: ZoneOptions,
    checked_down: BTreeSet<SocketAddr>,
    /// The Marathon-only apps, by id.
    apps: HashMap<String, MarathonOnlyApp>,
    /// The ids of the apps of each task label.
    by_label: HashMap<String, BTreeSet<String>>,
    /// The Mesos tasks Marathon-only apps share labels with (`healthy_only` only).
    mesos: MarathonFrameworkLabels,
    /// How many times each record of the compile's segment is generated, by position;
    /// for the nodes still there.
    counts: Vec<u32>,
    /// The same for the nodes a patch rewrote, parallel to their records.
    rewritten: HashMap<NameId, Vec<u32>>,
    /// Per name: how many names one label below it are nodes.
    children: Vec<u32>,
    /// Per name: how many published names have an SRV record with it as target.
    srv_refs: Vec<u32>,
    /// Records in segments that no node uses any more.
    dead: usize,
}

/// A name a patch rewrites: its records and their counts.
struct Pending {
    records: Vec<Record>,
    counts: Vec<u32>,
}

// === impl ZoneState ===

impl ZoneState {
    /// A full compile, as `Zone::compile`. Marathon app ids are unique (as Marathon's
    /// are): of two apps with one id, the later is the one compiled.
    pub fn compile(input: &ZoneInput) -> ZoneState {
        let options = &input.options.records;
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(input.marathon_apps.len());
        for (i, app) in input.marathon_apps.iter().enumerate() {
            last.insert(&app.id, i);
        }
        let unique: Vec<MarathonOnlyApp>;
        let marathon_apps = if last.len() == input.marathon_apps.len() {
            input.marathon_apps
        } else {
            unique = (input.marathon_apps.iter().enumerate())
                .filter(|(i, app)| last[app.id.as_str()] == *i)
                .map(|(_, app)| app.clone())
                .collect();
            &unique
        };
        let sets = records::generate(input.cluster, marathon_apps, options, input.checked_down);
        let mut book = Bookkeeping::default();
        let zone = Zone::build(sets, input.options, input.serial, Some(&mut book));

        let mut apps = HashMap::with_capacity(marathon_apps.len());
        let mut by_label: HashMap<String, BTreeSet<String>> = HashMap::new();
        for app in marathon_apps {
            let label = records::marathon_app_label(app, options);
            by_label.entry(label).or_default().insert(app.id.clone());
            apps.insert(app.id.clone(), app.clone());
        }
        let mut srv_refs = vec![0; book.children.len()];
        for node in zone.nodes() {
            for target in srv_targets(node.of_type(RecordType::Srv)) {
                srv_refs[target.index()] += 1;
            }
        }
        ZoneState {
            zone: Arc::new(zone),
            options: input.options.clone(),
            checked_down: input.checked_down.clone(),
            apps,
            by_label,
            mesos: records::marathon_framework_labels(input.cluster, options, input.checked_down),
            counts: book.counts,
            rewritten: HashMap::new(),
            children: book.children,
            srv_refs,
            dead: 0,
        }
    }

    /// The zone in use.
    pub fn zone(&self) -> &Arc<Zone> {
        &self.zone
    }

    /// The Marathon-only apps with these ids are replaced by `apps` (an id absent from
    /// `apps` is removed; an app in `apps` not known before is added; an app in `apps`
    /// replaces the one of its id whether or not `ids` lists it); the Mesos cluster, the
    /// options and `checked_down` stay as compiled. The new zone, with SOA serial
    /// `serial`, answers every query as a full compile of the resulting input would.
    pub fn replace_marathon_apps(
        &mut self,
        ids: &[&str],
        apps: &[MarathonOnlyApp],
        serial: u32,
    ) -> Arc<Zone> {
        let options = &self.options.records.clone();
        let replaced: BTreeSet<&str> = (ids.iter().copied())
            .chain(apps.iter().map(|a| a.id.as_str()))
            .collect();
        let mut labels: BTreeSet<String> = BTreeSet::new();
        for id in &replaced {
            if let Some(old) = self.apps.get(*id) {
                labels.insert(records::marathon_app_label(old, options));
            }
        }
        for app in apps {
            labels.insert(records::marathon_app_label(app, options));
        }

        // The records of every label touched, before and after.
        let mut sets = RecordSets::default();
        let mut failing_before = 0;
        for label in &labels {
            failing_before += usize::from(self.label_records(label, &mut sets).all_failing());
        }
        let before = sets.records.len();
        for id in &replaced {
            if let Some(old) = self.apps.remove(*id) {
                self.unlabel(&records::marathon_app_label(&old, options), id);
            }
        }
        for app in apps {
            let label = records::marathon_app_label(app, options);
            if let Some(old) = self.apps.insert(app.id.clone(), app.clone()) {
                self.unlabel(&records::marathon_app_label(&old, options), &old.id);
            }
            self.by_label
                .entry(label)
                .or_default()
                .insert(app.id.clone());
        }
        let mut failing_after = 0;
        for label in &labels {
            failing_after += usize::from(self.label_records(label, &mut sets).all_failing());
        }

        let mut delta: HashMap<&Record, i64> = HashMap::new();
        for (i, r) in sets.records.iter().enumerate() {
            *delta.entry(r).or_default() += if i < before { -1 } else { 1 };
        }
        let mut next = Zone::clone(&self.zone);
        if self.options.records.healthy_only {
            next.all_failing_names = next.all_failing_names + failing_after - failing_before;
        }
        next.soa_fields.serial = serial;
        let delta: Vec<(&Record, i64)> = delta.into_iter().filter(|(_, d)| *d != 0).collect();
        self.apply(next, &sets.names, &delta)
    }

    /// Whether patches have left enough behind (records no node uses, names no longer
    /// in use, segments) that the next change had better be a full compile.
    pub fn should_recompile(&self) -> bool {
        let compiled = self.zone.segments[0].len();
        let names = &self.zone.names;
        self.dead > compiled / 2 + 4096
            || names.added.len() > names.compiled.len() / 2 + 1024
            || self.zone.segments.len() > 10_000
    }

    /// Applies `delta` (records by the ids of `local`, each with how many more or fewer
    /// times it is generated) to `next`, a copy of the zone in use, and stores it.
    fn apply(&mut self, mut next: Zone, local: &NameTable, delta: &[(&Record, i64)]) -> Arc<Zone> {
        // The delta in the zone's names, by owner.
        let mut ids: Vec<Option<NameId>> = vec![None; local.len()];
        let mut zone_id = |next: &mut Zone, this: &mut ZoneState, id: NameId| {
            *ids[id.index()].get_or_insert_with(|| this.intern(next, local.name(id)))
        };
        let mut by_owner: BTreeMap<NameId, Vec<(Record, i64)>> = BTreeMap::new();
        for &(r, d) in delta {
            let owner = zone_id(&mut next, self, r.owner);
            let data = match r.data {
                RecordData::Srv(srv) => RecordData::Srv(Srv {
                    port: srv.port,
                    target: zone_id(&mut next, self, srv.target),
                }),
                ref data => data.clone(),
            };
            by_owner
                .entry(owner)
                .or_default()
                .push((Record { owner, data }, d));
        }

        // Each owner's new records and counts.
        let mut pending: BTreeMap<NameId, Pending> = BTreeMap::new();
        for (owner, mut changes) in by_owner {
            changes.sort_by(|a, b| record_order(&a.0, &b.0));
            let (records, counts) = self.current(&next, owner);
            let merged = merge(records, &counts, &changes);
            if merged.records == records {
                // Only how often they are generated changed.
                self.set_counts(&next, owner, merged.counts);
            } else {
                pending.insert(owner, merged);
            }
        }

        // New states, deepest names first: a name's children are settled before it.
        let apex_len = next.apex().len();
        let mut states: BTreeMap<NameId, NodeState> = BTreeMap::new();
        let mut queue: BinaryHeap<(usize, Reverse<NameId>)> = pending
            .keys()
            .map(|&id| (depth(next.names.name(id)), Reverse(id)))
            .collect();
        while let Some((_, Reverse(id))) = queue.pop() {
            if states.contains_key(&id) {
                continue;
            }
            let old = next.nodes.get(id.index()).expect("a node per name").state;
            let has_records = match pending.get(&id) {
                Some(p) => !p.records.is_empty(),
                None => !records_of(&next, id).is_empty(),
            };
            let name = next.names.name(id);
            let new = if id == next.apex {
                NodeState::Records
            } else if has_records {
                let in_zone = name.ends_with(&*next.dot_apex);
                if in_zone && is_publishable(name) {
                    NodeState::Records
                } else {
                    NodeState::Dropped
                }
            } else if self.children[id.index()] > 0 {
                NodeState::EmptyNonTerminal
            } else {
                NodeState::Absent
            };
            states.insert(id, new);
            let is_node =
                |s: NodeState| matches!(s, NodeState::Records | NodeState::EmptyNonTerminal);
            if is_node(old) == is_node(new) {
                continue;
            }
            let Some(parent) = name.split_once('.').map(|(_, p)| p.to_string()) else {
                continue;
            };
            if parent.len() <= apex_len {
                continue;
            }
            let parent = self.intern(&mut next, &parent);
            let children = &mut self.children[parent.index()];
            if is_node(new) {
                *children += 1;
            } else {
                *children -= 1;
            }
            queue.push((depth(next.names.name(parent)), Reverse(parent)));
        }
        states.retain(|id, s| {
            pending.contains_key(id) || *s != next.nodes.get(id.index()).expect("a node").state
        });

        // What changed for readers: counts, dropped names, SRV targets, addresses.
        let mut addresses_changed = Vec::new();
        let mut additional: BTreeSet<NameId> = BTreeSet::new();
        let mut record_count = next.record_count as isize;
        let mut dropped_changed = Vec::new();
        for (&id, &new) in &states {
            let old = next.nodes.get(id.index()).expect("a node").state;
            let old_records = visible(old, records_of(&next, id));
            let new_records = match pending.get(&id) {
                Some(p) => visible(new, &p.records),
                None => visible(new, records_of(&next, id)),
            };
            record_count += new_records.len() as isize - old_records.len() as isize;
            if (old == NodeState::Dropped) != (new == NodeState::Dropped) {
                dropped_changed.push(next.names.name(id).to_string());
            }
            let of = |records: &[Record], t: RecordType| -> Vec<Record> {
                records
                    .iter()
                    .filter(|r| r.data.record_type() == t)
                    .cloned()
                    .collect()
            };
            let (old_srv, new_srv) = (
                of(old_records, RecordType::Srv),
                of(new_records, RecordType::Srv),
            );
            for target in srv_targets(&old_srv) {
                self.srv_refs[target.index()] -= 1;
            }
            for target in srv_targets(&new_srv) {
                self.srv_refs[target.index()] += 1;
            }
            let addresses = |records: &[Record]| -> Vec<Record> {
                records
                    .iter()
                    .filter(|r| matches!(r.data, RecordData::A(_) | RecordData::Aaaa(_)))
                    .cloned()
                    .collect()
            };
            if addresses(old_records) != addresses(new_records) {
                addresses_changed.push(id);
            }
            if new == NodeState::Records {
                additional.insert(id);
            }
        }

        next.record_count = record_count as usize;
        for name in dropped_changed {
            let dropped = Arc::make_mut(&mut next.dropped);
            match dropped.binary_search(&name) {
                Ok(at) => {
                    dropped.remove(at);
                }
                Err(at) => dropped.insert(at, name),
            }
        }

        // The names whose additional records copy a changed name's addresses.
        // The rewritten names' SRV records are known; `srv_refs` says whether others point
        // at the same target.
        let mut known: HashMap<NameId, u32> = HashMap::new();
        for id in &additional {
            let records = match pending.get(id) {
                Some(p) => &p.records[..],
                None => records_of(&next, *id),
            };
            for target in srv_targets(records) {
                *known.entry(target).or_default() += 1;
            }
        }
        let mut unknown: HashSet<NameId> = HashSet::new();
        for &target in &addresses_changed {
            if target == next.soa_fields.mname {
                additional.insert(next.apex);
            }
            if self.srv_refs[target.index()] > known.get(&target).copied().unwrap_or(0) {
                unknown.insert(target);
            }
        }
        if !unknown.is_empty() {
            // Rare (an app shares a name that other names' SRV records point at): look at
            // every name.
            for i in 0..next.nodes.len() {
                let id = NameId::from_index(i);
                let data = next.nodes.get(i).expect("a node");
                if data.state != NodeState::Records || states.contains_key(&id) {
                    continue;
                }
                let node = next.view(id, data);
                if srv_targets(node.of_type(RecordType::Srv)).any(|t| unknown.contains(&t)) {
                    additional.insert(id);
                }
            }
        }

        // The new segment: the rewritten names' records, then their additional records.
        let segment = u32::try_from(next.segments.len()).expect("fewer than 2^32 segments");
        let mut arena: Vec<Record> = Vec::new();
        let rewrite: BTreeSet<NameId> = states.keys().chain(&additional).copied().collect();
        let mut written: Vec<(NameId, NodeData)> = Vec::with_capacity(rewrite.len());
        for &id in &rewrite {
            let state = states
                .get(&id)
                .copied()
                .unwrap_or_else(|| next.nodes.get(id.index()).expect("a node").state);
            let (records, counts) = match pending.get(&id) {
                Some(p) => (&p.records[..], p.counts.clone()),
                None => self.current(&next, id),
            };
            let begin = arena.len() as u32;
            let mut bounds = [begin; 6];
            if matches!(state, NodeState::Records | NodeState::Dropped) {
                for r in records {
                    for b in &mut bounds[r.data.record_type().index() + 1..] {
                        *b += 1;
                    }
                }
                arena.extend_from_slice(records);
            }
            let start = arena.len() as u32;
            if state == NodeState::Records {
                let view = |t: NameId| self.view(&next, &pending, &states, t);
                additional_records(
                    id,
                    records,
                    next.apex,
                    next.soa_fields.mname,
                    view,
                    &mut arena,
                );
            }
            written.push((
                id,
                NodeData {
                    bounds,
                    additional: (start, arena.len() as u32),
                    segment,
                    state,
                },
            ));
            let old = next.nodes.get(id.index()).expect("a node");
            self.dead +=
                (old.bounds[5] - old.bounds[0] + old.additional.1 - old.additional.0) as usize;
            if counts.is_empty() {
                self.rewritten.remove(&id);
            } else {
                self.rewritten.insert(id, counts);
            }
        }
        for (id, data) in written {
            *next.nodes.get_mut(id.index()) = data;
        }
        next.segments.push(Arc::new(arena));
        self.zone = Arc::new(next);
        self.zone.clone()
    }

    /// A name's records (of any state) and their counts.
    fn current<'z>(&self, zone: &'z Zone, id: NameId) -> (&'z [Record], Vec<u32>) {
        let data = zone.nodes.get(id.index()).expect("a node per name");
        let node = zone.view(id, data);
        let records = node.records();
        let counts = match self.rewritten.get(&id) {
            Some(counts) => counts.clone(),
            None if records.is_empty() => Vec::new(),
            None => self.counts[data.bounds[0] as usize..data.bounds[5] as usize].to_vec(),
        };
        (records, counts)
    }

    fn set_counts(&mut self, zone: &Zone, id: NameId, counts: Vec<u32>) {
        match self.rewritten.get_mut(&id) {
            Some(kept) => *kept = counts,
            None => {
                let data = zone.nodes.get(id.index()).expect("a node per name");
                self.counts[data.bounds[0] as usize..data.bounds[5] as usize]
                    .copy_from_slice(&counts);
            }
        }
    }

    /// A name's state and records as the patch leaves them.
    fn view<'a>(
        &self,
        zone: &'a Zone,
        pending: &'a BTreeMap<NameId, Pending>,
        states: &BTreeMap<NameId, NodeState>,
        id: NameId,
    ) -> (NodeState, &'a [Record]) {
        let data = zone.nodes.get(id.index()).expect("a node per name");
        let state = states.get(&id).copied().unwrap_or(data.state);
        match pending.get(&id) {
            Some(p) => (state, &p.records),
            None => (state, zone.view(id, data).records()),
        }
    }

    /// The id of `name` in `zone`, adding it (with room in the per-name counts) if new.
    fn intern(&mut self, zone: &mut Zone, name: &str) -> NameId {
        let id = zone.names.intern(name);
        while zone.nodes.len() <= id.index() {
            zone.nodes.push(NodeData::ABSENT);
        }
        if self.children.len() <= id.index() {
            self.children.resize(id.index() + 1, 0);
            self.srv_refs.resize(id.index() + 1, 0);
        }
        id
    }

    /// Appends the records of the apps of `label` (and of the Mesos tasks of that label
    /// they decide about) to `sets`; returns the label's health.
    fn label_records(&self, label: &str, sets: &mut RecordSets) -> LabelHealth {
        let apps: Vec<&MarathonOnlyApp> = (self.by_label.get(label).into_iter().flatten())
            .map(|id| &self.apps[id])
            .collect();
        let mesos = self.mesos.health.get(label).copied().unwrap_or_default();
        let health = records::marathon_label_records(
            label,
            &apps,
            mesos,
            &self.options.records,
            &self.checked_down,
            sets,
        );
        // Mesos tasks whose label's tasks all fail are answered unless an app's pass.
        if !health.ok {
            if let Some(mesos) = self.mesos.all_failing.get(label) {
                for r in &mesos.records {
                    let owner = sets.names.intern(mesos.names.name(r.owner));
                    let data = match r.data {
                        RecordData::Srv(srv) => RecordData::Srv(Srv {
                            port: srv.port,
                            target: sets.names.intern(mesos.names.name(srv.target)),
                        }),
                        ref data => data.clone(),
                    };
                    sets.records.push(Record { owner, data });
                }
            }
        }
        health
    }

    fn unlabel(&mut self, label: &str, id: &str) {
        if let Some(ids) = self.by_label.get_mut(label) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_label.remove(label);
            }
        }
    }
}

/// A name's records, in any state.
fn records_of(zone: &Zone, id: NameId) -> &[Record] {
    let data = zone.nodes.get(id.index()).expect("a node per name");
    zone.view(id, data).records()
}

/// `records` (sorted, with `counts`) with `changes` (sorted) applied; records no longer
/// generated are left out.
fn merge(records: &[Record], counts: &[u32], changes: &[(Record, i64)]) -> Pending {
    let mut merged = Pending {
        records: Vec::with_capacity(records.len() + changes.len()),
        counts: Vec::with_capacity(records.len() + changes.len()),
    };
    let mut push = |r: &Record, count: i64| {
        debug_assert!(count >= 0, "{r:?} generated {count} times");
        if count > 0 {
            merged.records.push(r.clone());
            merged.counts.push(count as u32);
        }
    };
    let (mut i, mut j) = (0, 0);
    while i < records.len() || j < changes.len() {
        let order = match (records.get(i), changes.get(j)) {
            (Some(r), Some((c, _))) => record_order(r, c),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                push(&records[i], i64::from(counts[i]));
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                push(&changes[j].0, changes[j].1);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                push(&records[i], i64::from(counts[i]) + changes[j].1);
                i += 1;
                j += 1;
            }
        }
    }
    merged
}

/// The records readers see of a name in `state`: none unless it is published.
fn visible(state: NodeState, records: &[Record]) -> &[Record] {
    if state == NodeState::Records {
        records
    } else {
        &[]
    }
}

/// How many labels deep a name is.
fn depth(name: &str) -> usize {
    name.bytes().filter(|&b| b == b'.').count()
}

/// Appends the additional records of `id` (published, with `records`) to `arena`, as the
/// compile does: the apex gets every address of its NS target, any other name one A and
/// one AAAA of each of its SRV targets that is published.
fn additional_records<'a>(
    id: NameId,
    records: &[Record],
    apex: NameId,
    mname: NameId,
    view: impl Fn(NameId) -> (NodeState, &'a [Record]),
    arena: &mut Vec<Record>,
) {
    let addresses = |t: NameId| {
        let (state, records) = view(t);
        visible(state, records)
            .iter()
            .filter(|r| matches!(r.data, RecordData::A(_) | RecordData::Aaaa(_)))
    };
    if id == apex {
        arena.extend(addresses(mname).cloned());
        return;
    }
    let srvs: Vec<NameId> = srv_targets(records).collect();
    for target in srvs {
        let mut a = false;
        let mut aaaa = false;
        for r in addresses(target) {
            let first = match r.data {
                RecordData::A(_) => !std::mem::replace(&mut a, true),
                _ => !std::mem::replace(&mut aaaa, true),
            };
            if first {
                arena.push(r.clone());
            }
        }
    }
}

/// The distinct targets of a node's SRV records (sorted by target).
fn srv_targets(srvs: &[Record]) -> impl Iterator<Item = NameId> + '_ {
    let mut last = None;
    srvs.iter().filter_map(move |r| match r.data {
        RecordData::Srv(srv) if last != Some(srv.target) => {
            last = Some(srv.target);
            Some(srv.target)
        }
        _ => None,
    })
}
