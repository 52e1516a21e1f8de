//! Mesos-DNS naming helpers: the label sanitizer (RFC 1123 or RFC 952 rules), domain
//! fragments made of sanitized labels, and `hash5`, the short task-id hash in canonical
//! task names. Pure string functions; which names a zone gets is `dns::records`' job.
//!
//! The rules are Mesos-DNS's, byte for byte, so a cluster that moves over keeps its names.
//! That includes its refill after truncation: when the cut at the maximum length ends in
//! `-`, those dashes are dropped and the label is topped up from the text after the cut.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

use sha1::{Digest, Sha1};

/// A hash map keyed by zone names (or anything else small), hashed with `FastState`.
pub type FastMap<K, V> = HashMap<K, V, FastState>;

/// A multiply-fold hasher, seeded once per process: several times cheaper than SipHash on
/// the short names a zone holds, which dominated compiling and looking up. The keys come
/// from the cluster's own task and framework names; the random seed keeps collisions from
/// being precomputable anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastState(u64);

impl Default for FastState {
    fn default() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        FastState(*SEED.get_or_init(|| {
            std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1
        }))
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.0)
    }
}

/// `FastState`'s hasher.
#[derive(Debug, Clone, Copy)]
pub struct FastHasher(u64);

const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// The folded 128-bit product: every input bit reaches both halves of the result.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0 ^ bytes.len() as u64;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let word = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            h = fold(h ^ word, MIX);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            h = fold(h ^ u64::from_le_bytes(last), MIX);
        }
        self.0 = h;
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = fold(self.0 ^ n, MIX);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // One more round so the last word's bits reach hashbrown's top-7 control bits.
        fold(self.0, MIX ^ 0xff51_afd7_ed55_8ccd)
    }
}

/// Which host-name rules labels are cut to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LabelRules {
    /// RFC 1123 (the Mesos-DNS default): at most 63 characters, may start with a digit.
    #[default]
    Rfc1123,
    /// RFC 952 (Mesos-DNS `enforceRFC952`): at most 24 characters, starts with a letter.
    Rfc952,
}

// === impl LabelRules ===

impl LabelRules {
    /// The configuration spelling: `rfc1123` or `rfc952` (any case).
    pub fn from_name(name: &str) -> Option<LabelRules> {
        match name.to_ascii_lowercase().as_str() {
            "rfc1123" => Some(LabelRules::Rfc1123),
            "rfc952" => Some(LabelRules::Rfc952),
            _ => None,
        }
    }

    pub fn max_len(self) -> usize {
        match self {
            LabelRules::Rfc1123 => 63,
            LabelRules::Rfc952 => 24,
        }
    }

    /// Characters a label may not start with.
    fn bad_first(self, b: u8) -> bool {
        match self {
            LabelRules::Rfc1123 => b == b'-',
            LabelRules::Rfc952 => b == b'-' || b.is_ascii_digit(),
        }
    }
}

/// Turns any text into one DNS label: ASCII letters lowercased, letters and digits kept,
/// `-`, `.` and `_` become `-`, everything else dropped; then cut to the rules' length.
///
/// ```
/// use drover::dns::name::{label, LabelRules};
/// assert_eq!(label("liquor.store", LabelRules::Rfc952), "liquor-store");
/// assert_eq!(label("4abc123", LabelRules::Rfc952), "abc123");
/// assert_eq!(label("4abc123", LabelRules::Rfc1123), "4abc123");
/// ```
pub fn label(text: &str, rules: LabelRules) -> String {
    // Most names are labels already (every task of an app repeats its name): those are
    // copied as they are, which is what the full rules would make of them.
    let bytes = text.as_bytes();
    let is_label = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last))
            if bytes.len() <= rules.max_len()
                && !rules.bad_first(first)
                && last != b'-'
                && bytes.iter().all(is_label) =>
        {
            text.to_owned()
        }
        _ => sanitize(text, rules),
    }
}

/// `label` for any text: map, trim the front, cut, refill.
fn sanitize(text: &str, rules: LabelRules) -> String {
    let mapped: Vec<u8> = text
        .chars()
        .filter_map(|c| match c {
            'A'..='Z' => Some(c.to_ascii_lowercase() as u8),
            'a'..='z' | '0'..='9' => Some(c as u8),
            '-' | '.' | '_' => Some(b'-'),
            _ => None,
        })
        .collect();
    let start = mapped
        .iter()
        .position(|&b| !rules.bad_first(b))
        .unwrap_or(mapped.len());
    let body = &mapped[start..];

    let size = body.len().min(rules.max_len());
    let head_len = body[..size]
        .iter()
        .rposition(|&b| b != b'-')
        .map_or(0, |i| i + 1);
    let mut out = body[..head_len].to_vec();
    if head_len < size {
        // Dashes fell off the end of the cut: top up from what follows it, once, without
        // its leading dashes (what Mesos-DNS does; the top-up itself is not trimmed again).
        let rest = &body[size..];
        let rest = &rest[rest.iter().position(|&b| b != b'-').unwrap_or(rest.len())..];
        let room = size - head_len;
        out.extend_from_slice(&rest[..rest.len().min(room)]);
    }
    // Only ASCII letters, digits and `-` were kept.
    String::from_utf8(out).expect("ASCII")
}

/// Turns a dotted name (a framework name) into labels joined by `.`: each part between
/// dots is sanitized with `label`, and parts that come out empty are left out.
///
/// ```
/// use drover::dns::name::{domain_fragment, LabelRules};
/// assert_eq!(domain_fragment("(@ host . com", LabelRules::Rfc1123), "host.com");
/// ```
pub fn domain_fragment(text: &str, rules: LabelRules) -> String {
    let mut out = String::with_capacity(text.len());
    for part in text.split('.') {
        let l = label(part, rules);
        if l.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&l);
    }
    out
}

/// The z-base-32 alphabet (Zimmermann's human-oriented base 32).
const ZBASE32: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// z-base-32 of `bytes`: 5-bit groups from the most significant bit on, the last group
/// padded with zero bits, no padding characters.
pub fn zbase32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity((bytes.len() * 8).div_ceil(5));
    let mut acc: u16 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u16::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ZBASE32[usize::from((acc >> bits) & 0x1f)] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ZBASE32[usize::from((acc << (5 - bits)) & 0x1f)] as char);
    }
    out
}

/// The first five z-base-32 characters of SHA-1(`text`): the part of a canonical task name
/// (`{label}-{hash5(task id)}-{agent}`) that tells two tasks of one app apart.
pub fn hash5(text: &str) -> String {
    let digest = Sha1::digest(text.as_bytes());
    // 25 bits are needed; four bytes give 32.
    let mut s = zbase32(&digest[..4]);
    s.truncate(5);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;
    use LabelRules::{Rfc1123, Rfc952};

    proptest! {
        /// The copy-as-is path of `label` gives what the full rules give.
        #[test]
        fn label_shortcut_agrees_with_the_rules(text in "[a-z0-9._A-Z-]{0,70}|.{0,30}") {
            for rules in [Rfc1123, Rfc952] {
                prop_assert_eq!(label(&text, rules), sanitize(&text, rules));
            }
        }
    }

    #[test]
    fn label_shortcut_edges() {
        for text in [
            "a",
            "a-b",
            "9abc",
            "-a",
            "a-",
            "",
            &"x".repeat(24),
            &"x".repeat(25),
            &"y".repeat(64),
        ] {
            for rules in [Rfc1123, Rfc952] {
                assert_eq!(
                    label(text, rules),
                    sanitize(text, rules),
                    "{text} {rules:?}"
                );
            }
        }
    }

    /// EXPECTED.md §5.3 (mesos-dns `labels_test.go`): input, RFC 952 result, RFC 1123
    /// result (`None` where the upstream table has no value for that rule set).
    #[test]
    fn label_table() {
        let dashes = |n: usize| "-".repeat(n);
        let hello62 = format!("hello{}f", dashes(56));
        let hello64 = format!("hello{}f", dashes(58));
        let long63 = "fdgsf---gs7-fgs--d7fddg1234567890123456789012345678901234567891";
        let cases: Vec<(String, Option<&str>, Option<&str>)> = vec![
            ("".into(), Some(""), Some("")),
            ("-".into(), Some(""), Some("")),
            ("a".into(), Some("a"), Some("a")),
            ("a---".into(), Some("a"), Some("a")),
            ("---a---".into(), Some("a"), Some("a")),
            ("---a---b".into(), Some("a---b"), Some("a---b")),
            ("a.b.c.d.e".into(), Some("a-b-c-d-e"), Some("a-b-c-d-e")),
            ("a.c.d_de.".into(), Some("a-c-d-de"), Some("a-c-d-de")),
            ("abc123".into(), Some("abc123"), Some("abc123")),
            ("-abc123".into(), Some("abc123"), Some("abc123")),
            ("abc123-".into(), Some("abc123"), Some("abc123")),
            ("abc-123".into(), Some("abc-123"), Some("abc-123")),
            ("abc--123".into(), Some("abc--123"), Some("abc--123")),
            (
                "r29f.dev.angrypigs".into(),
                Some("r29f-dev-angrypigs"),
                Some("r29f-dev-angrypigs"),
            ),
            ("4abc123".into(), Some("abc123"), Some("4abc123")),
            ("-4abc123".into(), Some("abc123"), Some("4abc123")),
            (
                "fd%gsf---gs7-f$gs--d7fddg-123".into(),
                Some("fdgsf---gs7-fgs--d7fddg1"),
                Some("fdgsf---gs7-fgs--d7fddg-123"),
            ),
            (
                "89fdgsf---gs7-fgs--d7fddg-123".into(),
                Some("fdgsf---gs7-fgs--d7fddg1"),
                Some("89fdgsf---gs7-fgs--d7fddg-123"),
            ),
            (
                "89fdgsf---gs7-fgs--d7fddg---123".into(),
                Some("fdgsf---gs7-fgs--d7fddg1"),
                Some("89fdgsf---gs7-fgs--d7fddg---123"),
            ),
            (
                "89fdgsf---gs7-fgs--d7fddg-".into(),
                Some("fdgsf---gs7-fgs--d7fddg"),
                Some("89fdgsf---gs7-fgs--d7fddg"),
            ),
            (
                "chronos with a space AND MIXED CASE-2.0.1".into(),
                Some("chronoswithaspaceandmixe"),
                Some("chronoswithaspaceandmixedcase-2-0-1"),
            ),
            (
                "chronos with a space AND----------MIXED--".into(),
                Some("chronoswithaspaceandmixe"),
                None,
            ),
            (hello62.clone(), Some("hellof"), Some(hello62.as_str())),
            (hello64, Some("hellof"), Some("hellof")),
            (
                "fd%gsf---gs7-f$gs--d7fddg123456789012345678901234567890123456789-123".into(),
                None,
                Some(long63),
            ),
            (
                "$$fdgsf---gs7-fgs--d7fddg123456789012345678901234567890123456789-123".into(),
                None,
                Some(long63),
            ),
            (
                "%%fdgsf---gs7-fgs--d7fddg123456789012345678901234567890123456789---123".into(),
                None,
                Some(long63),
            ),
            (
                "##fdgsf---gs7-fgs--d7fddg123456789012345678901234567890123456789-".into(),
                None,
                Some("fdgsf---gs7-fgs--d7fddg123456789012345678901234567890123456789"),
            ),
        ];
        for (input, rfc952, rfc1123) in &cases {
            if let Some(want) = rfc952 {
                assert_eq!(label(input, Rfc952), *want, "RFC 952 of {input:?}");
            }
            if let Some(want) = rfc1123 {
                assert_eq!(label(input, Rfc1123), *want, "RFC 1123 of {input:?}");
            }
        }
    }

    /// EXPECTED.md §5.3, domain fragments.
    #[test]
    fn domain_fragment_table() {
        let both = [
            ("", ""),
            (".", ""),
            ("..", ""),
            ("...", ""),
            ("abc.", "abc"),
            (".abc", "abc"),
            ("a..c", "a.c"),
            ("a..c.e", "a.c.e"),
            ("a.c..e", "a.c.e"),
            ("space space.com", "spacespace.com"),
            ("not$1234.com", "not1234.com"),
            ("(@ host . com", "host.com"),
            ("MiXeDcase.CoM", "mixedcase.com"),
        ];
        for (input, want) in both {
            assert_eq!(domain_fragment(input, Rfc952), want, "RFC 952 of {input:?}");
            assert_eq!(
                domain_fragment(input, Rfc1123),
                want,
                "RFC 1123 of {input:?}"
            );
        }
        let pod = "pod_123$abc.marathon-0.6.0-dev.mesos";
        assert_eq!(
            domain_fragment(pod, Rfc952),
            "pod-123abc.marathon-0.dev.mesos"
        );
        assert_eq!(
            domain_fragment(pod, Rfc1123),
            "pod-123abc.marathon-0.6.0-dev.mesos"
        );
        let chronos = "chronos with a space AND MIXED CASE-2.0.1";
        assert_eq!(domain_fragment(chronos, Rfc952), "chronoswithaspaceandmixe");
        assert_eq!(
            domain_fragment(chronos, Rfc1123),
            "chronoswithaspaceandmixedcase-2.0.1"
        );
    }

    /// The upstream quick-check properties, over a spread of awkward inputs.
    #[test]
    fn label_properties() {
        let inputs = [
            "",
            "-",
            "9",
            "99-a",
            "ÄÖÜ-straße",
            "a b\tc\n",
            "__init__",
            "x.y_z-",
            "--9x",
        ];
        let long: Vec<String> = (0..100)
            .map(|n| {
                format!(
                    "{}{}a{}",
                    "9-".repeat(n % 7),
                    "ab-".repeat(n),
                    "-".repeat(n)
                )
            })
            .collect();
        for input in inputs
            .iter()
            .copied()
            .chain(long.iter().map(String::as_str))
        {
            for rules in [Rfc952, Rfc1123] {
                let l = label(input, rules);
                assert!(l.len() <= rules.max_len(), "{input:?} -> {l:?}");
                assert!(
                    l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                    "{input:?} -> {l:?}"
                );
                if let Some(&first) = l.as_bytes().first() {
                    assert!(!rules.bad_first(first), "{input:?} -> {l:?}");
                }
            }
        }
    }

    #[test]
    fn rules_by_name() {
        assert_eq!(LabelRules::from_name("rfc952"), Some(Rfc952));
        assert_eq!(LabelRules::from_name("RFC1123"), Some(Rfc1123));
        assert_eq!(LabelRules::from_name("rfc2181"), None);
    }

    /// Known z-base-32 values (the spec's examples) and the hashes of the fixture's task
    /// ids (EXPECTED.md §1).
    #[test]
    fn hash_table() {
        assert_eq!(zbase32(&[]), "");
        assert_eq!(zbase32(&[0]), "yy");
        assert_eq!(zbase32(&[0xf0, 0xbf, 0xc7]), "6n9hq");
        assert_eq!(zbase32(&[0xd4, 0x7a, 0x04]), "4t7ye");
        assert_eq!(hash5("test"), "iffe9");
        for (task_id, want) in [
            ("liquor-store.b8db9f73-562f-11e4-a088-c20493233aa5", "4dfjd"),
            ("liquor-store.b71166c1-562f-11e4-a088-c20493233aa5", "zasmd"),
            ("car-store.43758382-562f-11e4-a088-c20493233aa5", "zinaz"),
            ("chronos.49b91a9a-3dda-11e4-a088-c20493233aa5", "rx8q6"),
            ("nginx.1bc32344-3dda-11e4-a088-c20493233aa5", "6ud99"),
            ("reviewbot.8c9b3434-615a-11e4-a088-c20493233aa5", "8sq89"),
            ("some-box.b8db9f73-562f-11e4-a088-c20493233aa5", "h3dyr"),
            ("toy-store.b8db9f73-562f-11e4-a088-c20493233aa5", "go588"),
        ] {
            assert_eq!(hash5(task_id), want, "hash5({task_id:?})");
        }
    }
}
