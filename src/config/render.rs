//! The effective configuration as a TOML document: every section and every key with the
//! value in use, defaults filled in and relative paths resolved, in the order the
//! configuration reference lists them. A section that is off and a key without a value are
//! written as comments, so the document names every key there is. Read back with
//! `Config::parse`, it gives the same configuration, apart from the redacted values.
//!
//! Redacted: the paths of the Marathon password file and the Mesos secret file (their
//! contents are never read here). A path can tell where secrets live; like `/v1/config`,
//! nothing shows it.
//!
//! With the origins of `Config::load_layered`, each section and value is followed by where
//! it came from (`# file`, `# env DROVER_HTTP__LISTEN`, `# default`): `drover config`.
//!
//! Used by admin's `/_haproxy_getconfig` and `drover config`; it only formats, and reads
//! nothing but `Config` (and the origins).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use toml::Value;

use super::{
    AccessLogTarget, AliasConfig, Config, Groups, LeaderCheck, LogFormat, Origins, PortRange,
    UnderscoreHeaders,
};
use crate::cidr::Cidr;

/// What a redacted value reads as.
pub const REDACTED: &str = "<redacted>";

/// `config` as a TOML document (see the module doc).
pub fn render(config: &Config) -> String {
    render_doc(config, None)
}

/// `config` as a TOML document with each section's and value's origin after it.
pub fn render_with_origins(config: &Config, origins: &Origins) -> String {
    render_doc(config, Some(origins))
}

fn render_doc(config: &Config, origins: Option<&Origins>) -> String {
    let mut doc = Doc {
        out: String::new(),
        origins,
    };
    doc.out.push_str(
        "# Drover's effective configuration: every key with the value in use, defaults filled\n\
         # in, relative paths resolved, secret file paths redacted.\n",
    );
    if origins.is_some() {
        doc.out
            .push_str("# After each value, where it came from: file, env VARIABLE or default.\n");
    }
    doc.out.push('\n');
    match &config.http {
        Some(h) => doc.section(
            "[http]",
            "http",
            vec![
                ("listen", Some(string(h.listen))),
                ("appid_listen", h.appid_listen.map(string)),
                ("header_timeout", Some(duration(h.header_timeout))),
                ("connect_timeout", Some(duration(h.connect_timeout))),
                ("response_timeout", Some(duration(h.response_timeout))),
                ("max_header_bytes", Some(int(h.max_header_bytes))),
                ("body_timeout", Some(duration(h.body_timeout))),
                (
                    "underscore_headers",
                    Some(string(match h.underscore_headers {
                        UnderscoreHeaders::Pass => "pass",
                        UnderscoreHeaders::Drop => "drop",
                        UnderscoreHeaders::Reject => "reject",
                    })),
                ),
                ("max_connections", Some(int(h.max_connections))),
                ("proxy_protocol", Some(cidrs(&h.proxy_protocol))),
            ],
        ),
        None => doc.off("http"),
    }
    match &config.https {
        Some(h) => doc.section(
            "[https]",
            "https",
            vec![
                ("listen", Some(string(h.listen))),
                ("certs", Some(path(&h.certs))),
                ("proxy_protocol", Some(cidrs(&h.proxy_protocol))),
            ],
        ),
        None => doc.off("https"),
    }
    match &config.tcp {
        Some(t) => doc.section(
            "[tcp]",
            "tcp",
            vec![
                ("bind", Some(string(t.bind))),
                ("ports", Some(ports(t.ports))),
                ("connect_timeout", Some(duration(t.connect_timeout))),
                ("proxy_protocol", Some(cidrs(&t.proxy_protocol))),
                (
                    "send_proxy_protocol",
                    t.send_proxy_protocol.map(|v| string(format!("v{v}"))),
                ),
                ("max_connections", Some(int(t.max_connections))),
            ],
        ),
        None => doc.off("tcp"),
    }
    match &config.dns {
        Some(d) => doc.section(
            "[dns]",
            "dns",
            vec![
                ("listen", Some(string(d.listen))),
                ("domain", Some(string(&d.domain))),
                ("ttl", Some(duration(d.ttl))),
                ("forward", Some(list(&d.forward))),
                ("ip_sources", Some(list(&d.ip_sources))),
                ("labels", Some(string(&d.labels))),
                ("legacy_names", Some(Value::Boolean(d.legacy_names))),
                ("healthy_only", Some(Value::Boolean(d.healthy_only))),
            ],
        ),
        None => doc.off("dns"),
    }
    match &config.admin {
        Some(a) => doc.section("[admin]", "admin", vec![("listen", Some(string(a.listen)))]),
        None => doc.off("admin"),
    }
    match &config.marathon {
        Some(m) => doc.section(
            "[marathon]",
            "marathon",
            vec![
                ("urls", Some(list(&m.urls))),
                ("groups", Some(groups(&m.groups))),
                ("resync", Some(duration(m.resync))),
                ("idle_timeout", Some(duration(m.idle_timeout))),
                ("strict", Some(Value::Boolean(m.strict))),
                ("health_check", Some(Value::Boolean(m.health_check))),
                ("active_checks", Some(Value::Boolean(m.active_checks))),
                ("ip_per_task_ports", Some(ports(m.ip_per_task_ports))),
                ("user", m.user.as_ref().map(string)),
                (
                    "password_file",
                    m.password_file.as_ref().map(|_| redacted()),
                ),
                ("ca_file", m.ca_file.as_deref().map(path)),
            ],
        ),
        None => doc.off("marathon"),
    }
    match &config.mesos {
        Some(m) => doc.section(
            "[mesos]",
            "mesos",
            vec![
                ("masters", Some(list(&m.masters))),
                ("poll", Some(duration(m.poll))),
                ("principal", m.principal.as_ref().map(string)),
                ("secret_file", m.secret_file.as_ref().map(|_| redacted())),
                ("ca_file", m.ca_file.as_deref().map(path)),
                ("zk", m.zk.as_ref().map(string)),
                ("stream", Some(Value::Boolean(m.stream))),
            ],
        ),
        None => doc.off("mesos"),
    }
    match &config.catalog {
        Some(c) => doc.section(
            "[catalog]",
            "catalog",
            vec![
                ("file", Some(path(&c.file))),
                ("groups", Some(groups(&c.groups))),
            ],
        ),
        None => doc.off("catalog"),
    }
    match &config.access_log {
        Some(a) => doc.section(
            "[access_log]",
            "access_log",
            vec![
                (
                    "path",
                    Some(match &a.target {
                        AccessLogTarget::Stdout => string("-"),
                        AccessLogTarget::File(p) => path(p),
                    }),
                ),
                ("format", Some(string(a.format))),
            ],
        ),
        None => doc.off("access_log"),
    }
    doc.section(
        "[log]",
        "log",
        vec![
            (
                "format",
                Some(string(match config.log.format {
                    LogFormat::Text => "text",
                    LogFormat::Json => "json",
                })),
            ),
            ("level", config.log.level.as_ref().map(string)),
        ],
    );
    doc.section(
        "[runtime]",
        "runtime",
        vec![
            ("workers", Some(int(config.runtime.workers))),
            (
                "drain_timeout",
                Some(duration(config.runtime.drain_timeout)),
            ),
        ],
    );
    doc.section(
        "[ejection]",
        "ejection",
        vec![
            ("after", Some(int(config.ejection.after as usize))),
            ("base", Some(duration(config.ejection.base))),
            ("max", Some(duration(config.ejection.max))),
        ],
    );
    doc.section(
        "[udp]",
        "udp",
        vec![
            ("idle_timeout", Some(duration(config.udp.idle_timeout))),
            ("max_flows", Some(int(config.udp.max_flows))),
        ],
    );
    if config.aliases.is_empty() {
        doc.out.push_str("# [[alias]]: none\n");
    }
    for (i, alias) in config.aliases.iter().enumerate() {
        doc.section("[[alias]]", &format!("alias[{i}]"), alias_keys(alias));
    }
    // One newline at the end, whatever came last.
    let end = doc.out.trim_end().len();
    doc.out.truncate(end);
    doc.out.push('\n');
    doc.out
}

fn alias_keys(alias: &AliasConfig) -> Vec<(&'static str, Option<Value>)> {
    let check = match &alias.check {
        LeaderCheck::Mesos => string("mesos"),
        LeaderCheck::Marathon => string("marathon"),
        LeaderCheck::Http {
            path,
            expect_status,
            expect_body,
        } => {
            let mut t = toml::Table::new();
            t.insert("path".into(), string(path));
            t.insert("expect_status".into(), int(usize::from(*expect_status)));
            if let Some(body) = expect_body {
                t.insert("expect_body".into(), string(body));
            }
            Value::Table(t)
        }
    };
    vec![
        ("host", Some(string(&alias.host))),
        ("port", alias.port.map(|p| int(usize::from(p)))),
        ("backends", Some(list(&alias.backends))),
        // A zk alias without backends probes nothing, so it has no check to show.
        (
            "check",
            alias.zk.as_ref().is_none_or(|z| z.confirm).then_some(check),
        ),
        ("interval", Some(duration(alias.interval))),
        ("zk", alias.zk.as_ref().map(|z| string(&z.url))),
    ]
}

/// The document being written.
struct Doc<'a> {
    out: String,
    /// Where values came from, when they are to be shown.
    origins: Option<&'a Origins>,
}

impl Doc<'_> {
    /// `header` (`[name]` or `[[name]]`), then one `key = value` line per key with a value
    /// and a comment for each without; `path` is the section's key path (`http`,
    /// `alias[0]`).
    fn section(&mut self, header: &str, path: &str, keys: Vec<(&str, Option<Value>)>) {
        self.out.push_str(header);
        // Every alias comes from the one place that holds the list.
        let section = if header == "[[alias]]" { "alias" } else { path };
        self.origin(section);
        for (key, value) in keys {
            // `Value`'s Display writes the inline TOML form, quoting and escaping as needed.
            match value {
                Some(v) => {
                    let _ = write!(self.out, "{key} = {v}");
                    self.origin(&format!("{path}.{key}"));
                }
                None => {
                    let _ = writeln!(self.out, "# {key}: not set");
                }
            }
        }
        self.out.push('\n');
    }

    /// Ends a line, with the origin of `path` when origins are shown.
    fn origin(&mut self, path: &str) {
        if let Some(origins) = self.origins {
            let _ = write!(self.out, "  # {}", origins.get(path));
        }
        self.out.push('\n');
    }

    /// A section that is not in the configuration: its feature is off.
    fn off(&mut self, name: &str) {
        let _ = writeln!(self.out, "# [{name}]: not set (off)\n");
    }
}

fn string(v: impl std::fmt::Display) -> Value {
    Value::String(v.to_string())
}

fn int(n: usize) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// In the file's own notation (`"10s"`, `"1m 30s"`, `"150ms"`), which `Config::parse` reads.
fn duration(d: Duration) -> Value {
    string(humantime::format_duration(d))
}

fn path(p: &Path) -> Value {
    string(p.display())
}

fn ports(r: PortRange) -> Value {
    string(r)
}

fn list<T: std::fmt::Display>(items: &[T]) -> Value {
    Value::Array(items.iter().map(string).collect())
}

fn cidrs(items: &[Cidr]) -> Value {
    list(items)
}

fn groups(g: &Groups) -> Value {
    list(&g.0)
}

fn redacted() -> Value {
    string(REDACTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RICH: &str = r#"
[http]
listen = "127.0.0.1:8080"
appid_listen = "127.0.0.1:9091"
response_timeout = "1m 30s"
body_timeout = "150ms"
underscore_headers = "reject"
proxy_protocol = ["10.0.0.0/8", "fd00::/8"]

[https]
listen = "127.0.0.1:8443"
certs = "certs"

[tcp]
bind = "127.0.0.1"
ports = "10000-10100"
send_proxy_protocol = "v2"
max_connections = 100

[dns]
listen = "127.0.0.1:5353"
domain = "Mesos.Example"
forward = ["127.0.0.53", "9.9.9.9:5353"]
labels = "rfc952"
legacy_names = true
healthy_only = true

[admin]
listen = "127.0.0.1:9090"

[marathon]
urls = ["https://m1:8443", "https://m2:8443/"]
groups = ["external", "internal"]
resync = "5m"
strict = true
ip_per_task_ports = "10050-10060"
user = "drover"
password_file = "/etc/secret-place/marathon.pass"
ca_file = "ca/marathon.pem"

[mesos]
masters = ["http://10.0.0.1:5050"]
poll = "2s"
principal = "drover"
secret_file = "hidden/mesos.secret"
stream = false

[catalog]
file = "services.toml"

[access_log]
path = "logs/access.log"
format = "combined"

[log]
format = "json"
level = "debug,hyper=warn"

[runtime]
workers = 3

[ejection]
after = 0

[udp]
idle_timeout = "45s"
max_flows = 500

[[alias]]
host = "mesos.example.com"
port = 15050
backends = ["10.0.0.1:5050", "10.0.0.2:5050"]
check = "mesos"

[[alias]]
host = "custom.example.com"
backends = ["10.0.0.1:80"]
check = { path = "/leader \"quoted\"", expect_status = 204, expect_body = "yes" }
interval = "250ms"
"#;

    fn parse(text: &str, base: &str) -> Config {
        Config::parse(text, Path::new(base)).unwrap_or_else(|p| panic!("{p:?}\n{text}"))
    }

    #[test]
    fn a_rich_config_reads_back_equal_apart_from_the_redacted_paths() {
        let config = parse(RICH, "/etc/drover");
        let text = render(&config);
        let mut back = parse(&text, "/somewhere/else");
        let (Some(m), Some(back_m)) = (&config.marathon, &mut back.marathon) else {
            panic!("no [marathon]")
        };
        assert_eq!(
            back_m.password_file.as_deref(),
            Some(Path::new("/somewhere/else").join(REDACTED).as_path())
        );
        back_m.password_file = m.password_file.clone();
        let (Some(m), Some(back_m)) = (&config.mesos, &mut back.mesos) else {
            panic!("no [mesos]")
        };
        back_m.secret_file = m.secret_file.clone();
        assert_eq!(back, config, "{text}");
    }

    #[test]
    fn no_secret_path_is_shown() {
        let text = render(&parse(RICH, "/etc/drover"));
        for secret in ["secret-place", "marathon.pass", "hidden", "mesos.secret"] {
            assert!(!text.contains(secret), "{secret} in\n{text}");
        }
        assert!(text.contains("password_file = \"<redacted>\""), "{text}");
        assert!(text.contains("secret_file = \"<redacted>\""), "{text}");
        // Not secret: the user names and the CA file.
        assert!(text.contains("principal = \"drover\""), "{text}");
        assert!(
            text.contains("ca_file = \"/etc/drover/ca/marathon.pem\""),
            "{text}"
        );
    }

    #[test]
    fn defaults_are_written_out_and_absent_parts_named() {
        let config = parse("[http]\n", "/x");
        let text = render(&config);
        for line in [
            "[http]\nlisten = \"0.0.0.0:80\"\n# appid_listen: not set\nheader_timeout = \"10s\"\n",
            "response_timeout = \"1m\"\n",
            "max_header_bytes = 65536\n",
            "underscore_headers = \"pass\"\n",
            "proxy_protocol = []\n",
            "# [marathon]: not set (off)\n",
            "[log]\nformat = \"text\"\n# level: not set\n",
            "[ejection]\nafter = 5\nbase = \"10s\"\nmax = \"5m\"\n",
            "# [[alias]]: none\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        assert_eq!(parse(&text, "/y"), config, "{text}");
        assert!(text.ends_with("none\n"), "{text:?}");
    }

    #[test]
    fn every_shipped_config_reads_back_equal() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        for name in ["example.toml", "minimal.toml", "everything.toml"] {
            let config = Config::load(&dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
            let text = render(&config);
            let mut back = parse(&text, "/");
            // Only the redacted paths may differ.
            if let (Some(m), Some(b)) = (&config.marathon, &mut back.marathon) {
                b.password_file = m.password_file.clone();
            }
            if let (Some(m), Some(b)) = (&config.mesos, &mut back.mesos) {
                b.secret_file = m.secret_file.clone();
            }
            assert_eq!(back, config, "{name}:\n{text}");
        }
    }

    #[test]
    fn origins_follow_each_value_and_the_document_reads_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("drover.toml");
        std::fs::write(&file, "[http]\nheader_timeout = \"3s\"\n").expect("write");
        let env = super::super::Env::from_pairs(
            [
                ("DROVER_HTTP__LISTEN", "127.0.0.1:8080"),
                ("DROVER_MARATHON__URLS", "http://m:8080"),
                ("DROVER_MARATHON__PASSWORD_FILE", "/secret-place/pass"),
                ("DROVER_MARATHON__USER", "drover"),
            ],
            Path::new("/"),
        );
        let (config, origins) = Config::load_layered(Some(&file), &env).expect("valid");
        let text = render_with_origins(&config, &origins);
        for line in [
            "[http]  # file\nlisten = \"127.0.0.1:8080\"  # env DROVER_HTTP__LISTEN\n\
             # appid_listen: not set\nheader_timeout = \"3s\"  # file\n\
             connect_timeout = \"2s\"  # default\n",
            "[marathon]  # env DROVER_MARATHON__PASSWORD_FILE\n\
             urls = [\"http://m:8080\"]  # env DROVER_MARATHON__URLS\n",
            "password_file = \"<redacted>\"  # env DROVER_MARATHON__PASSWORD_FILE\n",
            "# [admin]: not set (off)\n",
            "[log]  # default\nformat = \"text\"  # default\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        assert!(!text.contains("secret-place"), "{text}");
        let mut back = parse(&text, "/");
        if let (Some(m), Some(b)) = (&config.marathon, &mut back.marathon) {
            b.password_file = m.password_file.clone();
        }
        assert_eq!(back, config, "{text}");
    }
}
