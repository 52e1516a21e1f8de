use std::time::Duration;

use serde::de::DeserializeOwned;

use super::*;
use crate::config::file::*;
use crate::config::{Config, ConfigError, LeaderCheck};

fn env(vars: &[(&str, &str)]) -> Env {
    Env::from_pairs(vars.iter().copied(), Path::new("/run/here"))
}

/// The configuration from `vars` alone, or its problems as lines.
fn load(vars: &[(&str, &str)]) -> Result<(Config, Origins), Vec<String>> {
    Config::load_layered(None, &env(vars)).map_err(lines)
}

fn lines(e: ConfigError) -> Vec<String> {
    e.problems.iter().map(|p| p.to_string()).collect()
}

/// `text` as a config file in a temp dir, with `vars` over it.
fn load_over(text: &str, vars: &[(&str, &str)]) -> Result<(Config, Origins), Vec<String>> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("drover.toml");
    std::fs::write(&path, text).expect("write config");
    Config::load_layered(Some(&path), &env(vars)).map_err(lines)
}

#[test]
fn strings_numbers_booleans_and_lists_from_variables_alone() {
    let (c, origins) = load(&[
        ("DROVER_HTTP__LISTEN", "127.0.0.1:8080"),
        ("DROVER_HTTP__MAX_HEADER_BYTES", "2048"),
        (
            "DROVER_HTTP__PROXY_PROTOCOL",
            "[\"10.0.0.0/8\", \"fd00::/8\"]",
        ),
        ("DROVER_MARATHON__URLS", "http://m1:8080, http://m2:8080,"),
        ("DROVER_MARATHON__GROUPS", "external"),
        ("DROVER_MARATHON__STRICT", "true"),
        ("DROVER_MARATHON__HEALTH_CHECK", "0"),
        ("DROVER_RUNTIME__DRAIN_TIMEOUT", "\"3s\""),
        ("DROVER_LOG__LEVEL", "debug,hyper=warn"),
    ])
    .expect("valid");
    let http = c.http.expect("[http] made by its variables");
    assert_eq!(http.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(http.max_header_bytes, 2048);
    assert_eq!(http.proxy_protocol.len(), 2);
    let m = c.marathon.expect("[marathon]");
    assert_eq!(m.urls, ["http://m1:8080", "http://m2:8080"]);
    assert_eq!(m.groups.0, ["external"]);
    assert!(m.strict);
    assert!(!m.health_check);
    // TOML quotes are taken off a string.
    assert_eq!(c.runtime.drain_timeout, Duration::from_secs(3));
    assert_eq!(c.log.level.as_deref(), Some("debug,hyper=warn"));
    // A section no variable names stays off.
    assert!(c.tcp.is_none() && c.admin.is_none() && c.catalog.is_none());
    assert_eq!(
        origins.get("http.listen"),
        &Origin::Env("DROVER_HTTP__LISTEN".into())
    );
    assert_eq!(origins.get("http.header_timeout"), &Origin::Default);
    assert_eq!(
        origins.get("http"),
        &Origin::Env("DROVER_HTTP__LISTEN".into())
    );
}

#[test]
fn nothing_set_is_every_default_with_every_optional_section_off() {
    let (c, origins) = load(&[("DROVER_BIN", "/usr/bin/drover")]).expect("valid");
    assert_eq!(c, Config::parse("", Path::new("/")).expect("empty file"));
    assert_eq!(origins, Origins::default());
    assert!(env(&[("DROVER_BIN", "x"), ("HOME", "/")]).is_empty());
}

#[test]
fn a_bad_value_is_named_by_its_variable() {
    let problems = load(&[
        ("DROVER_MARATHON__URLS", "x,http://ok:8080"),
        ("DROVER_HTTP__LISTEN", "0.0.0.0:eighty"),
        ("DROVER_HTTP__MAX_CONNECTIONS", "many"),
        ("DROVER_DNS__LEGACY_NAMES", "perhaps"),
        ("DROVER_CATALOG__GROUPS", ""),
    ])
    .unwrap_err();
    assert_eq!(
        problems,
        [
            "DROVER_HTTP__MAX_CONNECTIONS = \"many\": invalid type: string \"many\", expected i64",
            "DROVER_DNS__LEGACY_NAMES = \"perhaps\": invalid type: string \"perhaps\", expected a boolean",
            "DROVER_MARATHON__URLS[0] = \"x\": not an http:// or https:// URL with a host",
            // Not a variable's value: the key the section lacks keeps its key path.
            "DROVER_CATALOG__GROUPS = []: list at least one group, or \"*\" for every app",
            "catalog.file: missing: the path of the catalog file",
        ],
    );
    let problems = load(&[("DROVER_HTTP__LISTEN", "0.0.0.0:eighty")]).unwrap_err();
    assert_eq!(
        problems,
        [
            "DROVER_HTTP__LISTEN = \"0.0.0.0:eighty\": not a socket address (expected IP:port, \
          e.g. 0.0.0.0:80 or [::]:80)"
        ]
    );
}

#[test]
fn unknown_sections_and_keys_are_named_by_their_variable() {
    let problems = load(&[
        ("DROVER_HTTP__LISTN", "127.0.0.1:80"),
        ("DROVER_HTTPS3__LISTEN", "127.0.0.1:443"),
        ("DROVER_ALIAS__HOST", "leader.mesos"),
        ("DROVER___LISTEN", "x"),
    ])
    .unwrap_err();
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(
        problems[0].starts_with("DROVER_ALIAS__HOST: [[alias]] is a list of tables"),
        "{problems:#?}"
    );
    assert_eq!(
        problems[1],
        "DROVER___LISTEN: expected DROVER_<SECTION>__<KEY>"
    );
    assert!(
        problems[2].starts_with("DROVER_HTTPS3__LISTEN: unknown section (known: http,"),
        "{problems:#?}"
    );
    assert!(
        problems[3].starts_with("DROVER_HTTP__LISTN = \"127.0.0.1:80\": unknown field `listn`"),
        "{problems:#?}"
    );
}

#[test]
fn the_environment_wins_over_the_file_key_by_key() {
    let file = "[http]\nlisten = \"127.0.0.1:80\"\nheader_timeout = \"3s\"\n\n\
                [marathon]\nurls = [\"http://file:8080\"]\n";
    let (c, origins) = load_over(
        file,
        &[
            ("DROVER_HTTP__LISTEN", "127.0.0.1:8080"),
            ("DROVER_ADMIN__LISTEN", "127.0.0.1:9999"),
        ],
    )
    .expect("valid");
    let http = c.http.expect("[http]");
    assert_eq!(http.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(http.header_timeout, Duration::from_secs(3));
    assert_eq!(c.marathon.expect("[marathon]").urls, ["http://file:8080"]);
    assert_eq!(
        c.admin.expect("[admin]").listen,
        "127.0.0.1:9999".parse().unwrap()
    );
    assert_eq!(
        origins.get("http.listen"),
        &Origin::Env("DROVER_HTTP__LISTEN".into())
    );
    assert_eq!(origins.get("http.header_timeout"), &Origin::File);
    assert_eq!(origins.get("http"), &Origin::File);
    assert_eq!(origins.get("marathon.urls"), &Origin::File);
    assert_eq!(origins.get("http.body_timeout"), &Origin::Default);

    // A bad file value still names its key; a bad variable its variable.
    let problems = load_over(
        "[tcp]\nports = \"20000-10000\"\n",
        &[("DROVER_TCP__BIND", "localhost")],
    )
    .unwrap_err();
    assert_eq!(
        problems,
        [
            "DROVER_TCP__BIND = \"localhost\": not an IP address",
            "tcp.ports = \"20000-10000\": the first port is above the last",
        ]
    );
}

#[test]
fn paths_in_variables_start_from_the_working_directory() {
    let (c, origins) = load(&[
        ("DROVER_CATALOG__FILE", "services.toml"),
        ("DROVER_ACCESS_LOG__PATH", "-"),
        ("DROVER_MARATHON__URLS", "http://m:8080"),
        ("DROVER_MARATHON__CA_FILE", "/etc/ca.pem"),
    ])
    .expect("valid");
    assert_eq!(
        c.catalog.expect("[catalog]").file,
        Path::new("/run/here/services.toml")
    );
    assert_eq!(
        c.access_log.expect("[access_log]").target,
        crate::config::AccessLogTarget::Stdout
    );
    assert_eq!(
        c.marathon.expect("[marathon]").ca_file.as_deref(),
        Some(Path::new("/etc/ca.pem"))
    );
    assert_eq!(
        origins.get("access_log"),
        &Origin::Env("DROVER_ACCESS_LOG__PATH".into())
    );
}

#[test]
fn aliases_come_whole_from_drover_alias() {
    let file = "[[alias]]\nhost = \"file.mesos\"\nbackends = [\"10.0.0.9:5050\"]\n";
    let alias = r#"[{ host = "leader.mesos", backends = ["10.0.0.1:5050", "10.0.0.2:5050"], check = "marathon" }]"#;
    let (c, origins) = load_over(file, &[("DROVER_ALIAS", alias)]).expect("valid");
    assert_eq!(c.aliases.len(), 1, "the variable replaces the file's list");
    assert_eq!(c.aliases[0].host.as_str(), "leader.mesos");
    assert_eq!(c.aliases[0].check, LeaderCheck::Marathon);
    assert_eq!(
        origins.get("alias[0].host"),
        &Origin::Env("DROVER_ALIAS".into())
    );
    assert_eq!(origins.get("alias[0].interval"), &Origin::Default);

    let problems = load(&[(
        "DROVER_ALIAS",
        r#"[{ host = "a.mesos", backends = ["nope"], check = "mesos" }]"#,
    )])
    .unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].starts_with("DROVER_ALIAS[0].backends[0] = \"nope\""),
        "{problems:#?}"
    );
}

#[test]
fn two_variables_for_one_key_are_a_problem() {
    let problems = load(&[
        ("DROVER_ADMIN__LISTEN", "127.0.0.1:1"),
        ("DROVER_ADMIN__listen", "127.0.0.1:2"),
    ])
    .unwrap_err();
    assert_eq!(
        problems,
        ["DROVER_ADMIN__listen: DROVER_ADMIN__LISTEN sets the same key"]
    );
}

#[test]
fn near_misses_get_a_note_and_other_drover_variables_none() {
    let e = env(&[
        ("DROVER_MARATHON_URLS", "http://m:8080"),
        ("DROVER_ADMIN", "1"),
        ("DROVER_BIN", "/usr/bin/drover"),
        ("DROVER_PORT", "8080"),
    ]);
    assert!(e.is_empty());
    let notes = e.notes();
    assert_eq!(notes.len(), 2, "{notes:#?}");
    assert!(
        notes[0].starts_with("DROVER_ADMIN is not read"),
        "{notes:#?}"
    );
    assert!(notes[0].ends_with("(e.g. DROVER_ADMIN__KEY)"), "{notes:#?}");
    assert!(
        notes[1].ends_with("(e.g. DROVER_MARATHON__URLS)"),
        "{notes:#?}"
    );
}

/// The field names serde knows for `T`, from its unknown-field message.
fn serde_fields<T: DeserializeOwned>() -> Vec<String> {
    let probe = Value::Table(toml::Table::from_iter([(
        "__probe".to_string(),
        Value::Integer(0),
    )]));
    let e = probe.try_into::<T>().err().expect("probe is unknown");
    let message = e.message().to_string();
    let (_, expected) = message.split_once("expected").expect("names the fields");
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// `keys` are exactly `T`'s fields, and a value of each kind decodes as `T` reads it.
fn same_keys<T: DeserializeOwned>(section: &str, keys: &[(&str, Kind)]) {
    let mut ours: Vec<String> = keys.iter().map(|(k, _)| k.to_string()).collect();
    let mut theirs = serde_fields::<T>();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs, "[{section}]");
    let cwd = Path::new("/");
    for (key, kind) in keys {
        let sample = match kind {
            Kind::Str | Kind::Filename => "x",
            Kind::Int => "7",
            Kind::Bool => "true",
            Kind::List => "a,b",
        };
        let table = toml::Table::from_iter([(key.to_string(), read(Some(*kind), sample, cwd))]);
        if let Err(e) = Value::Table(table).try_into::<T>() {
            panic!("{section}.{key} as {kind:?}: {e}");
        }
    }
}

#[test]
fn the_key_table_matches_the_file_types() {
    for (section, keys) in KEYS {
        match *section {
            "http" => same_keys::<RawHttp>(section, keys),
            "https" => same_keys::<RawHttps>(section, keys),
            "tcp" => same_keys::<RawTcp>(section, keys),
            "dns" => same_keys::<RawDns>(section, keys),
            "admin" => same_keys::<RawAdmin>(section, keys),
            "marathon" => same_keys::<RawMarathon>(section, keys),
            "mesos" => same_keys::<RawMesos>(section, keys),
            "catalog" => same_keys::<RawCatalog>(section, keys),
            "access_log" => same_keys::<RawAccessLog>(section, keys),
            "log" => same_keys::<RawLog>(section, keys),
            "runtime" => same_keys::<RawRuntime>(section, keys),
            "ejection" => same_keys::<RawEjection>(section, keys),
            "udp" => same_keys::<RawUdp>(section, keys),
            other => panic!("[{other}] is not a section of the file"),
        }
    }
    // Every table section of the file is in KEYS.
    let sections: Vec<&str> = KEYS.iter().map(|(s, _)| *s).collect();
    let probs = Config::parse("[nope]\n", Path::new("/")).unwrap_err();
    for s in sections.iter().chain(["alias"].iter()) {
        assert!(
            probs[0].message.contains(s),
            "{s} not in {}",
            probs[0].message
        );
    }
    assert_eq!(
        probs[0].message.matches(", ").count() + 1,
        sections.len() + 1,
        "{}",
        probs[0].message
    );
}

#[test]
fn zookeeper_urls_from_variables() {
    let (c, _) = load(&[
        ("DROVER_MESOS__ZK", "zk://10.0.0.1:2181,10.0.0.2:2181/mesos"),
        (
            "DROVER_ALIAS",
            "[{host = \"leader.mesos\", zk = \"zk://10.0.0.1:2181/mesos\"}]",
        ),
    ])
    .expect("valid");
    let zk = c.mesos.expect("[mesos]").zk.expect("zk");
    assert_eq!(zk.to_string(), "zk://10.0.0.1:2181,10.0.0.2:2181/mesos");
    assert!(c.aliases[0].zk.is_some() && c.aliases[0].backends.is_empty());
}
