//! Addresses of the seat network, as pure functions: the per-agent seat subnet cut into one /30
//! per seat (host side `.1`, seat side `.2`), the stable names derived from a slot (veth, netns),
//! and the ranges a seat may never reach whatever DNS says.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The agent's seat subnet, e.g. `10.214.0.0/16`: slot `n` is the /30 at `base + 4n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeatSubnet {
    base: u32,
    prefix: u8,
}

/// A `--seat-subnet` that does not parse or cannot hold one /30.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid seat subnet {0:?}: expected a.b.c.d/prefix with a prefix of 8 to 30")]
pub struct SeatSubnetError(pub String);

impl SeatSubnet {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, SeatSubnetError> {
        if !(8..=30).contains(&prefix) {
            return Err(SeatSubnetError(format!("{addr}/{prefix}")));
        }
        let mask = u32::MAX << (32 - u32::from(prefix));
        Ok(Self {
            base: u32::from(addr) & mask,
            prefix,
        })
    }

    /// How many seats fit (one /30 each).
    pub fn slots(&self) -> u32 {
        1u32 << (30 - u32::from(self.prefix))
    }

    /// The addresses of slot `n`, or None past the end.
    pub fn slot(&self, n: u32) -> Option<SlotAddrs> {
        (n < self.slots()).then(|| {
            let net = self.base + 4 * n;
            SlotAddrs {
                host: Ipv4Addr::from(net + 1),
                seat: Ipv4Addr::from(net + 2),
            }
        })
    }

    /// True when `ip` lies in this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - u32::from(self.prefix));
        u32::from(ip) & mask == self.base
    }
}

impl std::fmt::Display for SeatSubnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

impl FromStr for SeatSubnet {
    type Err = SeatSubnetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SeatSubnetError(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        Self::new(
            addr.parse().map_err(|_| bad())?,
            prefix.parse().map_err(|_| bad())?,
        )
    }
}

/// The two ends of one seat's veth pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotAddrs {
    /// Host side, in the root namespace: the seat's gateway, proxy and DNS address.
    pub host: Ipv4Addr,
    /// Seat side (`eth0` inside the seat).
    pub seat: Ipv4Addr,
}

impl SlotAddrs {
    /// Host-side veth name, unique on the host because the address is: `ct` + 8 hex digits.
    pub fn veth(&self) -> String {
        format!("ct{:08x}", u32::from(self.host))
    }

    /// Name of the seat's network namespace (`/run/netns/<name>`).
    pub fn netns(&self) -> String {
        format!("ctns-{:08x}", u32::from(self.host))
    }
}

/// IPv4 ranges no seat traffic may reach: this host's loopback, link-local and metadata,
/// RFC 1918, CGNAT, "this network", multicast and reserved. Written as nft set elements.
pub const BLOCKED_V4: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

fn v4_blocked(ip: Ipv4Addr) -> bool {
    BLOCKED_V4.iter().any(|cidr| {
        let Some((net, len)) = cidr.split_once('/') else {
            return false;
        };
        let (Ok(net), Ok(len)) = (net.parse::<Ipv4Addr>(), len.parse::<u32>()) else {
            return false;
        };
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        u32::from(ip) & mask == u32::from(net)
    })
}

fn v6_blocked(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_blocked(v4);
    }
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64: may embed a private v4
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0)
    // v4-compatible
}

/// True when no seat may reach `ip`: a blocked range, or an address of this host itself (a
/// socket can bind to it), which covers the host's public addresses and every seat's gateway.
pub fn is_blocked(ip: IpAddr) -> bool {
    let ranged = match ip {
        IpAddr::V4(v4) => v4_blocked(v4),
        IpAddr::V6(v6) => v6_blocked(v6),
    };
    ranged || is_local(ip)
}

/// Whether `ip` is one of this host's own addresses. Binding needs no privilege for port 0 and
/// succeeds exactly for local addresses (`ip_nonlocal_bind` is off by default).
fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_disjoint_30s() {
        let s: SeatSubnet = "10.214.7.9/16".parse().expect("parse");
        assert_eq!(s.to_string(), "10.214.0.0/16");
        assert_eq!(s.slots(), 16384);
        let a = s.slot(0).expect("slot 0");
        assert_eq!(
            (a.host, a.seat),
            (
                "10.214.0.1".parse().expect("ip"),
                "10.214.0.2".parse().expect("ip")
            )
        );
        let b = s.slot(1).expect("slot 1");
        assert_eq!(b.host, "10.214.0.5".parse::<Ipv4Addr>().expect("ip"));
        assert!(s.slot(16384).is_none());
        assert_eq!(a.veth(), "ct0ad60001");
        assert!(a.veth().len() <= 15);
        assert_eq!(a.netns(), "ctns-0ad60001");
        assert!(s.contains("10.214.255.254".parse().expect("ip")));
        assert!(!s.contains("10.215.0.1".parse().expect("ip")));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/31",
            "10.0.0.0/7",
            "x/16",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<SeatSubnet>().is_err(), "{bad}");
        }
        let tiny: SeatSubnet = "10.9.9.0/30".parse().expect("parse");
        assert_eq!(tiny.slots(), 1);
    }

    #[test]
    fn blocks_host_private_and_metadata_ranges() {
        for ip in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "fc00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
        ] {
            assert!(is_blocked(ip.parse().expect("ip")), "{ip} must be blocked");
        }
        for ip in ["203.0.113.10", "1.1.1.1", "172.32.0.1", "2606:4700::1111"] {
            assert!(!is_blocked(ip.parse().expect("ip")), "{ip} must pass");
        }
    }
}
