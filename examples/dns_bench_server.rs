//! Drover's DNS server alone, over a zone of generated services: the candidate that
//! `bench/dns.sh` runs beside Knot with the shared harness (`../shared/bench/bench.sh dns`,
//! beside the clone; not part of this repository).
//!
//! It reads the harness's `services.tsv` (`name<TAB>ipv4<TAB>port,port`) and serves, like
//! the harness's zone file, `NAME A ipv4` and `_http._tcp.NAME SRV 0 1 port NAME` for each
//! line, on UDP and TCP of one port, with `dns::server::serve` on current-thread runtimes
//! (one per `BENCH_THREADS`, sharing the sockets).
//!
//! Run: `cargo run --release --example dns_bench_server -- SERVICES_FILE ZONE 127.0.0.1:5353 [THREADS]`
//! or with the harness's environment (`BENCH_SERVICES_FILE`, `BENCH_DNS_ZONE`,
//! `BENCH_LISTEN_ADDR`, `BENCH_DNS_PORT`, `BENCH_THREADS`) and no arguments.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use drover::dns::records::RecordSets;
use drover::dns::server::{serve, DnsServerSettings};
use drover::dns::zone::{Zone, ZoneOptions};
use drover::handles::ZoneWriter;
use drover::metrics::Metrics;
use drover::shutdown::Shutdown;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let (services, origin, listen, threads) = if args.len() >= 3 {
        (
            args[0].clone(),
            args[1].clone(),
            args[2].parse::<SocketAddr>().expect("listen address"),
            args.get(3).map_or(1, |t| t.parse().expect("threads")),
        )
    } else {
        (
            env("BENCH_SERVICES_FILE"),
            env("BENCH_DNS_ZONE"),
            format!("{}:{}", env("BENCH_LISTEN_ADDR"), env("BENCH_DNS_PORT"))
                .parse()
                .expect("BENCH_LISTEN_ADDR/BENCH_DNS_PORT"),
            env("BENCH_THREADS").parse().unwrap_or(1),
        )
    };
    let text = std::fs::read_to_string(&services).expect("services file");

    // The real clock: this reports how long the zone build took.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let origin = origin.trim_end_matches('.').to_ascii_lowercase();
    let mut sets = RecordSets::default();
    for line in text.lines() {
        let mut fields = line.split('\t');
        let (Some(name), Some(ip), Some(ports)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let fqdn = format!("{}.", name.trim_end_matches('.').to_ascii_lowercase());
        let ip: Ipv4Addr = ip.parse().expect("ipv4");
        sets.add_ip(&fqdn, ip.into());
        let target = sets.target(&fqdn);
        let ports: Vec<u16> = ports.split(',').filter_map(|p| p.parse().ok()).collect();
        sets.add_srvs(&format!("_http._tcp.{fqdn}"), target, &ports);
    }
    let mut options = ZoneOptions::mesos_dns_defaults(&origin);
    options.soa.mname = format!("ns1.{origin}.");
    let zone = Zone::from_record_sets(sets, &options, 1);
    eprintln!(
        "zone {origin}: {} records, compiled in {:?}",
        zone.record_count(),
        started.elapsed()
    );

    let metrics = Metrics::new(prometheus::Registry::new());
    let writer = ZoneWriter::new();
    writer.store(Some(Arc::new(zone)));
    let udp = std::net::UdpSocket::bind(listen).expect("bind UDP");
    let tcp = std::net::TcpListener::bind(listen).expect("bind TCP");
    udp.set_nonblocking(true).unwrap();
    tcp.set_nonblocking(true).unwrap();
    let shutdown = Shutdown::new();
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (udp, tcp) = (udp.try_clone().unwrap(), tcp.try_clone().unwrap());
            let (zone, metrics, shutdown) = (writer.reader(), metrics.clone(), shutdown.clone());
            let settings = DnsServerSettings::new(&origin, Vec::new());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let udp = tokio::net::UdpSocket::from_std(udp).unwrap();
                    let tcp = tokio::net::TcpListener::from_std(tcp).unwrap();
                    serve(udp, tcp, settings, zone, metrics, shutdown).await;
                });
            })
        })
        .collect();
    eprintln!("serving on {listen} with {} thread(s)", handles.len());
    for h in handles {
        let _ = h.join();
    }
}
