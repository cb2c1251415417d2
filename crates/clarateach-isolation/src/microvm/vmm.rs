//! The `Vmm` trait: what differs between the two VMMs that run microVM seats, and nothing else.
//! `MicrovmBackend` (backend.rs) does everything both share (seat records, the seat's network,
//! the guest's config, the endpoint) and hands one seat to `QemuVmm` or `FirecrackerVmm` to run;
//! neither reaches back into the backend. Each step that can fail has its own `LaunchError`
//! variant carrying its cause.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clarateach_image::guest::config::GUEST_DAEMON_PORT;
use clarateach_image::ImageLayout;

use super::accel::Accel;
use super::lifecycle::{free_port, wait_ready, BootError};
use super::qemu::{self, QemuLaunch, QemuNet, RootDisk};
use super::seat::{VmPaths, VmRecord};
use super::{net, Flavour};

/// One failed step of starting a seat's VM, with its cause.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("creating the seat's qcow2 overlay")]
    CreateOverlay(#[source] std::io::Error),
    #[error("creating the seat's TAP on the bridge")]
    CreateTap(#[source] super::bridge::NetError),
    #[error("the seat has no bridge address (created before --microvm-bridge): recreate it")]
    NoBridgeAddress,
    #[error("copying the rootfs for the seat")]
    CopyRootfs(#[source] super::bridge::NetError),
    #[error("the seat's network has no TAP (Firecracker has no user-mode networking)")]
    NoTap,
    #[error("making the config disk")]
    ConfigDisk(#[source] std::io::Error),
    #[error("staging the jail")]
    StageJail(#[source] std::io::Error),
    #[error("writing {what} in the seat dir")]
    SeatFile {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("finding a free loopback port for the daemon")]
    FreePort(#[source] std::io::Error),
    #[error("running the VMM")]
    Spawn(#[source] std::io::Error),
    #[error("firecracker's API socket did not appear")]
    ApiSocket,
    #[error("configuring the VM over the API")]
    Configure(#[source] std::io::Error),
    #[error("booting the seat")]
    Boot(#[source] BootError),
}

/// The seat's network as the VMM sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum VmNet {
    /// QEMU user-mode networking (restricted), the daemon forwarded to a loopback port.
    User,
    /// A TAP the host prepared; the daemon answers on the guest's own address.
    Tap { ifname: String, guest_ip: Ipv4Addr },
}

/// Everything a VMM needs to run one seat.
pub(super) struct Launch<'a> {
    pub record: &'a VmRecord,
    pub paths: &'a VmPaths,
    pub net: VmNet,
    /// The guest's config disk (daemon token, environment with the API key, network): it lives
    /// in memory only.
    pub config_disk: Vec<u8>,
    /// The root disk: the backend image's rootfs, or the seat image's disk (`SeatRecord::root`).
    pub rootfs: PathBuf,
}

/// A VMM that runs seats.
#[async_trait]
pub(super) trait Vmm: Send + Sync {
    fn flavour(&self) -> Flavour;
    /// Who must own the seat's TAP (an unprivileged, jailed VMM), if anyone.
    fn tap_owner(&self) -> Option<(u32, u32)> {
        None
    }
    /// Starts the VM and waits until its daemon answers; where it answers.
    async fn launch(&self, l: Launch<'_>) -> Result<SocketAddr, LaunchError>;
}

/// QEMU `-M microvm`, lifecycle over QMP.
pub(super) struct QemuVmm {
    pub qemu: PathBuf,
    pub image: ImageLayout,
    pub accel: Accel,
    pub boot_timeout: Duration,
}

#[async_trait]
impl Vmm for QemuVmm {
    fn flavour(&self) -> Flavour {
        Flavour::Qemu
    }

    async fn launch(&self, l: Launch<'_>) -> Result<SocketAddr, LaunchError> {
        let paths = l.paths;
        let root = if !paths.overlay().exists()
            && super::find_binary(Path::new("qemu-img")).is_none()
        {
            tracing::warn!("qemu-img (qemu-utils) missing: the root disk is a throw-away snapshot");
            RootDisk::Snapshot(l.rootfs.clone())
        } else {
            if !paths.overlay().exists() {
                qemu::create_overlay(&l.rootfs, &paths.overlay())
                    .await
                    .map_err(LaunchError::CreateOverlay)?;
            }
            RootDisk::Overlay(paths.overlay())
        };
        let config_fd =
            Arc::new(qemu::config_memfd(&l.config_disk).map_err(LaunchError::ConfigDisk)?);
        // Two tries in user mode: another process may grab the free port before QEMU binds it.
        let mut last = None;
        for _ in 0..2 {
            let (net, addr) = match &l.net {
                VmNet::Tap { ifname, guest_ip } => (
                    QemuNet::Tap {
                        ifname: ifname.clone(),
                        mac: net::seat_mac(&l.record.key()),
                    },
                    SocketAddr::from((*guest_ip, GUEST_DAEMON_PORT)),
                ),
                VmNet::User => {
                    let port = free_port().map_err(LaunchError::FreePort)?;
                    let addr = SocketAddr::from(([127, 0, 0, 1], port));
                    (QemuNet::User { host_port: port }, addr)
                }
            };
            let launch = QemuLaunch {
                qemu: self.qemu.clone(),
                accel: self.accel,
                limits: l.record.limits.clone(),
                net,
                root: root.clone(),
                config_fd: Some(config_fd.clone()),
            };
            let _ = std::fs::remove_file(paths.console());
            let child = qemu::spawn(&launch, &self.image, paths).map_err(LaunchError::Spawn)?;
            match wait_ready(child, addr, self.boot_timeout, paths).await {
                Ok(()) => return Ok(addr),
                Err(e) if l.net == VmNet::User => last = Some(e),
                Err(e) => return Err(LaunchError::Boot(e)),
            }
        }
        Err(LaunchError::Boot(last.unwrap_or(BootError::Timeout {
            secs: self.boot_timeout.as_secs(),
            console: String::new(),
        })))
    }
}
