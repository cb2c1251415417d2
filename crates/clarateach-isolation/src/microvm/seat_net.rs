//! Which network a microVM seat gets, for both VMMs, and bringing it up before the VMM starts.
//!
//! - `open` and allow-list seats, whatever `--microvm-bridge` says, and every Firecracker seat
//!   without a bridge: a TAP from the agent's seat network (`netpolicy::tap`), one /30 of
//!   `--seat-subnet` per seat from the one allocator the sandbox seats use, under the same nft
//!   rules as a sandbox seat's veth (no host, loopback, link-local, private ranges or other
//!   seats; open seats NAT out of the egress interface; allow seats reach only their proxy).
//! - `none` seats under QEMU: user-mode networking with `restrict=on` (no route anywhere, the
//!   daemon's port forwarded to 127.0.0.1), or with `--microvm-bridge` a TAP on that bridge
//!   with an isolated port and no default route (no user-mode stack in the VMM process).
//!
//! The bridge is thus kept for `none` seats only; it no longer carries any seat's egress.

use std::net::Ipv4Addr;

use clarateach_image::{GuestConfig, GuestNet};

use super::seat::{VmPaths, VmRecord};
use super::vmm::LaunchError;
use super::{bridge, net, Flavour, Net};
use crate::netpolicy::{NetManager, TapNet};
use crate::BackendError;

/// A started seat's network link.
#[derive(Debug, Clone)]
pub(super) enum SeatLink {
    /// QEMU user-mode networking (restricted): the daemon on a forwarded loopback port.
    User,
    /// A TAP on the `--microvm-bridge` bridge, for a `none` seat.
    Bridge {
        tap: String,
        ip: Ipv4Addr,
        guest: GuestNet,
    },
    /// A TAP of the seat network.
    Policy(TapNet),
}

impl SeatLink {
    /// The TAP the VMM attaches to, if any.
    pub(super) fn tap(&self) -> Option<&str> {
        match self {
            Self::User => None,
            Self::Bridge { tap, .. } => Some(tap),
            Self::Policy(t) => Some(&t.ifname),
        }
    }

    /// The guest's own address, where the host dials its daemon (None: user-mode forward).
    pub(super) fn guest_ip(&self) -> Option<Ipv4Addr> {
        match self {
            Self::User => None,
            Self::Bridge { ip, .. } => Some(*ip),
            Self::Policy(t) => Some(t.addrs.seat),
        }
    }

    /// Puts the link's guest side into the config disk: `eth0`'s address, route and resolver,
    /// and for an allow seat the proxy variables (in memory only, like the rest of the env).
    pub(super) fn configure(&self, config: &mut GuestConfig) {
        match self {
            Self::User => {}
            Self::Bridge { guest, .. } => config.net = guest.clone(),
            Self::Policy(t) => {
                config.net = guest_net(t);
                config
                    .env
                    .extend(t.env.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
}

/// `eth0` of a seat-network guest.
pub(super) fn guest_net(t: &TapNet) -> GuestNet {
    let word = |ip: Option<Ipv4Addr>| ip.map(|i| i.to_string()).unwrap_or_default();
    GuestNet {
        address: t.guest_address(),
        gateway: word(t.gateway()),
        dns: word(t.dns()),
    }
}

/// Whether the seat's network comes from the seat network (`netpolicy`) rather than `cfg.net`.
pub(super) fn uses_seat_net(cfg_net: &Net, flavour: Flavour, record: &VmRecord) -> bool {
    record.limits.network.reaches_out()
        || (flavour == Flavour::Firecracker && matches!(cfg_net, Net::User))
}

/// Brings the seat's link up. `owner`: who the TAP belongs to (a jailed, unprivileged VMM).
pub(super) async fn bring_up(
    cfg_net: &Net,
    seat_net: &NetManager,
    record: &VmRecord,
    paths: &VmPaths,
    flavour: Flavour,
    owner: Option<(u32, u32)>,
) -> Result<SeatLink, BackendError> {
    let key = record.key();
    if uses_seat_net(cfg_net, flavour, record) {
        return seat_net
            .setup_tap(&key, &record.limits.network, owner)
            .await
            .map(SeatLink::Policy)
            .map_err(|e| BackendError::Network(key, e));
    }
    let Net::Bridge { bridge: br, subnet } = cfg_net else {
        return Ok(SeatLink::User);
    };
    let fail = |e: LaunchError| BackendError::Launch(key.clone(), e);
    let ip = record
        .guest_ip
        .ok_or_else(|| fail(LaunchError::NoBridgeAddress))?;
    let tap = net::tap_name(&key);
    bridge::ensure_bridge(br, subnet)
        .await
        .map_err(|e| fail(LaunchError::CreateTap(e)))?;
    bridge::add_tap(&tap, br, owner)
        .await
        .map_err(|e| fail(LaunchError::CreateTap(e)))?;
    std::fs::write(paths.dir.join("tap"), &tap).map_err(|source| {
        fail(LaunchError::SeatFile {
            what: "the TAP's name",
            source,
        })
    })?;
    Ok(SeatLink::Bridge {
        tap,
        ip,
        guest: net::guest_net(subnet, ip, false),
    })
}

/// After an agent restart, for a running seat: its seat-network rules and listener come back
/// (a bridge TAP or user-mode seat needs nothing: the kernel or the VMM kept it). A seat that
/// ran on the seat network has a recorded slot, so no KVM probe is needed to tell the flavour.
pub(super) async fn readopt(seat_net: &NetManager, record: &VmRecord) -> Result<(), BackendError> {
    let key = record.key();
    if seat_net.addrs(&key).is_none() {
        return Ok(());
    }
    seat_net
        .readopt_tap(&key, &record.limits.network)
        .await
        .map_err(|e| BackendError::Network(key, e))
}
