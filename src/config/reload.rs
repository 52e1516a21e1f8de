//! Hot reload of the config file: a notify watch (debounced) or SIGHUP re-reads and
//! re-validates it; a good file is published as a new `Arc<Config>`, a bad one is logged and
//! counted and the running config keeps serving.
//!
//! The process's `DROVER_*` variables (`config::env`) go over the file on every re-read, as
//! they did at start, so a reload never drops a value the environment set. With no file
//! there is nothing to watch, and the environment does not change while Drover runs.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{error, info, warn};

use super::{Config, Env};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::watch::FileWatch;

/// Watches `path` and publishes each good new config on `tx` until shutdown.
pub async fn run(
    path: PathBuf,
    tx: watch::Sender<Arc<Config>>,
    metrics: Metrics,
    mut reread: watch::Receiver<()>,
    shutdown: Shutdown,
) {
    let mut watch = FileWatch::start(&path, "config file");
    let env = Env::from_process();
    loop {
        tokio::select! {
            _ = watch.changed() => {}
            r = reread.changed() => if r.is_err() { return },
            _ = shutdown.triggered() => return,
        }
        reload(&path, &env, &tx, &metrics);
    }
}

/// Re-reads the file once, with `env` over it; publishes it if good, keeps the current
/// config otherwise.
pub fn reload(
    path: &std::path::Path,
    env: &Env,
    tx: &watch::Sender<Arc<Config>>,
    metrics: &Metrics,
) {
    let result = Config::load_layered(Some(path), env).map(|(config, _)| config);
    match result {
        Ok(new) => {
            metrics.config_reloads.with_label_values(&["ok"]).inc();
            let current = tx.borrow().clone();
            if *current == new {
                info!(file = %path.display(), "config re-read; nothing changed");
                return;
            }
            for what in needs_restart(&current, &new) {
                warn!(file = %path.display(), "{what} changed; this takes effect after a restart");
            }
            info!(file = %path.display(), "config reloaded");
            tx.send_replace(Arc::new(new));
        }
        Err(e) => {
            metrics.config_reloads.with_label_values(&["error"]).inc();
            error!("config reload refused, the running config stays: {e}");
        }
    }
}

/// Settings that are bound once at start (listening sockets, thread count).
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.http.as_ref().map(|h| h.listen) != new.http.as_ref().map(|h| h.listen) {
        out.push("http.listen");
    }
    if old.admin.as_ref().map(|a| a.listen) != new.admin.as_ref().map(|a| a.listen) {
        out.push("admin.listen");
    }
    if old.http.as_ref().map(|h| h.max_connections) != new.http.as_ref().map(|h| h.max_connections)
    {
        out.push("http.max_connections");
    }
    if old.http.as_ref().and_then(|h| h.appid_listen)
        != new.http.as_ref().and_then(|h| h.appid_listen)
    {
        out.push("http.appid_listen");
    }
    let https = |c: &Config| c.https.as_ref().map(|h| (h.listen, h.certs.clone()));
    if https(old) != https(new) {
        out.push("[https] listen or certs");
    }
    if old.dns.as_ref().map(|d| (d.listen, d.forward.clone()))
        != new.dns.as_ref().map(|d| (d.listen, d.forward.clone()))
    {
        out.push("[dns] listen or forward");
    }
    if old.runtime.workers != new.runtime.workers {
        out.push("runtime.workers");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, std::path::Path::new("/")).expect("config")
    }

    #[test]
    fn listener_changes_are_named_as_needing_a_restart() {
        let old = parse("[dns]\nlisten = \"127.0.0.1:53\"\n[https]\ncerts = \"/c\"\n");
        let moved = parse("[dns]\nlisten = \"127.0.0.1:5353\"\n[https]\ncerts = \"/d\"\n");
        assert_eq!(
            needs_restart(&old, &moved),
            ["[https] listen or certs", "[dns] listen or forward"]
        );
        assert!(needs_restart(&old, &old).is_empty());
        // A zone setting applies at once.
        let ttl =
            parse("[dns]\nlisten = \"127.0.0.1:53\"\nttl = \"5s\"\n[https]\ncerts = \"/c\"\n");
        assert!(needs_restart(&old, &ttl).is_empty());
    }

    #[test]
    fn a_reload_keeps_what_the_environment_set() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("drover.toml");
        std::fs::write(&path, "[http]\nlisten = \"127.0.0.1:80\"\n").expect("write");
        let env = Env::from_pairs([("DROVER_ADMIN__LISTEN", "127.0.0.1:9999")], dir.path());
        let (start, _) = Config::load_layered(Some(&path), &env).expect("valid");
        let (tx, rx) = watch::channel(Arc::new(start));
        let metrics = Metrics::new(prometheus::Registry::new());
        std::fs::write(
            &path,
            "[http]\nlisten = \"127.0.0.1:80\"\nheader_timeout = \"3s\"\n",
        )
        .expect("write");
        reload(&path, &env, &tx, &metrics);
        let now = rx.borrow().clone();
        assert_eq!(
            now.http.as_ref().map(|h| h.header_timeout),
            Some(std::time::Duration::from_secs(3)),
            "the file's change is in"
        );
        assert_eq!(
            now.admin.as_ref().map(|a| a.listen),
            Some("127.0.0.1:9999".parse().unwrap()),
            "the variable's [admin] stays"
        );
        // A bad variable refuses the reload like a bad file would.
        let bad = Env::from_pairs([("DROVER_ADMIN__LISTEN", "nowhere")], dir.path());
        reload(&path, &bad, &tx, &metrics);
        assert_eq!(*rx.borrow(), now);
    }
}
