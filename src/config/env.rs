//! The `DROVER_*` environment as configuration: `DROVER_<SECTION>__<KEY>` sets one key of
//! one section, over the config file's value if it has one. The overlay only builds the
//! TOML table that `Config::parse` checks; the checks and their messages are the file's,
//! with the variable named instead of the key path (`DROVER_MARATHON__URLS[0] = "x": ...`).
//!
//! A value is read as the key's type asks: a string as written (TOML quotes around it are
//! taken off), a path relative to the working directory, an integer or a boolean as TOML
//! (`1`/`0` too), a list either comma-separated (`a,b`) or as a TOML array (`["a","b"]`).
//! `DROVER_ALIAS` is the whole `[[alias]]` list as a TOML array of inline tables.
//! Variables without the double underscore (`DROVER_BIN`, the bench scripts' own) are not
//! configuration and are left alone; one that looks meant as configuration gets a note.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use toml::Value;

use super::Problem;

/// What every configuration variable starts with.
pub const PREFIX: &str = "DROVER_";

/// The one variable without a key: the `[[alias]]` list.
pub const ALIAS: &str = "DROVER_ALIAS";

/// The `DROVER_*` variables of a process, read once, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    /// Name and value (`None`: not UTF-8).
    vars: Vec<(String, Option<String>)>,
    /// Where relative paths in values start from.
    cwd: PathBuf,
}

/// Where one value of the effective configuration came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Origin {
    #[default]
    Default,
    File,
    /// The variable's name (never its value).
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File => f.write_str("file"),
            Origin::Env(name) => write!(f, "env {name}"),
        }
    }
}

/// The origin of each key path (`http.listen`, `alias[0].host`) and section (`http`) that
/// was set; everything else is a default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins(BTreeMap<String, Origin>);

/// The type a key's raw value has in `config::file`, which says how a variable is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Str,
    /// A string naming a file; relative to the working directory.
    Filename,
    Int,
    Bool,
    /// A list of strings.
    List,
}

use Kind::*;

/// Every key of every table section and its kind, as `config::file` declares them (a test
/// holds the two together).
pub(super) const KEYS: &[(&str, &[(&str, Kind)])] = &[
    (
        "http",
        &[
            ("listen", Str),
            ("appid_listen", Str),
            ("header_timeout", Str),
            ("connect_timeout", Str),
            ("response_timeout", Str),
            ("max_header_bytes", Int),
            ("body_timeout", Str),
            ("underscore_headers", Str),
            ("max_connections", Int),
            ("proxy_protocol", List),
        ],
    ),
    (
        "https",
        &[
            ("listen", Str),
            ("certs", Filename),
            ("proxy_protocol", List),
        ],
    ),
    (
        "tcp",
        &[
            ("bind", Str),
            ("ports", Str),
            ("connect_timeout", Str),
            ("proxy_protocol", List),
            ("send_proxy_protocol", Str),
            ("max_connections", Int),
        ],
    ),
    (
        "dns",
        &[
            ("listen", Str),
            ("domain", Str),
            ("ttl", Str),
            ("forward", List),
            ("ip_sources", List),
            ("labels", Str),
            ("legacy_names", Bool),
            ("healthy_only", Bool),
        ],
    ),
    ("admin", &[("listen", Str)]),
    (
        "marathon",
        &[
            ("urls", List),
            ("groups", List),
            ("resync", Str),
            ("idle_timeout", Str),
            ("strict", Bool),
            ("health_check", Bool),
            ("active_checks", Bool),
            ("ip_per_task_ports", Str),
            ("user", Str),
            ("password_file", Filename),
            ("ca_file", Filename),
        ],
    ),
    (
        "mesos",
        &[
            ("masters", List),
            ("poll", Str),
            ("principal", Str),
            ("secret_file", Filename),
            ("ca_file", Filename),
            ("zk", Str),
            ("stream", Bool),
        ],
    ),
    ("catalog", &[("file", Filename), ("groups", List)]),
    ("access_log", &[("path", Filename), ("format", Str)]),
    ("log", &[("format", Str), ("level", Str)]),
    ("runtime", &[("workers", Int), ("drain_timeout", Str)]),
    ("ejection", &[("after", Int), ("base", Str), ("max", Str)]),
    ("udp", &[("idle_timeout", Str), ("max_flows", Int)]),
];

// === impl Env ===

impl Env {
    /// This process's `DROVER_*` variables; relative paths start from its working directory.
    pub fn from_process() -> Env {
        let vars = std::env::vars_os()
            .filter_map(|(name, value)| {
                let name = name.into_string().ok()?;
                name.starts_with(PREFIX)
                    .then(|| (name, value.into_string().ok()))
            })
            .collect();
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        Env::new(vars, cwd)
    }

    /// Given variables (the ones not starting with `DROVER_` are dropped), for tests and
    /// embedders.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>, cwd: &Path) -> Env {
        let vars = pairs
            .into_iter()
            .filter(|(name, _)| name.starts_with(PREFIX))
            .map(|(name, value)| (name.to_string(), Some(value.to_string())))
            .collect();
        Env::new(vars, cwd.to_path_buf())
    }

    fn new(mut vars: Vec<(String, Option<String>)>, cwd: PathBuf) -> Env {
        vars.sort();
        Env { vars, cwd }
    }

    /// Where relative paths in values start from.
    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    /// The names of the variables read as configuration.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| is_config(name))
    }

    /// No variable is read as configuration.
    pub fn is_empty(&self) -> bool {
        self.names().next().is_none()
    }

    /// A line for each `DROVER_*` variable that is not read but looks meant as
    /// configuration: a section name with one underscore, or none, before the key.
    pub fn notes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, _) in &self.vars {
            if is_config(name) {
                continue;
            }
            let rest = name[PREFIX.len()..].to_ascii_lowercase();
            let section = KEYS.iter().map(|(s, _)| *s).find(|s| {
                rest == *s
                    || rest
                        .strip_prefix(s)
                        .is_some_and(|r| r.starts_with('_') && !r.starts_with("__"))
            });
            if let Some(section) = section {
                let key = rest[section.len()..].trim_start_matches('_');
                let example = if key.is_empty() { "KEY" } else { key };
                out.push(format!(
                    "{name} is not read as configuration: a key is set as \
                     DROVER_<SECTION>__<KEY>, two underscores (e.g. DROVER_{}__{})",
                    section.to_ascii_uppercase(),
                    example.to_ascii_uppercase()
                ));
            }
        }
        out
    }
}

/// `DROVER_<SECTION>__<KEY>` or `DROVER_ALIAS`.
fn is_config(name: &str) -> bool {
    name == ALIAS || name.get(PREFIX.len()..).is_some_and(|r| r.contains("__"))
}

// === impl Origins ===

impl Origins {
    /// Where the value at `path` came from.
    pub fn get(&self, path: &str) -> &Origin {
        static DEFAULT: Origin = Origin::Default;
        self.0.get(path).unwrap_or(&DEFAULT)
    }

    /// Every section and key the file's table holds.
    pub(super) fn of_file(table: &toml::Table) -> Origins {
        let mut o = Origins::default();
        for (section, value) in table {
            o.0.insert(section.clone(), Origin::File);
            o.insert_keys(section, value, &Origin::File);
        }
        o
    }

    /// The keys under `section` (a table, or the `alias` array of tables).
    fn insert_keys(&mut self, section: &str, value: &Value, origin: &Origin) {
        match value {
            Value::Table(t) => {
                for key in t.keys() {
                    self.0.insert(format!("{section}.{key}"), origin.clone());
                }
            }
            Value::Array(items) if section == "alias" => {
                for (i, item) in items.iter().enumerate() {
                    self.insert_keys(&format!("alias[{i}]"), item, origin);
                }
            }
            _ => {}
        }
    }
}

/// What overlaying the environment did: where values came from, the variables that name no
/// key, and which key paths each variable set (to name it in the checks' problems).
#[derive(Debug, Default)]
pub(super) struct Overlay {
    pub(super) origins: Origins,
    pub(super) problems: Vec<Problem>,
    /// Key path (`http.listen`, `alias`) -> the variable that set it.
    set: BTreeMap<String, String>,
    /// Sections only the environment has -> the first variable that made it.
    made: BTreeMap<String, String>,
}

/// Sets each configuration variable of `env` in `table` (the file's, or empty).
pub(super) fn overlay(table: &mut toml::Table, env: &Env) -> Overlay {
    let mut o = Overlay {
        origins: Origins::of_file(table),
        ..Overlay::default()
    };
    for (name, value) in &env.vars {
        if !is_config(name) {
            continue;
        }
        let problem = |message: String| Problem {
            path: name.clone(),
            value: String::new(),
            message,
        };
        let Some(raw) = value else {
            o.problems.push(problem("not valid UTF-8".into()));
            continue;
        };
        if name == ALIAS {
            let value = toml_value(raw).unwrap_or_else(|| Value::String(raw.clone()));
            o.origins.0.retain(|path, _| !path.starts_with("alias["));
            o.origins
                .0
                .insert("alias".into(), Origin::Env(name.clone()));
            o.origins
                .insert_keys("alias", &value, &Origin::Env(name.clone()));
            o.set.insert("alias".into(), name.clone());
            table.insert("alias".into(), value);
            continue;
        }
        let (section, key) = name[PREFIX.len()..]
            .split_once("__")
            .map(|(s, k)| (s.to_ascii_lowercase(), k.to_ascii_lowercase()))
            .unwrap_or_default();
        if section.is_empty() || key.is_empty() {
            o.problems
                .push(problem("expected DROVER_<SECTION>__<KEY>".into()));
            continue;
        }
        if section == "alias" {
            o.problems.push(problem(format!(
                "[[alias]] is a list of tables: set it whole as {ALIAS}, a TOML array of \
                 inline tables (e.g. {ALIAS}='[{{host = \"leader.mesos\", backends = \
                 [\"10.0.0.1:5050\"], check = \"mesos\"}}]')"
            )));
            continue;
        }
        let path = format!("{section}.{key}");
        if let Some(other) = o.set.get(&path) {
            o.problems
                .push(problem(format!("{other} sets the same key")));
            continue;
        }
        let kind = KEYS
            .iter()
            .find(|(s, _)| *s == section)
            .and_then(|(_, keys)| keys.iter().find(|(k, _)| *k == key))
            .map(|(_, kind)| *kind);
        let value = read(kind, raw, &env.cwd);
        if !table.contains_key(&section) {
            table.insert(section.clone(), Value::Table(toml::Table::new()));
            o.made.insert(section.clone(), name.clone());
            o.origins
                .0
                .insert(section.clone(), Origin::Env(name.clone()));
        }
        // A file section that is not a table is the file's problem, reported by the checks.
        if let Some(Value::Table(t)) = table.get_mut(&section) {
            t.insert(key, value);
            o.origins.0.insert(path.clone(), Origin::Env(name.clone()));
            o.set.insert(path, name.clone());
        }
    }
    o
}

impl Overlay {
    /// Names the variable in each problem about a value it set: `marathon.urls[1]` becomes
    /// `DROVER_MARATHON__URLS[1]`, an unknown section only the environment has becomes the
    /// variable that made it.
    pub(super) fn name_variables(&self, problems: &mut [Problem]) {
        for p in problems {
            if let Some(name) = self.made.get(&p.path) {
                p.path = name.clone();
                continue;
            }
            let set = self.set.iter().find(|(key, _)| {
                p.path
                    .strip_prefix(key.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
            });
            if let Some((key, name)) = set {
                p.path = format!("{name}{}", &p.path[key.len()..]);
            }
        }
    }
}

/// A variable's value as the key's kind asks; a key we do not know (`None`) reads as any
/// TOML value, else a string, and the checks report it as unknown.
fn read(kind: Option<Kind>, raw: &str, cwd: &Path) -> Value {
    let string = || Value::String(unquote(raw).unwrap_or_else(|| raw.to_string()));
    match kind {
        Some(Str) => string(),
        Some(Filename) => {
            let s = unquote(raw).unwrap_or_else(|| raw.to_string());
            // Empty is the checks' problem; "-" is the access log's stdout.
            if s.is_empty() || s == "-" || Path::new(&s).is_absolute() {
                Value::String(s)
            } else {
                Value::String(cwd.join(s).display().to_string())
            }
        }
        Some(Int) => match toml_value(raw) {
            Some(v @ Value::Integer(_)) => v,
            // A string where a number belongs: the checks say so.
            _ => string(),
        },
        Some(Bool) => match raw.trim() {
            "true" | "1" => Value::Boolean(true),
            "false" | "0" => Value::Boolean(false),
            _ => string(),
        },
        Some(List) if raw.trim_start().starts_with('[') => toml_value(raw).unwrap_or_else(string),
        Some(List) => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_string()))
                .collect(),
        ),
        None => toml_value(raw).unwrap_or_else(string),
    }
}

/// `raw` as one TOML value (`5`, `true`, `["a"]`, `{ a = 1 }`, `"quoted"`), if it is one.
fn toml_value(raw: &str) -> Option<Value> {
    let mut table: toml::Table = format!("v = {raw}").parse().ok()?;
    if table.len() != 1 {
        return None;
    }
    table.remove("v")
}

/// The string inside TOML quotes (`"a"`, `'a'`), if `raw` is one.
fn unquote(raw: &str) -> Option<String> {
    let t = raw.trim();
    if !(t.starts_with('"') || t.starts_with('\'')) {
        return None;
    }
    match toml_value(t)? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
