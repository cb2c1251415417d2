//! The agent's nftables table. Its chains never change with the seats: every per-seat fact is an
//! element of a set (the seat's interface, its address on that interface, the one service on its
//! gateway it may reach, whether it may go out), so adding or removing a seat is one
//! set-element transaction sent over netlink (well under a millisecond, no `nft` process: forking
//! `nft` cost 4-5 ms per seat start). The whole table is loaded with `nft -f -` at the first
//! change after the agent starts and as the fallback when a delta fails (create-if-missing,
//! delete, recreate: atomic). No other table on the host is ever touched.
//!
//! Per seat (host-side veth `ctXXXXXXXX`, addresses from `addr`):
//! - input: from a seat interface only (seat address, that interface, its gateway, its service
//!   port) is accepted: the proxy port (allow) or the DNS port (open); plus replies on
//!   connections the host opened (the agent dialling a microVM seat's daemon on its TAP: a
//!   connection the seat opens is never established, its first packet is dropped). Every other packet to any
//!   local address (the host's own addresses, loopback, other gateways) is dropped, and so are
//!   forged source addresses and anything not IPv4.
//! - forward: an `open` seat may go out of the egress interface only, never to a blocked range;
//!   an `allow` seat forwards nothing; nothing is forwarded into a seat except replies to its own
//!   address on its own interface, so seats never reach each other.
//! - postrouting: the seat's address is masqueraded on the egress interface.
//!
//! Base chains use `policy accept` so the host's other traffic is untouched; every packet that
//! enters from or leaves towards an interface in `seat_ifs` ends in an explicit verdict (the seat
//! chains end in `drop`). A seat's elements are added before its sandbox starts and removed after
//! it is gone, so no seat process ever sends through an interface missing from `seat_ifs`.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::addr::{SlotAddrs, BLOCKED_V4};
use super::netlink::{Msg, Socket, NETLINK_NETFILTER, NLM_F_CREATE};

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

impl SeatRule {
    /// The host-side interface the seat's packets arrive on.
    pub fn ifname(&self) -> String {
        self.addrs.veth()
    }
}

/// One part of a set element's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Iface(String),
    V4(Ipv4Addr),
    Proto(u8),
    Port(u16),
}

const TCP: u8 = 6;
const UDP: u8 = 17;

impl Field {
    /// As nft's registers hold it: ifname 16 bytes, every part padded to 4.
    fn bytes(&self, out: &mut Vec<u8>) {
        match self {
            Field::Iface(n) => {
                let mut b = [0u8; 16];
                let len = n.len().min(15);
                b[..len].copy_from_slice(&n.as_bytes()[..len]);
                out.extend_from_slice(&b);
            }
            Field::V4(ip) => out.extend_from_slice(&ip.octets()),
            Field::Proto(p) => out.extend_from_slice(&[*p, 0, 0, 0]),
            Field::Port(p) => {
                out.extend_from_slice(&p.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
        }
    }

    fn text(&self) -> String {
        match self {
            Field::Iface(n) => quote(n),
            Field::V4(ip) => ip.to_string(),
            Field::Proto(TCP) => "tcp".into(),
            Field::Proto(UDP) => "udp".into(),
            Field::Proto(p) => p.to_string(),
            Field::Port(p) => p.to_string(),
        }
    }
}

/// One element of one of the table's sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elem {
    pub set: &'static str,
    pub key: Vec<Field>,
}

impl Elem {
    fn key_text(&self) -> String {
        self.key
            .iter()
            .map(Field::text)
            .collect::<Vec<_>>()
            .join(" . ")
    }
}

/// A change of the table: elements added or deleted, all in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    pub table: String,
    pub add: bool,
    pub elems: Vec<Elem>,
}

impl Delta {
    /// The same change as an `nft -f` script.
    pub fn script(&self) -> String {
        let verb = if self.add { "add" } else { "delete" };
        let mut s = String::new();
        for e in &self.elems {
            let _ = writeln!(
                s,
                "{verb} element inet {} {} {{ {} }}",
                self.table,
                e.set,
                e.key_text()
            );
        }
        s
    }
}

/// The per-seat elements; the same ones go in and come out.
fn elems(r: &SeatRule) -> Vec<Elem> {
    let ifn = Field::Iface(r.ifname());
    let (gw, ip) = (Field::V4(r.addrs.host), Field::V4(r.addrs.seat));
    let service = match r.mode {
        SeatMode::Proxy => Some((TCP, PROXY_PORT)),
        SeatMode::Open => Some((UDP, DNS_PORT)),
        SeatMode::Closed => None,
    };
    let mut v = vec![
        Elem {
            set: "seat_ifs",
            key: vec![ifn.clone()],
        },
        Elem {
            set: "seat_src",
            key: vec![ip.clone(), ifn.clone()],
        },
    ];
    if let Some((proto, port)) = service {
        v.push(Elem {
            set: "seat_svc",
            key: vec![
                ip.clone(),
                ifn.clone(),
                gw,
                Field::Proto(proto),
                Field::Port(port),
            ],
        });
    }
    if r.mode == SeatMode::Open {
        v.push(Elem {
            set: "open_src",
            key: vec![ip.clone(), ifn],
        });
        v.push(Elem {
            set: "masq",
            key: vec![ip],
        });
    }
    v
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
         set seat_ifs {{ type ifname; }}\n  \
         set seat_src {{ type ipv4_addr . ifname; }}\n  \
         set seat_svc {{ type ipv4_addr . ifname . ipv4_addr . inet_proto . inet_service; }}\n  \
         set open_src {{ type ipv4_addr . ifname; }}\n  \
         set masq {{ type ipv4_addr; }}\n  \
         chain input {{ type filter hook input priority -10; policy accept;\n    iifname @seat_ifs jump seat_in\n  }}\n  \
         chain seat_in {{\n    ip saddr . iifname @seat_src ct state established accept\n    ip saddr . iifname . ip daddr . meta l4proto . th dport @seat_svc accept\n    drop\n  }}\n  \
         chain forward {{ type filter hook forward priority -10; policy accept;\n    oifname @seat_ifs jump seat_to\n    iifname @seat_ifs jump seat_from\n  }}\n  \
         chain seat_to {{\n    iifname {eg} ip daddr . oifname @seat_src ct state established,related accept\n    drop\n  }}\n  \
         chain seat_from {{\n    oifname {eg} ip saddr . iifname @open_src ip daddr != @blocked4 accept\n    drop\n  }}\n  \
         chain postrouting {{ type nat hook postrouting priority 100; policy accept;\n    oifname {eg} ip saddr @masq masquerade\n  }}\n}}",
        BLOCKED_V4.join(", ")
    );
    for r in seats {
        s.push_str(&add_seat(table, egress, r).script());
    }
    s
}

/// Adds one seat's elements (adding elements that are already there is fine). `egress` is part
/// of the base chains, not of a seat's elements.
pub fn add_seat(table: &str, _egress: &str, r: &SeatRule) -> Delta {
    Delta {
        table: table.to_string(),
        add: true,
        elems: elems(r),
    }
}

/// Removes one seat's elements.
pub fn remove_seat(table: &str, r: &SeatRule) -> Delta {
    Delta {
        table: table.to_string(),
        add: false,
        elems: elems(r),
    }
}

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;
const NFPROTO_INET: u8 = 1;

/// `struct nfgenmsg`.
fn nfgenmsg(family: u8, res_id: u16) -> [u8; 4] {
    let r = res_id.to_be_bytes();
    [family, 0, r[0], r[1]]
}

/// The deltas as one nftables batch: all of them apply, or none.
fn batch(deltas: &[Delta]) -> Vec<Msg> {
    let marker = |ty| Msg::unacked(ty).fixed(&nfgenmsg(0, NFNL_SUBSYS_NFTABLES));
    let mut msgs = vec![marker(NFNL_MSG_BATCH_BEGIN)];
    for d in deltas {
        let (ty, flags) = if d.add {
            (NFT_MSG_NEWSETELEM, NLM_F_CREATE)
        } else {
            (NFT_MSG_DELSETELEM, 0)
        };
        for e in &d.elems {
            let mut key = Vec::new();
            for f in &e.key {
                f.bytes(&mut key);
            }
            msgs.push(
                Msg::new((NFNL_SUBSYS_NFTABLES << 8) | ty, flags)
                    .fixed(&nfgenmsg(NFPROTO_INET, 0))
                    .attr_str(NFTA_SET_ELEM_LIST_TABLE, &d.table)
                    .attr_str(NFTA_SET_ELEM_LIST_SET, e.set)
                    .nest(NFTA_SET_ELEM_LIST_ELEMENTS)
                    .nest(NFTA_LIST_ELEM)
                    .nest(NFTA_SET_ELEM_KEY)
                    .attr(NFTA_DATA_VALUE, &key)
                    .end()
                    .end()
                    .end(),
            );
        }
    }
    msgs.push(marker(NFNL_MSG_BATCH_END));
    msgs
}

/// Applies the deltas to the kernel's table in one transaction (an element to delete that is
/// missing, or a missing table, fails the whole transaction and changes nothing).
pub fn apply(deltas: &[Delta]) -> std::io::Result<()> {
    if deltas.iter().all(|d| d.elems.is_empty()) {
        return Ok(());
    }
    Socket::open(NETLINK_NETFILTER)?.request(batch(deltas), |_, _| {})
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
        assert!(s.contains(
            r#"oifname "eth9" ip saddr . iifname @open_src ip daddr != @blocked4 accept"#
        ));
        assert!(s.contains("add element inet clarateach masq { 10.214.0.2 }"));
        assert!(s.contains(r#"add element inet clarateach open_src { 10.214.0.2 . "ct0ad60001" }"#));
        assert!(s.contains(
            r#"add element inet clarateach seat_svc { 10.214.0.2 . "ct0ad60001" . 10.214.0.1 . udp . 53 }"#
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
            r#"add element inet clarateach seat_svc { 10.214.0.6 . "ct0ad60005" . 10.214.0.5 . tcp . 3128 }"#
        ));
        assert!(
            !s.contains(r#"open_src { 10.214.0.6"#),
            "a proxy seat forwards nothing"
        );
        assert!(!s.contains("masq { 10.214.0.6 }"));
        // Every seat chain ends in drop; the base chains send every seat interface there.
        for c in ["seat_in", "seat_to", "seat_from"] {
            let body = s
                .split(&format!("chain {c} {{"))
                .nth(1)
                .and_then(|b| b.split('}').next())
                .expect("chain");
            assert!(body.trim_end().ends_with("drop"), "{c}: {body}");
        }
        assert!(s.contains("iifname @seat_ifs jump seat_in"));
        assert!(s.contains("oifname @seat_ifs jump seat_to"));
        assert!(s.contains("iifname @seat_ifs jump seat_from"));
        for ifn in ["ct0ad60001", "ct0ad60005"] {
            assert!(s.contains(&format!("seat_ifs {{ \"{ifn}\" }}")));
        }
    }

    #[test]
    fn removing_a_seat_undoes_what_adding_did() {
        for r in &rules() {
            let add = add_seat("t", "eth9", r);
            let del = remove_seat("t", r);
            assert!(add.add && !del.add);
            assert_eq!(add.elems, del.elems);
            assert_eq!(
                add.script().replace("add element", "delete element"),
                del.script()
            );
        }
        assert!(remove_seat("t", &rules()[0])
            .script()
            .contains("delete element inet t masq { 10.214.0.2 }"));
    }

    #[test]
    fn element_keys_are_laid_out_as_nft_registers() {
        let mut key = Vec::new();
        for f in [
            Field::V4("10.214.0.2".parse().expect("ip")),
            Field::Iface("ct0ad60001".into()),
            Field::Proto(TCP),
            Field::Port(3128),
        ] {
            f.bytes(&mut key);
        }
        let mut want = vec![10, 214, 0, 2];
        want.extend_from_slice(b"ct0ad60001\0\0\0\0\0\0");
        want.extend_from_slice(&[6, 0, 0, 0, 0x0c, 0x38, 0, 0]);
        assert_eq!(key, want);
        // Begin, one message per element, end.
        let d = add_seat("t", "eth9", &rules()[0]);
        assert_eq!(batch(std::slice::from_ref(&d)).len(), d.elems.len() + 2);
    }

    #[test]
    fn a_closed_seat_gets_only_replies_to_the_host() {
        let s: SeatSubnet = "10.214.0.0/16".parse().expect("subnet");
        let r = SeatRule {
            addrs: s.slot(2).expect("slot"),
            mode: SeatMode::Closed,
        };
        // Its interface and address only: no service on its gateway, no way out, no NAT. What
        // the input chain lets through from it is the established-reply rule and nothing else.
        let add = add_seat("t", "eth9", &r);
        let sets: Vec<&str> = add.elems.iter().map(|e| e.set).collect();
        assert_eq!(sets, ["seat_ifs", "seat_src"]);
        assert_eq!(remove_seat("t", &r).elems, add.elems);
        let table = render("t", "eth9", std::slice::from_ref(&r));
        assert!(table.contains(
            "chain seat_in {\n    ip saddr . iifname @seat_src ct state established accept\n    \
             ip saddr . iifname . ip daddr . meta l4proto . th dport @seat_svc accept\n    drop\n  }"
        ));
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
