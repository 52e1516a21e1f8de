//! Mesos discovery end to end: fake masters serving mesos-dns's state fixture, Drover
//! polling the leader, and the Mesos-DNS HTTP API on the admin port answering from the
//! zone it builds.

use std::time::Duration;

use drover::sim::masters::FakeMasters;

use crate::support::{self, eventually, Drover};

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
        (hosts(&d, "leader.mesos").await == ["127.0.0.2"]).then_some(())
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
    let a = support::get(d.admin(), "admin", "/v1/hosts/x/ports").await;
    assert_eq!(a.status, 501);
}

/// The A addresses `name` has in Drover's DNS over UDP, sorted, and the rcode.
async fn dns_a(d: &Drover, name: &str) -> (String, Vec<String>) {
    use hickory_proto::rr::{RData, RecordType};
    let addr = d.server().dns_addr().expect("[dns] is configured");
    let q = crate::support::dns::query(name, RecordType::A, false, None);
    let reply = crate::support::dns::udp(addr, &q).await;
    let mut ips: Vec<String> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    ips.sort();
    (format!("{:?}", reply.metadata.response_code), ips)
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
