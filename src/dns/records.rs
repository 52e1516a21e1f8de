//! Which names and addresses a cluster gets: the Mesos-DNS record generator. The catalog's
//! `Cluster` (what the Mesos leader reported), the Marathon-only apps and the options go in; `RecordSets` (the names,
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
//! Only `TASK_RUNNING` tasks on an agent listed in the state get names. Every address comes
//! from the cluster as the source converted it (host names already resolved): nothing is
//! parsed or looked up here.
//!
//! With `healthy_only` (`[dns] healthy_only`), a task whose health checks fail
//! (`healthy == Some(false)`) gets no names at all (not its canonical ones, `.slave` ones or
//! SRV records either), unless every task sharing its main name `label.fw.domain` fails
//! too: then all of them are named, as a pool with no healthy backend uses them all. Tasks
//! without health (`None`) count as healthy. A task's group is its framework fragment and
//! its (sanitized) label, so the legacy discovery names follow the sanitized name's group.
//! Drover's own active checks count too: a task one of whose addresses (`ip:port`, any of
//! its IPs with any of its host or discovery ports) a check proves down (`checked_down`)
//! fails like a task Mesos or Marathon reports unhealthy. A task not yet checked is not down.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use crate::catalog::cluster::{
    Cluster, DiscoveryPort, Endpoint, MarathonOnlyApp, MarathonOnlyTask, Task, TaskIps,
};
use crate::dns::intern::{NameId, NameTable};
use crate::dns::name::{domain_fragment, hash5, label, LabelRules};
use crate::dns::zone::{Record, RecordData, Srv};

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
    /// The name server's own address record (Mesos-DNS's `SOAMname` + listener).
    pub name_server: Option<HostRecord>,
    /// Also publish the names Mesos-DNS builds from a task's *unsanitized* discovery name
    /// (`liquor.store.marathon.mesos` beside `liquor-store.marathon.mesos`). Mesos-DNS marks
    /// them legacy; they can hold characters no host name may, so they are off by default.
    pub legacy_discovery_names: bool,
    /// Leave out the tasks that fail their health checks, unless all of a name's tasks
    /// fail. Off by default: Mesos-DNS names every running task.
    pub healthy_only: bool,
}

impl Default for RecordOptions {
    /// Mesos-DNS's defaults: domain `mesos`, sources netinfo, mesos, host; RFC 1123.
    fn default() -> Self {
        RecordOptions {
            domain: "mesos".into(),
            ip_sources: vec![IpSource::Netinfo, IpSource::Mesos, IpSource::Host],
            labels: LabelRules::Rfc1123,
            name_server: None,
            legacy_discovery_names: false,
            healthy_only: false,
        }
    }
}

/// Every generated record: the names interned once, the records in the order they were
/// generated. A name's records are not together and may repeat: `dns::zone` sorts them
/// and removes duplicates.
#[derive(Debug, Clone, Default)]
pub struct RecordSets {
    pub names: NameTable,
    pub records: Vec<Record>,
    /// With `healthy_only`: names answered with all their tasks because every one of them
    /// fails its health checks.
    pub all_failing_names: usize,
}

// === impl RecordSets ===

impl RecordSets {
    /// Room for about `names` names and `records` records.
    pub fn with_capacity(names: usize, records: usize) -> RecordSets {
        RecordSets {
            names: NameTable::with_capacity(names, names * 64),
            records: Vec::with_capacity(records),
            all_failing_names: 0,
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

/// Builds every record Mesos-DNS builds for `cluster` (if any) and `marathon_apps`.
/// `checked_down`: the backends Drover's active checks prove down, read with `healthy_only`.
pub fn generate(
    cluster: Option<&Cluster>,
    marathon_apps: &[MarathonOnlyApp],
    options: &RecordOptions,
    checked_down: &BTreeSet<SocketAddr>,
) -> RecordSets {
    // A task has about 3 names of its own and 12 records (the benchmark's mix): room
    // for a little more saves copying the biggest buffers as they grow.
    let tasks = cluster.map_or(0, Cluster::task_count)
        + marathon_apps.iter().map(|a| a.tasks.len()).sum::<usize>();
    let sets = RecordSets::with_capacity(tasks * 3 + 64, tasks * 14 + 64);
    let mut gen = Generator::new(sets, options, checked_down);
    if let Some(name_server) = &options.name_server {
        let name = fqdn(&name_server.name);
        for &ip in &name_server.ips {
            gen.sets.add_ip(&name, ip);
        }
    }
    if let Some(cluster) = cluster {
        if let Some(leader) = &cluster.leader {
            gen.masters(leader, &cluster.masters);
        }
        gen.frameworks(cluster);
    }
    let agents = cluster.map(|c| gen.agents(c)).unwrap_or_default();
    if options.healthy_only {
        gen.healthy_names = Some(gen.healthy_names(cluster, &agents, marathon_apps));
    }
    if let Some(cluster) = cluster {
        gen.mesos_tasks(cluster, &agents);
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
    options: &'a RecordOptions,
    /// With `healthy_only`: framework fragment -> the task labels under it that have a
    /// task not failing its health checks. A failing task under one of them is left out.
    healthy_names: Option<HashMap<String, HashSet<String>>>,
    /// Backends Drover's active checks prove down.
    checked_down: &'a BTreeSet<SocketAddr>,
}

/// A Mesos task that gets names, with its agent's addresses.
type NamedTask<'c> = (&'c Task, &'c [IpAddr]);

/// One task about to be named: what every name of it shares.
struct TaskNames<'t> {
    /// Framework fragment, e.g. `marathon`.
    framework: &'t str,
    /// `{hash5(task id)}-{agent tail}` or `{hash5}` alone.
    suffix: String,
    task_ips: &'t [IpAddr],
    agent_ips: &'t [IpAddr],
    /// Resource (host) ports.
    ports: &'t [u16],
    /// Discovery ports, `None` for a task without a discovery name.
    discovery: Option<&'t [DiscoveryPort]>,
}

// === impl Generator ===

impl<'a> Generator<'a> {
    fn new(
        sets: RecordSets,
        options: &'a RecordOptions,
        checked_down: &'a BTreeSet<SocketAddr>,
    ) -> Generator<'a> {
        let domain = options.domain.trim_end_matches('.').to_ascii_lowercase();
        Generator {
            sets,
            tail: format!(".{domain}."),
            buf: String::with_capacity(256),
            options,
            healthy_names: None,
            checked_down,
        }
    }

    fn label(&self, text: &str) -> String {
        label(text, self.options.labels)
    }

    /// `leader`, `master`, `masterN`, `_leader._tcp`, `_leader._udp`. Nothing at all when
    /// the leader's host has no address.
    fn masters(&mut self, leader: &Endpoint, masters: &[Endpoint]) {
        let leader_ips = &leader.ips;
        if leader_ips.is_empty() {
            return;
        }
        let tail = &self.tail;
        let master = format!("master{tail}");
        for &ip in leader_ips {
            self.sets.add_ip(&format!("leader{tail}"), ip);
            self.sets.add_ip(&master, ip);
        }
        let leader_target = self.sets.target(&format!("leader{tail}"));
        self.sets
            .add_srv(&format!("_leader._tcp{tail}"), leader_target, leader.port);
        self.sets
            .add_srv(&format!("_leader._udp{tail}"), leader_target, leader.port);

        let mut all_master_ips = leader_ips.clone();
        let mut index = 0;
        let mut leader_indexed = false;
        for listed in masters {
            let ips = &listed.ips;
            if ips.is_empty() {
                continue;
            }
            // Masters are matched to the leader by their exact `host:port` text.
            let is_leader = listed.address == leader.address;
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
            for &ip in ips {
                self.sets.add_ip(&format!("master{index}{tail}"), ip);
            }
            index += 1;
            leader_indexed |= is_leader;
        }
        if !leader_indexed {
            for &ip in leader_ips {
                self.sets.add_ip(&format!("master{index}{tail}"), ip);
            }
        }
    }

    /// `fw.domain` at the scheduler's address and `_framework._tcp.fw.domain` at its port.
    /// A framework without a pid is named at its `hostname`, without SRV.
    fn frameworks(&mut self, cluster: &Cluster) {
        for f in &cluster.frameworks {
            let (ips, port) = (&f.ips, f.port);
            let fragment = domain_fragment(&f.name, self.options.labels);
            if ips.is_empty() || fragment.is_empty() {
                continue;
            }
            let name = format!("{fragment}{}", self.tail);
            for &ip in ips {
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
    fn agents<'c>(&mut self, cluster: &'c Cluster) -> HashMap<&'c str, &'c [IpAddr]> {
        let name = format!("slave{}", self.tail);
        let srv = format!("_slave._tcp{}", self.tail);
        let mut agents = HashMap::with_capacity(cluster.agents.len());
        for agent in &cluster.agents {
            let ips: &[IpAddr] = agent.endpoint.as_ref().map_or(&[], |e| &e.ips);
            if let Some(endpoint) = agent.endpoint.as_ref().filter(|e| !e.ips.is_empty()) {
                for &ip in ips {
                    self.sets.add_ip(&name, ip);
                }
                let target = self.sets.target(&name);
                self.sets.add_srv(&srv, target, endpoint.port);
            }
            agents.insert(agent.id.as_str(), ips);
        }
        agents
    }

    /// The task label of a Mesos task: its discovery name's, else its name's.
    fn mesos_label(&self, task: &Task) -> String {
        match &task.discovery {
            Some(d) => self.label(&d.name),
            None => self.label(&task.name),
        }
    }

    /// The task label of a Marathon-only app's tasks: Marathon's task name is the app id's
    /// path reversed, `/group/app` -> `app.group`.
    fn marathon_label(&self, app: &MarathonOnlyApp) -> String {
        let task_name: Vec<&str> = app.id.split('/').filter(|s| !s.is_empty()).rev().collect();
        self.label(&task_name.join("."))
    }

    /// The tasks that get names: running, on an agent the state lists, in a framework with a
    /// name. Each with its framework fragment and its agent's addresses.
    fn named_tasks<'c>(
        &self,
        cluster: &'c Cluster,
        agents: &HashMap<&str, &'c [IpAddr]>,
    ) -> Vec<(String, Vec<NamedTask<'c>>)> {
        cluster
            .frameworks
            .iter()
            .filter_map(|f| {
                let framework = domain_fragment(&f.name, self.options.labels);
                if framework.is_empty() {
                    return None;
                }
                let tasks = f
                    .tasks
                    .iter()
                    .filter(|t| t.state == "TASK_RUNNING")
                    .filter_map(|t| Some((t, *agents.get(t.agent_id.as_str())?)))
                    .collect();
                Some((framework, tasks))
            })
            .collect()
    }

    /// For `healthy_only`: framework fragment -> the labels that have at least one named
    /// task not failing its health checks; also counts the names whose tasks all fail.
    fn healthy_names(
        &mut self,
        cluster: Option<&Cluster>,
        agents: &HashMap<&str, &[IpAddr]>,
        marathon_apps: &[MarathonOnlyApp],
    ) -> HashMap<String, HashSet<String>> {
        let mut names: HashMap<String, HashSet<String>> = HashMap::new();
        let mut failing: HashSet<(String, String)> = HashSet::new();
        if let Some(cluster) = cluster {
            for (framework, tasks) in self.named_tasks(cluster, agents) {
                for (task, agent_ips) in tasks {
                    let l = self.mesos_label(task);
                    if self.mesos_health(task, agent_ips) == Some(false) {
                        failing.insert((framework.clone(), l));
                    } else {
                        names.entry(framework.clone()).or_default().insert(l);
                    }
                }
            }
        }
        let marathon = domain_fragment("marathon", self.options.labels);
        for app in marathon_apps {
            let l = self.marathon_label(app);
            if app
                .tasks
                .iter()
                .any(|t| self.marathon_health(t) != Some(false))
            {
                names.entry(marathon.clone()).or_default().insert(l);
            } else {
                failing.insert((marathon.clone(), l));
            }
        }
        self.sets.all_failing_names = failing
            .iter()
            .filter(|(fw, l)| !names.get(fw).is_some_and(|labels| labels.contains(l)))
            .count();
        names
    }

    /// A Mesos task's health: what Mesos reports, or failing when an active check proves
    /// one of its addresses down.
    fn mesos_health(&self, task: &Task, agent_ips: &[IpAddr]) -> Option<bool> {
        if task.healthy == Some(false) || !self.options.healthy_only || self.checked_down.is_empty()
        {
            return task.healthy;
        }
        let ips = agent_ips
            .iter()
            .chain(&task.ips.netinfo)
            .chain(&task.ips.docker)
            .chain(&task.ips.mesos);
        let discovery = task.discovery.iter().flat_map(|d| d.ports.iter());
        let ports = task
            .ports
            .iter()
            .copied()
            .chain(discovery.map(|p| p.number));
        self.any_checked_down(ips, ports)
            .then_some(false)
            .or(task.healthy)
    }

    /// A Marathon-only task's health: what Marathon reports, or failing when an active check
    /// proves one of its addresses down.
    fn marathon_health(&self, task: &MarathonOnlyTask) -> Option<bool> {
        if task.healthy == Some(false) || !self.options.healthy_only || self.checked_down.is_empty()
        {
            return task.healthy;
        }
        let ips = std::iter::once(&task.host).chain(&task.ip_addresses);
        self.any_checked_down(ips, task.ports.iter().copied())
            .then_some(false)
            .or(task.healthy)
    }

    /// Whether some `ip:port` of these is a backend an active check proves down.
    fn any_checked_down<'i>(
        &self,
        ips: impl Iterator<Item = &'i IpAddr>,
        ports: impl Iterator<Item = u16> + Clone,
    ) -> bool {
        ips.into_iter().any(|&ip| {
            let ip = canonical_ip(ip);
            ports
                .clone()
                .any(|port| self.checked_down.contains(&SocketAddr::new(ip, port)))
        })
    }

    /// With `healthy_only`, whether a task of `healthy` health under `framework` and
    /// `task_label` is left out: it fails its checks and its name has a task that does not.
    fn left_out(&self, framework: &str, task_label: &str, healthy: Option<bool>) -> bool {
        healthy == Some(false)
            && self
                .healthy_names
                .as_ref()
                .and_then(|names| names.get(framework))
                .is_some_and(|labels| labels.contains(task_label))
    }

    fn mesos_tasks(&mut self, cluster: &Cluster, agents: &HashMap<&str, &[IpAddr]>) {
        for (framework, tasks) in self.named_tasks(cluster, agents) {
            for (task, agent_ips) in tasks {
                let l = self.mesos_label(task);
                if self.left_out(&framework, &l, self.mesos_health(task, agent_ips)) {
                    continue;
                }
                self.mesos_task(&framework, &l, task, agent_ips);
            }
        }
    }

    /// Every record of one Mesos task, `l` its label.
    fn mesos_task(&mut self, framework: &str, l: &str, task: &Task, agent_ips: &[IpAddr]) {
        let names = TaskNames {
            framework,
            suffix: canonical_suffix(&task.id, Some(&task.agent_id)),
            task_ips: task_ips(&task.ips, agent_ips, &self.options.ip_sources),
            agent_ips,
            ports: &task.ports,
            discovery: task.discovery.as_ref().map(|d| d.ports.as_slice()),
        };
        if let Some(d) = &task.discovery {
            if self.options.legacy_discovery_names {
                self.task(&d.name.to_ascii_lowercase(), &names);
            }
        }
        self.task(l, &names);
    }

    fn marathon_app(&mut self, app: &MarathonOnlyApp) {
        let l = self.marathon_label(app);
        let framework = domain_fragment("marathon", self.options.labels);
        for task in &app.tasks {
            if self.left_out(&framework, &l, self.marathon_health(task)) {
                continue;
            }
            let agent_ips = [canonical_ip(task.host)];
            let own = TaskIps {
                netinfo: task.ip_addresses.clone(),
                ..TaskIps::default()
            };
            let names = TaskNames {
                framework: &framework,
                suffix: canonical_suffix(&task.id, task.agent_id.as_deref()),
                task_ips: task_ips(&own, &agent_ips, &self.options.ip_sources),
                agent_ips: &agent_ips,
                ports: &task.ports,
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
        sets.add_ips(buf, t.task_ips);
        put(buf, &[task_label, "-", suffix, ".", fw, tail]);
        let canonical = sets.add_ips(buf, t.task_ips);
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
                sets.add_srvs(buf, agent_target, t.ports);
                if t.discovery.is_none() {
                    put(buf, &["_", task_label, ".", protocol, fw, tail]);
                    sets.add_srvs(buf, agent_target, t.ports);
                }
            }
        }

        let (Some(discovery_ports), Some(task_target)) = (t.discovery, task_target) else {
            return;
        };
        for dp in discovery_ports {
            let port = dp.number;
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

/// What `healthy_only` weighs for one task label of one framework: whether a task under it
/// passes its checks (or has none), and whether one fails (or, for a Marathon-only app, an
/// app has no task that passes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelHealth {
    pub ok: bool,
    pub failing: bool,
}

// === impl LabelHealth ===

impl LabelHealth {
    /// A label whose tasks all fail: all of them are answered, and it is counted.
    pub fn all_failing(self) -> bool {
        self.failing && !self.ok
    }

    pub fn or(self, other: LabelHealth) -> LabelHealth {
        LabelHealth {
            ok: self.ok || other.ok,
            failing: self.failing || other.failing,
        }
    }
}

/// The task label a Marathon-only app's names are built on (`/group/app` -> `app-group`).
pub fn marathon_app_label(app: &MarathonOnlyApp, options: &RecordOptions) -> String {
    Generator::new(RecordSets::default(), options, &BTreeSet::new()).marathon_label(app)
}

/// The Mesos tasks whose names Marathon-only apps can share: those of the frameworks
/// named like Marathon (fragment `marathon`), by task label. With `healthy_only` only.
#[derive(Debug, Clone, Default)]
pub struct MarathonFrameworkLabels {
    /// Each label's health, over its Mesos tasks.
    pub health: HashMap<String, LabelHealth>,
    /// The records of the labels whose Mesos tasks all fail, generated as if answered:
    /// they are, unless a Marathon-only app of the label has a task that passes.
    pub all_failing: HashMap<String, RecordSets>,
}

/// `MarathonFrameworkLabels` of a cluster; empty without `healthy_only`.
pub fn marathon_framework_labels(
    cluster: Option<&Cluster>,
    options: &RecordOptions,
    checked_down: &BTreeSet<SocketAddr>,
) -> MarathonFrameworkLabels {
    let mut labels = MarathonFrameworkLabels::default();
    let Some(cluster) = cluster.filter(|_| options.healthy_only) else {
        return labels;
    };
    let mut gen = Generator::new(RecordSets::default(), options, checked_down);
    let marathon = domain_fragment("marathon", options.labels);
    let agents: HashMap<&str, &[IpAddr]> = cluster
        .agents
        .iter()
        .map(|a| {
            let ips: &[IpAddr] = a.endpoint.as_ref().map_or(&[], |e| &e.ips);
            (a.id.as_str(), ips)
        })
        .collect();
    let named = gen.named_tasks(cluster, &agents);
    let tasks = || {
        named
            .iter()
            .filter(|(framework, _)| *framework == marathon)
            .flat_map(|(_, tasks)| tasks.iter())
    };
    for &(task, agent_ips) in tasks() {
        let fails = gen.mesos_health(task, agent_ips) == Some(false);
        let health = labels.health.entry(gen.mesos_label(task)).or_default();
        health.ok |= !fails;
        health.failing |= fails;
    }
    for &(task, agent_ips) in tasks() {
        let l = gen.mesos_label(task);
        if !labels.health[&l].all_failing() {
            continue;
        }
        gen.sets = labels.all_failing.remove(&l).unwrap_or_default();
        gen.mesos_task(&marathon, &l, task, agent_ips);
        labels.all_failing.insert(l, std::mem::take(&mut gen.sets));
    }
    labels
}

/// Appends to `sets` the records of the Marathon-only apps `apps`, all of task label
/// `label`, beside Mesos tasks of that label whose health is `mesos`; returns the label's
/// health over both.
pub fn marathon_label_records(
    label: &str,
    apps: &[&MarathonOnlyApp],
    mesos: LabelHealth,
    options: &RecordOptions,
    checked_down: &BTreeSet<SocketAddr>,
    sets: &mut RecordSets,
) -> LabelHealth {
    let mut gen = Generator::new(std::mem::take(sets), options, checked_down);
    let mut health = mesos;
    for app in apps {
        let ok = app
            .tasks
            .iter()
            .any(|t| gen.marathon_health(t) != Some(false));
        health.ok |= ok;
        health.failing |= !ok;
    }
    if options.healthy_only && health.ok {
        let marathon = domain_fragment("marathon", options.labels);
        let label = HashSet::from([label.to_string()]);
        gen.healthy_names = Some(HashMap::from([(marathon, label)]));
    }
    for app in apps {
        gen.marathon_app(app);
    }
    *sets = gen.sets;
    health
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
/// `agent_ips` is the `host` source.
pub fn task_ips<'a>(
    ips: &'a TaskIps,
    agent_ips: &'a [IpAddr],
    sources: &[IpSource],
) -> &'a [IpAddr] {
    for source in sources {
        let from: &[IpAddr] = match source {
            IpSource::Host => agent_ips,
            IpSource::Netinfo => &ips.netinfo,
            IpSource::Docker => &ips.docker,
            IpSource::Mesos => &ips.mesos,
        };
        if !from.is_empty() {
            return from;
        }
    }
    &[]
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
