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
    let text = drover.server().shared().metrics.render();
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
    let metrics = drover.server().shared().metrics.clone();
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
