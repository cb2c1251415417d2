//! The agent's nftables table. The base chains dispatch on the seat's host-side veth through
//! verdict maps into per-seat chains, so adding or removing a seat is a constant-size
//! `nft -f -` transaction (a whole-table reload costs O(seats): 16 ms for 1 seat, 130 ms for 200
//! on the loaded build machine). The whole table is loaded at the first change after the agent
//! starts and as the fallback when a delta fails (create-if-missing, delete, recreate: atomic).
//! No other table on the host is ever touched.
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
//! enters from or leaves towards a seat interface ends in an explicit verdict (every per-seat
//! chain ends in `drop`).

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
    /// Nothing at all: a microVM seat without network, whose TAP exists only so the host can
    /// dial its daemon (Firecracker has no user-mode networking).
    Closed,
}

/// One networked seat in the ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatRule {
    pub addrs: SlotAddrs,
    pub mode: SeatMode,
}

/// The whole table with every seat, as one `nft -f` script.
pub fn render(table: &str, egress: &str, seats: &[SeatRule]) -> String {
    let mut s = String::new();
    // Declaring then deleting makes the delete valid even when the table does not exist yet.
    let _ = writeln!(s, "table inet {table} {{}}\ndelete table inet {table}");
    let eg = quote(egress);
    let _ = writeln!(
        s,
        "table inet {table} {{\n  \
         set blocked4 {{ type ipv4_addr; flags interval; elements = {{ {} }} }}\n  \
         set masq {{ type ipv4_addr; }}\n  \
         map in_seats {{ type ifname : verdict; }}\n  \
         map to_seats {{ type ifname : verdict; }}\n  \
         map from_seats {{ type ifname : verdict; }}\n  \
         chain input {{ type filter hook input priority -10; policy accept;\n    iifname vmap @in_seats\n  }}\n  \
         chain forward {{ type filter hook forward priority -10; policy accept;\n    oifname vmap @to_seats\n    iifname vmap @from_seats\n  }}\n  \
         chain postrouting {{ type nat hook postrouting priority 100; policy accept;\n    oifname {eg} ip saddr @masq masquerade\n  }}\n}}",
        BLOCKED_V4.join(", ")
    );
    for r in seats {
        s.push_str(&add_seat(table, egress, r));
    }
    s
}

/// Adds (or replaces) one seat's chains and map entries.
pub fn add_seat(table: &str, egress: &str, r: &SeatRule) -> String {
    let veth = r.addrs.veth();
    let (ifn, eg, gw, ip) = (quote(&veth), quote(egress), r.addrs.host, r.addrs.seat);
    let t = format!("inet {table}");
    let mut s = String::new();
    for c in ["in", "to", "from"] {
        let _ = writeln!(s, "add chain {t} {c}_{veth}\nflush chain {t} {c}_{veth}");
    }
    let _ = writeln!(s, "add rule {t} in_{veth} ip saddr != {ip} drop");
    // Replies to connections the host opened (the agent dialling a microVM seat's daemon). A
    // connection the seat opens is never established: its first packet is dropped below.
    let _ = writeln!(s, "add rule {t} in_{veth} ct state established accept");
    let _ = match r.mode {
        SeatMode::Proxy => writeln!(
            s,
            "add rule {t} in_{veth} ip daddr {gw} tcp dport {PROXY_PORT} accept"
        ),
        SeatMode::Open => writeln!(
            s,
            "add rule {t} in_{veth} ip daddr {gw} udp dport {DNS_PORT} accept"
        ),
        SeatMode::Closed => Ok(()),
    };
    let _ = writeln!(s, "add rule {t} in_{veth} drop");
    let _ = writeln!(
        s,
        "add rule {t} to_{veth} iifname {eg} ip daddr {ip} ct state established,related accept\n\
         add rule {t} to_{veth} drop"
    );
    if r.mode == SeatMode::Open {
        let _ = writeln!(
            s,
            "add rule {t} from_{veth} oifname {eg} ip saddr {ip} ip daddr != @blocked4 accept\n\
             add element {t} masq {{ {ip} }}"
        );
    }
    let _ = writeln!(s, "add rule {t} from_{veth} drop");
    for (map, c) in [
        ("in_seats", "in"),
        ("to_seats", "to"),
        ("from_seats", "from"),
    ] {
        let _ = writeln!(s, "add element {t} {map} {{ {ifn} : jump {c}_{veth} }}");
    }
    s
}

/// Removes one seat's map entries and chains.
pub fn remove_seat(table: &str, r: &SeatRule) -> String {
    let veth = r.addrs.veth();
    let (ifn, t) = (quote(&veth), format!("inet {table}"));
    let mut s = String::new();
    for map in ["in_seats", "to_seats", "from_seats"] {
        let _ = writeln!(s, "delete element {t} {map} {{ {ifn} }}");
    }
    if r.mode == SeatMode::Open {
        let _ = writeln!(s, "delete element {t} masq {{ {} }}", r.addrs.seat);
    }
    for c in ["in", "to", "from"] {
        let _ = writeln!(s, "flush chain {t} {c}_{veth}\ndelete chain {t} {c}_{veth}");
    }
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
        assert!(s.contains(r#"oifname "eth9" ip saddr @masq masquerade"#));
        assert!(s.contains("add rule inet clarateach from_ct0ad60001 oifname \"eth9\" ip saddr 10.214.0.2 ip daddr != @blocked4 accept"));
        assert!(s.contains("add element inet clarateach masq { 10.214.0.2 }"));
        assert!(s.contains(
            "add rule inet clarateach in_ct0ad60001 ip daddr 10.214.0.1 udp dport 53 accept"
        ));
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
        assert!(s.contains(
            "add rule inet clarateach in_ct0ad60005 ip daddr 10.214.0.5 tcp dport 3128 accept"
        ));
        assert!(
            !s.contains("from_ct0ad60005 oifname"),
            "a proxy seat forwards nothing"
        );
        assert!(!s.contains("masq { 10.214.0.6 }"));
        for ifn in ["ct0ad60001", "ct0ad60005"] {
            // Every per-seat chain ends in drop, and the maps send the interface there.
            for c in ["in", "to", "from"] {
                let chain: Vec<&str> = s
                    .lines()
                    .filter(|l| l.starts_with(&format!("add rule inet clarateach {c}_{ifn} ")))
                    .collect();
                assert!(
                    chain.last().is_some_and(|l| l.ends_with(" drop")),
                    "{c}_{ifn}: {chain:?}"
                );
                assert!(s.contains(&format!("{{ \"{ifn}\" : jump {c}_{ifn} }}")));
            }
            assert!(s.contains(&format!("in_{ifn} ip saddr != ")));
        }
        // Re-adding a seat replaces its rules instead of appending.
        let again = add_seat("clarateach", "eth9", &rules()[0]);
        assert!(again.contains("flush chain inet clarateach in_ct0ad60001\n"));
    }

    #[test]
    fn removing_a_seat_undoes_what_adding_did() {
        let r = &rules()[0];
        let add = add_seat("t", "eth9", r);
        let del = remove_seat("t", r);
        for c in ["in", "to", "from"] {
            assert!(add.contains(&format!("add chain inet t {c}_ct0ad60001")));
            assert!(del.contains(&format!("delete chain inet t {c}_ct0ad60001")));
        }
        for m in ["in_seats", "to_seats", "from_seats"] {
            assert!(del.contains(&format!("delete element inet t {m} {{ \"ct0ad60001\" }}")));
        }
        assert!(del.contains("delete element inet t masq { 10.214.0.2 }"));
        // Map entries go before the chains they jump to.
        assert!(
            del.find("delete element").expect("elem") < del.find("delete chain").expect("chain")
        );
    }

    #[test]
    fn a_closed_seat_gets_only_replies_to_the_host() {
        let s: SeatSubnet = "10.214.0.0/16".parse().expect("subnet");
        let r = SeatRule {
            addrs: s.slot(2).expect("slot"),
            mode: SeatMode::Closed,
        };
        let add = add_seat("t", "eth9", &r);
        let input: Vec<&str> = add
            .lines()
            .filter(|l| l.starts_with("add rule inet t in_ct0ad60009 "))
            .collect();
        assert_eq!(
            input,
            [
                "add rule inet t in_ct0ad60009 ip saddr != 10.214.0.10 drop",
                "add rule inet t in_ct0ad60009 ct state established accept",
                "add rule inet t in_ct0ad60009 drop",
            ]
        );
        assert!(!add.contains("from_ct0ad60009 oifname") && !add.contains("masq"));
        assert!(!remove_seat("t", &r).contains("masq"));
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
