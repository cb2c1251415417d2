//! Forgets a released seat's connections. Conntrack entries live in the root namespace and
//! outlive the seat's veth; a later seat given the same slot (same address) would otherwise be
//! sent the late replies of the previous seat's flows. On teardown every TCP and UDP entry whose
//! original source is the seat's address is deleted over ctnetlink; the entries are found in
//! `/proc/net/nf_conntrack` (when the kernel has no such file there is nothing to read and the
//! entries time out as before). ICMP entries are left to their 30 s timeout.

use std::io;
use std::net::Ipv4Addr;

use super::netlink::{Msg, Socket, NETLINK_NETFILTER};

/// One connection's original direction.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tuple {
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
}

/// The original tuples from `seat` in a `/proc/net/nf_conntrack` listing.
fn tuples_from(table: &str, seat: Ipv4Addr) -> Vec<Tuple> {
    let want = format!("src={seat}");
    table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // ipv4 2 tcp 6 <timeout> [STATE] src= dst= sport= dport= ...
            if f.first() != Some(&"ipv4") {
                return None;
            }
            let proto: u8 = f.get(3)?.parse().ok()?;
            if proto != 6 && proto != 17 {
                return None;
            }
            let at = f.iter().position(|w| w.starts_with("src="))?;
            if f[at] != want {
                return None;
            }
            let val = |i: usize, k: &str| f.get(at + i)?.strip_prefix(k);
            Some(Tuple {
                proto,
                src: seat,
                dst: val(1, "dst=")?.parse().ok()?,
                sport: val(2, "sport=")?.parse().ok()?,
                dport: val(3, "dport=")?.parse().ok()?,
            })
        })
        .collect()
}

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

fn delete_msg(t: &Tuple) -> Msg {
    Msg::new((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE, 0)
        .fixed(&[libc::AF_INET as u8, 0, 0, 0])
        .nest(CTA_TUPLE_ORIG)
        .nest(CTA_TUPLE_IP)
        .attr(CTA_IP_V4_SRC, &t.src.octets())
        .attr(CTA_IP_V4_DST, &t.dst.octets())
        .end()
        .nest(CTA_TUPLE_PROTO)
        .attr(CTA_PROTO_NUM, &[t.proto])
        .attr(CTA_PROTO_SRC_PORT, &t.sport.to_be_bytes())
        .attr(CTA_PROTO_DST_PORT, &t.dport.to_be_bytes())
        .end()
        .end()
}

/// Deletes the seat's TCP and UDP conntrack entries; an entry gone meanwhile is fine.
pub fn forget(seat: Ipv4Addr) -> io::Result<usize> {
    let table = match std::fs::read_to_string("/proc/net/nf_conntrack") {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let tuples = tuples_from(&table, seat);
    if tuples.is_empty() {
        return Ok(0);
    }
    let mut sock = Socket::open(NETLINK_NETFILTER)?;
    let mut n = 0;
    for t in &tuples {
        match sock.request(vec![delete_msg(t)], |_, _| {}) {
            Ok(()) => n += 1,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_seats_original_tuples_only() {
        let table = "ipv4     2 tcp      6 431999 ESTABLISHED src=10.214.0.2 dst=203.0.113.10 sport=41234 dport=80 src=203.0.113.10 dst=203.0.113.1 sport=80 dport=41234 [ASSURED] mark=0 zone=0 use=2\n\
                     ipv4     2 udp      17 29 src=10.214.0.2 dst=10.214.0.1 sport=5353 dport=53 src=10.214.0.1 dst=10.214.0.2 sport=53 dport=5353 mark=0 zone=0 use=2\n\
                     ipv4     2 tcp      6 100 ESTABLISHED src=10.214.0.6 dst=203.0.113.10 sport=1 dport=80 src=203.0.113.10 dst=10.214.0.6 sport=80 dport=1 mark=0 zone=0 use=2\n\
                     ipv4     2 tcp      6 100 ESTABLISHED src=203.0.113.10 dst=10.214.0.2 sport=1 dport=80 src=10.214.0.2 dst=203.0.113.10 sport=80 dport=1 mark=0 zone=0 use=2\n\
                     ipv4     2 icmp     1 29 src=10.214.0.2 dst=203.0.113.10 type=8 code=0 id=7 src=203.0.113.10 dst=10.214.0.2 type=0 code=0 id=7 mark=0 zone=0 use=2\n\
                     ipv6     10 tcp      6 100 ESTABLISHED src=::1 dst=::1 sport=1 dport=2 src=::1 dst=::1 sport=2 dport=1 mark=0 zone=0 use=2\n";
        let seat: Ipv4Addr = "10.214.0.2".parse().expect("ip");
        let t = tuples_from(table, seat);
        assert_eq!(
            t,
            vec![
                Tuple {
                    proto: 6,
                    src: seat,
                    dst: "203.0.113.10".parse().expect("ip"),
                    sport: 41234,
                    dport: 80
                },
                Tuple {
                    proto: 17,
                    src: seat,
                    dst: "10.214.0.1".parse().expect("ip"),
                    sport: 5353,
                    dport: 53
                },
            ]
        );
    }
}
