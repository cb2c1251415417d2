//! Starting a Firecracker seat: a copy of the rootfs (Firecracker has no copy-on-write disk), the
//! seat's network (`seat_net`: a seat-network TAP with its /30 from the one allocator, under the
//! workshop's policy, or a bridge TAP for `none` seats with `--microvm-bridge`), the config disk
//! carrying the guest's address and environment, then Firecracker itself, through the jailer when
//! one is installed (`jailer.rs`), configured over its API socket.
//!
//! The config disk holds the workshop's API key and never reaches a disk: without the jailer it
//! is a read-only memfd the firecracker process inherits as fd [`CONFIG_FD`] and opens as
//! `/proc/self/fd/3`; under the jailer (which closes every inherited fd) it is a file on a
//! tmpfs mounted into the jail for the start only, unlinked and unmounted once Firecracker has
//! the drive open.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use clarateach_core::agent_proto::SeatKey;

use super::bridge::run;
use super::firecracker::{self, FcSpec};
use super::jailer::{find_jailer, jail_id, Jail, StagedFile};
use super::lifecycle::{wait_for_path, wait_ready};
use super::qemu::{config_memfd, inherit_fd, CONFIG_FD};
use super::vmm::{Launch, LaunchError, VmNet, Vmm};
use super::{Flavour, MicrovmConfig};
use clarateach_image::ImageLayout;

/// Where Firecracker finds the memfd config disk it inherited (unjailed).
pub const CONFIG_FD_PATH: &str = "/proc/self/fd/3";
/// The jail's tmpfs for the config disk, and the disk's path inside the jail.
const JAIL_SECRETS: &str = "secrets";
const JAIL_CONFIG: &str = "/secrets/config.img";

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

/// Firecracker, through its jailer when one is configured or installed next to it.
pub(super) struct FirecrackerVmm {
    pub cfg: MicrovmConfig,
    pub image: ImageLayout,
}

#[async_trait]
impl Vmm for FirecrackerVmm {
    fn flavour(&self) -> Flavour {
        Flavour::Firecracker
    }

    fn tap_owner(&self) -> Option<(u32, u32)> {
        // The jailed VMM is not root: the TAP must be its own to open.
        find_jailer(
            self.cfg.jailer_binary.as_deref(),
            &self.cfg.firecracker_binary,
        )
        .map(|_| (self.cfg.jail_uid, self.cfg.jail_gid))
    }

    async fn launch(&self, l: Launch<'_>) -> Result<SocketAddr, LaunchError> {
        let (record, paths) = (l.record, l.paths);
        let key = record.key();
        let file = |what| move |source| LaunchError::SeatFile { what, source };
        let VmNet::Tap {
            ifname: tap,
            guest_ip,
        } = l.net
        else {
            return Err(LaunchError::NoTap);
        };
        if !paths.rootfs_copy().exists() {
            let (src, dst) = (s(&l.rootfs), s(&paths.rootfs_copy()));
            run("cp", &["--sparse=always", "--reflink=auto", &src, &dst])
                .await
                .map_err(LaunchError::CopyRootfs)?;
        }
        let jail = jail(&self.cfg, &key);
        for f in [paths.api_socket(), paths.jail_id(), paths.config_disk()] {
            let _ = std::fs::remove_file(f);
        }
        let files = [
            (self.image.vmlinux(), "vmlinux", false),
            (self.image.initrd(), "initrd.cpio", false),
            (paths.rootfs_copy(), "rootfs.ext4", true),
            (paths.volume.clone(), "volume.img", true),
        ];
        let mut secrets: Option<JailSecrets> = None;
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
                let mut inside = j.stage(&staged).map_err(LaunchError::StageJail)?;
                secrets =
                    Some(JailSecrets::mount(j, &l.config_disk).map_err(LaunchError::ConfigDisk)?);
                inside.push(PathBuf::from(JAIL_CONFIG));
                std::fs::write(paths.jail_id(), &j.id).map_err(file("jail-id"))?;
                let mut cmd = tokio::process::Command::new(&j.jailer);
                cmd.args(j.args());
                tracing::info!(jail = %j.root().display(), "starting firecracker through the jailer");
                (cmd, inside, j.api_socket())
            }
            None => {
                let fd = config_memfd(&l.config_disk).map_err(LaunchError::ConfigDisk)?;
                let mut cmd = tokio::process::Command::new(&self.cfg.firecracker_binary);
                cmd.arg("--api-sock").arg(paths.api_socket());
                inherit_fd(cmd.as_std_mut(), std::sync::Arc::new(fd), CONFIG_FD);
                let mut host: Vec<PathBuf> = files.iter().map(|f| f.0.clone()).collect();
                host.push(PathBuf::from(CONFIG_FD_PATH));
                (cmd, host, paths.api_socket())
            }
        };
        let console = std::fs::File::create(paths.console()).map_err(file("console.log"))?;
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(console)
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(LaunchError::Spawn)?;
        drop(cmd); // closes the parent's copy of the memfd
        if let Some(pid) = child.id() {
            std::fs::write(paths.pidfile(), pid.to_string()).map_err(file("vmm.pid"))?;
        }
        wait_for_path(&socket, Duration::from_secs(5))
            .await
            .map_err(|_| LaunchError::ApiSocket)?;
        if socket != paths.api_socket() {
            // Stop, pause and Ctrl-Alt-Del all use the seat dir's socket path.
            std::os::unix::fs::symlink(&socket, paths.api_socket())
                .map_err(file("the API socket link"))?;
        }
        let spec = FcSpec {
            limits: record.limits.clone(),
            vmlinux: disks[0].clone(),
            initrd: disks[1].clone(),
            rootfs: disks[2].clone(),
            volume: disks[3].clone(),
            config_disk: disks[4].clone(),
            tap,
            guest_mac: guest_mac(guest_ip),
        };
        let configured =
            firecracker::apply(&paths.api_socket(), &firecracker::requests(&spec)).await;
        // Firecracker has the drive open once it started the instance: the secret's file goes.
        drop(secrets);
        configured.map_err(LaunchError::Configure)?;
        let addr: SocketAddr =
            (guest_ip, clarateach_image::guest::config::GUEST_DAEMON_PORT).into();
        wait_ready(child, addr, self.cfg.boot_timeout, paths)
            .await
            .map_err(LaunchError::Boot)?;
        Ok(addr)
    }
}

/// A stable MAC from the guest's address.
pub(super) fn guest_mac(ip: std::net::Ipv4Addr) -> String {
    let o = ip.octets();
    format!("06:00:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// The jail's config disk on a tmpfs of its own, mounted for the start only: dropped, it unlinks
/// the file and detaches the mount (Firecracker's open descriptor keeps the bytes alive, in
/// memory, for the VM's life).
struct JailSecrets {
    dir: PathBuf,
}

impl JailSecrets {
    fn mount(j: &Jail, disk: &[u8]) -> std::io::Result<Self> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = j.root().join(JAIL_SECRETS);
        std::fs::create_dir_all(&dir)?;
        let opts = format!("size=1m,mode=0700,uid={},gid={}", j.uid, j.gid);
        nix::mount::mount(
            Some("clarateach-secrets"),
            &dir,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOEXEC,
            Some(opts.as_str()),
        )
        .map_err(std::io::Error::from)?;
        let this = Self { dir };
        let path = this.dir.join("config.img");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&path)?;
        f.write_all(disk)?;
        std::os::unix::fs::chown(&path, Some(j.uid), Some(j.gid))?;
        Ok(this)
    }
}

impl Drop for JailSecrets {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("config.img"));
        let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a Firecracker without the jailer is given: the config disk (with the API key) as
    /// a memfd it inherits at fd 3 and opens as `/proc/self/fd/3`, never a path in the data dir.
    #[test]
    fn an_unjailed_firecracker_reads_its_config_disk_from_an_inherited_memfd() {
        let mut env = std::collections::BTreeMap::new();
        env.insert(
            "ANTHROPIC_API_KEY".to_string(),
            "sk-ant-test-4711".to_string(),
        );
        let disk = clarateach_image::GuestConfig::new("tok", env).to_disk();
        let fd = config_memfd(&disk).expect("memfd");
        // A child opens the path exactly as Firecracker opens `path_on_host`.
        let mut cmd = std::process::Command::new("cat");
        cmd.arg(CONFIG_FD_PATH);
        inherit_fd(&mut cmd, std::sync::Arc::new(fd), CONFIG_FD);
        let out = cmd.output().expect("run cat");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, disk);
        let spec = FcSpec {
            limits: clarateach_core::Limits::default(),
            vmlinux: "/img/vmlinux".into(),
            initrd: "/img/initrd.cpio".into(),
            rootfs: "/d/rootfs.ext4".into(),
            volume: "/d/volume.img".into(),
            config_disk: CONFIG_FD_PATH.into(),
            tap: "ct0ad60001".into(),
            guest_mac: guest_mac("10.214.0.2".parse().expect("ip")),
        };
        let calls = firecracker::requests(&spec);
        let cfg = calls
            .iter()
            .find(|c| c.path == "/drives/config")
            .expect("config drive");
        assert_eq!(cfg.body["path_on_host"], CONFIG_FD_PATH);
        assert_eq!(cfg.body["is_read_only"], true);
        assert_eq!(spec.guest_mac, "06:00:0a:d6:00:02");
    }
}
