//! Config hot reload: a good edit applies without a restart, a bad one is counted and the
//! running config keeps serving.

use hyper::StatusCode;

use crate::support::*;

fn grouped_catalog(web: &Backend, api: &Backend) -> String {
    format!(
        "[[app]]\nid = \"/web\"\nlabels = {{ HAPROXY_GROUP = \"external\", HAPROXY_0_VHOST = \"web.example.com\" }}\n\
         ports = [10001]\ntasks = [ {{ host = \"127.0.0.1\", ports = [{}] }} ]\n\n\
         [[app]]\nid = \"/api\"\nlabels = {{ HAPROXY_GROUP = \"internal\", HAPROXY_0_VHOST = \"api.example.com\" }}\n\
         ports = [10002]\ntasks = [ {{ host = \"127.0.0.1\", ports = [{}] }} ]\n",
        web.addr.port(),
        api.addr.port()
    )
}

/// The test config with `[catalog] groups` set.
fn config_with_groups(groups: &str) -> String {
    config_text("", "").replace(
        "file = \"catalog.toml\"",
        &format!("file = \"catalog.toml\"\ngroups = {groups}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_config_applies_without_restart() {
    let web = Backend::start("web").await;
    let api = Backend::start("api").await;
    let drover = Drover::start("", &grouped_catalog(&web, &api));
    drover.ready().await;
    assert_eq!(get(drover.http(), "api.example.com", "/").await.body, "api");

    let version = drover.version();
    drover.write("drover.toml", &config_with_groups("[\"external\"]"));
    drover.newer_than(version).await;
    assert_eq!(get(drover.http(), "web.example.com", "/").await.body, "web");
    assert_eq!(
        get(drover.http(), "api.example.com", "/").await.status,
        StatusCode::NOT_FOUND
    );
    let text = drover.server().view().metrics.render();
    assert!(
        text.contains(r#"drover_config_reloads_total{result="ok"} 1"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_is_refused_and_the_old_one_serves() {
    let web = Backend::start("web").await;
    let api = Backend::start("api").await;
    let drover = Drover::start("", &grouped_catalog(&web, &api));
    drover.ready().await;
    let version = drover.version();
    let metrics = drover.server().view().metrics.clone();
    let errors = move || metrics.config_reloads.with_label_values(&["error"]).get();

    // A typo in a key, then a value out of range.
    drover.write(
        "drover.toml",
        &config_with_groups("[\"external\"]").replace("[runtime]", "[runtime]\nworkerz = 1"),
    );
    let e = errors.clone();
    eventually("the bad config to be counted", || {
        let n = e();
        async move { (n >= 1).then_some(()) }
    })
    .await;
    drover.write(
        "drover.toml",
        &(config_with_groups("[\"external\"]") + "\n[ejection]\nafter = -3\n"),
    );
    let e = errors.clone();
    eventually("the bad value to be refused", || {
        let n = e();
        async move { (n >= 2).then_some(()) }
    })
    .await;

    assert_eq!(
        drover.version(),
        version,
        "no rebuild from a refused config"
    );
    assert_eq!(get(drover.http(), "api.example.com", "/").await.body, "api");
    assert_eq!(get(drover.http(), "web.example.com", "/").await.body, "web");
}

/// The catalog of write `seq` in the steady-writes test: `/web` on two of the backends (the
/// pair moves on every `WRITES_PER_PAIR` writes), and `/seq` whose vhost names `seq`, so
/// the route table shows which write it was built from.
fn steady_catalog(seq: usize, backends: &[Backend]) -> (String, Vec<String>) {
    const WRITES_PER_PAIR: usize = 10;
    let pair = (seq / WRITES_PER_PAIR) % (backends.len() / 2);
    let serving = &backends[2 * pair..2 * pair + 2];
    let addrs: Vec<_> = serving.iter().map(|b| b.addr).collect();
    let text = app("/web", "web.example.com", 10001, &addrs)
        + &app("/seq", &format!("seq-{seq}.test"), 10002, &[]);
    (text, serving.iter().map(|b| b.name.clone()).collect())
}

/// The write a route table was built from (the `/seq` app's vhost).
fn table_seq(table: &drover::routing::RouteTable) -> Option<usize> {
    let route = table.routes.iter().find(|r| r.app_id == "/seq")?;
    let host = route.vhosts.first()?.as_str();
    host.strip_prefix("seq-")?
        .strip_suffix(".test")?
        .parse()
        .ok()
}

/// A catalog file rewritten every 50 ms for 5 s is applied while the writes go on (a
/// debounce that restarts at every event would read it only once they stop), and requests
/// never reach a backend removed more than 1 s before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_rewritten_without_pause_is_applied_while_the_writes_go_on() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::time::Instant;

    const WRITES: usize = 100;
    const EVERY: Duration = Duration::from_millis(50);
    let mut backends = Vec::new();
    for i in 0..8 {
        backends.push(Backend::start(&format!("b{i}")).await);
    }
    let (first, _) = steady_catalog(0, &backends);
    let drover = Drover::start("", &first);
    drover.ready().await;
    let routes = drover.server().view().routes.clone();
    let stop = Arc::new(AtomicBool::new(false));

    // Every table change, with when it was first seen and the write it was built from.
    let watcher = tokio::spawn({
        let (routes, stop) = (routes.clone(), stop.clone());
        async move {
            let mut seen: Vec<(Instant, u64, usize)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let table = routes.load();
                if seen.last().is_none_or(|s| s.1 != table.version) {
                    seen.push((
                        Instant::now(),
                        table.version,
                        table_seq(&table).unwrap_or(0),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            seen
        }
    });
    // A request loop on one keep-alive client: when each was sent, and who answered.
    let requests = tokio::spawn({
        let (http, stop) = (drover.http(), stop.clone());
        async move {
            let client = client();
            let mut answers: Vec<(Instant, String)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let req = hyper::Request::get(format!("http://{http}/"))
                    .header("host", "web.example.com")
                    .body(Default::default())
                    .expect("request");
                let who = match client.request(req).await {
                    Ok(resp) => resp
                        .headers()
                        .get("x-backend")
                        .and_then(|v| v.to_str().ok())
                        .map_or_else(|| resp.status().to_string(), str::to_string),
                    Err(e) => format!("error: {e}"),
                };
                answers.push((sent, who));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            answers
        }
    });

    let mut writes: Vec<(Instant, Vec<String>)> = vec![];
    let start = Instant::now();
    for seq in 1..=WRITES {
        tokio::time::sleep_until(start + EVERY * (seq as u32 - 1)).await;
        let (text, serving) = steady_catalog(seq, &backends);
        drover.write("catalog.toml", &text);
        writes.push((Instant::now(), serving));
    }
    let last_write = writes.last().expect("writes").0;
    // Long enough for the last write to be applied.
    eventually("the last write to be applied", || {
        let seq = table_seq(&routes.load());
        async move { (seq == Some(WRITES)).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.await.expect("watcher");
    let answers = requests.await.expect("request loop");

    // Applies while the writes went on: no gap over 600 ms, from the first write on.
    let first_write = writes[0].0;
    let applies: Vec<Instant> = seen
        .iter()
        .map(|s| s.0)
        .filter(|at| *at > first_write)
        .collect();
    let mut gaps = vec![];
    let mut prev = first_write;
    for at in applies.iter().copied() {
        gaps.push(at - prev);
        prev = at;
        if at >= last_write {
            break;
        }
    }
    let worst_gap = gaps.iter().max().copied().unwrap_or_default();
    // From each write to the first table built from it (or a later one).
    let latencies: Vec<Duration> = writes
        .iter()
        .enumerate()
        .map(|(i, (at, _))| {
            let seq = i + 1;
            seen.iter()
                .find(|s| s.2 >= seq)
                .map_or(Duration::MAX, |s| s.0.saturating_duration_since(*at))
        })
        .collect();
    let worst_latency = latencies.iter().max().copied().unwrap_or_default();
    // A request answered by a backend that no write had served for more than 1 s before
    // it was sent (every write from the one in force 1 s before, on, left it out).
    let late = |sent: Instant, who: &str, limit: Duration| {
        let Some(then) = sent.checked_sub(limit) else {
            return false;
        };
        let from = writes.iter().rposition(|w| w.0 <= then);
        let Some(from) = from else { return false };
        writes[from..]
            .iter()
            .take_while(|w| w.0 <= sent)
            .all(|w| !w.1.iter().any(|b| b == who))
    };
    let to_backends: Vec<_> = answers.iter().filter(|a| a.1.starts_with('b')).collect();
    let after_1s = to_backends
        .iter()
        .filter(|a| late(a.0, &a.1, Duration::from_secs(1)))
        .count();
    let after_0s = to_backends
        .iter()
        .filter(|a| late(a.0, &a.1, Duration::ZERO))
        .count();
    eprintln!(
        "steady writes: {} writes every {EVERY:?}; {} tables applied while they went on; \
         worst gap between applies {worst_gap:?}; worst write->routes {worst_latency:?}; \
         {} requests, {after_0s} to a removed backend, {after_1s} more than 1 s after its removal",
        writes.len(),
        gaps.len(),
        answers.len(),
    );
    // The watcher's max wait is 500 ms; the margin covers a rebuild on a loaded 2-core
    // machine (the whole suite beside it). Starvation looks like seconds, not 750 ms.
    assert!(
        worst_gap <= Duration::from_millis(750),
        "applies {gaps:?} apart"
    );
    assert!(
        worst_latency <= Duration::from_secs(1),
        "write->routes: {latencies:?}"
    );
    assert_eq!(after_1s, 0, "requests to backends removed over 1 s before");
    assert!(
        to_backends.len() * 10 >= answers.len() * 9,
        "most requests are answered by a backend: {answers:?}"
    );
}
