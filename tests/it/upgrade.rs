//! Upgrade without dropping a connection, with real processes: the `drover` binary under
//! load (8 client threads, keep-alive and new HTTP connections and TCP service-port sessions
//! mixed, a request every few ms) is upgraded with SIGUSR2 five times in a row, after three
//! upgrades that fail (the binary replaced by a script that exits, by one that never gets
//! ready, and the config made invalid), which must leave the old process serving.
//!
//! The processes after the first are not this test's children: the test makes itself a
//! child subreaper, so each old process, orphaned when its parent exits, is reaped here and
//! its exit status checked. The new process's pid is read from the log line the old one
//! writes when the new one is ready (`upgrade: new process ready ... pid=N`).

#![allow(clippy::disallowed_methods)] // real processes and blocking client threads: the real clock and real sleeps

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::support::{app, free_port, Backend};

const BIN: &str = env!("CARGO_BIN_EXE_drover");
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const VHOST: &str = "web.example.com";

/// What the client threads saw.
#[derive(Default)]
struct Stats {
    /// HTTP requests answered 200 with the backend's body.
    http_ok: AtomicU64,
    /// TCP sessions whose every echo came back whole.
    tcp_ok: AtomicU64,
    /// Requests or sessions that did not complete as they should.
    failed: AtomicU64,
    /// Connects refused (or otherwise failed).
    refused: AtomicU64,
    /// Connections reset while a request or session was under way.
    reset: AtomicU64,
    /// Idle keep-alive connections the server closed, found closed before reuse (not a
    /// failure: the client had not sent anything on them).
    idle_closed: AtomicU64,
    /// What went wrong, the first few.
    errors: Mutex<Vec<String>>,
}

impl Stats {
    fn fail(&self, what: String, reset: bool) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if reset {
            self.reset.fetch_add(1, Ordering::Relaxed);
        }
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 20 {
            errors.push(what);
        }
    }

    fn summary(&self) -> String {
        format!(
            "http_ok={} tcp_ok={} failed={} refused={} reset={} idle_closed={} errors={:?}",
            self.http_ok.load(Ordering::Relaxed),
            self.tcp_ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.reset.load(Ordering::Relaxed),
            self.idle_closed.load(Ordering::Relaxed),
            self.errors.lock().unwrap(),
        )
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
    )
}

fn connect(addr: SocketAddr, stats: &Stats) -> Option<TcpStream> {
    match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
        Ok(s) => {
            s.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
            s.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
            s.set_nodelay(true).ok()?;
            Some(s)
        }
        Err(e) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            stats.fail(format!("connect {addr}: {e}"), false);
            None
        }
    }
}

/// How one HTTP exchange ended.
enum Exchange {
    /// 200 with the backend's body; whether the server will close the connection.
    Ok {
        close: bool,
    },
    /// The connection ended before any byte of the answer.
    NoAnswer(String),
    Failed(String, bool),
}

/// One GET on `stream`, its answer read whole (Content-Length framing).
fn exchange(stream: &mut TcpStream, close: bool) -> Exchange {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {VHOST}\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    );
    if let Err(e) = stream.write_all(request.as_bytes()) {
        return Exchange::NoAnswer(format!("write: {e}"));
    }
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Exchange::NoAnswer("EOF".into()),
            Ok(0) => return Exchange::Failed("EOF inside the head".into(), false),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if buf.is_empty() && is_reset(&e) => {
                return Exchange::NoAnswer(format!("read: {e}"))
            }
            Err(e) => return Exchange::Failed(format!("read head: {e}"), is_reset(&e)),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status_ok = head.starts_with("http/1.1 200 ");
    let length: Option<usize> = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok());
    let server_closes = head.lines().any(|l| l == "connection: close");
    let Some(length) = length else {
        return Exchange::Failed(format!("no content-length: {head}"), false);
    };
    while buf.len() < head_end + length {
        match stream.read(&mut chunk) {
            Ok(0) => return Exchange::Failed("EOF inside the body".into(), false),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Exchange::Failed(format!("read body: {e}"), is_reset(&e)),
        }
    }
    let body = &buf[head_end..head_end + length];
    if !status_ok || body != b"web" {
        return Exchange::Failed(
            format!("answer {head:?} {:?}", String::from_utf8_lossy(body)),
            false,
        );
    }
    Exchange::Ok {
        close: close || server_closes,
    }
}

/// Whether an idle keep-alive connection is still open (no EOF or error waiting on it).
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let open = matches!(stream.peek(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock);
    open && stream.set_nonblocking(false).is_ok()
}

/// A keep-alive session of `n` requests, reconnecting when the server closes.
fn http_keepalive(addr: SocketAddr, n: usize, stats: &Stats, stop: &AtomicBool) {
    let mut conn: Option<TcpStream> = None;
    for _ in 0..n {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if conn.as_ref().is_some_and(|c| !still_open(c)) {
            stats.idle_closed.fetch_add(1, Ordering::Relaxed);
            conn = None;
        }
        let Some(mut stream) = conn.take().or_else(|| connect(addr, stats)) else {
            return;
        };
        // No retry: a request written on a connection the server then closes unanswered
        // fails (a draining Drover says `Connection: close` on its answers instead).
        match exchange(&mut stream, false) {
            Exchange::Ok { close } => {
                stats.http_ok.fetch_add(1, Ordering::Relaxed);
                if !close {
                    conn = Some(stream);
                }
            }
            Exchange::NoAnswer(e) => stats.fail(format!("http keep-alive: no answer: {e}"), true),
            Exchange::Failed(e, reset) => stats.fail(format!("http keep-alive: {e}"), reset),
        }
        pause();
    }
}

/// One request on a new connection.
fn http_new_connection(addr: SocketAddr, stats: &Stats) {
    let Some(mut stream) = connect(addr, stats) else {
        return;
    };
    match exchange(&mut stream, true) {
        Exchange::Ok { .. } => {
            stats.http_ok.fetch_add(1, Ordering::Relaxed);
        }
        Exchange::NoAnswer(e) => stats.fail(format!("http new connection: no answer: {e}"), true),
        Exchange::Failed(e, reset) => stats.fail(format!("http new connection: {e}"), reset),
    }
}

/// A TCP session through the service port: `rounds` echoes, then a clean close.
fn tcp_session(addr: SocketAddr, thread: usize, rounds: usize, stats: &Stats) {
    let Some(mut stream) = connect(addr, stats) else {
        return;
    };
    let mut got = vec![0u8; 64];
    for round in 0..rounds {
        let line = format!("ping {thread} {round}\n");
        let result = stream
            .write_all(line.as_bytes())
            .and_then(|()| stream.read_exact(&mut got[..line.len()]));
        match result {
            Ok(()) if got[..line.len()] == *line.as_bytes() => {}
            Ok(()) => return stats.fail("tcp: echo differs".into(), false),
            Err(e) => return stats.fail(format!("tcp round {round}: {e}"), is_reset(&e)),
        }
        pause();
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    match stream.read(&mut got) {
        Ok(0) => {
            stats.tcp_ok.fetch_add(1, Ordering::Relaxed);
        }
        Ok(_) => stats.fail("tcp: bytes after the last echo".into(), false),
        Err(e) => stats.fail(format!("tcp close: {e}"), is_reset(&e)),
    }
}

/// A request every few ms.
fn pause() {
    std::thread::sleep(Duration::from_millis(3));
}

/// One client thread: keep-alive sessions, single requests on new connections and TCP
/// sessions, in a fixed mix, until `stop`.
fn client(thread: usize, http: SocketAddr, tcp: SocketAddr, stats: &Stats, stop: &AtomicBool) {
    let mut step = thread;
    while !stop.load(Ordering::Relaxed) {
        step += 1;
        match step % 4 {
            0 | 1 => http_keepalive(http, 1 + step % 15, stats, stop),
            2 => {
                for _ in 0..5 {
                    http_new_connection(http, stats);
                    pause();
                }
            }
            _ => tcp_session(tcp, thread, 1 + step % 5, stats),
        }
    }
}

/// A TCP echo server.
async fn echo_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A drover process by pid; killed (and reaped) if the test ends while it runs.
struct Proc(libc::pid_t);

impl Proc {
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on a pid this test started or reaps (our child, or our orphaned
        // grandchild under the subreaper), not yet reaped.
        let rc = unsafe { libc::kill(self.0, sig) };
        assert_eq!(
            rc,
            0,
            "kill {}: {}",
            self.0,
            std::io::Error::last_os_error()
        );
    }

    fn running(&self) -> bool {
        let mut status = 0;
        // SAFETY: waitpid(2) with WNOHANG on our own (possibly adopted) child; `status` is ours.
        unsafe { libc::waitpid(self.0, &mut status, libc::WNOHANG) == 0 }
    }

    /// The exit code once the process ended within `limit` (`None`: still running, or
    /// killed by a signal: the status then says which).
    fn exit_within(&mut self, limit: Duration) -> Result<i32, String> {
        let start = Instant::now();
        loop {
            let mut status = 0;
            // SAFETY: waitpid(2) with WNOHANG on our own (possibly adopted) child.
            let r = unsafe { libc::waitpid(self.0, &mut status, libc::WNOHANG) };
            if r == self.0 {
                self.0 = 0;
                return if libc::WIFEXITED(status) {
                    Ok(libc::WEXITSTATUS(status))
                } else {
                    Err(format!("ended by signal, status {status:#x}"))
                };
            }
            if r < 0 {
                return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
            }
            if start.elapsed() > limit {
                return Err(format!("still running after {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.0 > 0 && self.running() {
            // SAFETY: as in `signal`; the pid is still ours to reap.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
            let _ = self.exit_within(IO_TIMEOUT);
        }
    }
}

/// Waits until `needle` appears `times` times in the log; the matching lines.
fn wait_log(path: &Path, needle: &str, times: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect();
        if lines.len() >= times {
            return lines;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no {times}x {needle:?} in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn pid_in(line: &str) -> libc::pid_t {
    let rest = &line[line.find(" pid=").expect("pid= in the line") + 5..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().expect("a pid")
}

/// The status of `GET path` on `addr`, if it answers.
fn status_of(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).ok()?;
    s.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Puts the real binary at `exe` (a hard link where the file system allows).
fn install_binary(exe: &Path) {
    let _ = std::fs::remove_file(exe);
    if std::fs::hard_link(BIN, exe).is_err() {
        std::fs::copy(BIN, exe).expect("copy the drover binary");
    }
}

/// Replaces the file at `exe` with a shell script (the running processes keep their own).
fn install_script(exe: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = exe.with_extension("new");
    std::fs::write(&tmp, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::rename(&tmp, exe).expect("put the script in place");
}

/// A UDP backend that echoes every datagram.
async fn udp_echo_server() -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    addr
}

/// One datagram through the UDP service port and its echo back, tried a few times (a
/// datagram is not retransmitted like a TCP segment).
fn udp_round_trip(port: SocketAddr) -> bool {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s.connect(port).expect("connect");
    let mut buf = [0; 64];
    (0..20).any(|_| {
        s.send(b"ping").is_ok() && matches!(s.recv(&mut buf), Ok(4)) && &buf[..4] == b"ping"
    })
}

#[test]
fn five_upgrades_under_load_drop_no_request() {
    // SAFETY: prctl(2) PR_SET_CHILD_SUBREAPER takes no pointers; it makes orphaned
    // descendants (each old drover's successor) children of this test process.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "prctl: {}", std::io::Error::last_os_error());
    let test_start = Instant::now();

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let backend = rt.block_on(Backend::start("web"));
    let echo = rt.block_on(echo_server());

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let exe: PathBuf = dir.path().join("drover");
    install_binary(&exe);
    let mut ports = std::iter::repeat_with(free_port);
    let http_port = ports.next().unwrap();
    let admin_port = ports.find(|p| *p != http_port).unwrap();
    let tcp_port = ports.find(|p| *p != http_port && *p != admin_port).unwrap();
    let web_port = ports
        .find(|p| ![http_port, admin_port, tcp_port].contains(p))
        .unwrap();
    // A UDP service port too: its socket is handed over like the listeners.
    let udp_echo = rt.block_on(udp_echo_server());
    let udp_port = ports
        .find(|p| ![http_port, admin_port, tcp_port, web_port].contains(p))
        .unwrap();
    let catalog = format!(
        "{}{}[[app]]\nid = \"/udp\"\nports = [{{ port = {udp_port}, protocol = \"udp\" }}]\n\
         tasks = [{{ host = \"127.0.0.1\", ports = [{}] }}]\n",
        app("/web", VHOST, web_port, &[backend.addr]),
        app("/echo", "", tcp_port, &[echo]),
        udp_echo.port(),
    );
    std::fs::write(dir.path().join("catalog.toml"), catalog).unwrap();
    let config = format!(
        "[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\n\
         [tcp]\nbind = \"127.0.0.1\"\nports = \"1024-65535\"\n\n\
         [catalog]\nfile = \"catalog.toml\"\n\n[runtime]\nworkers = 2\ndrain_timeout = \"5s\"\n"
    );
    let config_path = dir.path().join("drover.toml");
    std::fs::write(&config_path, &config).unwrap();
    let log_path = dir.path().join("drover.log");
    let log = std::fs::File::create(&log_path).unwrap();
    // Reaped by pid (`Proc`), as every later process is.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(&exe)
        .arg("--config")
        .arg(&config_path)
        .env_remove("RUST_LOG")
        .env("DROVER_UPGRADE_TIMEOUT", "2s")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn drover");
    let mut current = Proc(child.id() as libc::pid_t);
    let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let tcp: SocketAddr = format!("127.0.0.1:{tcp_port}").parse().unwrap();
    let start = Instant::now();
    while status_of(admin, "/readyz") != Some(200) || TcpStream::connect(tcp).is_err() {
        assert!(current.running(), "drover exited early:\n{}", logs());
        assert!(start.elapsed() < IO_TIMEOUT, "not ready:\n{}", logs());
        std::thread::sleep(Duration::from_millis(20));
    }

    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (stats, stop) = (stats.clone(), stop.clone());
            std::thread::spawn(move || client(i, http, tcp, &stats, &stop))
        })
        .collect();
    let served = || stats.http_ok.load(Ordering::Relaxed) + stats.tcp_ok.load(Ordering::Relaxed);
    let wait_served = |more: u64| {
        let target = served() + more;
        let start = Instant::now();
        while served() < target {
            assert!(
                start.elapsed() < IO_TIMEOUT,
                "load stalled: {}",
                stats.summary()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_served(200);
    let udp: SocketAddr = format!("127.0.0.1:{udp_port}").parse().unwrap();
    assert!(udp_round_trip(udp), "UDP before the upgrades:\n{}", logs());

    // Three upgrades that fail; each leaves the old process serving.
    let failures = [
        ("a binary that exits", Some("exit 3"), false),
        ("a binary never ready", Some("exec sleep 30"), false),
        ("an invalid config", None, true),
    ];
    for (n, (what, script, bad_config)) in failures.into_iter().enumerate() {
        if let Some(body) = script {
            install_script(&exe, body);
        }
        if bad_config {
            std::fs::write(&config_path, "[http]\nlisten = 42\n").unwrap();
        }
        current.signal(libc::SIGUSR2);
        let lines = wait_log(&log_path, "upgrade failed", n + 1);
        eprintln!("failed upgrade ({what}): {}", lines[n]);
        install_binary(&exe);
        std::fs::write(&config_path, &config).unwrap();
        assert!(
            current.running(),
            "{what}: the old process ended:\n{}",
            logs()
        );
        assert_eq!(status_of(admin, "/readyz"), Some(200), "{what}");
        wait_served(100);
    }
    assert!(!logs().contains("new process ready"), "{}", logs());

    // Five upgrades in a row.
    let mut times = Vec::new();
    for n in 1..=5 {
        let start = Instant::now();
        current.signal(libc::SIGUSR2);
        let lines = wait_log(&log_path, "new process ready", n);
        let next = Proc(pid_in(&lines[n - 1]));
        let ready = start.elapsed();
        let code = current.exit_within(Duration::from_secs(10));
        assert_eq!(code, Ok(0), "upgrade {n}: old process\n{}", logs());
        let exited = start.elapsed();
        current = next;
        assert!(
            current.running(),
            "upgrade {n}: new process ended:\n{}",
            logs()
        );
        times.push((ready, exited));
        wait_served(100);
    }

    // The last process serves the UDP port on the socket the first one bound.
    assert!(udp_round_trip(udp), "UDP after the upgrades:\n{}", logs());
    let taken_over = logs()
        .matches("UDP service port taken over from the process this one replaces")
        .count();
    assert_eq!(taken_over, 5, "{}", logs());

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    current.signal(libc::SIGTERM);
    assert_eq!(
        current.exit_within(Duration::from_secs(10)),
        Ok(0),
        "{}",
        logs()
    );
    eprintln!(
        "upgrades (ready, old exited): {times:?}; {}; total {:?}",
        stats.summary(),
        test_start.elapsed()
    );
    assert_eq!(
        stats.failed.load(Ordering::Relaxed),
        0,
        "{}",
        stats.summary()
    );
    assert_eq!(
        stats.refused.load(Ordering::Relaxed),
        0,
        "{}",
        stats.summary()
    );
    assert_eq!(
        stats.reset.load(Ordering::Relaxed),
        0,
        "{}",
        stats.summary()
    );
    assert!(
        stats.http_ok.load(Ordering::Relaxed) > 500,
        "{}",
        stats.summary()
    );
    assert!(
        stats.tcp_ok.load(Ordering::Relaxed) > 50,
        "{}",
        stats.summary()
    );
    assert!(backend.hits() > 500);
}
