//! Log fields as an operator reads them: plain values, never Rust syntax (`Some(..)`,
//! `[..]`, `612.345678ms`). Fields use these with `%`; the `?` (Debug) sigil is not used in
//! log macros (a test below keeps it so).

use std::fmt::Display;
use std::time::Duration;

/// The value, or `none`.
pub fn or_none<T: Display>(value: Option<T>) -> String {
    value.map_or_else(|| "none".to_string(), |v| v.to_string())
}

/// The items joined by `, `, or `none`.
pub fn list<T: Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".to_string();
    }
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A duration to the millisecond, as the config writes them (`612ms`, `1s 250ms`).
pub fn duration(d: Duration) -> String {
    let ms = Duration::from_millis(d.as_millis() as u64);
    humantime::format_duration(ms).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn values_read_plainly() {
        let addr: SocketAddr = "127.0.0.1:34363".parse().unwrap();
        assert_eq!(or_none(Some(addr)), "127.0.0.1:34363");
        assert_eq!(or_none(None::<SocketAddr>), "none");
        assert_eq!(list(&[addr, addr]), "127.0.0.1:34363, 127.0.0.1:34363");
        assert_eq!(list::<SocketAddr>(&[]), "none");
        assert_eq!(duration(Duration::from_micros(612_345)), "612ms");
        assert_eq!(duration(Duration::from_millis(1250)), "1s 250ms");
        assert_eq!(duration(Duration::from_secs(10)), "10s");
    }

    /// No tracing macro in `src/` formats a field with `?` (Debug): that is how
    /// `from=Some(127.0.0.1:34363)` got into the logs.
    #[test]
    fn no_log_field_is_debug_formatted() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for call in debug_fields(&text) {
                        found.push(format!("{}: {call}", path.display()));
                    }
                }
            }
        }
        assert!(
            found.is_empty(),
            "Debug-formatted log fields:\n{}",
            found.join("\n")
        );
    }

    /// The tracing macro calls in `text` that have a `?field` or `name = ?value`.
    fn debug_fields(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for mac in ["trace!(", "debug!(", "info!(", "warn!(", "error!("] {
            let mut from = 0;
            while let Some(at) = text[from..].find(mac) {
                let start = from + at + mac.len();
                // The arguments with string literals blanked out, up to the closing paren.
                let (mut depth, mut in_str, mut escaped) = (1, false, false);
                let mut args = String::new();
                for c in text[start..].chars() {
                    if in_str {
                        match (escaped, c) {
                            (false, '\\') => escaped = true,
                            (false, '"') => in_str = false,
                            _ => escaped = false,
                        }
                        continue;
                    }
                    match c {
                        '"' => in_str = true,
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        break;
                    }
                    args.push(c);
                }
                let flat: String = args.split_whitespace().collect();
                let sigil = flat
                    .match_indices('?')
                    .any(|(i, _)| i == 0 || matches!(&flat[i - 1..i], "=" | ","));
                if sigil {
                    out.push(flat);
                }
                from = start;
            }
        }
        out
    }
}
