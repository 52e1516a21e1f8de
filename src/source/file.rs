//! The catalog file source: a TOML list of `[[app]]` in the same model the scheduler sources
//! produce, watched with notify. A file that does not parse is rejected whole and the last
//! good apps stay; an app with a bad value is dropped alone and reported.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::catalog::{ActiveCheck, AppProblem, CheckKind, PortCheck, Protocol, RawApp, RawTask};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::watch::FileWatch;

/// The label value of `source` in discovery metrics.
pub const SOURCE: &str = "file";

/// What one good read of the file gave.
pub type FileSnapshot = super::Snapshot;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileApp {
    id: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    ports: Vec<FilePort>,
    #[serde(default)]
    tasks: Vec<FileTask>,
    #[serde(default)]
    health_checks: Vec<FileCheck>,
}

/// One service port: `10001` (tcp), or `{ port = 10001, protocol = "udp" }` where the
/// protocol is `tcp`, `udp` or `udp,tcp` as in Marathon.
#[derive(Debug)]
struct FilePort {
    port: u16,
    protocol: Option<String>,
}

impl<'de> Deserialize<'de> for FilePort {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FilePort, D::Error> {
        use serde::de::{self, MapAccess, Unexpected, Visitor};

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            port: u16,
            protocol: Option<String>,
        }

        struct PortVisitor;
        impl<'de> Visitor<'de> for PortVisitor {
            type Value = FilePort;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a port number (0-65535) or a table like { port = 10001, protocol = \"udp\" }",
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FilePort, E> {
                let port =
                    u16::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))?;
                Ok(FilePort {
                    port,
                    protocol: None,
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FilePort, E> {
                let port = u16::try_from(v)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))?;
                Ok(FilePort {
                    port,
                    protocol: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FilePort, A::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(FilePort {
                    port: t.port,
                    protocol: t.protocol,
                })
            }
        }
        d.deserialize_any(PortVisitor)
    }
}

/// An active health check of one service port, e.g.
/// `{ port_index = 0, protocol = "http", path = "/health", interval = "5s" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCheck {
    port_index: Option<usize>,
    /// `http` (GET `path`, 200-399 passes) or `tcp` (a connect passes).
    protocol: Option<String>,
    path: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
    /// Failures in a row that take a backend out.
    fall: Option<u32>,
    /// Passes in a row that bring it back.
    rise: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTask {
    id: Option<String>,
    host: String,
    #[serde(default)]
    ports: Vec<u16>,
    state: Option<String>,
}

/// Why the catalog file was refused whole (the last good apps stay).
#[derive(Debug, thiserror::Error)]
pub enum CatalogFileError {
    /// Unreadable, or not UTF-8 (`read_to_string` says which).
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    /// `line` counts from 1; `None` when the parser gave no position.
    #[error("{}not valid TOML: {}", line_prefix(*.line), .source.message().trim())]
    Syntax {
        line: Option<usize>,
        #[source]
        source: toml::de::Error,
    },
    #[error("`app` must be a list of [[app]] tables")]
    AppNotList,
    #[error("unknown top-level key `{0}` (only [[app]] is allowed)")]
    UnknownKey(String),
}

fn line_prefix(line: Option<usize>) -> String {
    line.map(|line| format!("line {line}: "))
        .unwrap_or_default()
}

/// A bad value in one health check; its Display starts with the key it is about.
#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error("{key} = {text:?} is not a duration like \"5s\"")]
    Duration { key: &'static str, text: String },
    #[error("path = {0:?} must start with /")]
    Path(String),
    #[error("protocol = {0:?} (expected http or tcp)")]
    Protocol(String),
}

/// Parses catalog file text. `Err` (the whole file refused) for bad TOML or a wrong
/// top-level shape; per-app mistakes become problems and the other apps are kept.
pub fn parse(text: &str) -> Result<FileSnapshot, CatalogFileError> {
    let mut table: toml::Table = text.parse().map_err(|source: toml::de::Error| {
        let line = source
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        CatalogFileError::Syntax { line, source }
    })?;
    let apps = match table.remove("app") {
        None => Vec::new(),
        Some(toml::Value::Array(apps)) => apps,
        Some(_) => return Err(CatalogFileError::AppNotList),
    };
    if let Some(key) = table.keys().next() {
        return Err(CatalogFileError::UnknownKey(key.clone()));
    }
    let mut snapshot = FileSnapshot::default();
    let mut seen = HashSet::new();
    for (i, value) in apps.into_iter().enumerate() {
        let name = value
            .get("id")
            .and_then(|v| v.as_str())
            .map_or_else(|| format!("app[{i}]"), str::to_string);
        // Deserialized through serde_path_to_error so the problem names the bad key.
        let app = match serde_path_to_error::deserialize::<_, FileApp>(value) {
            Ok(app) => app,
            Err(e) => {
                let path = e.path().to_string();
                let key = if path == "." {
                    format!("app[{i}]")
                } else {
                    format!("app[{i}].{path}")
                };
                let why = plain_words(e.inner().message().trim());
                snapshot.problems.push(AppProblem {
                    app_id: name,
                    message: format!("{key}: {why}; app dropped"),
                });
                continue;
            }
        };
        if !seen.insert(app.id.clone()) {
            snapshot.problems.push(AppProblem {
                app_id: app.id,
                message: format!("app[{i}]: the id is used by an earlier app; app dropped"),
            });
            continue;
        }
        let checks = match app
            .health_checks
            .iter()
            .enumerate()
            .map(|(n, c)| file_check(c).map_err(|e| (n, e)))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(c) => c,
            Err((n, e)) => {
                snapshot.problems.push(AppProblem {
                    app_id: app.id,
                    message: format!("app[{i}].health_checks[{n}].{e}; app dropped"),
                });
                continue;
            }
        };
        let protocols = match app
            .ports
            .iter()
            .enumerate()
            .map(|(n, p)| {
                p.protocol
                    .as_deref()
                    .map_or(Ok(Protocol::Tcp), Protocol::parse)
                    .map_err(|e| (n, e))
            })
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(p) => p,
            Err((n, e)) => {
                snapshot.problems.push(AppProblem {
                    app_id: app.id,
                    message: format!("app[{i}].ports[{n}].{e}; app dropped"),
                });
                continue;
            }
        };
        let tasks = app
            .tasks
            .into_iter()
            .enumerate()
            .map(|(n, t)| RawTask {
                id: t.id.unwrap_or_else(|| format!("{}.{n}", app.id)),
                host: t.host,
                ports: t.ports,
                state: t.state.unwrap_or_else(|| "TASK_RUNNING".into()),
                healthy: None,
            })
            .collect();
        snapshot.apps.push(Arc::new(RawApp {
            id: app.id,
            labels: app.labels,
            ports: app.ports.iter().map(|p| p.port).collect(),
            tasks,
            checks,
            protocols,
            ..RawApp::default()
        }));
    }
    Ok(snapshot)
}

/// serde's type words in an operator's: a port is `u16` to serde, a list a "sequence".
fn plain_words(message: &str) -> String {
    message
        .replace("expected u16", "expected a port number (0-65535)")
        .replace("expected u32", "expected a whole number")
        .replace("expected usize", "expected a whole number")
        .replace("expected a sequence", "expected a list")
        .replace("expected a map", "expected a table")
}

/// One health check; an error starts with the key it is about.
fn file_check(c: &FileCheck) -> Result<PortCheck, CheckError> {
    let duration = |key: &'static str, raw: &Option<String>, default: u64| match raw {
        None => Ok(Duration::from_secs(default)),
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => Ok(d),
            _ => Err(CheckError::Duration {
                key,
                text: text.clone(),
            }),
        },
    };
    let kind = match c.protocol.as_deref().unwrap_or("http") {
        "http" | "HTTP" => {
            let path = c.path.clone().unwrap_or_else(|| "/".into());
            if !path.starts_with('/') {
                return Err(CheckError::Path(path));
            }
            CheckKind::Http { path }
        }
        "tcp" | "TCP" => CheckKind::Tcp,
        other => return Err(CheckError::Protocol(other.to_string())),
    };
    Ok(PortCheck {
        index: c.port_index.unwrap_or(0),
        check: ActiveCheck {
            kind,
            interval: duration("interval", &c.interval, 10)?,
            timeout: duration("timeout", &c.timeout, 5)?,
            fall: c.fall.unwrap_or(3).max(1),
            rise: c.rise.unwrap_or(2).max(1),
        },
    })
}

/// Reads and parses the file, then resolves task host names to IP addresses (a name that
/// does not resolve stays, and the catalog reports its task).
pub async fn load(path: &Path) -> Result<FileSnapshot, CatalogFileError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(CatalogFileError::Read)?;
    let mut snapshot = parse(&text)?;
    // Just parsed: every Arc is unique, so this copies nothing.
    let mut apps: Vec<RawApp> = snapshot
        .apps
        .into_iter()
        .map(Arc::unwrap_or_clone)
        .collect();
    super::resolve_hosts(&mut apps).await;
    snapshot.apps = apps.into_iter().map(Arc::new).collect();
    Ok(snapshot)
}

/// Watches the catalog file named by the current config and publishes every good read.
/// `None` on the channel means "not read yet". Follows `[catalog] file` across config
/// reloads; `reread` (SIGHUP) forces a read.
pub async fn run(
    mut config: watch::Receiver<Arc<Config>>,
    tx: watch::Sender<Option<Arc<FileSnapshot>>>,
    metrics: Metrics,
    mut reread: watch::Receiver<()>,
    shutdown: Shutdown,
) {
    loop {
        let path: Option<PathBuf> = config
            .borrow_and_update()
            .catalog
            .as_ref()
            .map(|c| c.file.clone());
        let Some(path) = path else {
            // No catalog file: nothing to publish but "empty".
            tx.send_replace(Some(Arc::new(FileSnapshot::default())));
            tokio::select! {
                r = config.changed() => if r.is_err() { return } else { continue },
                _ = shutdown.triggered() => return,
            }
        };
        let mut watch = FileWatch::start(&path, "catalog file");
        read_and_publish(&path, &tx, &metrics).await;
        loop {
            tokio::select! {
                _ = watch.changed() => read_and_publish(&path, &tx, &metrics).await,
                r = reread.changed() => {
                    if r.is_err() { return }
                    read_and_publish(&path, &tx, &metrics).await
                }
                r = config.changed() => {
                    if r.is_err() { return }
                    let now = config.borrow().catalog.as_ref().map(|c| c.file.clone());
                    if now.as_ref() != Some(&path) {
                        break;
                    }
                }
                _ = shutdown.triggered() => return,
            }
        }
    }
}

async fn read_and_publish(
    path: &Path,
    tx: &watch::Sender<Option<Arc<FileSnapshot>>>,
    metrics: &Metrics,
) {
    match load(path).await {
        Ok(snapshot) => {
            // Its problems are not logged here: control warns each one once, when it
            // first shows in a route table, along with the problems of every source.
            metrics.discovery_ok(SOURCE);
            let changed = tx.borrow().as_deref() != Some(&snapshot);
            if changed {
                info!(file = %path.display(), apps = snapshot.apps.len(), "catalog file read");
                tx.send_replace(Some(Arc::new(snapshot)));
            }
        }
        Err(e) => {
            metrics.discovery_error(SOURCE);
            warn!(file = %path.display(), error = %e, "catalog file refused; keeping the last good catalog");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apps_and_defaults_task_state() {
        let s = parse(
            r#"
            [[app]]
            id = "/web"
            labels = { HAPROXY_0_VHOST = "web.example.com" }
            ports = [10001]
            tasks = [ { host = "127.0.0.1", ports = [18081] } ]
            "#,
        )
        .unwrap();
        assert_eq!(s.apps.len(), 1);
        assert_eq!(s.apps[0].tasks[0].state, "TASK_RUNNING");
        assert_eq!(s.apps[0].tasks[0].id, "/web.0");
        assert!(s.problems.is_empty());
    }

    #[test]
    fn health_checks_parse_with_defaults_and_bad_ones_drop_the_app() {
        let s = parse(
            r#"
            [[app]]
            id = "/web"
            ports = [10001, 10002]
            health_checks = [
              { path = "/health", interval = "2s", fall = 1 },
              { port_index = 1, protocol = "tcp" },
            ]
            [[app]]
            id = "/bad"
            health_checks = [ { protocol = "udp" } ]
            "#,
        )
        .unwrap();
        assert_eq!(s.apps.len(), 1);
        let checks = &s.apps[0].checks;
        assert_eq!(
            checks[0],
            PortCheck {
                index: 0,
                check: ActiveCheck {
                    kind: CheckKind::Http {
                        path: "/health".into()
                    },
                    interval: Duration::from_secs(2),
                    timeout: Duration::from_secs(5),
                    fall: 1,
                    rise: 2,
                },
            }
        );
        assert_eq!(checks[1].index, 1);
        assert_eq!(checks[1].check.kind, CheckKind::Tcp);
        assert_eq!(s.problems.len(), 1);
        assert!(s.problems[0].message.contains("udp"), "{}", s.problems[0]);
    }

    #[test]
    fn a_bad_app_is_dropped_alone() {
        let s = parse(
            r#"
            [[app]]
            id = "/bad"
            ports = [10001]
            prots = [1]
            [[app]]
            id = "/good"
            ports = [99999]
            [[app]]
            id = "/fine"
            "#,
        )
        .unwrap();
        let ids: Vec<&str> = s.apps.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["/fine"]);
        assert_eq!(s.problems.len(), 2);
        assert!(s.problems[0].message.contains("prots"), "{}", s.problems[0]);
        assert_eq!(s.problems[1].app_id, "/good");
    }

    #[test]
    fn a_bad_value_names_its_key_and_the_expected_type() {
        let s = parse(
            r#"
            [[app]]
            id = "/ok"
            [[app]]
            id = "/a"
            ports = "ten"
            [[app]]
            id = "/b"
            tasks = [ { host = "127.0.0.1", ports = ["x"] } ]
            [[app]]
            id = "/c"
            tasks = [ { host = "127.0.0.1", ports = [1] }, { host = "127.0.0.1", ports = [2, 70000] } ]
            [[app]]
            id = "/d"
            prots = [1]
            [[app]]
            id = "/e"
            health_checks = [ { path = "/" }, { protocol = "udp" } ]
            "#,
        )
        .unwrap();
        let messages: Vec<&str> = s.problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(messages.len(), 5, "{messages:#?}");
        let want = [
            ("app[1].ports: ", "expected a list"),
            (
                "app[2].tasks[0].ports[0]: ",
                "expected a port number (0-65535)",
            ),
            (
                "app[3].tasks[1].ports[1]: ",
                "expected a port number (0-65535)",
            ),
            ("app[4].prots: ", "unknown field `prots`"),
            (
                "app[5].health_checks[1].protocol = \"udp\"",
                "expected http or tcp",
            ),
        ];
        for (message, (key, what)) in messages.iter().zip(want) {
            assert!(
                message.starts_with(key),
                "{message} should start with {key}"
            );
            assert!(message.contains(what), "{message} should say {what}");
        }
    }

    #[test]
    fn ports_take_a_protocol_and_a_bad_one_drops_the_app() {
        use crate::catalog::Protocol;
        let s = parse(
            r#"
            [[app]]
            id = "/dns"
            ports = [10053, { port = 10054, protocol = "udp" }, { port = 10055, protocol = "udp,tcp" }]
            [[app]]
            id = "/bad"
            ports = [{ port = 10056, protocol = "sctp" }]
            [[app]]
            id = "/typo"
            ports = [{ port = 10057, proto = "udp" }]
            [[app]]
            id = "/big"
            ports = [70000]
            "#,
        )
        .unwrap();
        assert_eq!(s.apps.len(), 1);
        assert_eq!(s.apps[0].ports, [10053, 10054, 10055]);
        assert_eq!(
            s.apps[0].protocols,
            [Protocol::Tcp, Protocol::Udp, Protocol::TcpUdp]
        );
        let messages: Vec<&str> = s.problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(messages.len(), 3, "{messages:#?}");
        assert!(
            messages[0].starts_with("app[1].ports[0].protocol = \"sctp\" (expected tcp, udp"),
            "{}",
            messages[0]
        );
        assert!(
            messages[1].contains("unknown field `proto`"),
            "{}",
            messages[1]
        );
        assert!(
            messages[2].starts_with("app[3].ports[0]: ") && messages[2].contains("70000"),
            "{}",
            messages[2]
        );
    }

    #[test]
    fn a_syntax_error_gives_its_line() {
        let e = parse("[[app]]\nid = \"/a\"\n\n[[app]\nid = \"/b\"\n").unwrap_err();
        assert!(
            matches!(e, CatalogFileError::Syntax { line: Some(4), .. }),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(e.starts_with("line 4: not valid TOML"), "{e}");
        let e = parse("[[app]]\nid = \"/a\"\nports = [1,\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("line "), "{e}");
    }

    #[test]
    fn a_broken_file_is_refused_whole() {
        let refused = |text| parse(text).unwrap_err().to_string();
        assert!(refused("[[app]\nid=").contains("not valid TOML"));
        assert!(refused("apps = 1").contains("unknown top-level key"));
        assert!(matches!(
            parse("app = 1"),
            Err(CatalogFileError::AppNotList)
        ));
    }

    #[test]
    fn duplicate_ids_keep_the_first() {
        let s =
            parse("[[app]]\nid = \"/a\"\nports=[1]\n[[app]]\nid = \"/a\"\nports=[2]\n").unwrap();
        assert_eq!(s.apps.len(), 1);
        assert_eq!(s.apps[0].ports, [1]);
        assert_eq!(s.problems.len(), 1);
    }
}
