//! Stage 1, from the initramfs: the cloud kernel has virtio as modules, so something must load
//! them before the root disk exists. Loads them with `finit_module` (no kmod needed), mounts the
//! root disk, moves the API filesystems over and switches root, like `switch_root` does.

use std::ffi::CString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::kmod::{finit_module, ModuleInitFlags};
use nix::mount::{mount, MsFlags};

use super::{say, supervise, GuestError};
use crate::layout::{GUEST_MODULES, GUEST_MODULE_DIR, PROBE_MARKER};

pub(super) fn initramfs_stage() -> Result<(), GuestError> {
    mount_fs("proc", "/proc", "proc")?;
    mount_fs("sysfs", "/sys", "sysfs")?;
    mount_fs("devtmpfs", "/dev", "devtmpfs")?;
    let cmdline = std::fs::read_to_string("/proc/cmdline")
        .map_err(GuestError::io("reading /proc/cmdline"))?;
    if cmdline
        .split_whitespace()
        .any(|w| w == "clarateach.probe=1")
    {
        println!("{PROBE_MARKER}");
        supervise::power_off();
        return Ok(());
    }
    load_modules(&Path::new("/").join(GUEST_MODULE_DIR), &cmdline)?;
    let root = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("root="))
        .unwrap_or("/dev/vda")
        .to_string();
    wait_for(Path::new(&root), Duration::from_secs(10))?;
    let rw = mount(
        Some(root.as_str()),
        "/newroot",
        Some("ext4"),
        MsFlags::empty(),
        None::<&str>,
    );
    if rw.is_err() {
        say("root disk is read-only; mounting it read-only");
        mount(
            Some(root.as_str()),
            "/newroot",
            Some("ext4"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(GuestError::sys(format!("mounting {root}")))?;
    }
    inject_binary()?;
    for api in ["/dev", "/proc", "/sys"] {
        let target = format!("/newroot{api}");
        mount(
            Some(api),
            target.as_str(),
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(GuestError::sys(format!("moving {api}")))?;
    }
    free_initramfs();
    std::env::set_current_dir("/newroot").map_err(GuestError::io("chdir /newroot"))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(GuestError::sys("moving the root"))?;
    nix::unistd::chroot(".").map_err(GuestError::sys("chroot"))?;
    std::env::set_current_dir("/").map_err(GuestError::io("chdir /"))?;
    let err = std::process::Command::new("/usr/local/bin/clarateach")
        .arg("guest-init")
        .exec();
    Err(GuestError::Io {
        action: "exec of the root's clarateach".into(),
        source: err,
    })
}

/// Where the root disk keeps the `clarateach` binary its init and supervisor run.
const ROOT_BINARY: &str = "/newroot/usr/local/bin/clarateach";

/// Puts this initramfs's own binary (`/init`) over the root disk's copy, read-only, so the guest
/// always runs the binary the image's manifest records: the root disk is built without regard
/// to the binary (`build`), and may hold an older one. The bind keeps `/init` alive after
/// `free_initramfs` unlinks it.
fn inject_binary() -> Result<(), GuestError> {
    mount(
        Some("/init"),
        ROOT_BINARY,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(GuestError::sys("binding /init over the root's clarateach"))?;
    mount(
        None::<&str>,
        ROOT_BINARY,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID,
        None::<&str>,
    )
    .map_err(GuestError::sys("making the guest's clarateach read-only"))
}

pub(super) fn mount_fs(source: &str, target: &str, fstype: &str) -> Result<(), GuestError> {
    let _ = std::fs::create_dir_all(target);
    match mount(
        Some(source),
        target,
        Some(fstype),
        MsFlags::MS_NOSUID,
        None::<&str>,
    ) {
        Ok(()) | Err(nix::Error::EBUSY) => Ok(()),
        Err(e) => Err(GuestError::Sys {
            action: format!("mounting {fstype} on {target}"),
            source: e,
        }),
    }
}

/// Loads each module in order, passing `<module>.<param>=` words of the kernel command line as
/// parameters (what modprobe would do; Firecracker puts `virtio_mmio.device=` there).
fn load_modules(dir: &Path, cmdline: &str) -> Result<(), GuestError> {
    for name in GUEST_MODULES {
        let path = dir.join(format!("{name}.ko"));
        let file =
            File::open(&path).map_err(GuestError::io(format!("opening {}", path.display())))?;
        let params = module_params(name, cmdline);
        let params = CString::new(params)
            .map_err(|_| GuestError::Setup("NUL in the kernel command line".into()))?;
        match finit_module(&file, &params, ModuleInitFlags::empty()) {
            Ok(()) | Err(nix::Error::EEXIST) => {}
            Err(e) => {
                return Err(GuestError::Sys {
                    action: format!("loading module {name}"),
                    source: e,
                })
            }
        }
    }
    Ok(())
}

pub(crate) fn module_params(module: &str, cmdline: &str) -> String {
    let prefix = format!("{module}.");
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix(&prefix))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Devices appear asynchronously once their driver probes them.
pub(super) fn wait_for(path: &Path, limit: Duration) -> Result<(), GuestError> {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > limit {
            return Err(GuestError::Setup(format!(
                "{} did not appear",
                path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Deletes the initramfs files (they live in RAM) except the mount points still in use.
fn free_initramfs() {
    if let Ok(entries) = std::fs::read_dir("/") {
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name();
            if ["newroot", "dev", "proc", "sys"].iter().any(|k| name == *k) {
                continue;
            }
            let p = e.path();
            let _ = if p.is_dir() && !p.is_symlink() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_params_from_cmdline() {
        let cmd = "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6 panic=1";
        assert_eq!(
            module_params("virtio_mmio", cmd),
            "device=4K@0xd0000000:5 device=4K@0xd0001000:6"
        );
        assert_eq!(module_params("virtio_net", cmd), "");
    }
}
