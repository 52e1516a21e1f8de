//! The writer against real files and a FIFO, on real threads: every wait is bounded.
#![allow(clippy::disallowed_methods)] // polls files with the real clock, outside a runtime

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use super::*;

fn entry(port: u16) -> TcpLine<'static> {
    TcpLine {
        start: SystemTime::now(),
        client: "127.0.0.1:40000".parse::<SocketAddr>().unwrap(),
        port,
        route: "/db:10010",
        upstream: Some("127.0.0.2:31000".parse().unwrap()),
        bytes_in: 1,
        bytes_out: 2,
        duration: Duration::from_millis(3),
        fault: None,
    }
}

fn counter() -> IntCounter {
    IntCounter::new("dropped", "test").unwrap()
}

fn file_config(path: &Path) -> AccessLogConfig {
    AccessLogConfig {
        target: Target::File(path.to_path_buf()),
        format: Format::Json,
    }
}

/// The ports of the lines in `path`, once it holds `want` lines (or after 5 s).
fn ports_in(path: &Path, want: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let ports: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["port"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        if ports.len() >= want || Instant::now() > deadline {
            return ports;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drover-access-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn off_until_configured_then_lines_reach_the_file() {
    let dir = temp_dir("basic");
    let path = dir.join("access.log");
    let log = AccessLog::new(counter());
    assert!(!log.enabled());
    log.tcp(&entry(1)); // off: nothing is written, nothing counted
    log.configure(Some(&file_config(&path))).unwrap();
    assert!(log.enabled());
    for port in 2..=4 {
        log.tcp(&entry(port));
    }
    assert_eq!(ports_in(&path, 3), [2, 3, 4]);
    assert_eq!(log.dropped.get(), 0);
    log.configure(None).unwrap();
    assert!(!log.enabled());
}

#[test]
fn a_moved_file_is_reopened_and_so_is_one_on_request() {
    let dir = temp_dir("rotate");
    let path = dir.join("access.log");
    let log = AccessLog::new(counter());
    log.configure(Some(&file_config(&path))).unwrap();
    log.tcp(&entry(1));
    assert_eq!(ports_in(&path, 1), [1]);
    // logrotate: rename, then the writer finds the path gone within a second or two.
    let rotated = dir.join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !path.exists() && Instant::now() < deadline {
        log.tcp(&entry(2));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(path.exists(), "the writer made a new file at the path");
    log.tcp(&entry(3));
    assert!(ports_in(&path, 1).contains(&3));
    // SIGUSR1: rename again and ask; the next lines go to the new file.
    std::fs::rename(&path, dir.join("access.log.2")).unwrap();
    log.reopen();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !path.exists() && Instant::now() < deadline {
        log.tcp(&entry(4));
        std::thread::sleep(Duration::from_millis(20));
    }
    log.tcp(&entry(5));
    assert!(ports_in(&path, 1).contains(&5));
    assert_eq!(ports_in(&rotated, 1)[0], 1);
}

#[test]
fn a_blocked_writer_drops_and_counts_instead_of_stalling() {
    let dir = temp_dir("fifo");
    let fifo = dir.join("pipe");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let log = AccessLog::new(counter());
    // Nobody reads the FIFO: the writer thread blocks in open.
    log.configure(Some(&file_config(&fifo))).unwrap();
    // More than one shard holds: about 200 bytes a line.
    let lines = 2 * SHARD_MAX / 200;
    let started = Instant::now();
    for port in 0..lines {
        log.tcp(&entry(port as u16));
    }
    let took = started.elapsed();
    let dropped = log.dropped.get() as usize;
    assert!(
        dropped > 0 && dropped < lines,
        "dropped {dropped} of {lines}"
    );
    // Generous bound: a stall would be forever, not a few seconds.
    assert!(
        took < Duration::from_secs(5),
        "logging stalled for {took:?}"
    );
    // A reader lets the writer go: it writes every line it kept, and no other.
    let mut reader = std::fs::File::open(&fifo).unwrap();
    let want = lines - dropped;
    let mut got = 0;
    let mut buf = vec![0u8; 1 << 16];
    while got < want {
        let n = std::io::Read::read(&mut reader, &mut buf).unwrap();
        assert!(n > 0, "writer closed early after {got} lines");
        got += buf[..n].iter().filter(|&&b| b == b'\n').count();
    }
    assert_eq!(got, want);
}

#[test]
fn close_writes_the_last_lines_before_it_returns() {
    let dir = temp_dir("close");
    let path = dir.join("access.log");
    let log = AccessLog::new(counter());
    log.configure(Some(&file_config(&path))).unwrap();
    for port in 1..=3 {
        log.tcp(&entry(port));
    }
    log.close();
    assert!(!log.enabled());
    // No waiting here: close returned after the write.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
}
