//! What the latency benches share (`event_latency`, `mesos_event_latency`): waiting for a
//! change to show, and the percentile table they print. Included with `#[path]`.

use std::time::{Duration, Instant};

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
