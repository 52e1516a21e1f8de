//! The real `drover` binary configured by `DROVER_*` variables: a start from the
//! environment alone that routes a request and exits 0 on SIGTERM, `drover config` with
//! origins and redaction, and `drover check` naming a bad variable.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{app, free_port, Backend, DEADLINE};

const BIN: &str = env!("CARGO_BIN_EXE_drover");

/// `drover ARGS` in `dir` with `vars` and no other `DROVER_*` variable (nor `RUST_LOG`).
pub(crate) fn drover(dir: &Path, args: &[&str], vars: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("DROVER_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(vars.iter().map(|(k, v)| (k, v)));
    cmd
}

fn output(cmd: &mut Command) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run drover");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// A spawned drover, killed and reaped if the test ends while it still runs.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The whole answer to `GET / Host: host` on `addr`, if one came within two seconds.
async fn get(addr: &str, host: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn variables_alone_start_a_drover_that_routes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::start("from-env").await;
    std::fs::write(
        dir.path().join("services.toml"),
        app("/web", "web.example.com", free_port(), &[backend.addr]),
    )
    .expect("write catalog");
    let http = free_port();
    let admin = std::iter::repeat_with(free_port)
        .find(|p| *p != http)
        .expect("a second free port");
    let log_path = dir.path().join("drover.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let vars = [
        ("DROVER_HTTP__LISTEN", format!("127.0.0.1:{http}")),
        ("DROVER_ADMIN__LISTEN", format!("127.0.0.1:{admin}")),
        // Relative: from the working directory, as there is no config file.
        ("DROVER_CATALOG__FILE", "services.toml".to_string()),
        ("DROVER_RUNTIME__WORKERS", "1".to_string()),
        ("DROVER_RUNTIME__DRAIN_TIMEOUT", "2s".to_string()),
    ];
    let mut child = Running(
        drover(dir.path(), &[], &vars)
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn drover"),
    );
    let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let http_addr = format!("127.0.0.1:{http}");
    let start = tokio::time::Instant::now();
    let answer = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            panic!("drover exited early with {status}:\n{}", logs());
        }
        match get(&http_addr, "web.example.com").await {
            Some(a) if a.starts_with("HTTP/1.1 200") => break a,
            _ => {}
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no request routed in time:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(answer.contains("x-backend: from-env"), "{answer}");
    assert_eq!(backend.hits(), 1);
    let admin_addr = format!("127.0.0.1:{admin}");
    let ready = get(&admin_addr, "localhost").await.unwrap_or_default();
    assert!(
        ready.starts_with("HTTP/1.1 "),
        "the admin port answers: {ready}"
    );

    // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
    let pid = libc::pid_t::try_from(child.0.id()).expect("pid fits");
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let start = tokio::time::Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no exit after SIGTERM:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0), "exit {status}:\n{}", logs());
    assert!(logs().contains("configuration read"), "{}", logs());
}

#[test]
fn config_prints_the_effective_toml_with_origins_and_no_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    // drover.toml in the working directory is read without --config.
    std::fs::write(
        dir.path().join("drover.toml"),
        "[http]\nlisten = \"127.0.0.1:8080\"\n",
    )
    .expect("write config");
    let vars = [
        (
            "DROVER_MARATHON__URLS",
            "http://m1:8080,http://m2:8080".to_string(),
        ),
        ("DROVER_MARATHON__GROUPS", "external".to_string()),
        ("DROVER_MARATHON__USER", "drover".to_string()),
        (
            "DROVER_MARATHON__PASSWORD_FILE",
            "/secret-place/marathon.pass".to_string(),
        ),
    ];
    let (code, stdout, stderr) = output(&mut drover(dir.path(), &["config"], &vars));
    assert_eq!(code, Some(0), "{stderr}");
    let table: toml::Table = stdout.parse().unwrap_or_else(|e| panic!("{e}\n{stdout}"));
    assert_eq!(
        table["marathon"]["urls"].as_array().map(Vec::len),
        Some(2),
        "{stdout}"
    );
    for line in [
        "# Config file: drover.toml\n",
        "[http]  # file\nlisten = \"127.0.0.1:8080\"  # file\n",
        "header_timeout = \"10s\"  # default\n",
        "urls = [\"http://m1:8080\", \"http://m2:8080\"]  # env DROVER_MARATHON__URLS\n",
        "groups = [\"external\"]  # env DROVER_MARATHON__GROUPS\n",
        "password_file = \"<redacted>\"  # env DROVER_MARATHON__PASSWORD_FILE\n",
    ] {
        assert!(stdout.contains(line), "{line:?} not in\n{stdout}");
    }
    assert!(!stdout.contains("secret-place"), "{stdout}");
    drover::config::Config::parse(&stdout, dir.path())
        .unwrap_or_else(|p| panic!("{p:?}\n{stdout}"));
}

#[test]
fn check_names_a_bad_variable_and_exits_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let vars = [
        ("DROVER_HTTP__LISTEN", "nowhere".to_string()),
        ("DROVER_MARATHON__URLS", "x".to_string()),
        ("DROVER_ADMIN__COLOUR", "blue".to_string()),
    ];
    let (code, stdout, stderr) = output(&mut drover(dir.path(), &["check"], &vars));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    for line in [
        "the DROVER_* environment: 3 problems\n",
        "  - DROVER_HTTP__LISTEN = \"nowhere\": not a socket address",
        "  - DROVER_ADMIN__COLOUR = \"blue\": unknown field `colour`, expected `listen`\n",
        "  - DROVER_MARATHON__URLS[0] = \"x\": not an http:// or https:// URL with a host\n",
    ] {
        assert!(stderr.contains(line), "{line:?} not in\n{stderr}");
    }

    // Good variables alone check as ok.
    let good = [("DROVER_ADMIN__LISTEN", "127.0.0.1:9090".to_string())];
    let (code, stdout, stderr) = output(&mut drover(dir.path(), &["check"], &good));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "the environment (DROVER_ADMIN__LISTEN): ok\n");
}

#[test]
fn nothing_to_read_is_refused_by_a_start_and_a_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [&[][..], &["check"][..]] {
        let mut cmd = drover(dir.path(), args, &[]);
        let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut running = Running(child.spawn().expect("spawn drover"));
        let status = {
            #[allow(clippy::disallowed_methods)] // a blocking wait on a real process
            let start = std::time::Instant::now();
            loop {
                if let Some(status) = running.0.try_wait().expect("try_wait") {
                    break status;
                }
                assert!(start.elapsed() < DEADLINE, "{args:?} did not exit");
                #[allow(clippy::disallowed_methods)] // as above
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(running.0.stderr.as_mut().expect("stderr"), &mut stderr)
            .expect("read stderr");
        assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("no configuration: no --config"), "{stderr}");
    }
}
