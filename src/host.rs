//! `HostName`: a virtual-host name normalized once, at construction (lowercase, no `:port`,
//! no trailing dot), so every comparison after that is a plain string compare. Shared by
//! the config (alias hosts), the catalog (vhost labels) and routing (the lookup key of a
//! request's Host), so none of them reaches into another for it.

use std::borrow::Cow;
use std::fmt;

/// A normalized host name as used for vhost routing. Shared, not copied: a route table
/// patch clones every vhost key of the table it starts from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(std::sync::Arc<str>);

/// Why a string is not a usable host name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostNameError {
    #[error("empty host name")]
    Empty,
    #[error("host name longer than 253 characters")]
    TooLong,
    #[error("label {0:?} is empty or longer than 63 characters")]
    BadLabel(String),
    #[error("character {0:?} is not allowed in a host name")]
    BadChar(char),
}

// === impl HostName ===

impl HostName {
    /// Parses a configured or labelled host name. A `:port` suffix and a trailing dot are
    /// dropped, letters are lowercased; anything but letters, digits, `-`, `_` and `.` is
    /// refused (bracketed IPv6 literals are accepted as they are).
    pub fn parse(raw: &str) -> Result<HostName, HostNameError> {
        let key = lookup_key(raw.trim());
        let name = key.as_ref();
        if name.is_empty() {
            return Err(HostNameError::Empty);
        }
        if name.len() > 253 {
            return Err(HostNameError::TooLong);
        }
        if name.starts_with('[') && name.ends_with(']') {
            return name[1..name.len() - 1]
                .parse::<std::net::Ipv6Addr>()
                .map(|_| HostName(name.into()))
                .map_err(|_| HostNameError::BadChar('['));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(HostNameError::BadChar(c));
        }
        if let Some(label) = name.split('.').find(|l| l.is_empty() || l.len() > 63) {
            return Err(HostNameError::BadLabel(label.to_string()));
        }
        Ok(HostName(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for HostName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The key a `Host` header value is looked up under: `:port` and a trailing dot removed,
/// lowercased. Borrows when the header is already in normal form (the common case), so the
/// request path does not allocate.
pub fn lookup_key(host: &str) -> Cow<'_, str> {
    let without_port = if host.starts_with('[') {
        // `[v6]` or `[v6]:port`
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.rfind(':') {
            Some(colon) => &host[..colon],
            None => host,
        }
    };
    let name = without_port.strip_suffix('.').unwrap_or(without_port);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_port_and_trailing_dot() {
        assert_eq!(
            HostName::parse("Shop.Example.COM").unwrap().as_str(),
            "shop.example.com"
        );
        assert_eq!(
            HostName::parse("shop.example.com:8080").unwrap().as_str(),
            "shop.example.com"
        );
        assert_eq!(
            HostName::parse("shop.example.com.").unwrap().as_str(),
            "shop.example.com"
        );
        assert_eq!(HostName::parse("[::1]:80").unwrap().as_str(), "[::1]");
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(HostName::parse(""), Err(HostNameError::Empty));
        assert_eq!(HostName::parse("a b"), Err(HostNameError::BadChar(' ')));
        assert!(matches!(
            HostName::parse("a..b"),
            Err(HostNameError::BadLabel(_))
        ));
        assert!(HostName::parse(&"a".repeat(64)).is_err());
    }

    #[test]
    fn lookup_key_borrows_normal_names() {
        assert!(matches!(
            lookup_key("web.example.com"),
            Cow::Borrowed("web.example.com")
        ));
        assert!(matches!(
            lookup_key("web.example.com:80"),
            Cow::Borrowed("web.example.com")
        ));
        assert_eq!(lookup_key("WEB.example.com"), "web.example.com");
    }
}
