//! IP networks (`10.0.0.0/8`, `fd00::/8`, a bare address): the trusted peers of a PROXY
//! protocol listener and the source ACLs of services (`HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP network.
/// Host bits below the prefix are cleared on parsing (`10.1.2.3/8` is `10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

/// A string that is neither `ADDRESS/PREFIX` nor a bare IP address.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid CIDR {0:?}: expected ADDRESS/PREFIX (e.g. 10.0.0.0/8, fd00::/8) or a bare IP address"
)]
pub struct CidrParseError(String);

impl Cidr {
    /// `None` when `prefix_len` is longer than the address (32 or 128 bits).
    pub fn new(addr: IpAddr, prefix_len: u8) -> Option<Cidr> {
        let network = match addr {
            IpAddr::V4(a) if prefix_len <= 32 => IpAddr::V4(mask_v4(a, prefix_len)),
            IpAddr::V6(a) if prefix_len <= 128 => IpAddr::V6(mask_v6(a, prefix_len)),
            _ => return None,
        };
        Some(Cidr {
            network,
            prefix_len,
        })
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` is inside. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) match IPv4
    /// networks, and IPv4 addresses match IPv6 networks through their mapped form.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match self.network {
            IpAddr::V4(net) => match ip.to_canonical() {
                IpAddr::V4(a) => mask_v4(a, self.prefix_len) == net,
                IpAddr::V6(_) => false,
            },
            IpAddr::V6(net) => mask_v6(as_v6(ip), self.prefix_len) == net,
        }
    }
}

/// Whether `peer` is inside any of `trusted`.
pub fn is_trusted(trusted: &[Cidr], peer: IpAddr) -> bool {
    trusted.iter().any(|cidr| cidr.contains(peer))
}

fn mask_v4(addr: Ipv4Addr, prefix_len: u8) -> Ipv4Addr {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0);
    Ipv4Addr::from(u32::from(addr) & mask)
}

fn mask_v6(addr: Ipv6Addr, prefix_len: u8) -> Ipv6Addr {
    let mask = u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0);
    Ipv6Addr::from(u128::from(addr) & mask)
}

impl FromStr for Cidr {
    type Err = CidrParseError;

    fn from_str(s: &str) -> Result<Cidr, CidrParseError> {
        let err = || CidrParseError(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr = IpAddr::from_str(addr).map_err(|_| err())?;
        let prefix_len = match prefix {
            None if addr.is_ipv4() => 32,
            None => 128,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| err())?
            }
            Some(_) => return Err(err()),
        };
        Cidr::new(addr, prefix_len).ok_or_else(err)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// `ip` as IPv6 (IPv4 as its mapped form).
pub fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = |s: &str| s.parse::<Cidr>().unwrap_or_else(|e| panic!("{e}"));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(c("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!c("10.0.0.0/8").contains(ip("11.0.0.0")));
        assert!(
            c("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")),
            "mapped peer"
        );
        assert!(
            !c("10.0.0.0/8").contains(ip("::a01:203")),
            "compatible, not mapped"
        );
        assert!(!c("10.0.0.0/8").contains(ip("2001:db8::1")));
        assert!(c("0.0.0.0/0").contains(ip("1.2.3.4")));
        assert!(c("0.0.0.0/0").contains(ip("::ffff:1.2.3.4")));
        assert!(!c("0.0.0.0/0").contains(ip("::1")));
        assert!(c("::/0").contains(ip("::1")));
        assert!(c("::/0").contains(ip("1.2.3.4")));
        assert!(c("::1/128").contains(ip("::1")));
        assert!(!c("::1/128").contains(ip("::2")));
        assert!(c("::1").contains(ip("::1")));
        assert!(!c("::1").contains(ip("127.0.0.1")));
        assert!(c("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!c("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(c("192.168.1.0/23").contains(ip("192.168.0.200")));
        assert!(!c("192.168.1.0/23").contains(ip("192.168.2.0")));
        assert!(c("fd00::/8").contains(ip("fdff::1")));
        assert!(!c("fd00::/8").contains(ip("fe00::1")));
        assert!(
            c("::ffff:10.0.0.0/104").contains(ip("10.9.9.9")),
            "v4 peer, mapped v6 CIDR"
        );
        assert_eq!(c("10.1.2.3/8"), c("10.0.0.0/8"));
        assert_eq!(c("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(c("2001:db8::1").to_string(), "2001:db8::1/128");
        assert_eq!(c("1.2.3.4").prefix_len(), 32);
        assert_eq!(c("1.2.3.4/32").network(), ip("1.2.3.4"));
        for bad in [
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "10.0.0.0/8/8",
            "10.0.0/8",
            "example.com",
            " 10.0.0.0/8",
            "10.0.0.0/0008",
            "[::1]/128",
        ] {
            assert_eq!(
                bad.parse::<Cidr>(),
                Err(CidrParseError(bad.to_string())),
                "{bad:?}"
            );
        }
        assert_eq!(c("10.0.0.0/008").prefix_len(), 8);
        let trusted = [c("10.0.0.0/8"), c("::1")];
        assert!(is_trusted(&trusted, ip("10.0.0.1")));
        assert!(is_trusted(&trusted, ip("::1")));
        assert!(!is_trusted(&trusted, ip("192.168.0.1")));
        assert!(!is_trusted(&[], ip("10.0.0.1")));
    }
}
