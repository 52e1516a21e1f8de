//! What the latency benches share (`event_latency`, `mesos_event_latency`,
//! `marathon_changes`): their knobs, the fakes' runtime, Drover started in process, waiting
//! for a change to show, and the percentile table they print. Included with `#[path]`.

use std::path::Path;
use std::time::{Duration, Instant};

use drover::config::Config;
use drover::server::{Options, Server};

/// The number in environment variable `name`, or `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A one-thread runtime for the fakes, apart from Drover's own threads.
pub fn fakes_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))
}

/// Drover started in this process from the TOML `config`: no file to watch, no signals.
pub fn start_drover(config: &str) -> Result<Server, String> {
    let config = Config::parse(config, Path::new(".")).map_err(|p| format!("config: {p:?}"))?;
    let options = Options {
        config_path: None,
        handle_signals: false,
    };
    Server::start(config, options).map_err(|e| format!("start: {e}"))
}

/// Asks every `poll` until `done` holds; the time since `since`, or `None` after `timeout`.
pub fn until(
    since: Instant,
    timeout: Duration,
    poll: Duration,
    mut done: impl FnMut() -> bool,
) -> Option<Duration> {
    loop {
        if done() {
            return Some(since.elapsed());
        }
        if since.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(poll);
    }
}

/// Nearest-rank percentile of sorted samples.
pub fn pct(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// One table row: count, p50, p90, p99, max (ms) and timeouts.
pub fn row(name: &str, samples: &[Duration], timeouts: usize) {
    let mut s = samples.to_vec();
    s.sort();
    if s.is_empty() {
        println!(
            "{name:<8} {:>5} {:>9} {:>9} {:>9} {:>9} {timeouts:>9}",
            0, "-", "-", "-", "-"
        );
        return;
    }
    println!(
        "{name:<8} {:>5} {:>9} {:>9} {:>9} {:>9} {timeouts:>9}",
        s.len(),
        ms(pct(&s, 0.50)),
        ms(pct(&s, 0.90)),
        ms(pct(&s, 0.99)),
        ms(s[s.len() - 1]),
    );
}
