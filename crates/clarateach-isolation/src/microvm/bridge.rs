//! Host side of `Net::Bridge`: the bridge (created when missing), one TAP per seat attached to it,
//! and nothing else. Every step is idempotent so a restart or a retried start converges.
//!
//! Only `none` seats are bridged (`seat_net`): they get no default route in the guest, no NAT
//! and no forwarding on the host, so they reach the host's bridge address and nothing beyond
//! (the learner is not root in the guest and cannot add a route). The TAPs are bridge ports with
//! `isolated on`, so seats cannot reach each other either, only the host. Seats with a network
//! (`open`, allow-list) never come here: they get a seat-network TAP under the agent's nft rules
//! (`netpolicy::tap`), which drop the host, private ranges and other seats; the bridge used to
//! masquerade them through iptables with nothing dropped, which is why that is gone.

use std::net::Ipv4Addr;

use super::net::Ipv4Subnet;

/// An `ip`/`bridge` invocation that failed; the message carries its stderr.
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

/// (Re)creates the seat's TAP on `bridge`, isolated from the other seats' ports; `owner` (uid,
/// gid) lets an unprivileged VMM open it.
pub async fn add_tap(tap: &str, bridge: &str, owner: Option<(u32, u32)>) -> Result<(), NetError> {
    if link_exists(tap) {
        run("ip", &["link", "del", tap]).await?;
    }
    let (uid, gid) = owner.map_or((String::new(), String::new()), |(u, g)| {
        (u.to_string(), g.to_string())
    });
    let mut add = vec!["tuntap", "add", "dev", tap, "mode", "tap"];
    if owner.is_some() {
        add.extend(["user", &uid, "group", &gid]);
    }
    run("ip", &add).await?;
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
