//! Walks a seat's volume directory by file descriptor, never by path: the root is opened once
//! (`O_DIRECTORY|O_NOFOLLOW`), every entry relative to its parent's fd with `openat2`
//! (`RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS|RESOLVE_NO_XDEV`), first as
//! `O_PATH|O_NOFOLLOW` so that nothing is ever opened for real before `fstat` says what it is.
//! Directories are re-opened from that very fd (`"."`), regular files by name and kept only if
//! the inode is the one just inspected, symlinks are read with `readlinkat` on their own fd and
//! stored as links; FIFOs (whose open would block), sockets and devices are never opened, only
//! reported. An entry that vanishes or is swapped mid-walk is reported and the walk goes on.
//! A learner racing `ln -sfn /etc/shadow x` against the walk can at worst get a link stored.
//!
//! At most [`MAX_DEPTH`] directory fds are open at once (a depth-first walk holding one per
//! level), so a wide or deep tree cannot exhaust the agent's fds.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use clarateach_isolation::export::{join, EntryMeta, VolumeSink, MAX_DEPTH};
use rustix::fs::{Dir, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// Streams the tree under `root` into `sink`. A missing root is an empty volume. Volume
/// problems are reported through the sink; `Err` only means the sink's output failed.
pub fn walk(root: &Path, sink: &mut dyn VolumeSink) -> std::io::Result<()> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let root = match rustix::fs::open(root, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => {
            sink.skip(b"", "volume", &format!("cannot be opened: {e}"));
            return Ok(());
        }
    };
    let mut stack = Vec::new();
    push_dir(&mut stack, root, Vec::new(), sink);
    while let Some(level) = stack.last_mut() {
        let entry = match level.entries.read() {
            None => {
                stack.pop();
                continue;
            }
            Some(Err(e)) => {
                sink.skip(
                    &level.rel,
                    "directory",
                    &format!("listing failed part-way: {e}"),
                );
                stack.pop();
                continue;
            }
            Some(Ok(entry)) => entry,
        };
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let path = join(&level.rel, name);
        let depth = stack.len();
        let Some(level) = stack.last() else { break };
        if let Some(child) = visit(&level.fd, entry.file_name(), &path, depth, sink)? {
            push_dir(&mut stack, child, path, sink);
        }
    }
    Ok(())
}

/// One open directory being listed.
struct Level {
    fd: OwnedFd,
    entries: Dir,
    rel: Vec<u8>,
}

fn push_dir(stack: &mut Vec<Level>, fd: OwnedFd, rel: Vec<u8>, sink: &mut dyn VolumeSink) {
    match Dir::read_from(&fd) {
        Ok(entries) => stack.push(Level { fd, entries, rel }),
        Err(e) => sink.skip(&rel, "directory", &format!("cannot be listed: {e}")),
    }
}

fn meta(st: &Stat) -> EntryMeta {
    EntryMeta {
        mode: st.st_mode & 0o7777,
        mtime: st.st_mtime,
    }
}

/// Archives one entry of `parent`; returns the fd of a directory to descend into.
fn visit(
    parent: &OwnedFd,
    name: &std::ffi::CStr,
    path: &[u8],
    depth: usize,
    sink: &mut dyn VolumeSink,
) -> std::io::Result<Option<OwnedFd>> {
    let gone = |sink: &mut dyn VolumeSink, kind: &str, e: Errno| match e {
        Errno::NOENT => sink.skip(path, kind, "vanished during the export"),
        Errno::ACCESS | Errno::PERM => sink.skip(path, kind, "not readable by the seat's user"),
        Errno::LOOP | Errno::XDEV => sink.skip(path, kind, "was replaced during the export"),
        e => sink.skip(path, kind, &format!("cannot be opened: {e}")),
    };
    let o_path = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat2(parent, name, o_path, Mode::empty(), RESOLVE) {
        Ok(fd) => fd,
        Err(e) => {
            gone(sink, "unknown", e);
            return Ok(None);
        }
    };
    let st = match rustix::fs::fstat(&fd) {
        Ok(st) => st,
        Err(e) => {
            gone(sink, "unknown", e);
            return Ok(None);
        }
    };
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory if depth >= MAX_DEPTH => {
            sink.skip(path, "directory", "nested too deep; not walked");
            Ok(None)
        }
        FileType::Directory => {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat2(&fd, ".", flags, Mode::empty(), RESOLVE) {
                Ok(dir) => {
                    sink.dir(path, meta(&st))?;
                    Ok(Some(dir))
                }
                Err(e) => {
                    gone(sink, "directory", e);
                    Ok(None)
                }
            }
        }
        FileType::RegularFile => {
            if !sink.wants_file(path, &stamp(&st)) {
                return Ok(None);
            }
            let flags = OFlags::RDONLY
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | OFlags::NOCTTY
                | OFlags::CLOEXEC;
            let file = match rustix::fs::openat2(parent, name, flags, Mode::empty(), RESOLVE) {
                Ok(file) => file,
                Err(e) => {
                    gone(sink, "file", e);
                    return Ok(None);
                }
            };
            match rustix::fs::fstat(&file) {
                Ok(now)
                    if now.st_ino == st.st_ino
                        && now.st_dev == st.st_dev
                        && FileType::from_raw_mode(now.st_mode) == FileType::RegularFile =>
                {
                    let size = u64::try_from(now.st_size).unwrap_or(0);
                    let mut file = std::fs::File::from(file);
                    sink.file(path, meta(&now), size, &mut file)?;
                }
                Ok(_) => sink.skip(path, "file", "was replaced during the export"),
                Err(e) => gone(sink, "file", e),
            }
            Ok(None)
        }
        FileType::Symlink => {
            match rustix::fs::readlinkat(fd.as_fd(), "", Vec::new()) {
                Ok(target) => sink.symlink(path, meta(&st), target.as_bytes())?,
                Err(e) => gone(sink, "symlink", e),
            }
            Ok(None)
        }
        other => {
            sink.skip(path, special_kind(other), "special files are not exported");
            Ok(None)
        }
    }
}

fn stamp(st: &Stat) -> clarateach_isolation::export::FileStamp {
    let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
    clarateach_isolation::export::FileStamp {
        size: u64::try_from(st.st_size).unwrap_or(0),
        ino: st.st_ino,
        mtime_ns: ns(st.st_mtime, st.st_mtime_nsec as i64),
        ctime_ns: ns(st.st_ctime, st.st_ctime_nsec as i64),
    }
}

fn special_kind(t: FileType) -> &'static str {
    match t {
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "char-device",
        FileType::BlockDevice => "block-device",
        _ => "unknown",
    }
}
