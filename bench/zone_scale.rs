//! How long a zone takes to compile and how much memory it holds, for 10,000 and 50,000
//! tasks: the control plane recompiles it on every catalog change, and the DNS server keeps
//! the old and new zones alive across a swap. Not a criterion bench: one timed build per
//! size (the median and the fastest of 9) and the allocator's peak, counted by a wrapping allocator.
//!
//! Run: `cargo bench --bench zone_scale` (sizes: `ZONE_TASKS="10000 50000"`).
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

use drover::catalog::cluster::Cluster;
use drover::dns::name::LabelRules;
use drover::dns::records::{self, IpSource};
use drover::dns::zone::{Zone, ZoneInput, ZoneOptions};
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
    for tasks in sizes {
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
}
