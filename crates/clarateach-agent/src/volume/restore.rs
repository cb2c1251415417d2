//! Puts a seat's synced files back into a fresh volume before the seat first runs on this host
//! (a seat moved here from a lost or drained host). The keys come from the bucket, so they are
//! input like any other: [`clarateach_objstore::SeatFiles::relative`] refuses every key that is
//! not a plain relative path, and the writes below go by file descriptor from the volume root
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)`, `O_NOFOLLOW` and
//! `O_EXCL`, on the seat's own thread and uid ([`super::seat_thread`]): even a symlink already
//! in the volume cannot take a write outside it. Only an empty volume is restored into (a seat
//! that already has files here keeps them), files and totals are capped like the sync.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::manifest::{Entry, Stamp};

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// Why one file could not be written back.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot open the volume root")]
    Root(#[source] Errno),
    #[error("cannot make directory {0:?}")]
    Mkdir(String, #[source] Errno),
    #[error("a non-directory is in the way at {0:?}")]
    NotDir(String),
    #[error("cannot create {0:?}")]
    Create(String, #[source] Errno),
    #[error("cannot write {0:?}")]
    Write(String, #[source] std::io::Error),
}

/// Opens the volume root (never through a symlink).
pub fn open_root(volume: &Path) -> Result<OwnedFd, WriteError> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::open(volume, flags, Mode::empty()).map_err(WriteError::Root)
}

/// True when the volume has no entry at all (or does not exist yet).
pub fn is_empty(volume: &Path) -> Result<bool, WriteError> {
    let root = match open_root(volume) {
        Ok(fd) => fd,
        Err(WriteError::Root(Errno::NOENT)) => return Ok(true),
        Err(e) => return Err(e),
    };
    let mut dir = rustix::fs::Dir::read_from(&root).map_err(WriteError::Root)?;
    while let Some(entry) = dir.read() {
        let entry = entry.map_err(WriteError::Root)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Writes one file at `rel` (components already checked) below `root`, making missing
/// directories; returns its manifest entry. Never replaces anything that exists.
pub fn write_file(root: &OwnedFd, rel: &[String], data: &[u8]) -> Result<Entry, WriteError> {
    let name = rel.join("/");
    let Some((file, dirs)) = rel.split_last() else {
        return Err(WriteError::NotDir(name));
    };
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut at: Option<OwnedFd> = None;
    for d in dirs {
        let parent = at.as_ref().unwrap_or(root);
        let next = match rustix::fs::openat2(parent, d.as_str(), dir_flags, Mode::empty(), RESOLVE)
        {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(parent, d.as_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(WriteError::Mkdir(name, e)),
                }
                rustix::fs::openat2(parent, d.as_str(), dir_flags, Mode::empty(), RESOLVE)
                    .map_err(|_| WriteError::NotDir(name.clone()))?
            }
            Err(_) => return Err(WriteError::NotDir(name)),
        };
        at = Some(next);
    }
    let parent = at.as_ref().unwrap_or(root);
    let flags = OFlags::WRONLY
        | OFlags::CREATE
        | OFlags::EXCL
        | OFlags::NOFOLLOW
        | OFlags::NOCTTY
        | OFlags::CLOEXEC;
    let fd = rustix::fs::openat2(
        parent,
        file.as_str(),
        flags,
        Mode::from_raw_mode(0o644),
        RESOLVE,
    )
    .map_err(|e| WriteError::Create(name.clone(), e))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(data)
        .map_err(|e| WriteError::Write(name.clone(), e))?;
    let st = rustix::fs::fstat(&f).map_err(|e| WriteError::Write(name.clone(), e.into()))?;
    let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
    Ok(Entry {
        stamp: Stamp {
            size: data.len() as u64,
            ino: st.st_ino,
            mtime_ns: ns(st.st_mtime, st.st_mtime_nsec as i64),
            ctime_ns: ns(st.st_ctime, st.st_ctime_nsec as i64),
        },
        sha256: Some(super::manifest::hex_sha256(data)),
        // The learner has not run yet; the next scan reads it once more by content.
        settled: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> Vec<String> {
        s.split('/').map(String::from).collect()
    }

    #[test]
    fn writes_below_the_root_and_never_through_a_symlink() {
        let dir = tempfile::tempdir().expect("tmp");
        let vol = dir.path().join("vol");
        std::fs::create_dir(&vol).expect("vol");
        assert!(is_empty(&vol).expect("empty"));
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).expect("outside");
        std::os::unix::fs::symlink(&outside, vol.join("link")).expect("link");
        std::os::unix::fs::symlink(outside.join("f"), vol.join("flink")).expect("flink");
        let root = open_root(&vol).expect("root");
        let e = write_file(&root, &rel("src/deep/main.py"), b"print(1)").expect("write");
        assert_eq!(e.stamp.size, 8);
        assert_eq!(
            std::fs::read(vol.join("src/deep/main.py")).expect("read"),
            b"print(1)"
        );
        assert!(write_file(&root, &rel("link/escape"), b"x").is_err());
        assert!(write_file(&root, &rel("flink"), b"x").is_err());
        assert!(!outside.join("escape").exists() && !outside.join("f").exists());
        // Nothing is replaced.
        assert!(write_file(&root, &rel("src/deep/main.py"), b"other").is_err());
        assert!(!is_empty(&vol).expect("not empty"));
        // The root itself as a symlink is refused.
        std::os::unix::fs::symlink(&outside, dir.path().join("vlink")).expect("vlink");
        assert!(open_root(&dir.path().join("vlink")).is_err());
    }
}
