//! The docs stay true: every ```toml block of `README.md` and `docs/*.md` passes the real
//! `drover check`, and every relative link between those pages reaches a file (and, with a
//! `#anchor`, a heading of it).
//!
//! A block with `[[app]]` tables is a catalog file and is checked through a config that
//! names it; any other block is a config file. The files a config block names (catalog file,
//! password, secret and CA files, the certificate directory) are created beside it first, so
//! blocks name them by relative paths. A block that is only part of a file is marked with
//! `<!-- fragment -->` on the line before its fence and is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_drover");

/// Checked blocks there are at least; raise it when adding blocks, so a broken fence
/// finder cannot pass by finding nothing.
const MIN_CHECKED: usize = 16;

/// The line that marks the next fenced block as a fragment.
const FRAGMENT: &str = "<!-- fragment -->";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `README.md`, then `docs/*.md` sorted by name.
fn pages() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("read docs/")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    let mut pages = vec![root().join("README.md")];
    pages.extend(docs);
    pages
}

fn shown(page: &Path) -> String {
    page.strip_prefix(root())
        .unwrap_or(page)
        .display()
        .to_string()
}

/// One ```toml block: where its fence is (1-based line), whether it is marked as a
/// fragment, and its text with the fence's indentation removed.
#[derive(Debug)]
struct Block {
    line: usize,
    fragment: bool,
    text: String,
}

/// Every fenced block of `markdown` whose info string is `toml`.
fn toml_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines().enumerate();
    let mut previous = "";
    while let Some((i, line)) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            let indent = line.len() - trimmed.len();
            let mut text = String::new();
            let mut closed = false;
            for (_, inner) in lines.by_ref() {
                if inner.trim() == "```" {
                    closed = true;
                    break;
                }
                text.push_str(inner.get(indent..).unwrap_or(inner.trim_start()));
                text.push('\n');
            }
            assert!(closed, "line {}: a fence that never closes", i + 1);
            if info.trim() == "toml" {
                blocks.push(Block {
                    line: i + 1,
                    fragment: previous.trim() == FRAGMENT,
                    text,
                });
            }
            previous = "";
            continue;
        }
        previous = line;
    }
    blocks
}

/// A self-signed certificate and its key, in PEM: a CA file's content, and (both together)
/// a certificate file of the `[https] certs` directory.
struct Pem {
    cert: String,
    key: String,
}

fn pem() -> Pem {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("self-signed certificate");
    Pem {
        cert: made.cert.pem(),
        key: made.signing_key.serialize_pem(),
    }
}

/// The string at `section.key` of a config table, if any.
fn named<'a>(table: &'a toml::Table, section: &str, key: &str) -> Option<&'a str> {
    table.get(section)?.get(key)?.as_str()
}

/// Creates, under `dir`, every file `config` names that a check reads, unless it exists.
fn create_named_files(dir: &Path, config: &toml::Table, pem: &Pem) -> Result<(), String> {
    let files: [(&str, &str, String); 6] = [
        ("catalog", "file", String::new()),
        ("marathon", "password_file", "secret\n".into()),
        ("mesos", "secret_file", "secret\n".into()),
        ("marathon", "ca_file", pem.cert.clone()),
        ("mesos", "ca_file", pem.cert.clone()),
        ("https", "certs", format!("{}{}", pem.cert, pem.key)),
    ];
    for (section, key, content) in files {
        let Some(name) = named(config, section, key) else {
            continue;
        };
        if Path::new(name).is_absolute() {
            return Err(format!(
                "{section}.{key} = {name:?}: name it by a relative path, so the check can \
                 create it, or mark the block {FRAGMENT}"
            ));
        }
        let path = dir.join(name);
        let path = if section == "https" {
            // A directory of certificates.
            std::fs::create_dir_all(&path).map_err(|e| format!("create {name}: {e}"))?;
            path.join("default.pem")
        } else {
            path
        };
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("create {name}: {e}"))?;
        }
        std::fs::write(&path, content).map_err(|e| format!("write {name}: {e}"))?;
    }
    Ok(())
}

/// Runs `drover check` on a block: as the config file, or, for `[[app]]` tables, as the
/// catalog file of a minimal config. `Err` holds what went wrong.
fn check_block(text: &str, pem: &Pem) -> Result<(), String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("not valid TOML (mark a fragment {FRAGMENT}): {e}"))?;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("drover.toml");
    let write = |path: &Path, text: &str| std::fs::write(path, text).expect("write block");
    if table.contains_key("app") {
        write(&dir.path().join("services.toml"), text);
        write(&config, "[catalog]\nfile = \"services.toml\"\n");
    } else {
        write(&config, text);
        create_named_files(dir.path(), &table, pem)?;
    }
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .output()
        .expect("run drover check");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "drover check: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn every_toml_block_passes_drover_check() {
    let pem = pem();
    let mut checked = 0;
    let mut failures = Vec::new();
    for page in pages() {
        let markdown = std::fs::read_to_string(&page).expect("read page");
        for block in toml_blocks(&markdown) {
            if block.fragment {
                continue;
            }
            checked += 1;
            if let Err(e) = check_block(&block.text, &pem) {
                failures.push(format!("{}:{}: {e}", shown(&page), block.line));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        checked >= MIN_CHECKED,
        "only {checked} toml blocks checked, expected at least {MIN_CHECKED}"
    );
}

#[test]
fn a_broken_block_fails_the_check() {
    let pem = pem();
    for broken in [
        "[http]\nlisten = \"0.0.0.0:eighty\"\n",
        "[runtime]\nwokers = 1\n",
        "[catalog]\nfile = \"/etc/drover/services.toml\"\n",
        "[[app]]\nid = \"/a\"\nlabels = { HAPROXY_0_MODE = \"udp\" }\nports = [10001]\n",
        "[http\nlisten = \"0.0.0.0:80\"\n",
    ] {
        assert!(check_block(broken, &pem).is_err(), "passed:\n{broken}");
    }
    // The files a block names are made, so a good block passes.
    let good = "[https]\nlisten = \"127.0.0.1:8443\"\ncerts = \"certs\"\n\n\
                [marathon]\nurls = [\"https://127.0.0.1:8443\"]\nuser = \"drover\"\n\
                password_file = \"secrets/marathon.pass\"\nca_file = \"ca.pem\"\n";
    check_block(good, &pem).expect("a good block with the files it names");
}

#[test]
fn fences_and_fragment_marks_are_found() {
    let markdown = "text\n\n```toml\n[http]\n```\n\n<!-- fragment -->\n```toml\nlisten = 1\n```\n\
                    - a list item:\n\n  ```toml\n  [admin]\n  listen = \"127.0.0.1:9090\"\n  ```\n\
                    ```sh\n```toml inside sh is not a fence\n```\n";
    let blocks = toml_blocks(markdown);
    assert_eq!(blocks.len(), 3, "{blocks:?}");
    assert_eq!((blocks[0].line, blocks[0].fragment), (3, false));
    assert_eq!(blocks[0].text, "[http]\n");
    assert_eq!((blocks[1].line, blocks[1].fragment), (8, true));
    assert!(!blocks[2].fragment);
    assert_eq!(blocks[2].text, "[admin]\nlisten = \"127.0.0.1:9090\"\n");
}

// === links ===

/// GitHub's anchor for a heading: lowercase, punctuation dropped, spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The anchors of every heading of `markdown` outside fenced blocks; a repeated one gets
/// `-1`, `-2`, ... as on GitHub.
fn anchors(markdown: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in outside_fences(markdown) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let base = slug(heading.trim_start_matches('#').trim());
        let seen = out
            .iter()
            .filter(|a| {
                **a == base
                    || a.strip_prefix(&base)
                        .and_then(|rest| rest.strip_prefix('-'))
                        .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .count();
        out.push(if seen == 0 {
            base
        } else {
            format!("{base}-{seen}")
        });
    }
    out
}

/// The lines of `markdown` that are not inside a fenced block (nor a fence).
fn outside_fences(markdown: &str) -> Vec<&str> {
    let mut inside = false;
    markdown
        .lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                inside = !inside;
                return false;
            }
            !inside
        })
        .collect()
}

/// Every link target `](target)` of `markdown` outside fenced blocks.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in outside_fences(markdown) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                out.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    out
}

#[test]
fn relative_links_reach_their_page_and_heading() {
    let mut checked = 0;
    let mut broken = Vec::new();
    for page in pages() {
        let markdown = std::fs::read_to_string(&page).expect("read page");
        for target in link_targets(&markdown) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                page.clone()
            } else {
                page.parent().expect("a page's directory").join(file)
            };
            if !path.exists() {
                broken.push(format!("{}: {target}: no such file", shown(&page)));
                continue;
            }
            if let Some(anchor) = anchor {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if !anchors(&text).iter().any(|a| a == anchor) {
                    broken.push(format!("{}: {target}: no such heading", shown(&page)));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    assert!(checked >= 80, "only {checked} relative links found");
}

#[test]
fn the_readme_and_the_docs_index_link_every_page() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let index = std::fs::read_to_string(root().join("docs/README.md")).expect("docs/README.md");
    for page in pages().iter().skip(1) {
        let name = page.file_name().expect("a name").to_string_lossy();
        if name == "README.md" {
            continue;
        }
        assert!(
            readme.contains(&format!("](docs/{name})")),
            "README.md does not link docs/{name}"
        );
        assert!(
            index.contains(&format!("]({name})")),
            "docs/README.md does not list {name}"
        );
    }
}

#[test]
fn anchors_follow_github() {
    assert_eq!(slug("`[http]`: the HTTP router"), "http-the-http-router");
    assert_eq!(
        slug("PROXY protocol (behind a cloud load balancer)"),
        "proxy-protocol-behind-a-cloud-load-balancer"
    );
    assert_eq!(slug("`[[alias]]`: master aliases"), "alias-master-aliases");
    assert_eq!(
        anchors("# A\n## A\n```\n# not a heading\n```\n## A\n"),
        ["a", "a-1", "a-2"]
    );
}

/// Every metric the Grafana dashboard in `docs/` asks for is one Drover exports: a name
/// constant of `src/metrics.rs` or a family of a fresh registry's exposition (the process
/// collector's), with `_bucket`/`_count`/`_sum` taken as their histogram.
#[test]
fn the_grafana_dashboard_names_only_exported_metrics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("docs/grafana-dashboard.json")).expect("read");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let source = std::fs::read_to_string(root.join("src/metrics.rs")).expect("metrics.rs");
    let rendered = drover::metrics::Metrics::new(prometheus::Registry::new()).render();
    let exported: std::collections::BTreeSet<String> = metric_names(&source)
        .into_iter()
        .chain(metric_names(&rendered))
        .collect();
    let mut asked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for name in metric_names(expr) {
                asked += 1;
                let family = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|base| exported.contains(*base))
                    .unwrap_or(&name);
                assert!(
                    exported.contains(family),
                    "panel {:?} asks for {name}, which Drover does not export",
                    panel["title"]
                );
            }
        }
    }
    assert!(asked >= 20, "only {asked} metric names in the dashboard");
}

/// The `drover_...` words of `text`.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("drover_") {
        let word: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + word.len()..];
        names.push(word);
    }
    names
}
