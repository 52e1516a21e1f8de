//! The fuzz corpora in a normal `cargo test` (stable): every file of `fuzz/corpus/<target>/`
//! and `fuzz/regressions/<target>/` goes through the same `drover::fuzzing` function the
//! cargo-fuzz target calls, so what the fuzzer found and what was fixed stays covered in CI.
//! See `fuzz/README.md`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// A `drover::fuzzing` entry point.
type Target = fn(&[u8]);

/// Every fuzz target, by the name of its `fuzz/fuzz_targets/<name>.rs`, and its entry point.
/// Adding a target is one line here.
const TARGETS: &[(&str, Target)] = &[
    ("proxy_protocol", drover::fuzzing::proxy_protocol),
    ("marathon_events", drover::fuzzing::marathon_events),
    ("marathon_apps", drover::fuzzing::marathon_apps),
    ("mesos_state", drover::fuzzing::mesos_state),
    ("mesos_stream", drover::fuzzing::mesos_stream),
    ("catalog_file", drover::fuzzing::catalog_file),
    ("http_guard", drover::fuzzing::http_guard),
    ("dns_packet", drover::fuzzing::dns_packet),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The names in `dir` (files without their extension, or subdirectories), sorted.
fn names(dir: &Path, extension: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| match extension {
            Some(ext) => p.extension().is_some_and(|e| e == ext),
            None => p.is_dir(),
        })
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_corpus_and_regression_file_replays_cleanly() {
    let mut failures = Vec::new();
    for &(name, run) in TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(name));
        // An empty or missing corpus would make this test pass while testing nothing.
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{name}/ is missing or empty: seed it (see fuzz/README.md)"
        );
        let regressions = files(&fuzz_dir().join("regressions").join(name));
        for file in corpus.iter().chain(&regressions) {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "fuzz inputs that panic (messages above):\n{}",
        failures.join("\n")
    );
}

/// A fuzz target, a corpus or a regression directory without a line in `TARGETS` would not
/// be replayed; this says so.
#[test]
fn every_fuzz_target_and_corpus_is_replayed() {
    let mut known: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    known.sort();
    assert_eq!(
        names(&fuzz_dir().join("fuzz_targets"), Some("rs")),
        known,
        "fuzz/fuzz_targets/ and TARGETS differ"
    );
    assert_eq!(
        names(&fuzz_dir().join("corpus"), None),
        known,
        "fuzz/corpus/ and TARGETS differ"
    );
    let regressions = fuzz_dir().join("regressions");
    if regressions.is_dir() {
        for name in names(&regressions, None) {
            assert!(
                known.contains(&name),
                "fuzz/regressions/{name}/ has no target"
            );
        }
    }
}
