//! A small mount namespace to start bwrap from, so a seat's start costs the same whatever the
//! host has mounted.
//!
//! bwrap reads `/proc/self/mountinfo` in full for every bind it makes (to fix the flags of the
//! mounts below it), a dozen times per seat, in a namespace copied from its parent's. On the
//! host that namespace holds every seat's file system (one loop mount per seat) and whatever
//! else the host mounted, so each new seat paid for all earlier ones: measured on the 2-core
//! build machine, 9.4 ms of CPU per bwrap with the host's 113 mounts, 14.3 ms with 313 and
//! 28.6 ms with 513, against 4.6 ms from a 5-mount namespace. Starting a class was quadratic in
//! its size.
//!
//! [`LaunchNs::build`] makes, once per backend, a namespace holding only the host's root file
//! system without anything mounted on it, `/proc`, `/dev` and the mount points of the host paths
//! a seat's command line names (root entries, the generated `/etc`, the daemon binary, the data
//! dir): each bound on its own, never recursively over the data dir, so no seat's file system
//! is in it. A seat's child (`spawn`, between fork and exec, still root) enters it, takes a
//! private copy of it, attaches its own seat file system there (a clone the agent made with
//! `open_tree` beforehand, [`SeatTree`]) and execs bwrap, which then sees a handful of mounts.
//! The sandbox is the same as before: same paths, same flags (a bind keeps the nodev/nosuid of
//! its source), same command line; only what bwrap itself could see of the host shrank.
//!
//! A host where this cannot be built (no `open_tree`, a kernel refusing `pivot_root` here) logs
//! why and starts bwrap from the host's namespace as before.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// `open_tree(2)` and `move_mount(2)` flags of `linux/mount.h` (libc has none of them).
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// The launch namespace, held open by a descriptor (no process lives in it).
#[derive(Debug)]
pub struct LaunchNs {
    fd: OwnedFd,
    /// How many mounts it holds, for the log.
    mounts: usize,
}

/// How a path must be visible in the launch namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The path and every mount below it (root entries, `/etc` binds, the daemon binary).
    Tree,
    /// The path only: the mounts holding it, none below it (the data dir: seat file systems
    /// are attached one per seat, never all at once).
    Point,
}

/// Which host mounts to bind, in order (parents first), for `needs`, given the host's mount
/// points: the mount holding each path (unless it is `/`, which is bound bare) and, for
/// [`Need::Tree`], every mount below it, except anything under `exclude` (the seats' mounts).
pub fn plan(mount_points: &[PathBuf], needs: &[(PathBuf, Need)], exclude: &Path) -> Vec<PathBuf> {
    let holder = |p: &Path| {
        mount_points
            .iter()
            .filter(|m| p.starts_with(m))
            .max_by_key(|m| m.components().count())
            .cloned()
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for (path, need) in needs {
        if let Some(m) = holder(path) {
            // The chain of mounts from `/` down to the holder, so each has its mount point.
            for m2 in mount_points.iter().filter(|m2| m.starts_with(m2)) {
                out.push(m2.clone());
            }
        }
        if *need == Need::Tree {
            out.extend(
                mount_points
                    .iter()
                    .filter(|m| m.starts_with(path) && m.as_path() != path.as_path())
                    .cloned(),
            );
        }
    }
    out.retain(|m| m.as_path() != Path::new("/") && !m.starts_with(exclude));
    out.sort_by_key(|m| (m.components().count(), m.clone()));
    out.dedup();
    out
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)
}

impl LaunchNs {
    /// Builds the namespace in a thread of its own (a thread may take a mount namespace of its
    /// own; the agent's other threads keep the host's): the host's root file system bound bare
    /// at `stage` (an empty root-only dir), `/proc` and `/dev` and the `plan` of `needs` bound
    /// into it, then made the root (`pivot_root(".", ".")`, the old root detached).
    pub fn build(stage: &Path, needs: &[(PathBuf, Need)], exclude: &Path) -> io::Result<Self> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")?;
        let points = super::store::mount_points(&text);
        let mut needs: Vec<(PathBuf, Need)> = needs
            .iter()
            .filter_map(|(p, n)| p.canonicalize().ok().map(|p| (p, *n)))
            .collect();
        needs.push((PathBuf::from("/proc"), Need::Point));
        needs.push((PathBuf::from("/dev"), Need::Point));
        let exclude = exclude
            .canonicalize()
            .unwrap_or_else(|_| exclude.to_path_buf());
        let mut binds = plan(&points, &needs, &exclude);
        // /proc and /dev themselves, bare: bwrap mounts its own proc (the kernel wants a proc
        // mount without anything over it in the namespace) and binds device nodes from /dev.
        for p in ["/proc", "/dev"] {
            if !binds.iter().any(|b| b == Path::new(p)) {
                binds.push(PathBuf::from(p));
            }
        }
        binds.sort_by_key(|m| (m.components().count(), m.clone()));
        let stage = stage.to_path_buf();
        std::thread::spawn(move || Self::build_here(&stage, &binds))
            .join()
            .map_err(|_| io::Error::other("the launch namespace thread panicked"))?
    }

    fn build_here(stage: &Path, binds: &[PathBuf]) -> io::Result<Self> {
        let e = |what: &str, err: nix::Error| {
            io::Error::new(io::Error::from(err).kind(), format!("{what}: {err}"))
        };
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|x| e("unshare", x))?;
        // Nothing done here may reach the host's namespace.
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|x| e("make / private", x))?;
        mount(
            Some("/"),
            stage,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|x| e("bind the bare root", x))?;
        for m in binds {
            let rel = m.strip_prefix("/").unwrap_or(m);
            mount(
                Some(m.as_path()),
                &stage.join(rel),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|x| e(&format!("bind {}", m.display()), x))?;
        }
        std::env::set_current_dir(stage)?;
        nix::unistd::pivot_root(".", ".").map_err(|x| e("pivot_root", x))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(|x| e("detach the old root", x))?;
        std::env::set_current_dir("/")?;
        let mounts = std::fs::read_to_string("/proc/thread-self/mountinfo")?
            .lines()
            .count();
        let file = std::fs::File::open("/proc/thread-self/ns/mnt")?;
        Ok(Self {
            fd: file.into(),
            mounts,
        })
    }

    /// Mounts in the namespace (a seat adds its own file system to its copy).
    pub fn mounts(&self) -> usize {
        self.mounts
    }

    pub(super) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A seat's file system cloned off the host's mount (`open_tree(OPEN_TREE_CLONE)`), to be
/// attached at the same path in the seat's copy of the launch namespace.
#[derive(Debug)]
pub struct SeatTree {
    fd: OwnedFd,
    target: CString,
}

impl SeatTree {
    /// Clones the mount at `dir` (a seat's mount point).
    #[allow(unsafe_code)]
    pub fn clone_of(dir: &Path) -> io::Result<Self> {
        let target = cstr(dir)?;
        // SAFETY: open_tree reads a NUL-terminated path and returns a new descriptor or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                target.as_ptr(),
                OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = RawFd::try_from(fd).map_err(io::Error::other)?;
        // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, target })
    }
}

/// What the child does between fork and exec, as raw values (nothing is allocated there).
pub(super) struct Enter {
    ns: RawFd,
    tree: Option<(RawFd, *const libc::c_char)>,
}

impl Enter {
    pub(super) fn new(ns: &LaunchNs, tree: Option<&SeatTree>) -> Self {
        Self {
            ns: ns.raw_fd(),
            tree: tree.map(|t| (t.fd.as_raw_fd(), t.target.as_ptr())),
        }
    }

    /// In the forked child, still root: enter the launch namespace, take a private copy, attach
    /// the seat's file system, stand at `/`. Async-signal-safe: syscalls on values made before
    /// the fork, which the parent keeps alive until the spawn returns.
    #[allow(unsafe_code)]
    pub(super) fn run(&self) -> io::Result<()> {
        // SAFETY: plain syscalls on descriptors and NUL-terminated strings that outlive the
        // child's exec (the parent holds them until `spawn` returns).
        unsafe {
            if libc::setns(self.ns, libc::CLONE_NEWNS) != 0 || libc::unshare(libc::CLONE_NEWNS) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if let Some((fd, target)) = self.tree {
                let empty = c"".as_ptr();
                if libc::syscall(
                    libc::SYS_move_mount,
                    fd,
                    empty,
                    libc::AT_FDCWD,
                    target,
                    MOVE_MOUNT_F_EMPTY_PATH,
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::chdir(c"/".as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

// SAFETY: `Enter` only carries descriptor numbers and a pointer into a `CString` owned by a
// `SeatTree` that the spawning caller keeps alive; it is read, never written, by the child.
#[allow(unsafe_code)]
unsafe impl Send for Enter {}
#[allow(unsafe_code)]
unsafe impl Sync for Enter {}

#[cfg(test)]
mod tests {
    use super::*;

    fn pb(v: &[&str]) -> Vec<PathBuf> {
        v.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn plan_binds_holders_and_trees_but_never_the_seats() {
        let points = pb(&[
            "/",
            "/proc",
            "/dev",
            "/usr",
            "/usr/local",
            "/data",
            "/data/seats",
            "/data/seats/ws/seat-01",
            "/tmp/x",
        ]);
        let needs = vec![
            (PathBuf::from("/usr"), Need::Tree),
            (PathBuf::from("/data/etc"), Need::Point),
            (PathBuf::from("/data"), Need::Tree),
            (PathBuf::from("/work/bin/clarateach"), Need::Tree),
        ];
        let got = plan(&points, &needs, Path::new("/data/seats"));
        assert_eq!(got, pb(&["/data", "/usr", "/usr/local"]));
    }

    #[test]
    fn plan_of_paths_on_the_root_binds_nothing() {
        let points = pb(&["/", "/proc", "/home/x"]);
        let needs = vec![(PathBuf::from("/var/lib/clarateach"), Need::Point)];
        assert!(plan(&points, &needs, Path::new("/var/lib/clarateach/seats")).is_empty());
    }
}
