//! The transport protocol of a service port: TCP (the default), UDP, or both on one port
//! number. Sources decode their scheduler's spelling with `Protocol::parse`; routing reads
//! `tcp()` and `udp()` to decide which listeners a service port gets.

use std::fmt;

/// Which listeners a service port gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// A TCP listener (and, with vhosts, HTTP routes). Marathon's default.
    #[default]
    Tcp,
    /// A UDP listener only: no TCP listener and no HTTP route.
    Udp,
    /// Both listeners on the same port number, sharing one pool.
    TcpUdp,
}

/// A protocol value no source knows; its Display is what the app's problem says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protocol = {0:?} (expected tcp, udp or udp,tcp)")]
pub struct UnknownProtocol(pub String);

// === impl Protocol ===

impl Protocol {
    /// Marathon's spelling (`portDefinitions[].protocol`, `portMappings[].protocol`):
    /// `tcp`, `udp`, or both comma-separated in either order; any case, spaces ignored.
    pub fn parse(raw: &str) -> Result<Protocol, UnknownProtocol> {
        let (mut tcp, mut udp) = (false, false);
        for part in raw.split(',') {
            match part.trim().to_ascii_lowercase().as_str() {
                "tcp" => tcp = true,
                "udp" => udp = true,
                _ => return Err(UnknownProtocol(raw.to_string())),
            }
        }
        Ok(match (tcp, udp) {
            (true, true) => Protocol::TcpUdp,
            (false, true) => Protocol::Udp,
            _ => Protocol::Tcp,
        })
    }

    /// The port gets a TCP listener (and HTTP routes).
    pub fn tcp(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::TcpUdp)
    }

    /// The port gets a UDP listener.
    pub fn udp(self) -> bool {
        matches!(self, Protocol::Udp | Protocol::TcpUdp)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::TcpUdp => "udp,tcp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marathon_spellings_parse() {
        for (raw, want) in [
            ("tcp", Protocol::Tcp),
            ("udp", Protocol::Udp),
            ("udp,tcp", Protocol::TcpUdp),
            ("tcp,udp", Protocol::TcpUdp),
            (" UDP , tcp ", Protocol::TcpUdp),
        ] {
            assert_eq!(Protocol::parse(raw), Ok(want), "{raw}");
        }
        for bad in ["", "sctp", "udp,", "udp;tcp"] {
            assert_eq!(
                Protocol::parse(bad),
                Err(UnknownProtocol(bad.to_string())),
                "{bad:?}"
            );
        }
        assert!(Protocol::TcpUdp.tcp() && Protocol::TcpUdp.udp());
        assert!(!Protocol::Udp.tcp() && !Protocol::Tcp.udp());
    }
}
