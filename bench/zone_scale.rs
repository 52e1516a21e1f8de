//! How long a zone takes to compile and how much memory it holds, for 10,000 and 50,000
//! tasks: the control plane recompiles it on every catalog change, and the DNS server keeps
//! the old and new zones alive across a swap. Not a criterion bench: one timed build per
//! size (the median and the fastest of 9) and the allocator's peak, counted by a wrapping allocator.
//!
//! Run: `cargo bench --bench zone_scale` (sizes: `ZONE_TASKS="10000 50000"`).
//!
//! Then "one app changed": the same number of tasks as Marathon-only apps (10 tasks of 2
//! ports each), compiled once into a `ZoneState`; `ZONE_CHANGES` (default 200) times one
//! app's task is replaced by a new one (a restart: new task id, new host), patched with
//! `ZoneState::replace_marathon_apps`. Prints the patch's median, 99th percentile and
//! maximum, and the cost of a lookup (ns, over every name of the zone) in the compiled
//! zone and in the zone after all the patches.
//!
//! The state: tasks of 20-character app names, 10 tasks per app, 2 ports each, a discovery
//! name with two named ports on every other app, spread over one agent per 25 tasks, all
//! in framework `marathon`; the config R options of EXPECTED.md.

// Benches measure real time and pace real servers (clippy.toml bars these elsewhere).
#![allow(clippy::disallowed_methods)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use drover::catalog::cluster::{Cluster, MarathonOnlyApp, MarathonOnlyTask};
use drover::dns::name::LabelRules;
use drover::dns::records::{self, IpSource};
use drover::dns::zone::{QueryType, Zone, ZoneInput, ZoneOptions, ZoneState};
use drover::source::mesos::cluster::{convert, ResolvedHosts};
use drover::source::mesos::state;

/// The system allocator, counting live bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let live = LIVE.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn state_json(tasks: usize) -> String {
    let agents = tasks.div_ceil(25);
    let mut s = String::with_capacity(tasks * 700);
    s.push_str(r#"{"leader":"master@10.0.0.1:5050","slaves":["#);
    for a in 0..agents {
        if a > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            r#"{{"id":"20160101-000000-1-5050-S{a}","pid":"slave(1)@10.{}.{}.{}:5051","hostname":"agent{a}"}}"#,
            a / 65536 % 256,
            a / 256 % 256,
            a % 256
        ));
    }
    s.push_str(r#"],"frameworks":[{"id":"fw-marathon","name":"marathon","pid":"scheduler(1)@10.0.0.2:25501","hostname":"m","tasks":["#);
    for t in 0..tasks {
        if t > 0 {
            s.push(',');
        }
        let app = t / 10;
        let discovery = if app % 2 == 0 {
            format!(
                r#","discovery":{{"name":"svc-{app:08}-frontend","ports":{{"ports":[{{"number":80,"name":"http","protocol":"tcp"}},{{"number":443,"name":"https","protocol":"tcp"}}]}}}}"#
            )
        } else {
            String::new()
        };
        s.push_str(&format!(
            r#"{{"id":"app-{app:08}-backend.{t:08x}-1111-11e6-a088-c20493233aa5","name":"app-{app:08}-backend","framework_id":"fw-marathon","slave_id":"20160101-000000-1-5050-S{}","state":"TASK_RUNNING","resources":{{"ports":"[{}-{}]"}},"statuses":[{{"state":"TASK_RUNNING","timestamp":1.0,"container_status":{{"network_infos":[{{"ip_addresses":[{{"ip_address":"172.{}.{}.{}"}}]}}]}}}}]{discovery}}}"#,
            t / 25,
            31000 + (t % 1000) * 2,
            31001 + (t % 1000) * 2,
            16 + t / 65536 % 16,
            t / 256 % 256,
            t % 256
        ));
    }
    s.push_str("]}]}");
    s
}

fn options() -> ZoneOptions {
    let mut options = ZoneOptions::mesos_dns_defaults("mesos");
    options.records.ip_sources = vec![
        IpSource::Netinfo,
        IpSource::Docker,
        IpSource::Mesos,
        IpSource::Host,
    ];
    options.records.labels = LabelRules::Rfc952;
    options
}

fn compile(cluster: &Cluster, options: &ZoneOptions) -> Zone {
    Zone::compile(&ZoneInput {
        cluster: Some(cluster),
        marathon_apps: &[],
        options,
        checked_down: &BTreeSet::new(),
        serial: 1,
    })
}

/// App `app`'s task number `n` (a counter: every restart is a new task).
fn marathon_task(app: usize, n: usize) -> MarathonOnlyTask {
    MarathonOnlyTask {
        id: format!("app-{app:08}-backend.{n:08x}-1111-11e6-a088-c20493233aa5"),
        host: format!("10.{}.{}.{}", n / 65536 % 256, n / 256 % 256, n % 256)
            .parse()
            .expect("an address"),
        ip_addresses: vec![],
        ports: vec![31000 + (n % 1000) as u16 * 2, 31001 + (n % 1000) as u16 * 2],
        agent_id: Some(format!("20160101-000000-1-5050-S{}", n / 25)),
        healthy: None,
    }
}

/// Nanoseconds per `lookup`, over `names` (A, then SRV), best of 3 passes.
fn lookup_ns(zone: &Zone, names: &[String]) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let mut found = 0usize;
        for name in names {
            for qtype in [QueryType::A, QueryType::SRV] {
                found += usize::from(matches!(
                    zone.lookup(name, qtype),
                    drover::dns::Lookup::Found { .. }
                ));
            }
        }
        std::hint::black_box(found);
        best = best.min(t.elapsed().as_secs_f64() * 1e9 / (names.len() * 2) as f64);
    }
    best
}

/// "One app changed" at `tasks` Marathon-only tasks.
fn one_app_changed(tasks: usize, options: &ZoneOptions) {
    let changes: usize = std::env::var("ZONE_CHANGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut apps: Vec<MarathonOnlyApp> = (0..tasks.div_ceil(10))
        .map(|app| MarathonOnlyApp {
            id: format!("/bench/app-{app:08}-backend"),
            tasks: (app * 10..(app * 10 + 10).min(tasks))
                .map(|n| marathon_task(app, n))
                .collect(),
        })
        .collect();
    let t = Instant::now();
    let mut state = ZoneState::compile(&ZoneInput {
        cluster: None,
        marathon_apps: &apps,
        options,
        checked_down: &BTreeSet::new(),
        serial: 1,
    });
    let compile = t.elapsed();
    let compiled = state.zone().clone();
    let names: Vec<String> = compiled.nodes().map(|n| n.name().to_string()).collect();
    let mut times = Vec::with_capacity(changes);
    for i in 0..changes {
        let next_task = tasks + i;
        // Spread over the apps; the app's oldest task is replaced by a new one.
        let number = (i * 7919) % apps.len();
        let app = &mut apps[number];
        app.tasks.remove(0);
        app.tasks.push(marathon_task(number, next_task));
        let t = Instant::now();
        let zone = state.replace_marathon_apps(&[&app.id], std::slice::from_ref(app), 2 + i as u32);
        times.push(t.elapsed());
        drop(zone);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{tasks}\t{:.0}\t{}\t{changes}\t{:.2}\t{:.2}\t{:.2}\t{:.0}\t{:.0}",
        ms(compile),
        compiled.record_count(),
        ms(times[times.len() / 2]),
        ms(times[times.len() * 99 / 100]),
        ms(times[times.len() - 1]),
        lookup_ns(&compiled, &names),
        lookup_ns(state.zone(), &names),
    );
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let sizes: Vec<usize> = std::env::var("ZONE_TASKS")
        .unwrap_or_else(|_| "10000 50000".into())
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    let options = options();
    println!("tasks\tjson_MiB\tdecode_convert_ms\tcompile_ms(median)\tcompile_ms(min)\trecords\tnames\tzone_MiB\tpeak_during_compile_MiB\tgenerate_ms\tfrom_sets_ms");
    for &tasks in &sizes {
        let json = state_json(tasks);
        let json_len = json.len();
        let t0 = Instant::now();
        let state = state::decode(json.as_bytes()).expect("state decodes");
        // What the Mesos source does with each read: decode, then convert (no names to
        // resolve here).
        let masters = ["10.0.0.1:5050".to_string()];
        let cluster = convert(&state, &masters, &ResolvedHosts::new());
        let decode = t0.elapsed();
        assert_eq!(cluster.task_count(), tasks);
        drop((json, state));

        let mut times: Vec<Duration> = Vec::new();
        let mut kept = None;
        let (mut zone_bytes, mut peak_bytes) = (0, 0);
        for _ in 0..9 {
            drop(kept.take());
            let before = LIVE.load(Ordering::Relaxed);
            PEAK.store(before, Ordering::Relaxed);
            let t = Instant::now();
            let zone = compile(&cluster, &options);
            times.push(t.elapsed());
            zone_bytes = LIVE.load(Ordering::Relaxed) - before;
            peak_bytes = PEAK.load(Ordering::Relaxed) - before;
            kept = Some(zone);
        }
        times.sort();
        let zone = kept.expect("compiled");
        // The two phases of `compile`, timed apart (medians too): the generator, then
        // `Zone::from_record_sets`.
        let (mut generate, mut from_sets) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let t = Instant::now();
            let sets = records::generate(Some(&cluster), &[], &options.records, &BTreeSet::new());
            generate.push(t.elapsed());
            let t = Instant::now();
            let z = Zone::from_record_sets(sets, &options, 1);
            from_sets.push(t.elapsed());
            drop(z);
        }
        generate.sort();
        from_sets.sort();
        println!(
            "{tasks}\t{:.1}\t{:.0}\t{:.0}\t{:.0}\t{}\t{}\t{:.1}\t{:.1}\t{:.0}\t{:.0}",
            mib(json_len),
            decode.as_secs_f64() * 1e3,
            times[times.len() / 2].as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            zone.record_count(),
            zone.nodes().count(),
            mib(zone_bytes),
            mib(peak_bytes),
            generate[2].as_secs_f64() * 1e3,
            from_sets[2].as_secs_f64() * 1e3,
        );
    }
    println!("one app changed (Marathon-only apps):");
    println!("tasks\tcompile_ms\trecords\tchanges\tpatch_ms(median)\tpatch_ms(p99)\tpatch_ms(max)\tlookup_ns(compiled)\tlookup_ns(patched)");
    for tasks in sizes {
        one_app_changed(tasks, &options);
    }
}
