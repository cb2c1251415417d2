//! Per-seat disk quotas with ext4 project quotas: a seat's `/workspace` and home are tagged with
//! one project id (inherited by everything created below them) and the kernel caps that project's
//! blocks and inodes. Setting a seat up is two `FS_IOC_FSSETXATTR` ioctls and one `quotactl`, a
//! few microseconds, so it runs on every start (the start-cost budget rules out a mkfs per seat).
//!
//! The syscalls are raw `libc` calls because neither `nix` nor `libc` wraps `struct fsxattr` or
//! `struct if_dqblk`; the layouts below are the kernel's UAPI (`linux/fs.h`, `linux/quota.h`).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// `PRJQUOTA` in `linux/quota.h`.
const PRJQUOTA: libc::c_int = 2;
/// `Q_GETQUOTA` in `linux/quota.h` (libc exports only the set variant for every target).
const Q_GETQUOTA: libc::c_int = 0x800007;
/// `FS_XFLAG_PROJINHERIT`: new files and dirs below get the dir's project id.
const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;
/// `_IOR('X', 31, struct fsxattr)` and `_IOW('X', 32, struct fsxattr)`.
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820;
/// Quota block limits are in 1 KiB units (`QIF_DQBLKSIZE`).
const QUOTA_BLOCK: u64 = 1024;
/// One inode per this many bytes of quota: ample for source trees and `node_modules` (average
/// file a few KiB) while stopping a learner from eating the shared store's inode table.
pub const BYTES_PER_INODE: u64 = 8 * 1024;
/// Floor of the inode limit, so a tiny quota still fits a toolchain's dot files.
pub const MIN_INODES: u64 = 4096;

/// `struct fsxattr` (28 bytes).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

/// `struct if_dqblk`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct IfDqblk {
    bhardlimit: u64,
    bsoftlimit: u64,
    curspace: u64,
    ihardlimit: u64,
    isoftlimit: u64,
    curinodes: u64,
    btime: u64,
    itime: u64,
    valid: u32,
}

/// The kernel's limits for one seat, computed from `limits.disk_mb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    /// Hard block limit in bytes (a multiple of 1 KiB).
    pub bytes: u64,
    /// Hard inode limit.
    pub inodes: u64,
}

impl QuotaLimits {
    /// The limits for a quota of `disk_mb` MiB (0 means none: what a deleted seat gets).
    pub fn from_disk_mb(disk_mb: u32) -> Self {
        if disk_mb == 0 {
            return Self {
                bytes: 0,
                inodes: 0,
            };
        }
        let bytes = u64::from(disk_mb) * 1024 * 1024;
        Self {
            bytes,
            inodes: (bytes / BYTES_PER_INODE).max(MIN_INODES),
        }
    }
}

/// What a seat uses of its quota, for the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskUsage {
    pub bytes_used: u64,
    /// 0 when no limit is set (quotas off or seat unknown).
    pub bytes_limit: u64,
    pub inodes_used: u64,
    pub inodes_limit: u64,
}

/// `QCMD(cmd, type)` of `linux/quota.h`.
fn qcmd(cmd: libc::c_int, kind: libc::c_int) -> libc::c_int {
    (cmd << 8) | (kind & 0xff)
}

fn open_dir(dir: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
}

#[allow(unsafe_code)]
fn get_xattr(file: &File) -> io::Result<FsXattr> {
    let mut attr = FsXattr::default();
    // SAFETY: FS_IOC_FSGETXATTR writes one `struct fsxattr`, which `attr` is (repr(C), same size
    // as encoded in the request number); the fd is open for the whole call.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            FS_IOC_FSGETXATTR,
            &mut attr as *mut FsXattr,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(attr)
}

/// The project id of a directory (0: none), never following a symlink.
pub fn project_of(dir: &Path) -> io::Result<u32> {
    Ok(get_xattr(&open_dir(dir)?)?.projid)
}

/// Tags `dir` with `projid` and PROJINHERIT. Files already below keep their id; only the dirs
/// the seat's files are created in need it, since new entries inherit it.
#[allow(unsafe_code)]
pub fn set_project(dir: &Path, projid: u32) -> io::Result<()> {
    let file = open_dir(dir)?;
    let mut attr = get_xattr(&file)?;
    if attr.projid == projid && attr.xflags & FS_XFLAG_PROJINHERIT != 0 {
        return Ok(());
    }
    attr.projid = projid;
    attr.xflags |= FS_XFLAG_PROJINHERIT;
    // SAFETY: FS_IOC_FSSETXATTR reads one `struct fsxattr` from the pointer; `attr` lives until
    // the call returns.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FSSETXATTR, &attr as *const FsXattr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn device_cstr(device: &Path) -> io::Result<CString> {
    CString::new(device.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the device path"))
}

/// Sets the hard block and inode limits of project `projid` on the fs of block device `device`.
#[allow(unsafe_code)]
pub fn set_limits(device: &Path, projid: u32, limits: QuotaLimits) -> io::Result<()> {
    let dev = device_cstr(device)?;
    let mut q = IfDqblk {
        bhardlimit: limits.bytes.div_ceil(QUOTA_BLOCK),
        ihardlimit: limits.inodes,
        valid: libc::QIF_LIMITS,
        ..IfDqblk::default()
    };
    let id = libc::c_int::try_from(projid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "project id out of range"))?;
    // SAFETY: Q_SETQUOTA reads one `struct if_dqblk` from `q`; `dev` is a NUL-terminated string;
    // both outlive the call.
    let rc = unsafe {
        libc::quotactl(
            qcmd(libc::Q_SETQUOTA, PRJQUOTA),
            dev.as_ptr(),
            id,
            (&mut q as *mut IfDqblk).cast(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The usage and limits of project `projid`.
#[allow(unsafe_code)]
pub fn usage(device: &Path, projid: u32) -> io::Result<DiskUsage> {
    let dev = device_cstr(device)?;
    let mut q = IfDqblk::default();
    let id = libc::c_int::try_from(projid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "project id out of range"))?;
    // SAFETY: Q_GETQUOTA writes one `struct if_dqblk` into `q`; `dev` is NUL-terminated; both
    // outlive the call.
    let rc = unsafe {
        libc::quotactl(
            qcmd(Q_GETQUOTA, PRJQUOTA),
            dev.as_ptr(),
            id,
            (&mut q as *mut IfDqblk).cast(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(DiskUsage {
        bytes_used: q.curspace,
        bytes_limit: q.bhardlimit * QUOTA_BLOCK,
        inodes_used: q.curinodes,
        inodes_limit: q.ihardlimit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uapi_layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<FsXattr>(), 28);
        // if_dqblk: eight u64 and one u32, padded to 72.
        assert_eq!(std::mem::size_of::<IfDqblk>(), 72);
        assert_eq!(FS_IOC_FSGETXATTR >> 16 & 0x3fff, 28);
        assert_eq!(
            qcmd(libc::Q_SETQUOTA, PRJQUOTA),
            0x8000_0802_u32 as libc::c_int
        );
    }

    #[test]
    fn limits_follow_disk_mb() {
        let l = QuotaLimits::from_disk_mb(2048);
        assert_eq!(l.bytes, 2 << 30);
        assert_eq!(l.inodes, 262_144);
        assert_eq!(QuotaLimits::from_disk_mb(1).inodes, MIN_INODES);
        assert_eq!(
            QuotaLimits::from_disk_mb(0),
            QuotaLimits {
                bytes: 0,
                inodes: 0
            }
        );
    }
}
