//! How a QEMU seat reaches the network. `Net::User` is QEMU's user-mode stack with a host
//! forward to the daemon on 127.0.0.1 (no privileges needed); `Net::Bridge` gives each seat a TAP
//! device on a host bridge and an address of its own from the bridge's subnet, for production
//! hosts where the agent runs as root. This file holds the pure parts: the subnet type, the
//! collision-free address allocator and the stable per-seat names (TAP, MAC).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::str::FromStr;

use clarateach_core::agent_proto::SeatKey;
use clarateach_image::GuestNet;

/// Network mode of QEMU seats.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Net {
    /// User-mode networking, daemon forwarded to 127.0.0.1:<free port>.
    #[default]
    User,
    /// A TAP per seat attached to `bridge` (created with the subnet's first host address when
    /// missing); guests get addresses from `subnet`.
    Bridge { bridge: String, subnet: Ipv4Subnet },
}

/// An IPv4 network such as `10.213.0.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

/// A subnet string that does not parse, or one too small to hold a bridge and a seat.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid subnet {0:?}: expected a.b.c.d/prefix with a prefix of at most 30")]
pub struct SubnetError(pub String);

impl Ipv4Subnet {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, SubnetError> {
        if prefix > 30 {
            return Err(SubnetError(format!("{addr}/{prefix}")));
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Ok(Self {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
    /// Number of usable host addresses (network and broadcast excluded).
    fn hosts(&self) -> u32 {
        (1u32 << (32 - u32::from(self.prefix))) - 2
    }
    /// The `n`-th host address, 0-based (`host(0)` is the bridge's own address).
    fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1 + n)
    }
    /// The bridge's (and the guests' gateway) address: the first host.
    pub fn gateway(&self) -> Ipv4Addr {
        self.host(0)
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let (ip, net) = (u32::from(ip), u32::from(self.network));
        ip > net && ip <= net + self.hosts()
    }
}

impl FromStr for Ipv4Subnet {
    type Err = SubnetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SubnetError(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        Self::new(
            addr.parse().map_err(|_| bad())?,
            prefix.parse().map_err(|_| bad())?,
        )
    }
}

impl std::fmt::Display for Ipv4Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The subnet has no free guest address left.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("no free guest address left in {0}")]
pub struct SubnetFull(pub Ipv4Subnet);

/// Picks a guest address for `key`: a hash of the seat key chooses where to start looking (so a
/// seat that is destroyed and recreated usually gets its old address back), then the first
/// address not in `used` and not the bridge's own.
pub fn allocate(
    subnet: &Ipv4Subnet,
    key: &SeatKey,
    used: &BTreeSet<Ipv4Addr>,
) -> Result<Ipv4Addr, SubnetFull> {
    let guests = subnet.hosts() - 1;
    let start = (fnv64(&seat_id(key)) % u64::from(guests)) as u32;
    (0..guests)
        .map(|i| subnet.host(1 + (start + i) % guests))
        .find(|ip| !used.contains(ip))
        .ok_or(SubnetFull(*subnet))
}

/// What guest-init sets on eth0 for a bridged seat. Without egress there is no default route
/// and no resolver: the guest reaches its subnet (the host's bridge address) and nothing else.
pub fn guest_net(subnet: &Ipv4Subnet, ip: Ipv4Addr, egress: bool) -> GuestNet {
    let (gateway, dns) = if egress {
        (subnet.gateway().to_string(), "1.1.1.1".to_string())
    } else {
        (String::new(), String::new())
    };
    GuestNet {
        address: format!("{ip}/{}", subnet.prefix),
        gateway,
        dns,
    }
}

/// `ws-abc/3`: the seat's name in logs and hashes.
pub fn seat_id(key: &SeatKey) -> String {
    format!("{}/{}", key.workshop_id, key.seat)
}

/// TAP device name for a seat; fits IFNAMSIZ (15 characters).
pub fn tap_name(key: &SeatKey) -> String {
    format!("ctq{:08x}", fnv64(&seat_id(key)) as u32)
}

/// A locally administered unicast MAC that stays the same across restarts of the seat.
pub fn seat_mac(key: &SeatKey) -> String {
    let b = fnv64(&seat_id(key)).to_be_bytes();
    format!("52:54:{:02x}:{:02x}:{:02x}:{:02x}", b[4], b[5], b[6], b[7])
}

fn fnv64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seat: u32) -> SeatKey {
        SeatKey {
            workshop_id: "ws-abc".into(),
            seat,
        }
    }

    #[test]
    fn subnet_parsing_and_gateway() {
        let s: Ipv4Subnet = "10.213.7.9/24".parse().expect("parse");
        assert_eq!(s.to_string(), "10.213.7.0/24");
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 213, 7, 1));
        assert!(s.contains(Ipv4Addr::new(10, 213, 7, 254)));
        assert!(!s.contains(Ipv4Addr::new(10, 213, 7, 255)));
        assert!(!s.contains(Ipv4Addr::new(10, 213, 8, 1)));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/31",
            "10.0.0/24",
            "x/24",
            "10.0.0.0/33",
        ] {
            assert!(bad.parse::<Ipv4Subnet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn allocation_is_stable_and_avoids_collisions() {
        let s: Ipv4Subnet = "10.213.0.0/24".parse().expect("parse");
        let mut used = BTreeSet::new();
        let first = allocate(&s, &key(1), &used).expect("ip");
        assert_eq!(
            allocate(&s, &key(1), &used),
            Ok(first),
            "same seat, same address"
        );
        assert_ne!(first, s.gateway());
        for seat in 0..253 {
            let ip = allocate(&s, &key(seat), &used).expect("free address");
            assert!(s.contains(ip) && ip != s.gateway());
            assert!(used.insert(ip), "{ip} handed out twice");
        }
        assert_eq!(allocate(&s, &key(999), &used), Err(SubnetFull(s)));
    }

    #[test]
    fn guest_net_has_a_route_only_with_egress() {
        let s: Ipv4Subnet = "10.213.0.0/24".parse().expect("parse");
        let ip = Ipv4Addr::new(10, 213, 0, 9);
        let closed = guest_net(&s, ip, false);
        assert_eq!(closed.address, "10.213.0.9/24");
        assert_eq!((closed.gateway.as_str(), closed.dns.as_str()), ("", ""));
        let open = guest_net(&s, ip, true);
        assert_eq!(open.gateway, "10.213.0.1");
    }

    #[test]
    fn smallest_subnet_has_one_guest() {
        let s: Ipv4Subnet = "192.168.9.4/30".parse().expect("parse");
        let ip = allocate(&s, &key(5), &BTreeSet::new()).expect("ip");
        assert_eq!(ip, Ipv4Addr::new(192, 168, 9, 6));
    }

    #[test]
    fn tap_names_and_macs_are_short_stable_and_distinct() {
        assert!(tap_name(&key(1)).len() <= 15);
        assert_eq!(tap_name(&key(1)), tap_name(&key(1)));
        assert_ne!(tap_name(&key(1)), tap_name(&key(2)));
        let mac = seat_mac(&key(1));
        assert!(mac.starts_with("52:54:") && mac.len() == 17);
        assert_ne!(mac, seat_mac(&key(2)));
    }
}
