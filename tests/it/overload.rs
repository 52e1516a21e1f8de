//! Overload: a listener at `max_connections` leaves new connections in the backlog while
//! the admin port still answers, and a process out of file descriptors keeps running,
//! counts its failed accepts, logs them once in a while and serves again when
//! descriptors free up.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// The value of the first metric line starting with `series` (name and labels).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Raises this process's soft descriptor limit to its hard limit; returns the new limit.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_wait_at_the_cap_and_admin_answers() {
    // Each idle connection costs this process two descriptors (both ends): keep well
    // inside the limit, and within the listen backlog (`accept::BACKLOG`) beyond the cap.
    let limit = raise_fd_limit();
    let cap: usize = if limit >= 8192 { 2000 } else { 300 };
    let idle_count = cap + 600;
    let web = Backend::start("web").await;
    let drover = Drover::start_with(
        &format!("max_connections = {cap}"),
        "",
        &app("/web", "web.example.com", 10001, &[web.addr]),
    );
    drover.ready().await;
    let mut idle = Vec::with_capacity(idle_count);
    for _ in 0..idle_count {
        idle.push(TcpStream::connect(drover.http()).await.expect("connect"));
    }
    let metrics = eventually("the cap to be reached", || async {
        let m = get(drover.admin(), "admin", "/metrics").await.body;
        let open = metric(&m, "drover_connections_open{listener=\"http\"}")?;
        (open as usize == cap).then_some(m)
    })
    .await;
    assert!(
        metric(
            &metrics,
            "drover_connection_limit_waits_total{listener=\"http\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    // The admin port answers while the router is full.
    let health = get(drover.admin(), "admin", "/healthz").await;
    assert_eq!(health.status, 200);
    // A request now waits in the backlog behind the idle connections...
    let waiting = tokio::spawn({
        let addr = drover.http();
        async move { get(addr, "web.example.com", "/").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a connection beyond the cap was served"
    );
    // ... and is served once the idle ones leave.
    drop(idle);
    let answer = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("served after the idle connections left")
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
}

/// Sends one request on a new connection; the whole answer, or `None` if the connection
/// failed or closed without a word.
async fn try_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    (!out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_is_survived_counted_and_logged_sparingly() {
    let dir = tempfile::tempdir().unwrap();
    let (http, admin) = (free_port(), free_port());
    let config = dir.path().join("drover.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [catalog]\nfile = \"catalog.toml\"\n[runtime]\nworkers = 1\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("catalog.toml"), "").unwrap();
    let log = dir.path().join("stderr.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_drover"));
    cmd.arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    // SAFETY: only async-signal-safe setrlimit between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn drover");
    let admin_addr = SocketAddr::from(([127, 0, 0, 1], admin));
    let http_addr = SocketAddr::from(([127, 0, 0, 1], http));
    eventually("drover to be ready", || async {
        try_get(admin_addr, "/readyz")
            .await
            .filter(|a| a.starts_with("HTTP/1.1 200"))
    })
    .await;

    // Far more connections than descriptors, held for a while: accepts fail.
    let mut held = Vec::new();
    for _ in 0..150 {
        if let Ok(s) = TcpStream::connect(http_addr).await {
            held.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "drover exited when out of descriptors"
    );
    drop(held);

    // Descriptors free again: it serves, and counted what failed.
    let metrics = eventually("the admin port to answer again", || async {
        try_get(admin_addr, "/metrics")
            .await
            .filter(|a| a.starts_with("HTTP/1.1 200"))
    })
    .await;
    let errors = metric(&metrics, "drover_accept_errors_total{listener=\"http\"}");
    assert!(errors.is_some_and(|n| n >= 3.0), "{errors:?}");
    let answer = eventually("the router to answer again", || async {
        try_get(http_addr, "/").await
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    let _ = child.kill();
    let _ = child.wait();
    let stderr = std::fs::read_to_string(&log).unwrap();
    let warnings = stderr.matches("accept failed").count();
    assert!(
        (1..=3).contains(&warnings),
        "{warnings} accept warnings for one burst:\n{stderr}"
    );
}
