//! Mesos masters for the discovery tests: the fake masters of `drover::sim::masters` (one
//! set for the tests, the demo and the benches) serving mesos-dns's state fixture, master
//! `i` on 127.0.0.`i+1` so each has its own address in DNS answers.

use drover::sim::masters::FakeMasters;
use drover::sim::pki;

/// mesos-dns's state fixture.
pub fn fixture_state() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mesos/mesos-dns-fake-state.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("fixture {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// `n` masters over http; `leader` leads at first.
pub async fn start(n: usize, leader: Option<usize>) -> FakeMasters {
    FakeMasters::builder(n, leader)
        .own_ips()
        .state(fixture_state())
        .start()
        .await
}

/// As `start`, over https (a certificate from a CA made now), answering 401 to any request
/// without `Authorization: Basic principal:secret`, as masters with
/// `--authenticate_http_readonly` do. Returns the CA in PEM.
pub async fn start_secure(
    n: usize,
    leader: Option<usize>,
    principal: &str,
    secret: &str,
) -> (FakeMasters, String) {
    let (ca_pem, tls) = pki::server_with_new_ca();
    let masters = FakeMasters::builder(n, leader)
        .own_ips()
        .state(fixture_state())
        .tls(tls)
        .basic_auth(principal, secret)
        .start()
        .await;
    (masters, ca_pem)
}
