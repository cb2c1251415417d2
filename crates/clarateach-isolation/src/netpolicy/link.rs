//! The kernel objects of one seat's network: a named network namespace (`/run/netns/ctns-*`,
//! so it outlives the agent and a restarted agent finds it), a veth pair with the host side in
//! the root namespace and `eth0` inside, addresses and the seat's route. Made with rtnetlink
//! from one short-lived thread (it `unshare`s the namespace, so no pooled thread of the runtime
//! ever changes namespace), the way `ip netns add` and `ip link/addr/route` would, without
//! forking them (each `ip` process cost 3-4 ms of the seat's start); every step is undone by
//! `remove`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::addr::SlotAddrs;
use super::netlink::{Msg, Socket, NETLINK_ROUTE, NLM_F_CREATE, NLM_F_EXCL};
use super::NetError;

/// Where `ip netns` keeps named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Path of a named namespace.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// A seat's namespace and veth pair made ahead of the seat (a spare): addressed and up, without
/// the default route. It keeps a netlink socket opened inside the namespace, so the claim adds
/// the route from any thread without entering the namespace.
pub struct Spare {
    inner: Socket,
    eth0: u32,
}

/// Creates the namespace and the veth pair for a seat, replacing leftovers of an earlier run.
/// `default_route` gives the seat a default route via its gateway (open mode); without it the
/// seat reaches its own /30 only (allow mode: just the proxy).
pub async fn create(addrs: &SlotAddrs, default_route: bool) -> Result<(), NetError> {
    let spare = make(addrs).await?;
    let claimed = claim(spare, addrs, default_route);
    if claimed.is_err() {
        let _ = remove(addrs).await;
    }
    claimed
}

/// Everything of `create` but the route: the slow part (a new namespace, the pair, addresses),
/// done before a seat needs it.
pub async fn make(addrs: &SlotAddrs) -> Result<Spare, NetError> {
    remove(addrs).await?;
    let addrs = *addrs;
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A thread of its own: `unshare(CLONE_NEWNET)` moves the calling thread into the new
    // namespace, and this thread ends right after.
    std::thread::Builder::new()
        .name("seat-netns".into())
        .spawn(move || {
            let _ = tx.send(create_blocking(&addrs));
        })
        .map_err(|source| NetError::Netlink {
            step: "start the namespace thread",
            source,
        })?;
    let made = rx.await.unwrap_or_else(|_| {
        Err(NetError::Netlink {
            step: "the namespace thread ended without an answer",
            source: io::Error::other("thread panicked"),
        })
    });
    if made.is_err() {
        let _ = remove(&addrs).await;
    }
    made
}

/// Finishes a made namespace for its seat: the default route via the gateway when the seat is
/// `open`. On error the caller removes the slot's objects.
pub fn claim(spare: Spare, addrs: &SlotAddrs, default_route: bool) -> Result<(), NetError> {
    let Spare { mut inner, eth0 } = spare;
    if default_route {
        let mut rt = [0u8; 12];
        rt[0] = libc::AF_INET as u8;
        rt[4] = RT_TABLE_MAIN;
        rt[5] = RTPROT_BOOT;
        rt[6] = RT_SCOPE_UNIVERSE;
        rt[7] = RTN_UNICAST;
        let route = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL)
            .fixed(&rt)
            .attr(RTA_GATEWAY, &addrs.host.octets())
            .attr_u32(RTA_OIF, eth0);
        inner
            .request(vec![route], |_, _| {})
            .map_err(nl("add the seat's default route"))?;
    }
    Ok(())
}

fn nl(step: &'static str) -> impl FnOnce(io::Error) -> NetError {
    move |source| NetError::Netlink { step, source }
}

/// Makes `/run/netns` a shared mount point once, as `ip netns add` does, so the namespaces
/// mounted under it show in mount namespaces made later (`ip netns exec`).
fn netns_dir_shared() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use nix::mount::{mount, MsFlags};
        let _ = std::fs::DirBuilder::new().mode(0o755).create(NETNS_DIR);
        let shared = || {
            mount(
                None::<&str>,
                NETNS_DIR,
                Some("none"),
                MsFlags::MS_SHARED | MsFlags::MS_REC,
                None::<&str>,
            )
        };
        if shared() == Err(nix::errno::Errno::EINVAL) {
            let _ = mount(
                Some(NETNS_DIR),
                NETNS_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            );
            let _ = shared();
        }
    });
}

/// Everything `make` does, on the calling thread, which it leaves in the seat's namespace.
fn create_blocking(addrs: &SlotAddrs) -> Result<Spare, NetError> {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    let (veth, ns) = (addrs.veth(), addrs.netns());
    // Opened before the unshare: this socket stays in the root namespace.
    let mut root = Socket::open(NETLINK_ROUTE).map_err(nl("open a netlink socket"))?;
    netns_dir_shared();
    let path = netns_path(&ns);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&path)
        .map_err(nl("create the namespace mount point"))?;
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| NetError::Netlink {
        step: "unshare the network namespace",
        source: e.into(),
    })?;
    mount(
        Some("/proc/thread-self/ns/net"),
        &path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| NetError::Netlink {
        step: "mount the network namespace",
        source: e.into(),
    })?;
    let mut inner = Socket::open(NETLINK_ROUTE).map_err(nl("open a netlink socket in the seat"))?;
    let ns_fd = File::open(&path).map_err(|source| NetError::OpenNetns {
        name: ns.clone(),
        source,
    })?;
    set_up(&mut inner, LOOPBACK_IFINDEX).map_err(nl("bring up the seat's loopback"))?;
    // The pair, host end here, `eth0` in the seat's namespace.
    let create = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)
        .fixed(&ifinfomsg(0, 0, 0))
        .attr_str(IFLA_IFNAME, &veth)
        .nest(IFLA_LINKINFO)
        .attr(IFLA_INFO_KIND, b"veth")
        .nest(IFLA_INFO_DATA)
        .nest(VETH_INFO_PEER)
        .fixed(&ifinfomsg(0, 0, 0))
        .attr_str(IFLA_IFNAME, "eth0")
        .attr_u32(IFLA_NET_NS_FD, ns_fd.as_raw_fd() as u32)
        .end()
        .end()
        .end();
    root.request(vec![create], |_, _| {})
        .map_err(nl("create the veth pair"))?;
    drop(ns_fd);
    let host_idx = index_of(&mut root, &veth).map_err(nl("look up the host veth"))?;
    add_addr(&mut root, host_idx, addrs.host).map_err(nl("address the host veth"))?;
    set_up(&mut root, host_idx).map_err(nl("bring up the host veth"))?;
    let eth0 = index_of(&mut inner, "eth0").map_err(nl("look up the seat's eth0"))?;
    add_addr(&mut inner, eth0, addrs.seat).map_err(nl("address the seat's eth0"))?;
    set_up(&mut inner, eth0).map_err(nl("bring up the seat's eth0"))?;
    Ok(Spare { inner, eth0 })
}

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_NET_NS_FD: u16 = 28;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;
const IFF_UP: u32 = 1;
/// The loopback device of every network namespace has index 1.
const LOOPBACK_IFINDEX: u32 = 1;

/// `struct ifinfomsg` (family unspecified).
fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

fn set_up(sock: &mut Socket, index: u32) -> io::Result<()> {
    let m = Msg::new(RTM_NEWLINK, 0).fixed(&ifinfomsg(index, IFF_UP, IFF_UP));
    sock.request(vec![m], |_, _| {})
}

/// `addr add <ip>/30 dev <index>`.
fn add_addr(sock: &mut Socket, index: u32, ip: std::net::Ipv4Addr) -> io::Result<()> {
    let mut ifa = [0u8; 8];
    ifa[0] = libc::AF_INET as u8;
    ifa[1] = 30;
    ifa[4..8].copy_from_slice(&index.to_ne_bytes());
    let m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)
        .fixed(&ifa)
        .attr(IFA_LOCAL, &ip.octets())
        .attr(IFA_ADDRESS, &ip.octets());
    sock.request(vec![m], |_, _| {})
}

/// The index of the interface `name` in the socket's namespace.
fn index_of(sock: &mut Socket, name: &str) -> io::Result<u32> {
    let m = Msg::new(RTM_GETLINK, 0)
        .fixed(&ifinfomsg(0, 0, 0))
        .attr_str(IFLA_IFNAME, name);
    let mut index = None;
    sock.request(vec![m], |ty, payload| {
        if ty == RTM_NEWLINK && payload.len() >= 16 {
            index = Some(u32::from_ne_bytes([
                payload[4], payload[5], payload[6], payload[7],
            ]));
        }
    })?;
    index.ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
}

/// Removes the veth pair (both ends go together) and the namespace; missing ones are fine.
pub async fn remove(addrs: &SlotAddrs) -> Result<(), NetError> {
    let (veth, ns) = (addrs.veth(), addrs.netns());
    let mut root = Socket::open(NETLINK_ROUTE).map_err(nl("open a netlink socket"))?;
    let del = Msg::new(RTM_DELLINK, 0)
        .fixed(&ifinfomsg(0, 0, 0))
        .attr_str(IFLA_IFNAME, &veth);
    match root.request(vec![del], |_, _| {}) {
        Err(e) if e.raw_os_error() != Some(libc::ENODEV) => {
            return Err(nl("delete the veth pair")(e))
        }
        _ => {}
    }
    let path = netns_path(&ns);
    match nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(NetError::Netlink {
                step: "unmount the network namespace",
                source: e.into(),
            })
        }
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(nl("remove the namespace mount point")(e))
        }
        _ => Ok(()),
    }
}

/// True when the seat's namespace and host-side veth both still exist (after an agent restart).
pub fn exists(addrs: &SlotAddrs) -> bool {
    netns_path(&addrs.netns()).exists()
        && std::path::Path::new("/sys/class/net")
            .join(addrs.veth())
            .exists()
}

/// Opens the seat's namespace for `setns` in the sandbox's pre-exec.
pub fn open_netns(addrs: &SlotAddrs) -> Result<File, NetError> {
    File::open(netns_path(&addrs.netns())).map_err(|source| NetError::OpenNetns {
        name: addrs.netns(),
        source,
    })
}

/// Turns IPv4 forwarding on for one interface only (`net.ipv4.conf.<if>.forwarding`): the
/// kernel checks the flag of the interface a packet arrives on, so the seat's veth (outbound)
/// and the egress interface (replies) need it, and the host's other interfaces keep theirs.
pub fn enable_forwarding(ifname: &str) -> Result<(), NetError> {
    let path = format!("/proc/sys/net/ipv4/conf/{ifname}/forwarding");
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(&path, "1").map_err(|source| NetError::Sysctl { path, source })
}

/// The interface of the host's IPv4 default route (the first in `/proc/net/route`).
pub fn default_route_iface() -> Result<String, NetError> {
    let table = std::fs::read_to_string("/proc/net/route").map_err(|source| NetError::Sysctl {
        path: "/proc/net/route".into(),
        source,
    })?;
    default_route_in(&table).ok_or(NetError::NoDefaultRoute)
}

fn default_route_in(table: &str) -> Option<String> {
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Iface Destination Gateway Flags RefCnt Use Metric Mask ...; flag 1 = RTF_UP.
        let up = f
            .get(3)
            .and_then(|x| u32::from_str_radix(x, 16).ok())
            .is_some_and(|fl| fl & 1 != 0);
        (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000" && up).then(|| f[0].to_string())
    })
}

/// Runs a tool, feeding `stdin` when given; its stdout on success, stderr in the error.
pub async fn run(prog: &str, args: &[&str], stdin: Option<String>) -> Result<String, NetError> {
    let cmd_line = || format!("{prog} {}", args.join(" "));
    let mut child = Command::new(prog)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetError::Spawn {
            cmd: cmd_line(),
            source,
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|source| NetError::Spawn {
                cmd: cmd_line(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|source: io::Error| NetError::Spawn {
            cmd: cmd_line(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetError::Command {
            cmd: cmd_line(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_is_read_from_proc() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth1\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     eth9\t00000000\t00000000\t0000\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n";
        assert_eq!(default_route_in(table).as_deref(), Some("eth0"));
        assert_eq!(default_route_in("Iface\tDestination\n"), None);
    }
}
