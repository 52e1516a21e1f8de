//! Mesos discovery end to end: fake masters serving mesos-dns's state fixture, Drover
//! polling the leader, and the Mesos-DNS HTTP API on the admin port answering from the
//! zone it builds.

use std::net::SocketAddr;
use std::time::Duration;

use drover::sim::masters::FakeMasters;

use crate::support::{self, eventually, Backend, Drover};

const POLL: Duration = Duration::from_millis(200);

fn config(mesos: &FakeMasters) -> String {
    format!(
        "[mesos]\nmasters = {}\npoll = \"{}ms\"\n\n[dns]\nlisten = \"127.0.0.1:0\"\ndomain = \"mesos\"\n",
        mesos.masters_toml(),
        POLL.as_millis()
    )
}

async fn api(d: &Drover, path: &str) -> serde_json::Value {
    let a = support::get(d.admin(), "admin", path).await;
    assert_eq!(a.status, 200, "{path}: {}", a.body);
    serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", a.body))
}

/// The addresses `/v1/hosts/{name}` gives, sorted.
async fn hosts(d: &Drover, name: &str) -> Vec<String> {
    let body = api(d, &format!("/v1/hosts/{name}")).await;
    host_ips(&body)
}

/// As `hosts`, but `None` while there is no zone yet (`/readyz` does not wait for the first
/// zone, so the API may still answer 503 right after `ready`).
async fn hosts_once_zoned(d: &Drover, name: &str) -> Option<Vec<String>> {
    let a = support::get(d.admin(), "admin", &format!("/v1/hosts/{name}")).await;
    (a.status == 200).then(|| host_ips(&serde_json::from_str(&a.body).expect("json")))
}

fn host_ips(body: &serde_json::Value) -> Vec<String> {
    let mut ips: Vec<String> = body
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e["ip"].as_str().unwrap_or("").to_string())
        .collect();
    ips.sort();
    ips
}

#[tokio::test]
async fn the_leaders_state_becomes_names_and_follows_a_leadership_move() {
    let mesos = support::mesos::start(3, Some(1)).await;
    let d = Drover::start(&config(&mesos), "");
    d.ready().await;
    eventually("leader.mesos names master 1", || async {
        (hosts_once_zoned(&d, "leader.mesos").await? == ["127.0.0.2"]).then_some(())
    })
    .await;
    // Names from the fixture's tasks (config R rows, where sources agree).
    assert_eq!(hosts(&d, "chronos.marathon.mesos.").await, ["1.2.3.11"]);
    assert_eq!(
        hosts(&d, "masters.mesos").await,
        [""],
        "an unknown name is one empty entry"
    );
    let masters = hosts(&d, "master.mesos").await;
    assert!(masters.contains(&"127.0.0.2".to_string()), "{masters:?}");
    let srv = api(&d, "/v1/services/_leader._tcp.mesos.").await;
    assert_eq!(srv[0]["host"], "leader.mesos.");
    assert_eq!(srv[0]["port"], mesos.addrs()[1].port().to_string());

    // The leader moves; followers answer 307 naming it. One poll later the name follows.
    mesos.set_leader(Some(2));
    let reads_before = mesos.probes(2);
    eventually("leader.mesos names master 2", || async {
        (hosts(&d, "leader.mesos").await == ["127.0.0.3"]).then_some(())
    })
    .await;
    assert!(mesos.probes(2) > reads_before);

    // No leader at all: the last good records stay.
    mesos.set_leader(None);
    tokio::time::sleep(POLL * 3).await;
    assert_eq!(hosts(&d, "leader.mesos").await, ["127.0.0.3"]);
    let routes = support::get(d.admin(), "admin", "/debug/routes").await.body;
    assert!(routes.contains("no leader is elected"), "{routes}");
}

#[tokio::test]
async fn version_and_config_speak_mesos_dns() {
    let mesos = support::mesos::start(1, Some(0)).await;
    let d = Drover::start(&config(&mesos), "");
    d.ready().await;
    let v = api(&d, "/v1/version").await;
    assert_eq!(v["Service"], "Mesos-DNS");
    assert_eq!(v["Version"], env!("CARGO_PKG_VERSION"));
    let c = api(&d, "/v1/config").await;
    assert_eq!(c["Domain"], "mesos");
    assert_eq!(c["DnsOn"], true);
    assert_eq!(c["RecurseOn"], false, "no forward: not an open resolver");
    assert_eq!(c["Masters"][0], mesos.addrs()[0].to_string());
    // Ready does not wait for the first zone; before it the answer is 503.
    eventually("the first zone", || async {
        d.server().view().zone.load_full().map(drop)
    })
    .await;
    let a = support::get(d.admin(), "admin", "/v1/hosts/x/ports").await;
    assert_eq!(a.status, 501);
}

/// The A addresses `name` has in Drover's DNS over UDP, sorted, and the rcode.
async fn dns_a(d: &Drover, name: &str) -> (String, Vec<String>) {
    support::dns::drover_a(d, name).await
}

#[tokio::test]
async fn leader_dot_domain_over_dns_follows_a_leadership_move_within_a_poll() {
    let mesos = support::mesos::start(3, Some(0)).await;
    let d = Drover::start(&config(&mesos), "");
    d.ready().await;
    eventually("leader.mesos. A 127.0.0.1 over UDP", || async {
        (dns_a(&d, "leader.mesos.").await.1 == ["127.0.0.1"]).then_some(())
    })
    .await;
    assert_eq!(
        dns_a(&d, "chronos.marathon.mesos.").await.1,
        ["1.2.3.11"],
        "task names from the leader's state"
    );
    let (rcode, _) = dns_a(&d, "missing.mesos.").await;
    assert_eq!(rcode, "NXDomain");

    mesos.set_leader(Some(2));
    let moved = tokio::time::Instant::now();
    eventually("leader.mesos. follows to master 2", || async {
        (dns_a(&d, "leader.mesos.").await.1 == ["127.0.0.3"]).then_some(())
    })
    .await;
    // One poll (200 ms) plus the zone build; generous for a loaded test machine.
    assert!(
        moved.elapsed() < POLL * 2 + Duration::from_secs(1),
        "took {:?}",
        moved.elapsed()
    );
}

/// Masters over https that ask for basic auth (Mesos `--authenticate_http_readonly`):
/// read with `ca_file`, `principal` and `secret_file`, the follower's protocol-relative
/// 307 followed over https too; `/v1/config` shows the principal, never the secret. A
/// wrong secret is a source error that says what to set, until the file holds the right one.
#[tokio::test]
async fn https_masters_with_basic_auth_are_read_and_the_secret_never_shown() {
    let (mesos, ca) = support::mesos::start_secure(2, Some(1), "dns", "s3cret-value").await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let secret_file = dir.path().join("mesos.secret");
    std::fs::write(&secret_file, "s3cret-value\n").unwrap();
    // Only master 0 is listed: the state can only come through its 307 to master 1, which
    // is protocol-relative and so must be followed over https.
    let secure = |secret: &std::path::Path| {
        config(&mesos)
            .replace(
                &mesos.masters_toml(),
                &format!("[\"https://{}\"]", mesos.addrs()[0]),
            )
            .replace(
                "\n\n[dns]",
                &format!(
                    "\nprincipal = \"dns\"\nsecret_file = \"{}\"\nca_file = \"{}\"\n\n[dns]",
                    secret.display(),
                    ca_file.display()
                ),
            )
    };
    let d = Drover::start(&secure(&secret_file), "");
    d.ready().await;
    // The TLS handshakes make the first zone slower than over http: wait for it.
    eventually("leader.mesos names master 1, read over https", || async {
        let a = support::get(d.admin(), "admin", "/v1/hosts/leader.mesos").await;
        (a.status == 200 && a.body.contains("\"127.0.0.2\"")).then_some(())
    })
    .await;
    assert_eq!(hosts(&d, "leader.mesos").await, ["127.0.0.2"]);
    assert!(
        mesos.probes(1) > 0,
        "master 1 is read only through the redirect"
    );
    let c = api(&d, "/v1/config").await;
    assert_eq!(c["MesosHTTPSOn"], true);
    assert_eq!(c["MesosAuthentication"], "basic");
    assert_eq!(c["MesosCredentials"]["principal"], "dns");
    assert_eq!(c["MesosCredentials"]["secret"], "<redacted>");
    let raw = support::get(d.admin(), "admin", "/v1/config").await.body;
    assert!(
        !raw.contains("s3cret-value") && !raw.contains("mesos.secret"),
        "{raw}"
    );

    let wrong = dir.path().join("wrong.secret");
    std::fs::write(&wrong, "guess\n").unwrap();
    let d = Drover::start(&secure(&wrong), "");
    d.ready().await;
    eventually("the 401 is a source error naming the settings", || async {
        let routes = support::get(d.admin(), "admin", "/debug/routes").await.body;
        routes.contains("principal and secret_file").then_some(())
    })
    .await;
    let a = support::get(d.admin(), "admin", "/v1/hosts/leader.mesos").await;
    assert_eq!(a.status, 503, "no state read, so no zone: {}", a.body);

    // The secret is read at every poll: fixing the file is enough, no reload needed.
    std::fs::write(&wrong, "s3cret-value\n").unwrap();
    eventually("the rotated secret is used", || async {
        let a = support::get(d.admin(), "admin", "/v1/hosts/leader.mesos").await;
        (a.status == 200 && a.body.contains("\"127.0.0.2\"")).then_some(())
    })
    .await;
}

/// A running marathon task `id` named `name` on agent S1, its own address `ip`, its newest
/// running status saying `healthy` (JSON: `true`, `false` or `null`) and an older one
/// saying otherwise.
fn health_task(id: &str, name: &str, ip: &str, healthy: &str) -> serde_json::Value {
    let newest: serde_json::Value = serde_json::from_str(healthy).unwrap();
    let older = newest == serde_json::Value::Bool(false);
    serde_json::json!({
        "id": id, "name": name, "framework_id": "f1", "slave_id": "S1",
        "state": "TASK_RUNNING",
        "statuses": [
            {"state": "TASK_RUNNING", "timestamp": 1.0, "healthy": older,
             "container_status": {"network_infos": [{"ip_addresses": [{"ip_address": ip}]}]}},
            {"state": "TASK_RUNNING", "timestamp": 2.0,
             "healthy": newest,
             "container_status": {"network_infos": [{"ip_addresses": [{"ip_address": ip}]}]}}
        ]
    })
}

/// `[dns] healthy_only` end to end: the Mesos state's health (the newest running status's
/// `healthy`) decides the answers over DNS; a name whose tasks all fail answers them all.
#[tokio::test]
async fn healthy_only_answers_leave_out_failing_tasks() {
    let state = serde_json::json!({
        "leader": "master@127.0.0.1:5050",
        "slaves": [{"id": "S1", "pid": "slave(1)@10.0.0.1:5051", "hostname": "10.0.0.1"}],
        "frameworks": [{
            "id": "f1", "name": "marathon", "pid": "scheduler@10.0.0.9:8080",
            "hostname": "10.0.0.9",
            "tasks": [
                health_task("web.1", "web", "10.1.0.1", "true"),
                health_task("web.2", "web", "10.1.0.2", "false"),
                health_task("web.3", "web", "10.1.0.3", "null"),
                health_task("api.1", "api", "10.1.0.4", "false"),
                health_task("api.2", "api", "10.1.0.5", "false"),
            ]
        }]
    });
    let mesos = FakeMasters::builder(1, Some(0))
        .own_ips()
        .state(state)
        .start()
        .await;
    let on = Drover::start(&format!("{}healthy_only = true\n", config(&mesos)), "");
    let off = Drover::start(&config(&mesos), "");
    on.ready().await;
    off.ready().await;
    eventually(
        "web.marathon.mesos. answers the healthy and unknown tasks",
        || async {
            (dns_a(&on, "web.marathon.mesos.").await.1 == ["10.1.0.1", "10.1.0.3"]).then_some(())
        },
    )
    .await;
    assert_eq!(
        dns_a(&on, "api.marathon.mesos.").await.1,
        ["10.1.0.4", "10.1.0.5"],
        "all of api's tasks fail: all are answered"
    );
    let web2 = format!(
        "web-{}-s1.marathon.mesos.",
        drover::dns::name::hash5("web.2")
    );
    assert_eq!(dns_a(&on, &web2).await.0, "NXDomain");
    // Off (the default): every running task, as Mesos-DNS.
    eventually(
        "without healthy_only every web task is answered",
        || async {
            (dns_a(&off, "web.marathon.mesos.").await.1 == ["10.1.0.1", "10.1.0.2", "10.1.0.3"])
                .then_some(())
        },
    )
    .await;
    assert_eq!(dns_a(&off, &web2).await.1, ["10.1.0.2"]);
}

/// `[dns] healthy_only` with Drover's own active checks: a task at an address a check proves
/// down leaves the answers and comes back when it passes again; when every task of a name
/// fails, all are answered and the name is counted. The pool comes from the catalog file,
/// the names from the Mesos state: they meet at the address (agent IP and host port).
#[tokio::test]
async fn healthy_only_follows_drovers_own_checks() {
    let b = [
        Backend::start("b0").await,
        Backend::start("b1").await,
        Backend::start("b2").await,
    ];
    let tasks: Vec<serde_json::Value> = b
        .iter()
        .enumerate()
        .map(|(i, b)| {
            serde_json::json!({
                "id": format!("web.{i}"), "name": "web", "framework_id": "f1", "slave_id": "S1",
                "state": "TASK_RUNNING",
                "resources": {"ports": format!("[{0}-{0}]", b.addr.port())},
                "statuses": [{"state": "TASK_RUNNING", "timestamp": 1.0,
                    "container_status": {"network_infos":
                        [{"ip_addresses": [{"ip_address": format!("10.1.0.{i}")}]}]}}]
            })
        })
        .collect();
    let state = serde_json::json!({
        "leader": "master@127.0.0.1:5050",
        "slaves": [{"id": "S1", "pid": "slave(1)@127.0.0.1:5051", "hostname": "127.0.0.1"}],
        "frameworks": [{"id": "f1", "name": "marathon", "pid": "scheduler@127.0.0.1:8080",
            "hostname": "127.0.0.1", "tasks": tasks}]
    });
    let mesos = FakeMasters::builder(1, Some(0))
        .own_ips()
        .state(state)
        .start()
        .await;
    let addrs: Vec<SocketAddr> = b.iter().map(|b| b.addr).collect();
    let mut catalog = support::app("/web", "web.test", 10001, &addrs);
    catalog.push_str(
        "health_checks = [ { path = \"/health\", interval = \"100ms\", timeout = \"500ms\", fall = 1, rise = 1 } ]\n",
    );
    let d = Drover::start(
        &format!("{}healthy_only = true\n", config(&mesos)),
        &catalog,
    );
    d.ready().await;
    let all = ["10.1.0.0", "10.1.0.1", "10.1.0.2"];
    let answers = |want: &'static [&'static str]| {
        let d = &d;
        move || async move { (dns_a(d, "web.marathon.mesos.").await.1 == want).then_some(()) }
    };
    eventually(
        "every task is answered",
        answers(&["10.1.0.0", "10.1.0.1", "10.1.0.2"]),
    )
    .await;

    b[1].set_status(503);
    eventually(
        "b1's check fails: web.1 is left out",
        answers(&["10.1.0.0", "10.1.0.2"]),
    )
    .await;
    b[1].set_status(200);
    eventually(
        "b1 passes again: web.1 is back",
        answers(&["10.1.0.0", "10.1.0.1", "10.1.0.2"]),
    )
    .await;

    for backend in &b {
        backend.set_status(503);
    }
    eventually("every check fails: the name is counted", || async {
        let m = support::get(d.admin(), "admin", "/metrics").await.body;
        m.contains("drover_dns_names_all_unhealthy 1").then_some(())
    })
    .await;
    assert_eq!(
        dns_a(&d, "web.marathon.mesos.").await.1,
        all,
        "all fail: all answer"
    );
}
