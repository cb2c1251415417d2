//! One seat's file system: a sparse ext4 image of exactly `limits.disk_mb`, loop-mounted on the
//! host, holding the seat's `/workspace` and home as two dirs. The kernel bounds it by
//! construction: a full seat gets ENOSPC from its own file system and nothing else notices.
//!
//! Why not ext4 project quotas in one shared file system (a few syscalls per seat): they need a
//! kernel with `CONFIG_QFMT_V2`, and hosts like the one this was built on lack it (mounting an
//! ext4 with the `quota` feature fails outright), as do XFS without `CONFIG_XFS_QUOTA` and tmpfs
//! without `CONFIG_TMPFS_QUOTA`. A loop device and ext4 are everywhere the sandbox runs.
//!
//! Cost: a mkfs only once per distinct size (a template image, ~70 ms), then per new seat a
//! sparse copy of the template's ~1 MiB of metadata and a loop mount by syscalls
//! (`LOOP_CONFIGURE` + mount(2)), made ahead as spares (see `store`); a start only checks that
//! the mount is there (two `stat`s).
//! The mount stays across stops and agent restarts and is made again after a host reboot.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Mount options: no device nodes or set-id programs from learner data; deleted blocks are
/// punched out of the sparse image, so the host gets the space back; the inode tables are not
/// zeroed in the background (that would allocate ~1.5% of every image on the host for nothing:
/// `uninit_bg` already tells ext4 which inodes are unused).
pub const MOUNT_OPTIONS: &str = "nodev,nosuid,discard,noinit_itable";
/// The file-system-specific part of [`MOUNT_OPTIONS`], passed to mount(2).
const MOUNT_DATA: &str = "discard,noinit_itable";

/// Bytes a seat uses of its file system, for the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskUsage {
    pub bytes_used: u64,
    /// What the seat can hold (the file system's size less its metadata); 0 when not enforced.
    pub bytes_limit: u64,
    pub inodes_used: u64,
    pub inodes_limit: u64,
}

/// A program that failed.
#[derive(Debug, thiserror::Error)]
#[error("`{program}` failed ({status}): {stderr}")]
pub struct CommandFailed {
    program: String,
    status: String,
    stderr: String,
}

pub(super) fn run(cmd: &mut Command) -> Result<(), CommandFailed> {
    let program = format!("{cmd:?}");
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(CommandFailed {
            program,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
        Err(e) => Err(CommandFailed {
            program,
            status: "not run".into(),
            stderr: e.to_string(),
        }),
    }
}

/// Makes a sparse ext4 image of `bytes` at `image`, via `.tmp` and a rename so a crash never
/// leaves a half-made image behind under the real name.
pub fn mkfs(image: &Path, bytes: u64, label: &str, extra: &[&str]) -> Result<(), MkfsError> {
    let tmp = image.with_extension("tmp");
    let create = || -> io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.set_len(bytes)
    };
    create().map_err(MkfsError::Create)?;
    let mut cmd = Command::new("mkfs.ext4");
    cmd.args(["-q", "-F", "-m", "0", "-L", label])
        .args([
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0",
        ])
        .args(extra)
        .arg(&tmp);
    run(&mut cmd).map_err(MkfsError::Mkfs)?;
    std::fs::rename(&tmp, image).map_err(MkfsError::Create)
}

#[derive(Debug, thiserror::Error)]
pub enum MkfsError {
    #[error("creating the image file")]
    Create(#[source] io::Error),
    #[error("making the file system")]
    Mkfs(#[source] CommandFailed),
}

/// Makes the sparse `image` from `template`, copying only its data (~1 MiB of metadata).
/// Written as `.tmp` and renamed.
pub fn image_from_template(template: &Path, image: &Path) -> io::Result<()> {
    let tmp = reserve_image(template, image)?;
    fill_image(template, tmp, image)
}

/// The first half of [`image_from_template`]: `image`'s `.tmp`, new (all holes) and already of
/// the template's size, so a budget that counts the images' sizes counts it from now on.
pub fn reserve_image(template: &Path, image: &Path) -> io::Result<File> {
    let tmp = image.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let size = std::fs::metadata(template)?.len();
    let to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    if let Err(e) = to.set_len(size) {
        drop(to);
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(to)
}

/// The second half: the template's data copied into the reserved `.tmp` (fresh, so its holes
/// are zeros), renamed to `image`.
pub fn fill_image(template: &Path, to: File, image: &Path) -> io::Result<()> {
    let tmp = image.with_extension("tmp");
    let copied = File::open(template).and_then(|from| {
        let size = i64::try_from(from.metadata()?.len()).map_err(io::Error::other)?;
        super::migrate::copy_sparse(&from, &to, size)
    });
    drop(to);
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, image)
}

/// `LOOP_CTL_GET_FREE`, `LOOP_CONFIGURE` and `LO_FLAGS_AUTOCLEAR` of `linux/loop.h` (libc has
/// none of them).
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64`.
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// `struct loop_config`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("attaching a loop device")]
    Loop(#[source] io::Error),
    #[error("mounting {0}")]
    Mount(PathBuf, #[source] nix::Error),
}

/// The loop device already bound to `image`, if any (`/sys/block/loop*/loop/backing_file`):
/// mounting it again gives the same superblock, whereas a second loop device on the same file
/// would put two file systems over one image.
fn bound_loop(image: &Path) -> Option<PathBuf> {
    let image = image.canonicalize().ok()?;
    std::fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .find_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            if !name.starts_with("loop") {
                return None;
            }
            let backing = std::fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
            (Path::new(backing.trim_end()) == image).then(|| Path::new("/dev").join(name))
        })
}

/// Binds `image` to a free loop device that detaches itself when its last user (the mount)
/// goes. Returns the device's path and an open fd that keeps it bound until the mount holds it.
#[allow(unsafe_code)]
fn attach(image: &Path) -> io::Result<(PathBuf, File)> {
    let ctl = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")?;
    let backing = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)?;
    // Seats mount side by side, but two attaches at once are handed the same free device and
    // all but one get EBUSY: the attach (microseconds) is taken one at a time in this process,
    // the mount (the loop device's reads, milliseconds) is not.
    static ATTACH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ATTACH.lock().unwrap_or_else(|p| p.into_inner());
    let mut tries = 0;
    loop {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let dev_path = PathBuf::from(format!("/dev/loop{n}"));
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&dev_path)?;
        let mut name = [0u8; 64];
        let bytes = image.as_os_str().as_bytes();
        let len = bytes.len().min(63);
        name[..len].copy_from_slice(&bytes[..len]);
        let cfg = LoopConfig {
            fd: u32::try_from(backing.as_raw_fd()).map_err(io::Error::other)?,
            block_size: 0,
            info: LoopInfo64 {
                device: 0,
                inode: 0,
                rdevice: 0,
                offset: 0,
                sizelimit: 0,
                number: 0,
                encrypt_type: 0,
                encrypt_key_size: 0,
                flags: LO_FLAGS_AUTOCLEAR,
                file_name: name,
                crypt_name: [0; 64],
                encrypt_key: [0; 32],
                init: [0; 2],
            },
            reserved: [0; 8],
        };
        // SAFETY: LOOP_CONFIGURE reads one `struct loop_config` (repr(C), the UAPI layout) from
        // the pointer; `cfg` and both fds outlive the call.
        let rc = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &cfg as *const LoopConfig) };
        if rc == 0 {
            return Ok((dev_path, dev));
        }
        let err = io::Error::last_os_error();
        // Another process took the free device first: ask again.
        if err.raw_os_error() == Some(libc::EBUSY) && tries < 20 {
            tries += 1;
            continue;
        }
        return Err(err);
    }
}

/// Loop-mounts the ext4 `image` at `dir` with [`MOUNT_OPTIONS`], by syscalls (no `mount`
/// process: that costs tens of milliseconds on a loaded host). Reuses the loop device already
/// bound to the image.
pub fn mount(image: &Path, dir: &Path) -> Result<(), MountError> {
    match bound_loop(image) {
        Some(dev) => mount_dev(image, &dev, None, dir),
        None => mount_fresh(image, dir),
    }
}

/// [`mount`] for an image made just now, which no loop device can hold yet: the search of
/// every loop device's backing file (one sysfs read per device, hundreds with a class running)
/// is skipped.
pub fn mount_fresh(image: &Path, dir: &Path) -> Result<(), MountError> {
    let (dev, fd) = attach(image).map_err(MountError::Loop)?;
    mount_dev(image, &dev, Some(fd), dir)
}

fn mount_dev(image: &Path, dev: &Path, hold: Option<File>, dir: &Path) -> Result<(), MountError> {
    let flags = nix::mount::MsFlags::MS_NODEV | nix::mount::MsFlags::MS_NOSUID;
    let result = nix::mount::mount(Some(dev), dir, Some("ext4"), flags, Some(MOUNT_DATA))
        .map_err(|e| MountError::Mount(image.to_path_buf(), e));
    // The mount now holds the device; closing our fd lets autoclear free it on unmount (or at
    // once if the mount failed).
    drop(hold);
    result
}

/// Whether `dir` is a mount point: its device differs from its parent's (two `stat`s, cheap
/// enough for every start). A missing dir is not.
pub fn is_mount_point(dir: &Path) -> io::Result<bool> {
    let st = match std::fs::symlink_metadata(dir) {
        Ok(st) => st,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let parent = dir
        .parent()
        .ok_or_else(|| io::Error::other("the root is not a seat dir"))?;
    Ok(st.is_dir() && std::fs::metadata(parent)?.dev() != st.dev())
}

/// Unmounts `dir` lazily (a seat's sandbox may still hold its bind mounts); not mounted is fine.
pub fn unmount(dir: &Path) -> io::Result<()> {
    if !is_mount_point(dir)? {
        return Ok(());
    }
    nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH).map_err(io::Error::from)
}

/// Usage of the file system mounted at `dir`.
pub fn usage(dir: &Path) -> io::Result<DiskUsage> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    let frsize = st.fragment_size();
    Ok(DiskUsage {
        bytes_used: (st.blocks() - st.blocks_free()) * frsize,
        bytes_limit: st.blocks() * frsize,
        inodes_used: st.files() - st.files_free(),
        inodes_limit: st.files(),
    })
}

/// Image size for `disk_mb` MiB.
pub fn image_bytes(disk_mb: u32) -> u64 {
    u64::from(disk_mb) << 20
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dir_on_the_same_fs_is_no_mount_point() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(t.path().join("d")).expect("mkdir");
        assert!(!is_mount_point(&t.path().join("d")).expect("stat"));
        assert!(!is_mount_point(&t.path().join("missing")).expect("stat"));
        assert!(is_mount_point(Path::new("/proc")).expect("stat"));
    }

    #[test]
    fn loop_uapi_layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }

    #[test]
    fn sizes_are_mebibytes() {
        assert_eq!(image_bytes(2048), 2 << 30);
        assert_eq!(image_bytes(64), 64 << 20);
    }
}
