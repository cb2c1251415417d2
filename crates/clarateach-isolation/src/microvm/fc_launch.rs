//! Starting a Firecracker seat: a copy of the rootfs (Firecracker has no copy-on-write disk), a
//! TAP with a /30 per seat, the config disk carrying the guest's address, then Firecracker
//! itself, through the jailer when one is installed (`jailer.rs`), configured over its API socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clarateach_core::agent_proto::SeatKey;

use super::backend::MicrovmBackend;
use super::bridge::run;
use super::firecracker::{self, FcSpec};
use super::jailer::{find_jailer, jail_id, Jail, StagedFile};
use super::lifecycle::{save_addr, wait_for_path, wait_ready};
use super::seat::{SeatPaths, SeatRecord};
use super::MicrovmConfig;
use crate::{BackendError, DaemonEndpoint};

/// The seat's jail when a jailer is configured or installed next to firecracker.
pub(super) fn jail(cfg: &MicrovmConfig, key: &SeatKey) -> Option<Jail> {
    Some(Jail {
        jailer: find_jailer(cfg.jailer_binary.as_deref(), &cfg.firecracker_binary)?,
        firecracker: cfg.firecracker_binary.clone(),
        id: jail_id(key),
        uid: cfg.jail_uid,
        gid: cfg.jail_gid,
        chroot_base: cfg.data_dir.join("jail"),
    })
}

pub(super) async fn start_firecracker(
    b: &MicrovmBackend,
    record: &SeatRecord,
    paths: &SeatPaths,
) -> Result<DaemonEndpoint, BackendError> {
    let key = record.key();
    let fail = |e: String| BackendError::Start(key.clone(), e);
    let id = format!("{}/{}", key.workshop_id, key.seat);
    if !paths.rootfs_copy().exists() {
        let (src, dst) = (s(&b.image.rootfs()), s(&paths.rootfs_copy()));
        run("cp", &["--sparse=always", "--reflink=auto", &src, &dst])
            .await
            .map_err(|e| fail(e.to_string()))?;
    }
    let jail = jail(&b.cfg, &key);
    let (tap, (host_ip, guest_ip)) = (firecracker::tap_name(&id), firecracker::seat_subnet(&id));
    let _ = run("ip", &["link", "del", &tap]).await;
    let mut add = vec!["tuntap", "add", "dev", &tap, "mode", "tap"];
    // The jailed VMM is not root: the TAP must be its own to open.
    let (uid, gid) = (b.cfg.jail_uid.to_string(), b.cfg.jail_gid.to_string());
    if jail.is_some() {
        add.extend(["user", &uid, "group", &gid]);
    }
    let host_cidr = format!("{host_ip}/30");
    for args in [
        add,
        vec!["addr", "add", &host_cidr, "dev", &tap],
        vec!["link", "set", &tap, "up"],
    ] {
        run("ip", &args).await.map_err(|e| fail(e.to_string()))?;
    }
    std::fs::write(paths.dir.join("tap"), &tap).map_err(|e| fail(e.to_string()))?;
    // Firecracker opens its drives by path (inside the jail), so its config disk is a 0600 file
    // holding the environment while the VM runs; QEMU seats get a memfd instead. Known gap.
    let mut config =
        clarateach_image::GuestConfig::new(record.token.clone(), b.env_of(&record.key()));
    config.net = clarateach_image::GuestNet {
        address: format!("{guest_ip}/30"),
        gateway: host_ip.to_string(),
        dns: "1.1.1.1".into(),
    };
    super::seat::write_private(&paths.config_disk(), &config.to_disk())
        .map_err(|e| fail(e.to_string()))?;
    for f in [paths.api_socket(), paths.jail_id()] {
        let _ = std::fs::remove_file(f);
    }
    let files = [
        (b.image.vmlinux(), "vmlinux", false),
        (b.image.initrd(), "initrd.cpio", false),
        (paths.rootfs_copy(), "rootfs.ext4", true),
        (paths.volume.clone(), "volume.img", true),
        (paths.config_disk(), "config.img", true),
    ];
    let (mut cmd, disks, socket) = match &jail {
        Some(j) => {
            let staged: Vec<StagedFile> = files
                .iter()
                .map(|(host, name, owned)| StagedFile {
                    host: host.clone(),
                    name,
                    owned: *owned,
                })
                .collect();
            let inside = j
                .stage(&staged)
                .map_err(|e| fail(format!("staging the jail: {e}")))?;
            std::fs::write(paths.jail_id(), &j.id).map_err(|e| fail(e.to_string()))?;
            let mut cmd = tokio::process::Command::new(&j.jailer);
            cmd.args(j.args());
            tracing::info!(jail = %j.root().display(), "starting firecracker through the jailer");
            (cmd, inside, j.api_socket())
        }
        None => {
            let mut cmd = tokio::process::Command::new(&b.cfg.firecracker_binary);
            cmd.arg("--api-sock").arg(paths.api_socket());
            let host: Vec<PathBuf> = files.iter().map(|f| f.0.clone()).collect();
            (cmd, host, paths.api_socket())
        }
    };
    let console = std::fs::File::create(paths.console()).map_err(|e| fail(e.to_string()))?;
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(console)
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| fail(format!("cannot run firecracker: {e}")))?;
    if let Some(pid) = child.id() {
        std::fs::write(paths.pidfile(), pid.to_string()).map_err(|e| fail(e.to_string()))?;
    }
    wait_for_path(&socket, Duration::from_secs(5))
        .await
        .map_err(fail)?;
    if socket != paths.api_socket() {
        // Stop, pause and Ctrl-Alt-Del all use the seat dir's socket path.
        std::os::unix::fs::symlink(&socket, paths.api_socket()).map_err(|e| fail(e.to_string()))?;
    }
    let octets = guest_ip.octets();
    let spec = FcSpec {
        limits: record.limits.clone(),
        vmlinux: disks[0].clone(),
        initrd: disks[1].clone(),
        rootfs: disks[2].clone(),
        volume: disks[3].clone(),
        config_disk: disks[4].clone(),
        tap,
        guest_mac: format!(
            "06:00:{:02x}:{:02x}:{:02x}:{:02x}",
            octets[0], octets[1], octets[2], octets[3]
        ),
    };
    firecracker::apply(&paths.api_socket(), &firecracker::requests(&spec))
        .await
        .map_err(|e| fail(e.to_string()))?;
    let addr: SocketAddr = (guest_ip, clarateach_image::guest::config::GUEST_DAEMON_PORT).into();
    wait_ready(child, addr, b.cfg.boot_timeout, paths)
        .await
        .map_err(fail)?;
    save_addr(record, paths, addr).map_err(fail)
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
