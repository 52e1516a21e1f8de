//! Which names and addresses a cluster gets: the Mesos-DNS record generator. A decoded
//! Mesos state, Marathon-only apps and the options go in; `RecordSets` (the names,
//! interned, and their A, AAAA and SRV records) comes out. `dns::zone` turns that into
//! something that answers queries.
//!
//! The names, for domain `mesos`, framework label `fw` and task label `app` (the sanitized
//! discovery name if the task has one, else the sanitized task name):
//! - `app.fw.mesos` and `app-{hash5(task id)}-{agent id tail}.fw.mesos` (the canonical name):
//!   the task's IPs from the first IP source that yields any;
//! - the same two names under `.fw.slave.mesos`: the agent's IPs;
//! - `_app._tcp.fw.slave.mesos` and `_app._udp.fw.slave.mesos`: one SRV per resource port,
//!   target the canonical `.slave` name; tasks without a discovery name get the same SRVs
//!   under `.fw.mesos` too;
//! - tasks with a discovery name: one SRV per discovery port under
//!   `_app._{protocol}.fw.mesos` (both protocols when it names none), target the canonical
//!   name, and the same under `_{port name}._app._{protocol}.fw.mesos` for named ports;
//! - `fw.mesos` (the scheduler's address) and `_framework._tcp.fw.mesos` (its port);
//! - `slave.mesos` (every agent) and `_slave._tcp.mesos`;
//! - `leader.mesos`, `_leader._tcp.mesos`, `_leader._udp.mesos`, `master.mesos` (every
//!   master), `masterN.mesos` (in the order of the configured masters; a leader missing
//!   from that list gets the next index);
//! - the name server's own name.
//!
//! Only `TASK_RUNNING` tasks on an agent listed in the state get names. Host names (an agent
//! or scheduler pid with a name instead of an IP) are never looked up here: the caller
//! resolves what `hosts_to_resolve` lists and passes the answers in.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use crate::dns::intern::{NameId, NameTable};
use crate::dns::name::{domain_fragment, hash5, label, LabelRules};
use crate::dns::zone::{Record, RecordData, Srv};
use crate::source::mesos::state::{
    parse_port_ranges, split_host_port, DiscoveryPort, MesosState, Pid, Status, Task,
};

/// Where a task's IP addresses are read from (`[dns] ip_sources`, in priority order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpSource {
    /// `container_status.network_infos` of the newest running status.
    Netinfo,
    /// The `Docker.NetworkSettings.IPAddress` label of the newest running status.
    Docker,
    /// The `MesosContainerizer.NetworkSettings.IPAddress` label of the newest running status.
    Mesos,
    /// The agent's address.
    Host,
}

const DOCKER_IP_LABEL: &str = "Docker.NetworkSettings.IPAddress";
const MESOS_IP_LABEL: &str = "MesosContainerizer.NetworkSettings.IPAddress";

// === impl IpSource ===

impl IpSource {
    /// The configuration spelling (`netinfo`, `docker`, `mesos`, `host`); other names are
    /// not sources (Mesos-DNS skips them too).
    pub fn from_name(name: &str) -> Option<IpSource> {
        match name {
            "netinfo" => Some(IpSource::Netinfo),
            "docker" => Some(IpSource::Docker),
            "mesos" => Some(IpSource::Mesos),
            "host" => Some(IpSource::Host),
            _ => None,
        }
    }
}

/// An A/AAAA record set that is not derived from Mesos: the name server's own name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    pub name: String,
    pub ips: Vec<IpAddr>,
}

/// What shapes the names; fixed per configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOptions {
    /// The zone, e.g. `mesos`; any case, with or without a trailing dot.
    pub domain: String,
    /// Task IP sources in priority order; the first that yields an address wins.
    pub ip_sources: Vec<IpSource>,
    pub labels: LabelRules,
    /// Masters as `host:port`, in the order `masterN` follows.
    pub masters: Vec<String>,
    /// A leader pid (`master@10.0.0.1:5050`) used instead of the state's `leader`: the
    /// last known leader while none is elected, or a fixed one in tests.
    pub leader_override: Option<String>,
    /// The name server's own address record (Mesos-DNS's `SOAMname` + listener).
    pub name_server: Option<HostRecord>,
    /// Also publish the names Mesos-DNS builds from a task's *unsanitized* discovery name
    /// (`liquor.store.marathon.mesos` beside `liquor-store.marathon.mesos`). Mesos-DNS marks
    /// them legacy; they can hold characters no host name may, so they are off by default.
    pub legacy_discovery_names: bool,
}

impl Default for RecordOptions {
    /// Mesos-DNS's defaults: domain `mesos`, sources netinfo, mesos, host; RFC 1123.
    fn default() -> Self {
        RecordOptions {
            domain: "mesos".into(),
            ip_sources: vec![IpSource::Netinfo, IpSource::Mesos, IpSource::Host],
            labels: LabelRules::Rfc1123,
            masters: Vec::new(),
            leader_override: None,
            name_server: None,
            legacy_discovery_names: false,
        }
    }
}

/// An app known only from Marathon (no Mesos state for it). Mesos-DNS names Marathon's
/// tasks by the app id reversed: `/group/app` becomes task name `app.group`, so
/// `app-group.marathon.<domain>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MarathonOnlyApp {
    /// Marathon app id, e.g. `/group/app`.
    pub id: String,
    pub tasks: Vec<MarathonOnlyTask>,
}

/// One running task of a `MarathonOnlyApp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarathonOnlyTask {
    /// Unique per task: it is hashed into the canonical name.
    pub id: String,
    /// The agent's address.
    pub host: IpAddr,
    /// The task's own addresses (IP-per-task networking); the `netinfo` source.
    pub ip_addresses: Vec<IpAddr>,
    /// Host ports.
    pub ports: Vec<u16>,
    /// The agent id, for the canonical name's tail; without it the name ends at the hash.
    pub agent_id: Option<String>,
}

/// Every generated record: the names interned once, the records in the order they were
/// generated. A name's records are not together and may repeat: `dns::zone` sorts them
/// and removes duplicates.
#[derive(Debug, Clone, Default)]
pub struct RecordSets {
    pub names: NameTable,
    pub records: Vec<Record>,
}

// === impl RecordSets ===

impl RecordSets {
    /// Room for about `names` names and `records` records.
    pub fn with_capacity(names: usize, records: usize) -> RecordSets {
        RecordSets {
            names: NameTable::with_capacity(names, names * 64),
            records: Vec::with_capacity(records),
        }
    }

    /// `name` is lower case with a trailing dot (every name is built that way).
    pub fn add_ip(&mut self, name: &str, ip: IpAddr) {
        self.add_ips(name, &[ip]);
    }

    /// Adds every address in `ips` to `name` (one name lookup for all) and returns the
    /// name. No addresses leave the name out.
    pub fn add_ips(&mut self, name: &str, ips: &[IpAddr]) -> Option<NameId> {
        if ips.is_empty() {
            return None;
        }
        let owner = self.names.intern(name);
        self.records.extend(ips.iter().map(|&ip| Record {
            owner,
            data: match canonical_ip(ip) {
                IpAddr::V4(v4) => RecordData::A(v4),
                IpAddr::V6(v6) => RecordData::Aaaa(v6),
            },
        }));
        Some(owner)
    }

    pub fn add_srv(&mut self, name: &str, target: NameId, port: u16) {
        self.add_srvs(name, target, &[port]);
    }

    pub fn add_srvs(&mut self, name: &str, target: NameId, ports: &[u16]) {
        let owner = self.names.intern(name);
        self.records.extend(ports.iter().map(|&port| Record {
            owner,
            data: RecordData::Srv(Srv { port, target }),
        }));
    }

    /// `name` as an SRV target.
    pub fn target(&mut self, name: &str) -> NameId {
        self.names.intern(name)
    }
}

/// IPv4-mapped IPv6 addresses are IPv4 (A records), as Mesos-DNS has them.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Parses an IP address literal (no brackets, no zone), mapped IPv6 read as IPv4.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>().ok().map(canonical_ip)
}

/// The host names in `state` and `options` that are not IP literals: what the caller has
/// to resolve (and pass to `generate`) for their records to exist.
pub fn hosts_to_resolve(state: Option<&MesosState>, options: &RecordOptions) -> BTreeSet<String> {
    let mut hosts = BTreeSet::new();
    let mut want = |host: &str| {
        if !host.is_empty() && parse_ip(host).is_none() {
            hosts.insert(host.to_string());
        }
    };
    if let Some(state) = state {
        for agent in &state.agents {
            if let Ok(pid) = Pid::parse(&agent.pid) {
                want(&pid.host);
            }
        }
        for f in &state.frameworks {
            match f.pid.as_deref().map(Pid::parse) {
                Some(Ok(pid)) => want(&pid.host),
                _ => want(&f.hostname),
            }
        }
        if let Ok(pid) = Pid::parse(&state.leader) {
            want(&pid.host);
        }
    }
    if let Some(Ok(pid)) = options.leader_override.as_deref().map(Pid::parse) {
        want(&pid.host);
    }
    for master in &options.masters {
        if let Some((host, _)) = split_host_port(master) {
            want(host);
        }
    }
    hosts
}

/// Host names resolved by the caller: name -> addresses.
pub type ResolvedHosts = HashMap<String, Vec<IpAddr>>;

/// Builds every record Mesos-DNS builds for `state` (if any) and `marathon_apps`.
pub fn generate(
    state: Option<&MesosState>,
    marathon_apps: &[MarathonOnlyApp],
    resolved: &ResolvedHosts,
    options: &RecordOptions,
) -> RecordSets {
    let domain = options.domain.trim_end_matches('.').to_ascii_lowercase();
    // A task has about 3 names of its own and 12 records (the benchmark's mix): room
    // for a little more saves copying the biggest buffers as they grow.
    let tasks = state.map_or(0, |s| s.frameworks.iter().map(|f| f.tasks.len()).sum())
        + marathon_apps.iter().map(|a| a.tasks.len()).sum::<usize>();
    let mut gen = Generator {
        sets: RecordSets::with_capacity(tasks * 3 + 64, tasks * 14 + 64),
        tail: format!(".{domain}."),
        buf: String::with_capacity(256),
        resolved,
        options,
    };
    if let Some(name_server) = &options.name_server {
        let name = fqdn(&name_server.name);
        for &ip in &name_server.ips {
            gen.sets.add_ip(&name, ip);
        }
    }
    let leader = options
        .leader_override
        .as_deref()
        .or(state.map(|s| s.leader.as_str()));
    if let Some(leader) = leader {
        gen.masters(leader);
    }
    if let Some(state) = state {
        gen.frameworks(state);
        let agents = gen.agents(state);
        gen.mesos_tasks(state, &agents);
    }
    for app in marathon_apps {
        gen.marathon_app(app);
    }
    gen.sets
}

/// Lower case with exactly one trailing dot.
fn fqdn(name: &str) -> String {
    let mut s = name.trim_end_matches('.').to_ascii_lowercase();
    s.push('.');
    s
}

struct Generator<'a> {
    sets: RecordSets,
    /// `.{domain}.`, lower case.
    tail: String,
    /// Scratch space for building names.
    buf: String,
    resolved: &'a ResolvedHosts,
    options: &'a RecordOptions,
}

/// One task about to be named: what every name of it shares.
struct TaskNames<'t> {
    /// Framework fragment, e.g. `marathon`.
    framework: &'t str,
    /// `{hash5(task id)}-{agent tail}` or `{hash5}` alone.
    suffix: String,
    task_ips: Vec<IpAddr>,
    agent_ips: &'t [IpAddr],
    /// Resource (host) ports.
    ports: Vec<u16>,
    /// Discovery ports, `None` for a task without a discovery name.
    discovery: Option<&'t [DiscoveryPort]>,
}

// === impl Generator ===

impl Generator<'_> {
    /// The addresses of a host: itself if it is an IP literal, else what the caller resolved.
    fn ips_of(&self, host: &str) -> Vec<IpAddr> {
        match parse_ip(host) {
            Some(ip) => vec![ip],
            None => self
                .resolved
                .get(host)
                .map(|ips| ips.iter().copied().map(canonical_ip).collect())
                .unwrap_or_default(),
        }
    }

    fn label(&self, text: &str) -> String {
        label(text, self.options.labels)
    }

    /// `leader`, `master`, `masterN`, `_leader._tcp`, `_leader._udp`. Nothing at all when
    /// the leader pid does not parse or its host has no address.
    fn masters(&mut self, leader: &str) {
        let Ok(pid) = Pid::parse(leader) else { return };
        let leader_ips = self.ips_of(&pid.host);
        if leader_ips.is_empty() {
            return;
        }
        // Masters are matched to the leader by their exact `host:port` text.
        let leader_address = leader.trim().split_once('@').map_or("", |(_, a)| a);
        let tail = &self.tail;
        let master = format!("master{tail}");
        for &ip in &leader_ips {
            self.sets.add_ip(&format!("leader{tail}"), ip);
            self.sets.add_ip(&master, ip);
        }
        let leader_target = self.sets.target(&format!("leader{tail}"));
        self.sets
            .add_srv(&format!("_leader._tcp{tail}"), leader_target, pid.port);
        self.sets
            .add_srv(&format!("_leader._udp{tail}"), leader_target, pid.port);

        let mut all_master_ips = leader_ips.clone();
        let mut index = 0;
        let mut leader_indexed = false;
        for listed in &self.options.masters {
            let Some((host, _)) = split_host_port(listed) else {
                continue;
            };
            let ips = self.ips_of(host);
            if ips.is_empty() {
                continue;
            }
            let is_leader = listed == leader_address;
            if !is_leader {
                let new: Vec<IpAddr> = ips
                    .iter()
                    .copied()
                    .filter(|ip| !all_master_ips.contains(ip))
                    .collect();
                if new.is_empty() {
                    // A master listed twice (or at the leader's IP) takes no index.
                    continue;
                }
                all_master_ips.extend(&new);
                for &ip in &new {
                    self.sets.add_ip(&master, ip);
                }
            } else if leader_indexed {
                continue;
            }
            for &ip in &ips {
                self.sets.add_ip(&format!("master{index}{tail}"), ip);
            }
            index += 1;
            leader_indexed |= is_leader;
        }
        if !leader_indexed {
            for &ip in &leader_ips {
                self.sets.add_ip(&format!("master{index}{tail}"), ip);
            }
        }
    }

    /// `fw.domain` at the scheduler's address and `_framework._tcp.fw.domain` at its port.
    /// A framework without a pid is named at its `hostname`, without SRV.
    fn frameworks(&mut self, state: &MesosState) {
        for f in &state.frameworks {
            let (host, port) = match f.pid.as_deref().map(Pid::parse) {
                Some(Ok(pid)) => (pid.host, Some(pid.port)),
                _ => (f.hostname.clone(), None),
            };
            let ips = self.ips_of(&host);
            let fragment = domain_fragment(&f.name, self.options.labels);
            if ips.is_empty() || fragment.is_empty() {
                continue;
            }
            let name = format!("{fragment}{}", self.tail);
            for ip in ips {
                self.sets.add_ip(&name, ip);
            }
            if let Some(port) = port {
                let target = self.sets.target(&name);
                self.sets
                    .add_srv(&format!("_framework._tcp.{name}"), target, port);
            }
        }
    }

    /// `slave.domain` and `_slave._tcp.domain`; returns each agent's addresses by id.
    fn agents<'s>(&mut self, state: &'s MesosState) -> HashMap<&'s str, Vec<IpAddr>> {
        let name = format!("slave{}", self.tail);
        let srv = format!("_slave._tcp{}", self.tail);
        let mut agents = HashMap::with_capacity(state.agents.len());
        for agent in &state.agents {
            let pid = Pid::parse(&agent.pid).ok();
            let ips = pid
                .as_ref()
                .map(|p| self.ips_of(&p.host))
                .unwrap_or_default();
            if let (Some(pid), false) = (&pid, ips.is_empty()) {
                for &ip in &ips {
                    self.sets.add_ip(&name, ip);
                }
                let target = self.sets.target(&name);
                self.sets.add_srv(&srv, target, pid.port);
            }
            agents.insert(agent.id.as_str(), ips);
        }
        agents
    }

    fn mesos_tasks(&mut self, state: &MesosState, agents: &HashMap<&str, Vec<IpAddr>>) {
        for f in &state.frameworks {
            let framework = domain_fragment(&f.name, self.options.labels);
            if framework.is_empty() {
                continue;
            }
            for task in &f.tasks {
                let Some(agent_ips) = agents.get(task.slave_id.as_str()) else {
                    continue;
                };
                if task.state != "TASK_RUNNING" {
                    continue;
                }
                let discovery = task.discovery.as_ref().filter(|d| !d.name.is_empty());
                let names = TaskNames {
                    framework: &framework,
                    suffix: canonical_suffix(&task.id, Some(&task.slave_id)),
                    task_ips: task_ips(task, agent_ips, &self.options.ip_sources),
                    agent_ips,
                    ports: parse_port_ranges(&task.resources.ports),
                    discovery: discovery.map(|d| d.ports.ports.as_slice()),
                };
                match discovery {
                    Some(d) => {
                        if self.options.legacy_discovery_names {
                            self.task(&d.name.to_ascii_lowercase(), &names);
                        }
                        let l = self.label(&d.name);
                        self.task(&l, &names);
                    }
                    None => {
                        let l = self.label(&task.name);
                        self.task(&l, &names);
                    }
                }
            }
        }
    }

    fn marathon_app(&mut self, app: &MarathonOnlyApp) {
        // Marathon's task name is the app id's path reversed: `/group/app` -> `app.group`.
        let task_name: Vec<&str> = app.id.split('/').filter(|s| !s.is_empty()).rev().collect();
        let l = self.label(&task_name.join("."));
        let framework = domain_fragment("marathon", self.options.labels);
        for task in &app.tasks {
            let agent_ips = [canonical_ip(task.host)];
            let mut task_ips = Vec::new();
            for source in &self.options.ip_sources {
                task_ips = match source {
                    IpSource::Netinfo => task.ip_addresses.clone(),
                    IpSource::Host => agent_ips.to_vec(),
                    IpSource::Docker | IpSource::Mesos => Vec::new(),
                };
                if !task_ips.is_empty() {
                    break;
                }
            }
            let suffix = canonical_suffix(&task.id, task.agent_id.as_deref());
            let names = TaskNames {
                framework: &framework,
                suffix,
                task_ips,
                agent_ips: &agent_ips,
                ports: task.ports.clone(),
                discovery: None,
            };
            self.task(&l, &names);
        }
    }

    /// Every record of one task under one label. Names are built in one reused buffer,
    /// and each name is probed once for all its records.
    fn task(&mut self, task_label: &str, t: &TaskNames) {
        if task_label.is_empty() {
            // `.fw.domain` is no name; Mesos-DNS would publish it anyway.
            return;
        }
        let Generator {
            sets,
            tail,
            buf,
            options,
            ..
        } = self;
        let tail = tail.as_str();
        let fw = t.framework;
        let suffix = t.suffix.as_str();

        put(buf, &[task_label, ".", fw, tail]);
        sets.add_ips(buf, &t.task_ips);
        put(buf, &[task_label, "-", suffix, ".", fw, tail]);
        let canonical = sets.add_ips(buf, &t.task_ips);
        let task_target = t
            .discovery
            .is_some()
            .then(|| canonical.unwrap_or_else(|| sets.target(buf)));
        put(buf, &[task_label, ".", fw, ".slave", tail]);
        sets.add_ips(buf, t.agent_ips);
        put(buf, &[task_label, "-", suffix, ".", fw, ".slave", tail]);
        let canonical_slave = sets.add_ips(buf, t.agent_ips);

        if !t.ports.is_empty() {
            let agent_target = canonical_slave.unwrap_or_else(|| sets.target(buf));
            for protocol in ["_tcp.", "_udp."] {
                put(buf, &["_", task_label, ".", protocol, fw, ".slave", tail]);
                sets.add_srvs(buf, agent_target, &t.ports);
                if t.discovery.is_none() {
                    put(buf, &["_", task_label, ".", protocol, fw, tail]);
                    sets.add_srvs(buf, agent_target, &t.ports);
                }
            }
        }

        let (Some(discovery_ports), Some(task_target)) = (t.discovery, task_target) else {
            return;
        };
        for dp in discovery_ports {
            let Ok(port) = u16::try_from(dp.number) else {
                continue;
            };
            let protocol = label(&dp.protocol, options.labels);
            let protocols: &[&str] = if protocol.is_empty() {
                &["tcp", "udp"]
            } else {
                &[protocol.as_str()]
            };
            let port_name = label(&dp.name, options.labels);
            for protocol in protocols {
                let service = ["_", task_label, "._", protocol, ".", fw, tail];
                put(buf, &service);
                sets.add_srv(buf, task_target, port);
                if !port_name.is_empty() {
                    put(buf, &["_", &port_name, "."]);
                    service.iter().for_each(|p| buf.push_str(p));
                    sets.add_srv(buf, task_target, port);
                }
            }
        }
    }
}

/// `buf` := the concatenation of `parts`.
fn put(buf: &mut String, parts: &[&str]) {
    buf.clear();
    parts.iter().for_each(|p| buf.push_str(p));
}

/// What follows the label in a canonical task name: `{hash5(task id)}-{agent tail}`, or
/// the hash alone without an agent id. The agent tail is the last `-` field of the agent
/// id, lower case: `...-5050-2410-S0` -> `s0`.
fn canonical_suffix(task_id: &str, agent_id: Option<&str>) -> String {
    let mut suffix = hash5(task_id);
    if let Some(agent) = agent_id {
        let tail = agent.rsplit('-').next().unwrap_or_default();
        suffix.push('-');
        suffix.extend(tail.chars().map(|c| c.to_ascii_lowercase()));
    }
    suffix
}

/// A task's IP addresses: those of the first source in `sources` that yields any.
/// `agent_ips` is the `host` source. The container sources read only the newest (by
/// timestamp) `TASK_RUNNING` status.
pub fn task_ips(task: &Task, agent_ips: &[IpAddr], sources: &[IpSource]) -> Vec<IpAddr> {
    let newest_running = task
        .statuses
        .iter()
        .filter(|s| s.state == "TASK_RUNNING")
        .fold(None::<&Status>, |best, s| match best {
            Some(b) if b.timestamp >= s.timestamp => Some(b),
            _ => Some(s),
        });
    for source in sources {
        let ips: Vec<IpAddr> = match source {
            IpSource::Host => agent_ips.to_vec(),
            IpSource::Netinfo => newest_running
                .map(|s| {
                    s.container_status
                        .network_infos
                        .iter()
                        .flat_map(|n| {
                            // The 0.26 list wins; the 0.25 single address only without it.
                            let listed = n.ip_addresses.iter().map(|a| a.ip_address.as_str());
                            let legacy = n.ip_addresses.is_empty().then_some(n.ip_address.as_str());
                            listed.chain(legacy)
                        })
                        .filter_map(parse_ip)
                        .collect()
                })
                .unwrap_or_default(),
            IpSource::Docker => label_ips(newest_running, DOCKER_IP_LABEL),
            IpSource::Mesos => label_ips(newest_running, MESOS_IP_LABEL),
        };
        if !ips.is_empty() {
            return ips;
        }
    }
    Vec::new()
}

fn label_ips(status: Option<&Status>, key: &str) -> Vec<IpAddr> {
    status
        .map(|s| {
            s.labels
                .iter()
                .filter(|l| l.key == key)
                .filter_map(|l| parse_ip(&l.value))
                .collect()
        })
        .unwrap_or_default()
}
