//! The agent's nftables table, rendered whole from the list of networked seats and loaded with
//! one `nft -f -` transaction per change (create-if-missing, delete, recreate: atomic, and no
//! other table on the host is ever touched).
//!
//! Per seat (host-side veth `ctXXXXXXXX`, addresses from `addr`):
//! - input: from the seat only its own gateway's proxy port (allow) or DNS port (open); every
//!   other packet to any local address (the host's own addresses, loopback, other gateways) is
//!   dropped. Forged source addresses are dropped.
//! - forward: an `open` seat may go out of the egress interface only, never to a blocked range;
//!   an `allow` seat forwards nothing; nothing is forwarded into a seat except replies, so seats
//!   never reach each other.
//! - postrouting: the seat's address is masqueraded on the egress interface.
//!
//! Base chains use `policy accept` so the host's other traffic is untouched; every packet that
//! enters from or leaves towards a seat interface ends in an explicit verdict here.

use std::fmt::Write as _;

use super::addr::{SlotAddrs, BLOCKED_V4};

/// Port of the per-seat HTTP(S) proxy on the gateway address.
pub const PROXY_PORT: u16 = 3128;
/// Port of the per-seat DNS forwarder on the gateway address.
pub const DNS_PORT: u16 = 53;

/// What one seat is allowed, as far as packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatMode {
    /// Out to the internet through NAT (plus the DNS forwarder on its gateway).
    Open,
    /// Only the proxy on its gateway.
    Proxy,
}

/// One networked seat in the ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatRule {
    pub addrs: SlotAddrs,
    pub mode: SeatMode,
}

/// The whole table as an `nft -f` script.
pub fn render(table: &str, egress: &str, seats: &[SeatRule]) -> String {
    let mut s = String::new();
    // Declaring then deleting makes the delete valid even when the table does not exist yet.
    let _ = writeln!(s, "table inet {table} {{}}\ndelete table inet {table}");
    let _ = writeln!(s, "table inet {table} {{");
    let _ = writeln!(
        s,
        "  set blocked4 {{ type ipv4_addr; flags interval; elements = {{ {} }} }}",
        BLOCKED_V4.join(", ")
    );
    let egress = quote(egress);
    let _ = writeln!(
        s,
        "  chain input {{ type filter hook input priority -10; policy accept;"
    );
    for r in seats {
        let (ifn, gw, ip) = (quote(&r.addrs.veth()), r.addrs.host, r.addrs.seat);
        let _ = writeln!(s, "    iifname {ifn} ip saddr != {ip} drop");
        match r.mode {
            SeatMode::Proxy => {
                let _ = writeln!(
                    s,
                    "    iifname {ifn} ip daddr {gw} tcp dport {PROXY_PORT} accept"
                );
            }
            SeatMode::Open => {
                let _ = writeln!(
                    s,
                    "    iifname {ifn} ip daddr {gw} udp dport {DNS_PORT} accept"
                );
            }
        }
        let _ = writeln!(s, "    iifname {ifn} drop");
    }
    let _ = writeln!(s, "  }}");
    let _ = writeln!(
        s,
        "  chain forward {{ type filter hook forward priority -10; policy accept;"
    );
    for r in seats {
        let (ifn, ip) = (quote(&r.addrs.veth()), r.addrs.seat);
        let _ = writeln!(
            s,
            "    oifname {ifn} iifname {egress} ip daddr {ip} ct state established,related accept"
        );
        let _ = writeln!(s, "    oifname {ifn} drop");
        if r.mode == SeatMode::Open {
            let _ = writeln!(
                s,
                "    iifname {ifn} oifname {egress} ip saddr {ip} ip daddr != @blocked4 accept"
            );
        }
        let _ = writeln!(s, "    iifname {ifn} drop");
    }
    let _ = writeln!(s, "  }}");
    let _ = writeln!(
        s,
        "  chain postrouting {{ type nat hook postrouting priority 100; policy accept;"
    );
    for r in seats.iter().filter(|r| r.mode == SeatMode::Open) {
        let _ = writeln!(
            s,
            "    oifname {egress} ip saddr {} masquerade",
            r.addrs.seat
        );
    }
    let _ = writeln!(s, "  }}\n}}");
    s
}

/// The script that removes the table (used when the last seat goes).
pub fn render_delete(table: &str) -> String {
    format!("table inet {table} {{}}\ndelete table inet {table}\n")
}

/// Interface names are plain (`[A-Za-z0-9._-]`, checked by the caller); quoting keeps nft from
/// reading them as keywords.
fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

/// True when `name` is a safe interface name (what the kernel accepts, minus odd characters).
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// True when `table` is a safe nft table name.
pub fn valid_table(table: &str) -> bool {
    !table.is_empty()
        && table.len() <= 64
        && table
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netpolicy::addr::SeatSubnet;

    fn rules() -> Vec<SeatRule> {
        let s: SeatSubnet = "10.214.0.0/16".parse().expect("subnet");
        vec![
            SeatRule {
                addrs: s.slot(0).expect("slot"),
                mode: SeatMode::Open,
            },
            SeatRule {
                addrs: s.slot(1).expect("slot"),
                mode: SeatMode::Proxy,
            },
        ]
    }

    #[test]
    fn open_seat_goes_out_of_the_egress_interface_only() {
        let s = render("clarateach", "eth9", &rules());
        assert!(s.starts_with("table inet clarateach {}\ndelete table inet clarateach\n"));
        assert!(s.contains(r#"iifname "ct0ad60001" oifname "eth9" ip saddr 10.214.0.2 ip daddr != @blocked4 accept"#));
        assert!(s.contains(r#"oifname "eth9" ip saddr 10.214.0.2 masquerade"#));
        assert!(s.contains(r#"iifname "ct0ad60001" ip daddr 10.214.0.1 udp dport 53 accept"#));
        for range in [
            "127.0.0.0/8",
            "169.254.0.0/16",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
        ] {
            assert!(s.contains(range), "{range} not blocked");
        }
    }

    #[test]
    fn proxy_seat_reaches_only_its_proxy_and_nobody_reaches_a_seat() {
        let s = render("clarateach", "eth9", &rules());
        assert!(s.contains(r#"iifname "ct0ad60005" ip daddr 10.214.0.5 tcp dport 3128 accept"#));
        assert!(
            !s.contains(r#"iifname "ct0ad60005" oifname"#),
            "a proxy seat forwards nothing"
        );
        assert!(!s.contains("saddr 10.214.0.6 masquerade"));
        // Every seat interface ends in a drop, in and out, for input and forward.
        for ifn in ["ct0ad60001", "ct0ad60005"] {
            assert_eq!(
                s.matches(&format!("    iifname \"{ifn}\" drop")).count(),
                2,
                "{ifn}"
            );
            assert!(s.contains(&format!("oifname \"{ifn}\" drop")));
            assert!(s.contains(&format!("iifname \"{ifn}\" ip saddr != ")));
        }
        // The established-reply accept comes before the drop towards the seat.
        let reply = s
            .find(r#"oifname "ct0ad60005" iifname "eth9""#)
            .expect("reply rule");
        let drop = s.find(r#"oifname "ct0ad60005" drop"#).expect("drop rule");
        assert!(reply < drop);
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_ifname("eth0") && valid_ifname("ctinet-1234"));
        assert!(
            !valid_ifname("eth0\"; flush ruleset")
                && !valid_ifname("")
                && !valid_ifname("a234567890123456")
        );
        assert!(valid_table("clarateach") && valid_table("ct_test_12"));
        assert!(!valid_table("1x") && !valid_table("a b") && !valid_table(""));
        assert_eq!(render_delete("t"), "table inet t {}\ndelete table inet t\n");
    }
}
