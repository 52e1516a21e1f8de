//! The deploy recipes stay true: the Marathon app definition decodes with Drover's own
//! Marathon decoder and has what a load balancer on public agents needs, and the Dockerfile's
//! runtime stage agrees with it (binary, user, ports, entrypoint, health check).

use std::path::Path;

use serde_json::Value;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn marathon_app() -> Value {
    serde_json::from_str(&read("deploy/marathon/drover.json")).expect("drover.json is JSON")
}

/// `host:port` -> port.
fn port_of(listen: &str) -> u64 {
    listen.rsplit(':').next().unwrap().parse().expect("a port")
}

#[test]
fn the_marathon_app_runs_one_drover_per_public_agent() {
    let text = read("deploy/marathon/drover.json");
    // Drover's own decoder reads it as Marathon would serve it back.
    let apps = drover::source::marathon::apps::decode(format!("{{\"apps\":[{text}]}}").as_bytes())
        .expect("decodes as a Marathon app");
    let app = &apps[0];
    assert_eq!(app.id, "/drover");
    let check = &app.health_checks[0];
    assert_eq!(check.protocol.as_deref(), Some("MESOS_HTTP"));
    assert!(
        matches!(
            check.path.as_deref(),
            Some("/_haproxy_health_check" | "/readyz")
        ),
        "{check:?}"
    );

    let v = marathon_app();
    assert_eq!(
        v["acceptedResourceRoles"],
        serde_json::json!(["slave_public"])
    );
    assert!(v["constraints"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!(["hostname", "UNIQUE"])));
    assert_eq!(v["networks"][0]["mode"], "host");
    assert_eq!(v["requirePorts"], true);
    let ports: Vec<u64> = v["portDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [80, 443, 9090, 9091]);

    // The health check asks the admin listener, at the port the environment gives it.
    let env = &v["env"];
    let admin = port_of(env["DROVER_ADMIN__LISTEN"].as_str().unwrap());
    let index = check.port_index.unwrap() as usize;
    assert_eq!(ports[index], admin);
    assert_eq!(port_of(env["DROVER_HTTP__LISTEN"].as_str().unwrap()), 80);
    assert_eq!(
        port_of(env["DROVER_HTTP__APPID_LISTEN"].as_str().unwrap()),
        9091
    );
    assert_eq!(env["DROVER_MARATHON__URLS"], "http://marathon.mesos:8080");
    assert_eq!(env["DROVER_MARATHON__GROUPS"], "external");

    // Marathon may kill a task only after its drain: the grace period covers it.
    let drain = humantime::parse_duration(env["DROVER_RUNTIME__DRAIN_TIMEOUT"].as_str().unwrap())
        .expect("a duration");
    let grace = v["taskKillGracePeriodSeconds"].as_u64().unwrap();
    assert!(grace > drain.as_secs(), "grace {grace}s, drain {drain:?}");
    // Rolling upgrades keep at least half of the instances serving.
    let keep = v["upgradeStrategy"]["minimumHealthCapacity"]
        .as_f64()
        .unwrap();
    assert!((0.5..1.0).contains(&keep), "{keep}");
}

/// The runtime stage of the Dockerfile: the lines after its last `FROM`.
fn runtime_stage(dockerfile: &str) -> Vec<String> {
    let lines: Vec<String> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    lines[last_from..].to_vec()
}

#[test]
fn the_dockerfile_runs_the_release_binary_as_the_marathon_app_expects() {
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile.contains("cargo build --release --locked --bin drover"),
        "the build stage builds the release binary"
    );
    let stage = runtime_stage(&dockerfile);
    let find =
        |word: &str| -> Vec<&String> { stage.iter().filter(|l| l.starts_with(word)).collect() };
    let copy = find("COPY");
    assert_eq!(copy.len(), 1, "{copy:?}");
    assert!(
        copy[0].contains("--from=build /src/target/release/drover /usr/local/bin/drover"),
        "{copy:?}"
    );
    let user = find("USER");
    assert_eq!(user.len(), 1);
    assert!(
        !["USER root", "USER 0"].contains(&user[0].as_str()),
        "{user:?}"
    );
    // The ports are the Marathon app's.
    let exposed: Vec<u64> = find("EXPOSE")[0]
        .split_whitespace()
        .skip(1)
        .map(|p| p.parse().unwrap())
        .collect();
    let app = marathon_app();
    let ports: Vec<u64> = app["portDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(exposed, ports);
    // The Marathon app gives no command: the image's entrypoint runs Drover.
    assert!(app.get("cmd").is_none());
    let entrypoint = find("ENTRYPOINT");
    assert!(
        entrypoint[0].ends_with("\"/usr/local/bin/drover\"]"),
        "{entrypoint:?}"
    );
    assert_eq!(find("STOPSIGNAL"), [&"STOPSIGNAL SIGTERM".to_string()]);
    // The health check asks /readyz on the admin port the Marathon app configures.
    let admin = port_of(app["env"]["DROVER_ADMIN__LISTEN"].as_str().unwrap());
    assert!(
        stage
            .iter()
            .any(|l| l.contains(&format!("127.0.0.1:{admin}/readyz"))),
        "{stage:#?}"
    );
    // The non-root user may bind port 80: the capability is set on the binary.
    assert!(stage
        .iter()
        .any(|l| l.contains("setcap cap_net_bind_service=+ep /usr/local/bin/drover")));
}

/// The Marathon app's own `env` and `args` start a working Drover: only the listen
/// addresses move to free loopback ports and the Marathon URL to the test's fake Marathon
/// (a test cannot take port 80 or resolve `marathon.mesos`); every other variable is the
/// file's. The health check's path answers 200, the app the fake Marathon serves is routed,
/// and SIGTERM ends it within the app's kill grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_marathon_apps_env_starts_a_working_drover() {
    use crate::support::marathon::{self, FakeMarathon, FakeTask};
    use crate::support::{eventually, free_port, send, Backend};

    /// GET, or `None` while nothing listens yet.
    async fn try_get(addr: std::net::SocketAddr, host: &str, path: &str) -> Option<(u16, String)> {
        let req = hyper::Request::get(format!("http://{addr}{path}"))
            .header("host", host)
            .body(http_body_util::Full::default())
            .ok()?;
        send(req).await.ok().map(|a| (a.status.as_u16(), a.body))
    }

    let app = marathon_app();
    let backend = Backend::start("web").await;
    let fake = FakeMarathon::start().await;
    let task = marathon::task_id("/web", 1);
    // The app is in group `external`, as the definition's `DROVER_MARATHON__GROUPS` asks.
    fake.set_apps(marathon::apps_json(&[marathon::app(
        "/web",
        &[
            ("HAPROXY_GROUP", "external"),
            ("HAPROXY_0_VHOST", "web.example.com"),
        ],
        10001,
        &[FakeTask::new(&task, backend.addr)],
    )]));
    let (http, appid, admin) = (free_port(), free_port(), free_port());
    let mut vars: Vec<(&str, String)> = app["env"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap().to_string()))
        .collect();
    let moved = [
        ("DROVER_MARATHON__URLS", fake.url()),
        ("DROVER_HTTP__LISTEN", format!("127.0.0.1:{http}")),
        ("DROVER_HTTP__APPID_LISTEN", format!("127.0.0.1:{appid}")),
        ("DROVER_ADMIN__LISTEN", format!("127.0.0.1:{admin}")),
        ("DROVER_TCP__BIND", "127.0.0.1".to_string()),
    ];
    for (name, value) in &moved {
        let var = vars.iter_mut().find(|(k, _)| k == name).expect(name);
        var.1 = value.clone();
    }
    let args: Vec<&str> = app["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("drover.log");
    let mut child = crate::env_config::drover(dir.path(), &args, &vars)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log"))
        .spawn()
        .expect("spawn drover");
    let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let admin_addr: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let check_path = app["healthChecks"][0]["path"].as_str().unwrap().to_string();
    eventually("the health check and the route", || {
        let check_path = check_path.clone();
        async move {
            let health = try_get(admin_addr, "admin", &check_path).await?;
            let routed = try_get(
                format!("127.0.0.1:{http}").parse().unwrap(),
                "web.example.com",
                "/",
            )
            .await?;
            (health.0 == 200 && routed.1 == "web").then_some(())
        }
    })
    .await;
    // JSON logs, as the definition asks (`DROVER_LOG__FORMAT`).
    let first = logs()
        .lines()
        .next()
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        serde_json::from_str::<Value>(&first).is_ok(),
        "not a JSON log line: {first}"
    );

    // SAFETY: kill(2) on the pid of our own child, not reaped yet.
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let grace = std::time::Duration::from_secs(app["taskKillGracePeriodSeconds"].as_u64().unwrap());
    let status = eventually("drover to exit after SIGTERM", || {
        let status = child.try_wait().expect("try_wait");
        async move { status }
    });
    let status = tokio::time::timeout(grace, status)
        .await
        .unwrap_or_else(|_| panic!("no exit within the grace period:\n{}", logs()));
    assert_eq!(status.code(), Some(0), "{}", logs());
    let _ = fake;
}
