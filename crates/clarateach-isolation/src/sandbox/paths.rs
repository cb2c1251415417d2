//! Where a seat's files live on the host, and preparing those directories with owners and modes
//! that let the unprivileged bubblewrap reach its own seat and nothing else.
//!
//! ```text
//! <data>/seats/<ws>/seat-NN/workspace -> /workspace  (owned by the seat's uid, kept; a per-seat
//! <data>/seats/<ws>/seat-NN/home      -> /home/learner file system of disk_mb, see `store`)
//! <data>/volumes|homes/<ws>/seat-NN                    (old layout, migrated into the store)
//! <data>/sockets/<ws>/seat-NN.sock                     (daemon socket, bound by the agent; root
//!                                                       0700 dirs, never visible in a seat)
//! <data>/sandboxes/<ws>/seat-NN.json                   (state for re-adoption, 0600, root)
//! <data>/sandboxes/<ws>/seat-NN.log                    (bubblewrap and daemon stderr)
//! <data>/sandbox-etc/                  -> /etc         (generated, see `etc`)
//! <data>/run/<ws>/seat-NN                              (old layout's learner-writable socket
//!                                                       dir; only removed now)
//! ```

use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clarateach_core::agent_proto::SeatKey;
use nix::unistd::{chown, Gid, Uid};

/// Seat file system mounts under the data dir (re-exported by [`super::store`], which makes them).
pub const SEATS_DIR: &str = "seats";

/// Uid and gid of the learner inside every sandbox.
pub const LEARNER_ID: u32 = 1000;

/// Every host path of one seat.
#[derive(Debug, Clone)]
pub struct SeatPaths {
    pub volume: PathBuf,
    pub home: PathBuf,
    /// The old layout's run dir (learner-owned, held the socket); removed on destroy.
    pub run: PathBuf,
    /// The daemon's socket, in a root-only directory.
    pub socket: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
}

/// `seat-01`: the seat's name in paths, cgroups and its hostname.
pub fn seat_name(seat: u32) -> String {
    format!("seat-{seat:02}")
}

/// Rejects workshop ids that could escape the data dir or the cgroup tree.
pub fn validate(key: &SeatKey) -> std::io::Result<()> {
    let id = &key.workshop_id;
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bad workshop id {id:?}"),
        ))
    }
}

impl SeatPaths {
    pub fn new(data_dir: &Path, key: &SeatKey) -> Self {
        let seat = seat_name(key.seat);
        let ws = &key.workshop_id;
        let run = data_dir.join("run").join(ws).join(&seat);
        Self {
            volume: data_dir
                .join(SEATS_DIR)
                .join(ws)
                .join(&seat)
                .join("workspace"),
            home: data_dir.join(SEATS_DIR).join(ws).join(&seat).join("home"),
            socket: run.join("daemon.sock"),
            run,
            state: data_dir
                .join("sandboxes")
                .join(ws)
                .join(format!("{seat}.json")),
            log: data_dir
                .join("sandboxes")
                .join(ws)
                .join(format!("{seat}.log")),
        }
    }
}

/// Creates `dir` and its missing parents; parents get `0711` so the learner can pass through
/// without listing other seats.
fn mkdir_traversable(dir: &Path) -> std::io::Result<()> {
    if let Some(parent) = dir.parent() {
        if !parent.exists() {
            mkdir_traversable(parent)?;
        }
    }
    match std::fs::DirBuilder::new().mode(0o711).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// Creates a directory owned by `uid:gid` with mode 0700 (or fixes an existing one).
pub fn owned_dir(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    mkdir_traversable(dir)?;
    chown(dir, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Creates a root-only directory (state files hold secrets).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Makes the data dir passable (not listable) for the seat uids that bubblewrap runs as, and
/// creates the root-only socket and state dirs.
pub fn prepare_data_dir(data_dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let mode = std::fs::metadata(data_dir)?.permissions().mode();
    if mode & 0o001 == 0 {
        std::fs::set_permissions(
            data_dir,
            std::fs::Permissions::from_mode((mode & 0o7777) | 0o011),
        )?;
    }
    private_dir(&data_dir.join("sandboxes"))?;
    private_dir(&data_dir.join("sockets"))?;
    Ok(())
}

/// Creates `path`'s parent root-only and binds a fresh listening socket at `path`. The agent is
/// root and the directory is 0700 root: no seat can create, rename or replace what is bound here.
pub fn bind_socket(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::os::unix::net::UnixListener::bind(path)
}

/// Changes the owner of everything in `dir` that `from` owns to `to`, never following a
/// symlink (links themselves are re-owned with `AT_SYMLINK_NOFOLLOW`). Used to move a seat made
/// with the old shared uid to its own uid while it does not run. Files owned by anyone else (root
/// included) are left alone, so a planted hard link gains nothing. Subdirectories are queued as
/// paths relative to `dir` and opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so at
/// most two descriptors are open however wide the tree (a learner's 100 000 directories cannot
/// exhaust the agent's descriptors), and no swapped-in symlink is ever followed.
pub fn chown_tree(dir: &Path, from: u32, to: u32) -> std::io::Result<u64> {
    use nix::fcntl::{open, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
    use nix::sys::stat::{fstatat, Mode};
    use nix::unistd::fchownat;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let (uid, gid) = (Some(Uid::from_raw(to)), Some(Gid::from_raw(to)));
    let root = nix::dir::Dir::from_fd(open(dir, flags, Mode::empty())?)?;
    let rfd = root.as_raw_fd();
    let mut changed = 0u64;
    if nix::sys::stat::fstat(rfd)?.st_uid == from {
        nix::unistd::fchown(rfd, uid, gid)?;
        changed += 1;
    }
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let mut queue: Vec<PathBuf> = vec![PathBuf::from(".")];
    while let Some(rel) = queue.pop() {
        let mut d = nix::dir::Dir::from_fd(openat2(rfd, &rel, how)?)?;
        let dfd = d.as_raw_fd();
        for entry in d.iter() {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            let st = fstatat(Some(dfd), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
            if st.st_uid == from {
                fchownat(Some(dfd), name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)?;
                changed += 1;
            }
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                let name = std::ffi::OsStr::from_bytes(name.to_bytes());
                queue.push(rel.join(name));
            }
        }
    }
    Ok(changed)
}

/// Removes a directory tree; a missing one is fine. Never follows symlinks the learner planted.
pub fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Removes `dir`'s parent (the workshop level) when it is empty.
pub fn remove_empty_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        let _ = std::fs::remove_dir(parent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_layout() {
        let key = SeatKey {
            workshop_id: "ws-abc123".into(),
            seat: 3,
        };
        let p = SeatPaths::new(Path::new("/d"), &key);
        assert_eq!(p.volume, Path::new("/d/seats/ws-abc123/seat-03/workspace"));
        assert_eq!(p.home, Path::new("/d/seats/ws-abc123/seat-03/home"));
        assert_eq!(p.socket, Path::new("/d/run/ws-abc123/seat-03/daemon.sock"));
        assert_eq!(p.state, Path::new("/d/sandboxes/ws-abc123/seat-03.json"));
        assert_eq!(seat_name(12), "seat-12");
    }

    #[test]
    fn chown_tree_moves_only_the_old_owner_and_never_follows_links() {
        if !nix::unistd::geteuid().is_root() {
            clarateach_core::skip::report("chown_tree test", "needs root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let vol = dir.path().join("vol");
        std::fs::create_dir_all(vol.join("a/b")).expect("mkdir");
        std::fs::write(vol.join("a/b/f"), "x").expect("write");
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "root's").expect("write");
        std::os::unix::fs::symlink(&outside, vol.join("a/link")).expect("symlink");
        std::fs::write(vol.join("rootfile"), "r").expect("write");
        for p in ["", "a", "a/b", "a/b/f", "a/link"] {
            nix::unistd::fchownat(
                None,
                &vol.join(p),
                Some(Uid::from_raw(61000)),
                Some(Gid::from_raw(61000)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .expect("chown");
        }
        let n = chown_tree(&vol, 61000, 200_007).expect("walk");
        assert_eq!(n, 5);
        use std::os::unix::fs::MetadataExt;
        let uid = |p: &Path| std::fs::symlink_metadata(p).expect("meta").uid();
        assert_eq!(uid(&vol.join("a/b/f")), 200_007);
        assert_eq!(uid(&vol.join("a/link")), 200_007);
        assert_eq!(uid(&outside), 0, "the link's target is not touched");
        assert_eq!(uid(&vol.join("rootfile")), 0, "other owners are left alone");
    }

    #[test]
    fn workshop_ids_cannot_escape() {
        for bad in ["", "..", "../x", "a/b", ".hidden", "a b"] {
            assert!(
                validate(&SeatKey {
                    workshop_id: bad.into(),
                    seat: 1
                })
                .is_err(),
                "{bad:?}"
            );
        }
        assert!(validate(&SeatKey {
            workshop_id: "ws-a1_B".into(),
            seat: 1
        })
        .is_ok());
    }
}
