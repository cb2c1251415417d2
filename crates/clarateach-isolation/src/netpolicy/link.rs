//! The kernel objects of one seat's network: a named network namespace (`/run/netns/ctns-*`,
//! so it outlives the agent and a restarted agent finds it), a veth pair with the host side in
//! the root namespace and `eth0` inside, addresses and the seat's route. Made with iproute2 in
//! two `ip -batch` runs (one per namespace); every step is undone by `remove`.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::addr::SlotAddrs;
use super::NetError;

/// Where `ip netns` keeps named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Path of a named namespace.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Creates the namespace and the veth pair for a seat, replacing leftovers of an earlier run.
/// `default_route` gives the seat a default route via its gateway (open mode); without it the
/// seat reaches its own /30 only (allow mode: just the proxy).
pub async fn create(addrs: &SlotAddrs, default_route: bool) -> Result<(), NetError> {
    let (veth, ns) = (addrs.veth(), addrs.netns());
    remove(addrs).await?;
    // `netns add` inside the batch returns to the root namespace for the next lines.
    let host = format!(
        "netns add {ns}\n\
         link add {veth} type veth peer name eth0 netns {ns}\n\
         addr add {}/30 dev {veth}\n\
         link set {veth} up\n",
        addrs.host
    );
    run("ip", &["-batch", "-"], Some(host)).await?;
    let mut inner = format!(
        "link set lo up\naddr add {}/30 dev eth0\nlink set eth0 up\n",
        addrs.seat
    );
    if default_route {
        inner.push_str(&format!("route add default via {}\n", addrs.host));
    }
    run("ip", &["-n", &ns, "-batch", "-"], Some(inner)).await?;
    Ok(())
}

/// Removes the veth pair (both ends go together) and the namespace; missing ones are fine.
pub async fn remove(addrs: &SlotAddrs) -> Result<(), NetError> {
    let (veth, ns) = (addrs.veth(), addrs.netns());
    let mut batch = String::new();
    if std::path::Path::new("/sys/class/net").join(&veth).exists() {
        batch.push_str(&format!("link del {veth}\n"));
    }
    if netns_path(&ns).exists() {
        batch.push_str(&format!("netns del {ns}\n"));
    }
    if !batch.is_empty() {
        run("ip", &["-batch", "-"], Some(batch)).await?;
    }
    Ok(())
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

/// The interface of the host's default route (`ip -o route show default`).
pub async fn default_route_iface() -> Result<String, NetError> {
    let out = run("ip", &["-o", "-4", "route", "show", "default"], None).await?;
    let mut words = out.split_whitespace();
    while let Some(w) = words.next() {
        if w == "dev" {
            if let Some(dev) = words.next() {
                return Ok(dev.to_string());
            }
        }
    }
    Err(NetError::NoDefaultRoute)
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
