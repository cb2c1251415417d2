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
//! sparse copy of the template (~1 MiB of metadata, ~2 ms) and a `mount -o loop` (~10-70 ms
//! under load), both at create; a start only checks that the mount is there (two `stat`s).
//! The mount stays across stops and agent restarts and is made again after a host reboot.

use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::process::Command;

/// Mount options: no device nodes or set-id programs from learner data; deleted blocks are
/// punched out of the image, so the host gets the space back; the inode tables are not zeroed
/// in the background (that would allocate ~1.5% of the image on the host for nothing, and
/// `uninit_bg` already tells ext4 which inodes are unused).
pub const MOUNT_OPTIONS: &str = "loop,nodev,nosuid,discard,noinit_itable";

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

/// Copies the template image to `image` keeping holes (written as `.tmp`, then renamed).
pub fn copy_template(template: &Path, image: &Path) -> io::Result<()> {
    let tmp = image.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let from = std::fs::File::open(template)?;
    let to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let size = i64::try_from(from.metadata()?.len()).map_err(io::Error::other)?;
    super::migrate::copy_sparse(&from, &to, size)?;
    drop(to);
    std::fs::rename(&tmp, image)
}

/// Loop-mounts `image` at `dir` (`mount -o loop` picks a free loop device, reuses the one
/// already bound to this image, and frees it on unmount).
pub fn mount(image: &Path, dir: &Path, extra: &str) -> Result<(), CommandFailed> {
    let mut opts = MOUNT_OPTIONS.to_string();
    if !extra.is_empty() {
        opts.push(',');
        opts.push_str(extra);
    }
    let mut cmd = Command::new("mount");
    cmd.args(["-t", "ext4", "-o", &opts]).arg(image).arg(dir);
    run(&mut cmd)
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
    fn sizes_are_mebibytes() {
        assert_eq!(image_bytes(2048), 2 << 30);
        assert_eq!(image_bytes(64), 64 << 20);
    }
}
