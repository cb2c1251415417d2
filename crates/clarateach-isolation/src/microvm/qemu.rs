//! The QEMU flavour: one `qemu-system-x86_64 -M microvm` per seat. The command line is built by a
//! pure function (unit-tested); the VM boots the image's bzImage and initramfs, with the seat's
//! qcow2 overlay over the read-only rootfs, the volume disk and the config disk, user-mode
//! networking forwarding 127.0.0.1:<port> to the daemon (or a TAP on a bridge, see `net.rs`), a
//! QMP socket and a serial log.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use clarateach_core::Limits;
use clarateach_image::guest::config::GUEST_DAEMON_PORT;
use clarateach_image::ImageLayout;

use super::accel::Accel;
use super::seat::VmPaths;

/// The kernel command line: serial console, root on the first disk, a fixed TSC frequency (about
/// one boot in seven hangs calibrating the TSC under TCG without it), exit on panic, and
/// `-- guest-init` so the initramfs' `/init` (the clarateach binary) runs that subcommand.
pub const KERNEL_CMDLINE: &str =
    "console=ttyS0 root=/dev/vda rw tsc_early_khz=2500000 panic=-1 quiet loglevel=4 -- guest-init";

/// Inputs of one seat's QEMU command line.
#[derive(Debug, Clone)]
pub struct QemuLaunch {
    pub qemu: PathBuf,
    pub accel: Accel,
    pub limits: Limits,
    pub net: QemuNet,
    /// The config disk as a read-only memfd (it holds the seat's environment, which never goes
    /// to the agent's disk), handed to QEMU as fd [`CONFIG_FD`] in fd set 1; `None` uses the
    /// seat's `config.img` file.
    pub config_fd: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    /// Root disk: the seat's qcow2 overlay, or the shared raw rootfs opened with `snapshot=on`
    /// when `qemu-img` is missing (then root changes do not survive a stop).
    pub root: RootDisk,
}

/// The seat's network device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QemuNet {
    /// User-mode networking forwarding 127.0.0.1:<host_port> to the daemon.
    User { host_port: u16 },
    /// A TAP device the host prepared (`bridge.rs`), with the seat's stable MAC.
    Tap { ifname: String, mac: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootDisk {
    Overlay(PathBuf),
    Snapshot(PathBuf),
}

/// vCPUs from the CPU quota: one per started thousand millis.
pub fn vcpus(limits: &Limits) -> u32 {
    limits.cpu_millis.div_ceil(1000).clamp(1, 16)
}

/// Guest RAM: the memory limit, with a floor the kernel + initramfs need to boot.
pub fn memory_mb(limits: &Limits) -> u32 {
    limits.memory_mb.max(192)
}

/// The full argument list (without the program name).
pub fn args(l: &QemuLaunch, image: &ImageLayout, seat: &VmPaths) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(s.into());
    push("-M");
    push("microvm,acpi=on");
    push("-accel");
    // TCG's translation cache defaults to 1 GiB; 32 MiB is plenty for an idle shell and keeps
    // the VMM's RSS close to the guest's own memory.
    push(if l.accel == Accel::Kvm {
        "kvm"
    } else {
        "tcg,tb-size=32"
    });
    push("-cpu");
    push(if l.accel == Accel::Kvm { "host" } else { "max" });
    push("-m");
    push(&memory_mb(&l.limits).to_string());
    push("-smp");
    push(&vcpus(&l.limits).to_string());
    for s in [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ] {
        push(s);
    }
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let root = match &l.root {
        RootDisk::Overlay(p) => format!(
            "id=root,file={},format=qcow2,if=none,discard=unmap",
            path(p)
        ),
        RootDisk::Snapshot(p) => format!("id=root,file={},format=raw,if=none,snapshot=on", path(p)),
    };
    let disks = [
        root,
        format!(
            "id=vol,file={},format=raw,if=none,discard=unmap",
            path(&seat.volume)
        ),
        match l.config_fd {
            Some(_) => "id=cfg,file=/dev/fdset/1,format=raw,if=none,read-only=on".to_string(),
            None => format!(
                "id=cfg,file={},format=raw,if=none,read-only=on",
                path(&seat.config_disk())
            ),
        },
    ];
    let (netdev, nic) = match &l.net {
        // Always restrict=on: the guest reaches neither the host nor beyond. Unrestricted user
        // networking maps 10.0.2.2 to the host's loopback, so a seat would reach the control
        // plane's and agent's ports; seats that need a network get a seat-network TAP instead
        // (`seat_net`). The daemon's forward from the host still works, as QEMU exempts
        // explicit forwards.
        QemuNet::User { host_port } => (
            format!(
                "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{host_port}-:{GUEST_DAEMON_PORT}"
            ),
            "virtio-net-device,netdev=n0".to_string(),
        ),
        QemuNet::Tap { ifname, mac } => (
            format!("tap,id=n0,ifname={ifname},script=no,downscript=no"),
            format!("virtio-net-device,netdev=n0,mac={mac}"),
        ),
    };
    let mut a2: Vec<String> = vec![
        "-kernel".into(),
        path(&image.bzimage()),
        "-initrd".into(),
        path(&image.initrd()),
        "-append".into(),
        KERNEL_CMDLINE.into(),
    ];
    if l.config_fd.is_some() {
        a2.extend(["-add-fd".into(), format!("fd={CONFIG_FD},set=1")]);
    }
    for (i, d) in disks.iter().enumerate() {
        let id = ["root", "vol", "cfg"][i];
        a2.extend([
            "-drive".into(),
            d.clone(),
            "-device".into(),
            format!("virtio-blk-device,drive={id}"),
        ]);
    }
    a2.extend(["-netdev".into(), netdev, "-device".into(), nic]);
    a2.extend([
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", path(&seat.qmp())),
    ]);
    a2.extend(["-serial".into(), format!("file:{}", path(&seat.console()))]);
    a2.extend(["-pidfile".into(), path(&seat.pidfile())]);
    a.extend(a2.into_iter().map(OsString::from));
    a
}

/// Creates the seat's qcow2 overlay over its root disk `rootfs` (absolute backing path).
pub async fn create_overlay(rootfs: &Path, overlay: &Path) -> std::io::Result<()> {
    let out = tokio::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(rootfs)
        .arg(overlay)
        .stdin(Stdio::null())
        .output()
        .await?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "qemu-img create failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The descriptor number QEMU finds the memfd config disk on (`-add-fd fd=3,set=1`).
pub const CONFIG_FD: i32 = 3;

/// A read-only memfd holding `bytes`: a config disk that exists in memory only. Read-only
/// because QEMU opens a `read-only=on` drive from an fd set only with a matching access mode.
pub fn config_memfd(bytes: &[u8]) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::io::Write;
    let fd = rustix::fs::memfd_create("clarateach-config", rustix::fs::MemfdFlags::CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)?;
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    // A second, read-only open of the same memory file; `file` (read-write) is closed here.
    Ok(std::fs::File::open(path)?.into())
}

/// Spawns QEMU in its own process group (a Ctrl-C on the agent's terminal does not reach it),
/// stdin from /dev/null (QEMU in the background with a terminal stdin printed nothing).
pub fn spawn(
    l: &QemuLaunch,
    image: &ImageLayout,
    seat: &VmPaths,
) -> std::io::Result<tokio::process::Child> {
    let stderr = std::fs::File::create(seat.dir.join("qemu.stderr"))?;
    let mut cmd = tokio::process::Command::new(&l.qemu);
    cmd.args(args(l, image, seat))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(false);
    if let Some(fd) = &l.config_fd {
        inherit_fd(cmd.as_std_mut(), fd.clone(), CONFIG_FD);
    }
    cmd.spawn()
}

/// Makes the child find `fd` as descriptor `target` (without close-on-exec); `cmd` keeps `fd`
/// open until it is dropped.
#[allow(unsafe_code)]
pub fn inherit_fd(
    cmd: &mut std::process::Command,
    fd: std::sync::Arc<std::os::fd::OwnedFd>,
    target: i32,
) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let src = fd.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and calls only dup2 and fcntl
    // (async-signal-safe) on descriptor numbers copied in; the closure owns `fd`, so it stays
    // open in the parent as long as `cmd` lives.
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &fd;
            // dup2 onto another number clears FD_CLOEXEC; onto itself it does not.
            let ok = if src == target {
                libc::fcntl(target, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(src, target) == target
            };
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_for_a_tcg_seat() {
        let image = ImageLayout::new("/img");
        let seat = VmPaths::new(
            Path::new("/data"),
            &clarateach_core::agent_proto::SeatKey {
                workshop_id: "ws-abc".into(),
                seat: 3,
            },
        );
        let limits = Limits {
            memory_mb: 256,
            cpu_millis: 1500,
            ..Limits::default()
        };
        let l = QemuLaunch {
            qemu: "qemu-system-x86_64".into(),
            accel: Accel::Tcg,
            limits,
            net: QemuNet::User { host_port: 40123 },
            config_fd: None,
            root: RootDisk::Overlay(seat.overlay()),
        };
        let line: Vec<String> = args(&l, &image, &seat)
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        let joined = line.join(" ");
        assert!(joined.starts_with(
            "-M microvm,acpi=on -accel tcg,tb-size=32 -cpu max -m 256 -smp 2 -nodefaults"
        ));
        assert!(joined.contains("-kernel /img/vmlinuz -initrd /img/initrd.cpio"));
        let append = line.iter().position(|s| s == "-append").expect("append");
        assert!(line[append + 1].contains("tsc_early_khz=2500000"));
        assert!(line[append + 1].ends_with("-- guest-init"));
        assert!(
            joined.contains("id=root,file=/data/microvm/ws-abc/seat-03/overlay.qcow2,format=qcow2")
        );
        assert!(joined.contains("id=vol,file=/data/volumes/ws-abc/seat-03.img,format=raw"));
        assert!(joined.contains(
            "id=cfg,file=/data/microvm/ws-abc/seat-03/config.img,format=raw,if=none,read-only=on"
        ));
        assert!(joined.contains("-netdev user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:40123-:700"));
        let mut open = l.clone();
        open.limits.egress = true;
        let joined_open = args(&open, &image, &seat)
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            joined_open.contains("-netdev user,id=n0,restrict=on,"),
            "user networking never maps the host's loopback into a seat"
        );
        assert!(
            joined.contains("-qmp unix:/data/microvm/ws-abc/seat-03/qmp.sock,server=on,wait=off")
        );
        assert!(joined.contains("-serial file:/data/microvm/ws-abc/seat-03/console.log"));
        // Disk order is what the guest sees as vda, vdb, vdc.
        let root = joined.find("drive=root").expect("root");
        let vol = joined.find("drive=vol").expect("vol");
        assert!(root < vol);
    }

    #[test]
    fn kvm_bridge_seat_uses_host_cpu_memory_floor_and_tap() {
        let image = ImageLayout::new("/img");
        let seat = VmPaths::new(
            Path::new("/d"),
            &clarateach_core::agent_proto::SeatKey {
                workshop_id: "ws-x".into(),
                seat: 1,
            },
        );
        let limits = Limits {
            memory_mb: 64,
            ..Limits::default()
        };
        let l = QemuLaunch {
            qemu: "q".into(),
            accel: Accel::Kvm,
            limits,
            net: QemuNet::Tap {
                ifname: "ctq0badf00d".into(),
                mac: "52:54:0b:ad:f0:0d".into(),
            },
            root: RootDisk::Snapshot("/img/rootfs.ext4".into()),
            config_fd: None,
        };
        let joined = args(&l, &image, &seat)
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(joined.contains("-accel kvm -cpu host -m 192 -smp 1"));
        assert!(joined.contains("file=/img/rootfs.ext4,format=raw,if=none,snapshot=on"));
        assert!(joined.contains(
            "-netdev tap,id=n0,ifname=ctq0badf00d,script=no,downscript=no \
             -device virtio-net-device,netdev=n0,mac=52:54:0b:ad:f0:0d"
        ));
        assert!(!joined.contains("hostfwd"));
    }

    #[test]
    fn the_config_disk_can_live_in_a_read_only_memfd() {
        let bytes = clarateach_image::GuestConfig::new("tok", Default::default()).to_disk();
        let fd = config_memfd(&bytes).expect("memfd");
        let link = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))
        .expect("link");
        assert!(
            link.to_string_lossy()
                .starts_with("/memfd:clarateach-config"),
            "not on any file system: {link:?}"
        );
        let flags = rustix::fs::fcntl_getfl(&fd).expect("getfl");
        assert_eq!(
            flags & rustix::fs::OFlags::ACCMODE,
            rustix::fs::OFlags::RDONLY
        );
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut back).expect("read");
        assert_eq!(back, bytes);

        let image = ImageLayout::new("/img");
        let seat = VmPaths::new(
            Path::new("/data"),
            &clarateach_core::agent_proto::SeatKey {
                workshop_id: "ws-abc".into(),
                seat: 3,
            },
        );
        let l = QemuLaunch {
            qemu: "q".into(),
            accel: Accel::Tcg,
            limits: Limits::default(),
            net: QemuNet::User { host_port: 1 },
            root: RootDisk::Snapshot("/img/rootfs.ext4".into()),
            config_fd: Some(std::sync::Arc::new(config_memfd(&bytes).expect("memfd"))),
        };
        let joined = args(&l, &image, &seat)
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(joined.contains("-add-fd fd=3,set=1"));
        assert!(joined.contains("id=cfg,file=/dev/fdset/1,format=raw,if=none,read-only=on"));
        assert!(!joined.contains("config.img"));
    }
}
