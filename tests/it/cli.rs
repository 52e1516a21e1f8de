//! The real `drover` binary: `--version`, `check` (exit 0 or every problem and exit 1),
//! refusing to start with features this version lacks, and a SIGTERM drain to exit 0.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::support::marathon::unrelated_ca_pem;
use crate::support::{free_port, DEADLINE};

const BIN: &str = env!("CARGO_BIN_EXE_drover");

/// A file under the crate's `config/` directory.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name)
}

fn drover(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("RUST_LOG").stdin(Stdio::null());
    cmd
}

/// Runs `drover check --config <path>` to completion.
fn check(path: &Path) -> Output {
    drover(&["check", "--config"])
        .arg(path)
        .output()
        .expect("run drover check")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A spawned drover that is killed (and reaped) if the test ends while it still runs.
struct Running(Child);

impl Running {
    fn spawn(cmd: &mut Command) -> Running {
        Running(cmd.spawn().expect("spawn drover"))
    }

    /// Waits up to `limit` for the process to exit; `None` if it is still running.
    #[allow(clippy::disallowed_methods)] // a blocking wait on a real process: the real clock
    fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return Some(status);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.0.id()).expect("pid fits")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn version_prints_the_crate_version() {
    let out = drover(&["--version"]).output().expect("run drover");
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.trim(),
        format!("drover {}", env!("CARGO_PKG_VERSION")),
        "{out:?}"
    );
}

#[test]
fn check_accepts_the_example_config() {
    let out = check(&example("example.toml"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("ok"), "{out:?}");
}

#[test]
fn check_accepts_the_minimal_config() {
    let out = check(&example("minimal.toml"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn check_prints_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("drover.toml");
    std::fs::write(
        &path,
        r#"
[http]
listen = "127.0.0.1"
header_timeout = "quick"

[tcp]
ports = "20000-10000"

[admin]
listen = "127.0.0.1:9090"
colour = "blue"

[runtime]
drain_timeout = "0s"

[catalog]
file = "services.toml"

[[alias]]
host = "mesos.example.com"
backends = ["10.0.0.1:5050"]
check = "mesos"

[[alias]]
host = "marathon.example.com"
backends = ["10.0.0.1"]
check = "marathon"
"#,
    )
    .expect("write config");
    let out = check(&path);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    for needle in [
        "http.listen = \"127.0.0.1\"",
        "http.header_timeout = \"quick\"",
        "tcp.ports = \"20000-10000\"",
        "colour",
        "runtime.drain_timeout = \"0s\"",
        "alias[1].backends[0] = \"10.0.0.1\"",
        "6 problems",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    assert!(
        stderr.contains(&path.display().to_string()),
        "the file is named:\n{stderr}"
    );
}

#[test]
fn check_reports_a_broken_catalog_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("services.toml"),
        "[[app]]\nid = \"/ok\"\nports = [10001]\n\n\
         [[app]]\nid = \"/bad\"\nlabels = { HAPROXY_0_MODE = \"udp\" }\nports = [10002]\n",
    )
    .expect("write catalog");
    let path = dir.path().join("drover.toml");
    std::fs::write(&path, "[catalog]\nfile = \"services.toml\"\n").expect("write config");
    let out = check(&path);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("/bad") && stderr.contains("HAPROXY_0_MODE"),
        "{stderr}"
    );

    std::fs::remove_file(dir.path().join("services.toml")).expect("remove");
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("cannot read"), "{out:?}");
}

#[test]
fn check_loads_the_certificates_as_a_start_would() {
    // everything.toml names a certs directory that is not there.
    let out = check(&example("everything.toml"));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("https.certs"), "{stderr}");
    assert!(stderr.contains("cannot read"), "{stderr}");
}

#[test]
fn run_refuses_to_start_without_its_certificates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("drover.toml");
    let admin = free_port();
    std::fs::write(
        &path,
        format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[https]\nlisten = \"127.0.0.1:{}\"\ncerts = \"certs\"\n",
            free_port()
        ),
    )
    .expect("write config");
    let mut child = Running::spawn(
        drover(&["--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let status = child
        .exit_within(DEADLINE)
        .expect("drover exits at once without its certificates");
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().expect("piped"), &mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("https.certs"), "{stderr}");
    assert!(
        stderr.contains("no usable certificate") || stderr.contains("cannot read"),
        "{stderr}"
    );
}

/// GET `path` on `addr` over a fresh connection; the status code, if anything answered.
async fn status_of(addr: &str, path: &str) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut head = Vec::new();
    let read = async {
        let mut buf = [0u8; 512];
        while !head.windows(2).any(|w| w == b"\r\n") {
            let n = s.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .ok()??;
    // "HTTP/1.1 200 OK"
    let line = String::from_utf8_lossy(&head).into_owned();
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn runs_until_sigterm_then_exits_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let http = free_port();
    let admin = std::iter::repeat_with(free_port)
        .find(|p| *p != http)
        .expect("a second free port");
    std::fs::write(
        dir.path().join("services.toml"),
        "[[app]]\nid = \"/web\"\nlabels = { HAPROXY_0_VHOST = \"web.example.com\" }\n\
         ports = [10001]\ntasks = [ { host = \"127.0.0.1\", ports = [1] } ]\n",
    )
    .expect("write catalog");
    let path = dir.path().join("drover.toml");
    std::fs::write(
        &path,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n\
             [catalog]\nfile = \"services.toml\"\n\n[runtime]\nworkers = 1\ndrain_timeout = \"2s\"\n"
        ),
    )
    .expect("write config");
    // Logs go to a file, so a full pipe can never block the process.
    let log_path = dir.path().join("drover.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Running::spawn(
        drover(&["--config"])
            .arg(&path)
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log),
    );
    let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let admin_addr = format!("127.0.0.1:{admin}");
    let start = Instant::now();
    loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            panic!("drover exited early with {status}:\n{}", logs());
        }
        if status_of(&admin_addr, "/readyz").await == Some(200) {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "/readyz did not answer 200 in time:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
    let rc = unsafe { libc::kill(child.pid(), libc::SIGTERM) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no exit within 5s of SIGTERM:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0), "exit {status}:\n{}", logs());
}

#[test]
fn a_missing_config_file_is_named_by_its_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.toml");
    for args in [&["check", "--config"][..], &["--config"][..]] {
        let out = drover(args).arg(&path).output().expect("run drover");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
        assert_eq!(
            stderr.trim(),
            format!(
                "--config {}: cannot read: No such file or directory (os error 2)",
                path.display()
            )
        );
    }
}

#[test]
fn check_names_the_key_and_line_of_catalog_mistakes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("drover.toml");
    std::fs::write(&path, "[catalog]\nfile = \"services.toml\"\n").expect("write config");
    std::fs::write(
        dir.path().join("services.toml"),
        "[[app]]\nid = \"/a\"\n[[app]]\nid = \"/b\"\n[[app]]\nid = \"/c\"\n\
         [[app]]\nid = \"/d\"\nports = \"ten\"\ntasks = [ { host = \"127.0.0.1\", ports = [\"x\"] } ]\n\
         [[app]]\nid = \"/e\"\ntasks = [ { host = \"127.0.0.1\", ports = [70000] } ]\n",
    )
    .expect("write catalog");
    let out = check(&path);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    for needle in [
        "app[3].ports: invalid type: string \"ten\", expected a list",
        "app[4].tasks[0].ports[0]: invalid value: integer `70000`, expected a port number",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }

    std::fs::write(
        dir.path().join("services.toml"),
        "[[app]]\nid = \"/a\"\n\n[[app]\nid = \"/b\"\n",
    )
    .expect("write catalog");
    let out = check(&path);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("services.toml: line 4: not valid TOML"),
        "{stderr}"
    );
}

#[test]
fn check_fails_when_a_file_the_config_names_cannot_be_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("drover.toml");
    std::fs::write(dir.path().join("not-a-ca.pem"), "hello\n").expect("write");
    std::fs::write(
        &path,
        "[marathon]\nurls = [\"https://127.0.0.1:8080\"]\nuser = \"drover\"\n\
         password_file = \"marathon.pass\"\nca_file = \"marathon-ca.pem\"\n\n\
         [mesos]\nmasters = [\"https://127.0.0.1:5050\"]\nprincipal = \"drover\"\n\
         secret_file = \"mesos.secret\"\nca_file = \"not-a-ca.pem\"\n",
    )
    .expect("write config");
    let out = check(&path);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    for needle in [
        "4 problems",
        "marathon.password_file = ",
        "marathon.ca_file = ",
        "mesos.secret_file = ",
        "cannot read: No such file",
        "mesos.ca_file = ",
        "holds no certificate",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }

    // With the files in place the same config passes.
    for (name, body) in [
        ("marathon.pass", "secret\n".to_string()),
        ("mesos.secret", "secret\n".to_string()),
        ("marathon-ca.pem", unrelated_ca_pem()),
        ("not-a-ca.pem", unrelated_ca_pem()),
    ] {
        std::fs::write(dir.path().join(name), body).expect("write");
    }
    let out = check(&path);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn check_on_a_catalog_file_says_what_it_is() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("services.toml");
    std::fs::write(&path, "[[app]]\nid = \"/web\"\nports = [10001]\n").expect("write");
    let out = check(&path);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("is a catalog file"), "{stderr}");
    assert!(stderr.contains("[catalog]\n  file = "), "{stderr}");
    assert!(!stderr.contains("unknown section"), "{stderr}");
}

/// Waits until the log file holds `needle` `times` times (or more); the whole log then.
async fn log_shows(path: &Path, needle: &str, times: usize) -> String {
    let start = Instant::now();
    loop {
        let logs = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            !logs.contains('\x1b'),
            "colour codes in a log file:\n{logs}"
        );
        if logs.matches(needle).count() >= times {
            return logs;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no {needle:?} x{times} in the log:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Logs written to a file: no colour codes, no Rust syntax in fields (an alias's leader
/// moving from one master to another, then to none), and a bad catalog app warned once
/// however often the file is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_in_a_file_are_plain_and_say_each_problem_once() {
    let masters = drover::sim::masters::FakeMasters::start(2, Some(0)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let catalog = |good_port: u16| {
        format!(
            "[[app]]\nid = \"/good\"\nlabels = {{ HAPROXY_0_VHOST = \"good.test\" }}\nports = [10001]\n\
             tasks = [ {{ host = \"127.0.0.1\", ports = [{good_port}] }} ]\n\n\
             [[app]]\nid = \"/bad\"\nports = \"ten\"\n"
        )
    };
    std::fs::write(dir.path().join("services.toml"), catalog(1)).expect("write catalog");
    let path = dir.path().join("drover.toml");
    let http = free_port();
    let admin = std::iter::repeat_with(free_port)
        .find(|p| *p != http)
        .expect("a second free port");
    std::fs::write(
        &path,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n\
             [catalog]\nfile = \"services.toml\"\n\n[runtime]\nworkers = 1\ndrain_timeout = \"1s\"\n\n\
             [[alias]]\nhost = \"mesos.test\"\nbackends = {}\ncheck = \"mesos\"\ninterval = \"100ms\"\n",
            masters.backends_toml()
        ),
    )
    .expect("write config");
    let log_path = dir.path().join("drover.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Running::spawn(
        drover(&["--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log),
    );

    log_shows(&log_path, "alias leader changed", 1).await;
    masters.set_leader(Some(1));
    log_shows(&log_path, &format!("from={}", masters.addrs()[0]), 1).await;
    masters.set_leader(None);
    log_shows(&log_path, "alias has no elected leader", 1).await;
    // The catalog is read again (a changed app), the bad app still in it.
    std::fs::write(dir.path().join("services.toml"), catalog(2)).expect("rewrite catalog");
    log_shows(&log_path, "route table stored", 2).await;

    // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
    let rc = unsafe { libc::kill(child.pid(), libc::SIGTERM) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    child.exit_within(DEADLINE).expect("exits after SIGTERM");
    let logs = std::fs::read_to_string(&log_path).expect("read log");
    assert!(
        !logs.contains('\x1b'),
        "colour codes in a log file:\n{logs}"
    );
    for rust in ["Some(", "None", "[\"", "\"]"] {
        assert!(!logs.contains(rust), "{rust:?} in the log:\n{logs}");
    }
    assert!(
        logs.contains(&format!("from={}", masters.addrs()[1])),
        "the last leader, plainly:\n{logs}"
    );
    assert_eq!(
        logs.matches("app[1].ports").count(),
        1,
        "the bad app is warned once:\n{logs}"
    );
}

/// `[log] format = "json"`: every line Drover writes is one JSON object with a timestamp,
/// a level and the message, fields beside them; `[log] level` filters.
#[tokio::test]
async fn json_logs_are_one_object_a_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("services.toml"), "").expect("write catalog");
    let path = dir.path().join("drover.toml");
    let http = free_port();
    std::fs::write(
        &path,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n\n[catalog]\nfile = \"services.toml\"\n\n\
             [log]\nformat = \"json\"\nlevel = \"warn,drover::control=info\"\n\n\
             [runtime]\nworkers = 1\ndrain_timeout = \"1s\"\n"
        ),
    )
    .expect("write config");
    let log_path = dir.path().join("drover.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Running::spawn(
        drover(&["--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log),
    );
    log_shows(&log_path, "route table stored", 1).await;
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
    let rc = unsafe { libc::kill(child.pid(), libc::SIGTERM) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    child.exit_within(DEADLINE).expect("exits after SIGTERM");
    let logs = std::fs::read_to_string(&log_path).expect("read log");
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let stored = lines
        .iter()
        .find(|l| l["message"] == "route table stored")
        .unwrap_or_else(|| panic!("no route table line:\n{logs}"));
    assert_eq!(stored["level"], "INFO");
    assert_eq!(stored["version"], 1);
    assert!(stored["timestamp"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    // The level filter: info only from drover::control.
    assert!(
        !logs.contains("HTTP router listening"),
        "an info line of another module passed the filter:\n{logs}"
    );
}

/// logrotate's way: the access log is renamed, then SIGUSR1; the next lines go to a new
/// file at the configured path, and the renamed one keeps what it had.
#[tokio::test]
async fn sigusr1_reopens_the_access_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("services.toml"), "").expect("write catalog");
    let http = free_port();
    let path = dir.path().join("drover.toml");
    std::fs::write(
        &path,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n\n[catalog]\nfile = \"services.toml\"\n\n\
             [access_log]\npath = \"access.log\"\n\n[runtime]\nworkers = 1\ndrain_timeout = \"1s\"\n"
        ),
    )
    .expect("write config");
    let log_path = dir.path().join("drover.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Running::spawn(
        drover(&["--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log),
    );
    let access = dir.path().join("access.log");
    let addr = format!("127.0.0.1:{http}");
    // Requests to an unknown host: 404s, each one line.
    let start = Instant::now();
    while !std::fs::read_to_string(&access).is_ok_and(|t| t.contains("/first")) {
        status_of(&addr, "/first").await;
        assert!(start.elapsed() < DEADLINE, "no first line");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&access, &rotated).expect("rotate");
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
    let rc = unsafe { libc::kill(child.pid(), libc::SIGUSR1) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    let start = Instant::now();
    while !std::fs::read_to_string(&access).is_ok_and(|t| t.contains("/second")) {
        status_of(&addr, "/second").await;
        assert!(start.elapsed() < DEADLINE, "no line in a new file");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old = std::fs::read_to_string(&rotated).expect("rotated file");
    assert!(old.contains("/first"), "{old}");
    log_shows(&log_path, "SIGUSR1", 1).await;
    // SAFETY: as above.
    unsafe { libc::kill(child.pid(), libc::SIGTERM) };
    child.exit_within(DEADLINE).expect("exits after SIGTERM");
}
