//! Stage 2, from the real root: the rest of the mounts, the config disk, eth0 and the
//! `/workspace` volume, then hands over to the supervisor.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{mount, MsFlags};

use super::boot::mount_fs;
use super::config::GuestConfig;
use super::{say, supervise, GuestError};
use crate::rootfs::LEARNER_UID;

pub(super) fn root_stage() -> Result<(), GuestError> {
    for (src, target, fstype) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
    ] {
        mount_fs(src, target, fstype)?;
    }
    mount_fs("devpts", "/dev/pts", "devpts")?;
    for dir in ["/dev/shm", "/tmp", "/run"] {
        let _ = std::fs::create_dir_all(dir);
        mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
        )
        .map_err(GuestError::sys(format!("mounting tmpfs on {dir}")))?;
    }
    let disks = Disks::scan()?;
    let config = disks
        .config
        .ok_or_else(|| GuestError::Setup("no config disk attached".into()))?;
    let _ = nix::unistd::sethostname(&config.hostname);
    network(&config)?;
    let volume = disks
        .volume
        .ok_or_else(|| GuestError::Setup("no /workspace volume disk attached".into()))?;
    mount_volume(&volume)?;
    supervise::supervise(&config)
}

/// The guest's virtio disks other than the root: the config disk and the volume.
struct Disks {
    config: Option<GuestConfig>,
    volume: Option<PathBuf>,
}

impl Disks {
    fn scan() -> Result<Self, GuestError> {
        let root_dev = std::fs::metadata("/")
            .map_err(GuestError::io("stat /"))?
            .dev();
        let mut names: Vec<String> = std::fs::read_dir("/sys/block")
            .map_err(GuestError::io("listing /sys/block"))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("vd"))
            .collect();
        names.sort();
        let mut found = Self {
            config: None,
            volume: None,
        };
        for name in names {
            let devno =
                std::fs::read_to_string(format!("/sys/block/{name}/dev")).unwrap_or_default();
            if parse_devno(devno.trim()) == Some(root_dev) {
                continue;
            }
            let path = PathBuf::from(format!("/dev/{name}"));
            let mut head = vec![0u8; 64 * 1024];
            let n = std::fs::File::open(&path)
                .and_then(|mut f| f.read(&mut head))
                .unwrap_or(0);
            match GuestConfig::from_disk(&head[..n]) {
                Some(cfg) if found.config.is_none() => found.config = Some(cfg),
                _ if found.volume.is_none() => found.volume = Some(path),
                _ => {}
            }
        }
        Ok(found)
    }
}

/// `"253:0"` -> the `st_dev` encoding of that device number.
fn parse_devno(s: &str) -> Option<u64> {
    let (maj, min) = s.split_once(':')?;
    Some(nix::sys::stat::makedev(
        maj.parse().ok()?,
        min.parse().ok()?,
    ))
}

/// eth0 from the config disk (user-net defaults when it carries none or a bad one); no default
/// route when the host gave no gateway (a bridged seat without egress).
fn network(cfg: &GuestConfig) -> Result<(), GuestError> {
    let net = cfg.net.or_default();
    if net != cfg.net {
        say(format!(
            "bad network config {:?}: using the user-net defaults",
            cfg.net
        ));
    }
    ip(&["link", "set", "lo", "up"])?;
    ip(&["link", "set", "eth0", "up"])?;
    ip(&["addr", "add", &net.address, "dev", "eth0"])?;
    if !net.gateway.is_empty() {
        ip(&["route", "add", "default", "via", &net.gateway])?;
    }
    if !net.dns.is_empty() {
        let _ = std::fs::write("/etc/resolv.conf", format!("nameserver {}\n", net.dns));
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<(), GuestError> {
    let status = Command::new("/usr/sbin/ip")
        .args(args)
        .status()
        .map_err(GuestError::io("running ip"))?;
    if !status.success() {
        return Err(GuestError::Setup(format!(
            "ip {} failed: {status}",
            args.join(" ")
        )));
    }
    Ok(())
}

/// Mounts the volume on /workspace, formatting it first when it holds no ext4 file system.
fn mount_volume(dev: &Path) -> Result<(), GuestError> {
    if !is_ext4(dev) {
        say(format!("{} is blank: formatting it", dev.display()));
        let owner = format!("root_owner={LEARNER_UID}:{LEARNER_UID}");
        let status = Command::new("/sbin/mkfs.ext4")
            .args(["-q", "-F", "-L", "workspace", "-E", &owner])
            .arg(dev)
            .status()
            .map_err(GuestError::io("running mkfs.ext4"))?;
        if !status.success() {
            return Err(GuestError::Setup(format!(
                "mkfs.ext4 {} failed: {status}",
                dev.display()
            )));
        }
    }
    let _ = std::fs::create_dir_all("/workspace");
    mount(
        Some(dev),
        "/workspace",
        Some("ext4"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(GuestError::sys("mounting /workspace"))?;
    let meta = std::fs::metadata("/workspace").map_err(GuestError::io("stat /workspace"))?;
    if meta.uid() != LEARNER_UID {
        let id = Some(nix::unistd::Uid::from_raw(LEARNER_UID));
        let _ = nix::unistd::chown(
            "/workspace",
            id,
            Some(nix::unistd::Gid::from_raw(LEARNER_UID)),
        );
    }
    let _ = std::fs::remove_dir_all("/workspace/lost+found");
    Ok(())
}

/// ext4 superblock magic 0xEF53 sits at byte 1080 of the device.
fn is_ext4(dev: &Path) -> bool {
    let mut head = [0u8; 1082];
    std::fs::File::open(dev)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head[1080..1082] == [0x53, 0xef]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devno_parses() {
        assert_eq!(
            parse_devno("253:16"),
            Some(nix::sys::stat::makedev(253, 16))
        );
        assert_eq!(parse_devno("junk"), None);
    }
}
