//! Host side of `Net::Bridge`: the bridge (created when missing), one TAP per seat attached to it,
//! and nothing else. Every step is idempotent so a restart or a retried start converges.
//!
//! Egress: a seat without `limits.egress` gets no default route in the guest, no NAT and no
//! forwarding rule on the host, so it reaches the host's bridge address and nothing beyond (its
//! learner is not root in the guest and cannot add a route). The TAPs are bridge ports with
//! `isolated on`, so seats cannot reach each other either, only the host. A seat with egress gets
//! the bridge as its default gateway and, where `iptables` is installed, a MASQUERADE rule for its
//! own address; the host must have `net.ipv4.ip_forward=1` (we do not flip host-wide settings).

use std::net::Ipv4Addr;

use super::net::Ipv4Subnet;

/// An `ip`/`bridge`/`iptables` invocation that failed; the message carries its stderr.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NetError(pub String);

/// Creates `bridge` with the subnet's first host address when it does not exist, and brings it up.
pub async fn ensure_bridge(bridge: &str, subnet: &Ipv4Subnet) -> Result<(), NetError> {
    // Seats starting together race here: a step that fails because another did it is fine.
    if !link_exists(bridge) {
        tracing::info!(bridge, %subnet, "creating the seat bridge");
        let added = run("ip", &["link", "add", "name", bridge, "type", "bridge"]).await;
        if added.is_err() && !link_exists(bridge) {
            return added;
        }
    }
    let addr = format!("{}/{}", subnet.gateway(), subnet.prefix());
    if !has_addr(bridge, subnet.gateway()).await {
        let added = run("ip", &["addr", "add", &addr, "dev", bridge]).await;
        if added.is_err() && !has_addr(bridge, subnet.gateway()).await {
            return added;
        }
    }
    run("ip", &["link", "set", bridge, "up"]).await
}

/// (Re)creates the seat's TAP on `bridge`, isolated from the other seats' ports.
pub async fn add_tap(tap: &str, bridge: &str) -> Result<(), NetError> {
    if link_exists(tap) {
        run("ip", &["link", "del", tap]).await?;
    }
    run("ip", &["tuntap", "add", "dev", tap, "mode", "tap"]).await?;
    run("ip", &["link", "set", tap, "master", bridge]).await?;
    // Port isolation (Linux 4.18+): isolated ports only talk to non-isolated ones (the host).
    if let Err(e) = run("bridge", &["link", "set", "dev", tap, "isolated", "on"]).await {
        tracing::warn!(tap, error = %e, "bridge port isolation unavailable: seats on the bridge can reach each other");
    }
    run("ip", &["link", "set", tap, "up"]).await
}

/// Removes a TAP; a missing one is not an error.
pub async fn del_tap(tap: &str) -> Result<(), NetError> {
    if link_exists(tap) {
        run("ip", &["link", "del", tap]).await?;
    }
    Ok(())
}

/// Adds (`on`) or removes a MASQUERADE rule for one guest address leaving through anything but
/// the bridge. Without iptables on the host, egress stays off and a warning says why.
pub async fn masquerade(bridge: &str, ip: Ipv4Addr, on: bool) -> Result<(), NetError> {
    if super::find_binary(std::path::Path::new("iptables")).is_none() {
        if on {
            tracing::warn!(%ip, "iptables is not installed: this seat's egress cannot be NATed");
        }
        return Ok(());
    }
    let src = format!("{ip}/32");
    let rule = |op: &'static str| {
        let src = src.clone();
        let br = bridge.to_string();
        async move {
            let args = ["-t", "nat", op, "POSTROUTING", "-s", &src, "!", "-o", &br];
            let args: Vec<&str> = args.into_iter().chain(["-j", "MASQUERADE"]).collect();
            run("iptables", &args).await
        }
    };
    let forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
    if on && forwarding.trim() != "1" {
        tracing::warn!(%ip, "net.ipv4.ip_forward is off: this seat's egress will not be routed");
    }
    let present = rule("-C").await.is_ok();
    match (on, present) {
        (true, false) => rule("-A").await,
        (false, true) => rule("-D").await,
        _ => Ok(()),
    }
}

/// Whether a network interface of that name exists.
pub fn link_exists(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('/')
        && std::path::Path::new("/sys/class/net").join(name).exists()
}

async fn has_addr(dev: &str, ip: Ipv4Addr) -> bool {
    let out = tokio::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", dev])
        .output()
        .await;
    out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("inet {ip}/")))
}

/// Runs a host networking tool; its stderr becomes the error.
pub async fn run(prog: &str, args: &[&str]) -> Result<(), NetError> {
    let out = tokio::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| NetError(format!("{prog}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError(format!(
            "{prog} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
