//! Moving an old-style seat dir (`<data>/volumes/<ws>/seat-NN`, `<data>/homes/...`, from before
//! the seat store) into the store, without ever losing a file:
//!
//! 1. copy `old` into `<new>.migrating` (on the seat's own file system), then `syncfs` it;
//! 2. rename `old` to `<old>.migrated` (the copy is complete and durable);
//! 3. rename `<new>.migrating` to `new`;
//! 4. remove `<old>.migrated`, or, if anything in it could not be copied, move it to the
//!    root-only leftovers dir with a warning.
//!
//! Every crash point is recognisable from what exists: `old` means start over (a `.migrating`
//! dir is discarded); `<old>.migrated` means the copy is complete, so finish 3 and 4. The caller
//! never makes `new` while `old` exists; if both do anyway, `old` goes to the leftovers.
//!
//! The old dir is learner-written, so the copy walks by directory fd with `O_NOFOLLOW`, never
//! re-resolving a path: symlinks are copied as links, FIFOs, sockets and devices are not opened
//! (they stay in the leftovers), holes stay holes. Owners, modes and times are kept; hard links
//! become separate files and extended attributes are not copied. It runs while the seat is
//! stopped, so nothing races the walk.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

/// Directory levels below this are not copied (their dir stays in the leftovers): bounds the
/// fds held open and the recursion.
const MAX_DEPTH: usize = 128;

/// What one migration did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Entries copied.
    pub copied: u64,
    /// Entries not copied, relative to the old dir, with why.
    pub skipped: Vec<(String, String)>,
    /// Whether there was anything to migrate.
    pub moved: bool,
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Migrates `old` to `new` (see the module docs); `leftovers` receives an old dir that could not
/// be copied whole.
pub fn migrate(old: &Path, new: &Path, leftovers: &Path) -> io::Result<Outcome> {
    let done = with_suffix(old, ".migrated");
    let tmp = with_suffix(new, ".migrating");
    let mut outcome = Outcome::default();
    if exists(old) {
        if !std::fs::symlink_metadata(old)?.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                old.display()
            )));
        }
        outcome.moved = true;
        if exists(new) {
            tracing::warn!(old = %old.display(), new = %new.display(), "both an old-style and a store seat dir exist; keeping the old one aside");
            put_aside(old, leftovers)?;
            return Ok(outcome);
        }
        let parent = new
            .parent()
            .ok_or_else(|| io::Error::other("seat dir has no parent"))?;
        std::fs::create_dir_all(parent)?;
        super::paths::remove_tree(&tmp)?;
        // Same file system (no quota store): one rename keeps everything and is atomic.
        match std::fs::rename(old, new) {
            Ok(()) => {
                tracing::info!(from = %old.display(), to = %new.display(), "seat dir moved");
                super::paths::remove_empty_parent(old);
                return Ok(outcome);
            }
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir(&tmp)?;
        let src = Dir::open(old, dir_flags(), Mode::empty())?;
        let dst = Dir::open(&tmp, dir_flags(), Mode::empty())?;
        copy_dir(src, &dst, Path::new(""), 0, &mut outcome);
        let st = nix::sys::stat::stat(old)?;
        copy_meta(dst.as_raw_fd(), &st)?;
        nix::unistd::syncfs(dst.as_raw_fd())?;
        drop(dst);
        std::fs::rename(old, &done)?;
        sync_parent(old)?;
    } else if !exists(&done) {
        return Ok(outcome);
    }
    outcome.moved = true;
    if exists(&tmp) {
        if exists(new) {
            return Err(io::Error::other(format!(
                "{} and {} both exist",
                tmp.display(),
                new.display()
            )));
        }
        std::fs::rename(&tmp, new)?;
        sync_parent(new)?;
    } else if !exists(new) {
        // `.migrated` without its copy cannot come from `migrate`; undo it and copy next time.
        std::fs::rename(&done, old)?;
        return Err(io::Error::other(format!(
            "{} had no copy; restored it",
            done.display()
        )));
    }
    if outcome.skipped.is_empty() {
        super::paths::remove_tree(&done)?;
        tracing::info!(from = %old.display(), to = %new.display(), copied = outcome.copied, "seat dir migrated");
    } else {
        let kept = put_aside(&done, leftovers)?;
        tracing::warn!(
            from = %old.display(),
            kept = %kept.display(),
            skipped = ?outcome.skipped,
            "seat dir migrated, but some entries could not be copied: the old dir is kept"
        );
    }
    super::paths::remove_empty_parent(old);
    Ok(outcome)
}

fn sync_parent(p: &Path) -> io::Result<()> {
    match p.parent() {
        Some(parent) => File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

/// Moves `dir` (`<data>/<kind>/<ws>/<seat>[.migrated]`) to `<leftovers>/<kind>/<ws>/<seat>`.
fn put_aside(dir: &Path, leftovers: &Path) -> io::Result<PathBuf> {
    let name = |p: Option<&Path>, or: &'static str| {
        p.and_then(Path::file_name)
            .unwrap_or(OsStr::new(or))
            .to_owned()
    };
    let kind = name(dir.parent().and_then(Path::parent), "dir");
    let ws = name(dir.parent(), "ws");
    let seat = name(Some(dir), "seat");
    super::paths::private_dir(leftovers)?;
    let parent = leftovers.join(kind).join(ws);
    std::fs::create_dir_all(&parent)?;
    let mut aside = parent.join(&seat);
    let mut n = 1;
    while exists(&aside) {
        aside = parent.join(format!("{}.{n}", seat.to_string_lossy()));
        n += 1;
    }
    std::fs::rename(dir, &aside)?;
    Ok(aside)
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// Wraps an fd `openat` just returned.
#[allow(unsafe_code)]
fn own(fd: RawFd) -> File {
    // SAFETY: `fd` was just returned by a successful `openat` and is owned by nobody else.
    unsafe { File::from_raw_fd(fd) }
}

fn copy_dir(mut src: Dir, dst: &Dir, rel: &Path, depth: usize, out: &mut Outcome) {
    let src_fd = src.as_raw_fd();
    let names: Vec<OsString> = src
        .iter()
        .filter_map(Result::ok)
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    for name in names {
        let rel = rel.join(&name);
        if let Err(why) = copy_entry(src_fd, dst, &name, &rel, depth, out) {
            out.skipped.push((rel.display().to_string(), why));
        }
    }
}

/// Copies one entry; `Err` says why it was skipped.
fn copy_entry(
    src_fd: RawFd,
    dst: &Dir,
    name: &OsStr,
    rel: &Path,
    depth: usize,
    out: &mut Outcome,
) -> Result<(), String> {
    let dst_fd = dst.as_raw_fd();
    let st = fstatat(Some(src_fd), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| format!("stat: {e}"))?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    match kind {
        SFlag::S_IFDIR => {
            if depth + 1 >= MAX_DEPTH {
                return Err(format!("deeper than {MAX_DEPTH} levels"));
            }
            mkdirat(Some(dst_fd), name, Mode::from_bits_truncate(0o700))
                .map_err(|e| format!("mkdir: {e}"))?;
            let sub_src = Dir::openat(Some(src_fd), name, dir_flags(), Mode::empty())
                .map_err(|e| format!("open: {e}"))?;
            let sub_dst = Dir::openat(Some(dst_fd), name, dir_flags(), Mode::empty())
                .map_err(|e| format!("open copy: {e}"))?;
            copy_dir(sub_src, &sub_dst, rel, depth + 1, out);
            copy_meta(sub_dst.as_raw_fd(), &st).map_err(|e| format!("owner/mode: {e}"))?;
        }
        SFlag::S_IFREG => {
            let from = openat(
                Some(src_fd),
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map(own)
            .map_err(|e| format!("open: {e}"))?;
            let to = openat(
                Some(dst_fd),
                name,
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map(own)
            .map_err(|e| format!("create copy: {e}"))?;
            if let Err(e) = copy_sparse(&from, &to, st.st_size) {
                // A partial copy (say the seat's disk is full) would only take space: the
                // whole file stays in the old dir, which is kept.
                drop(to);
                let _ = nix::unistd::unlinkat(
                    Some(dst_fd),
                    name,
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                );
                return Err(format!("copy: {e}"));
            }
            copy_meta(to.as_raw_fd(), &st).map_err(|e| format!("owner/mode: {e}"))?;
        }
        SFlag::S_IFLNK => {
            let target =
                nix::fcntl::readlinkat(Some(src_fd), name).map_err(|e| format!("readlink: {e}"))?;
            nix::unistd::symlinkat(target.as_os_str(), Some(dst_fd), name)
                .map_err(|e| format!("symlink: {e}"))?;
            nix::unistd::fchownat(
                Some(dst_fd),
                name,
                Some(Uid::from_raw(st.st_uid)),
                Some(Gid::from_raw(st.st_gid)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| format!("chown link: {e}"))?;
            let (atime, mtime) = times(&st);
            nix::sys::stat::utimensat(
                Some(dst_fd),
                name,
                &atime,
                &mtime,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| format!("link times: {e}"))?;
        }
        _ => return Err("not a file, directory or symlink".into()),
    }
    out.copied += 1;
    Ok(())
}

fn times(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(st.st_atime, st.st_atime_nsec),
        TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
    )
}

/// Owner, then mode (chown clears set-id bits), then times, from `st` onto an open fd.
fn copy_meta(fd: RawFd, st: &FileStat) -> nix::Result<()> {
    nix::unistd::fchown(
        fd,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )?;
    nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(st.st_mode & 0o7777))?;
    let (atime, mtime) = times(st);
    nix::sys::stat::futimens(fd, &atime, &mtime)
}

/// Copies the data regions of `from` (SEEK_DATA/SEEK_HOLE), so holes stay holes.
pub(super) fn copy_sparse(from: &File, to: &File, size: i64) -> io::Result<()> {
    let size = u64::try_from(size).unwrap_or(0);
    let fd = from.as_raw_fd();
    let mut pos: u64 = 0;
    let mut buf = vec![0u8; 256 * 1024];
    while pos < size {
        let Some(data) = seek(fd, pos, nix::unistd::Whence::SeekData)? else {
            break;
        };
        let end = seek(fd, data, nix::unistd::Whence::SeekHole)?
            .unwrap_or(size)
            .min(size);
        let mut off = data;
        while off < end {
            let want = usize::try_from((end - off).min(buf.len() as u64)).unwrap_or(buf.len());
            let n = from.read_at(&mut buf[..want], off)?;
            if n == 0 {
                break;
            }
            to.write_all_at(&buf[..n], off)?;
            off += n as u64;
        }
        pos = end.max(off);
    }
    to.set_len(size)
}

/// `lseek`; `None` when there is no data at or after `pos` (ENXIO).
fn seek(fd: RawFd, pos: u64, whence: nix::unistd::Whence) -> io::Result<Option<u64>> {
    let off = i64::try_from(pos).map_err(|_| io::Error::other("offset too large"))?;
    match nix::unistd::lseek(fd, off, whence) {
        Ok(p) => Ok(u64::try_from(p).ok()),
        Err(nix::errno::Errno::ENXIO) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// The copy itself (on one file system `migrate` renames instead).
    #[test]
    fn copy_keeps_files_links_modes_and_holes() {
        let t = tempfile::tempdir().expect("tempdir");
        let old = t.path().join("old");
        std::fs::create_dir_all(old.join("a/b")).expect("mkdir");
        std::fs::write(old.join("a/b/f.txt"), "hello").expect("write");
        std::fs::set_permissions(
            old.join("a/b/f.txt"),
            std::fs::Permissions::from_mode(0o751),
        )
        .expect("chmod");
        std::os::unix::fs::symlink("/etc/shadow", old.join("link")).expect("symlink");
        let sparse = File::create(old.join("sparse")).expect("create");
        sparse.write_all_at(b"end", 64 << 20).expect("write");
        nix::unistd::mkfifo(&old.join("fifo"), Mode::from_bits_truncate(0o600)).expect("fifo");

        let new = t.path().join("new");
        std::fs::create_dir(&new).expect("mkdir");
        let mut out = Outcome::default();
        let src = Dir::open(&old, dir_flags(), Mode::empty()).expect("open");
        let dst = Dir::open(&new, dir_flags(), Mode::empty()).expect("open");
        copy_dir(src, &dst, Path::new(""), 0, &mut out);

        assert_eq!(
            std::fs::read_to_string(new.join("a/b/f.txt")).expect("read"),
            "hello"
        );
        let mode = std::fs::metadata(new.join("a/b/f.txt"))
            .expect("stat")
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o751);
        assert_eq!(
            std::fs::read_link(new.join("link")).expect("readlink"),
            Path::new("/etc/shadow"),
            "a symlink is copied as a link, never followed"
        );
        let m = std::fs::metadata(new.join("sparse")).expect("stat");
        assert_eq!(m.len(), (64 << 20) + 3);
        assert!(
            m.blocks() * 512 < 1 << 20,
            "the hole stayed a hole: {} blocks",
            m.blocks()
        );
        assert_eq!(out.skipped.len(), 1, "{:?}", out.skipped);
        assert_eq!(out.skipped[0].0, "fifo");
        assert!(!new.join("fifo").exists());
    }

    #[test]
    fn migrate_on_one_fs_renames_and_is_idempotent() {
        let t = tempfile::tempdir().expect("tempdir");
        let old = t.path().join("volumes/ws/seat-01");
        std::fs::create_dir_all(&old).expect("mkdir");
        std::fs::write(old.join("f"), "x").expect("write");
        let new = t.path().join("seat-store/volumes/ws/seat-01");
        let left = t.path().join("leftovers");
        let out = migrate(&old, &new, &left).expect("migrate");
        assert!(out.moved);
        assert_eq!(std::fs::read_to_string(new.join("f")).expect("read"), "x");
        assert!(!old.exists());
        let again = migrate(&old, &new, &left).expect("migrate");
        assert_eq!(again, Outcome::default());
    }

    #[test]
    fn a_crash_after_the_copy_is_finished_on_the_next_run() {
        let t = tempfile::tempdir().expect("tempdir");
        let old = t.path().join("volumes/ws/seat-01");
        let new = t.path().join("seat-store/volumes/ws/seat-01");
        // State after step 2: the old dir renamed aside, the complete copy not yet renamed.
        std::fs::create_dir_all(with_suffix(&old, ".migrated")).expect("mkdir");
        std::fs::create_dir_all(with_suffix(&new, ".migrating")).expect("mkdir");
        std::fs::write(with_suffix(&new, ".migrating").join("f"), "copied").expect("write");
        let out = migrate(&old, &new, &t.path().join("l")).expect("migrate");
        assert!(out.moved);
        assert_eq!(
            std::fs::read_to_string(new.join("f")).expect("read"),
            "copied"
        );
        assert!(!with_suffix(&old, ".migrated").exists());
        assert!(!with_suffix(&new, ".migrating").exists());
    }

    #[test]
    fn a_crash_during_the_copy_starts_over() {
        let t = tempfile::tempdir().expect("tempdir");
        let old = t.path().join("volumes/ws/seat-01");
        let new = t.path().join("seat-store/volumes/ws/seat-01");
        std::fs::create_dir_all(&old).expect("mkdir");
        std::fs::write(old.join("f"), "orig").expect("write");
        std::fs::create_dir_all(with_suffix(&new, ".migrating")).expect("mkdir");
        std::fs::write(with_suffix(&new, ".migrating").join("half"), "").expect("write");
        migrate(&old, &new, &t.path().join("l")).expect("migrate");
        assert_eq!(
            std::fs::read_to_string(new.join("f")).expect("read"),
            "orig"
        );
        assert!(!new.join("half").exists());
        assert!(!with_suffix(&new, ".migrating").exists());
        assert!(!old.exists());
    }

    #[test]
    fn both_dirs_present_keeps_the_old_one_aside() {
        let t = tempfile::tempdir().expect("tempdir");
        let old = t.path().join("volumes/ws/seat-01");
        let new = t.path().join("seat-store/volumes/ws/seat-01");
        std::fs::create_dir_all(&old).expect("mkdir");
        std::fs::write(old.join("f"), "old").expect("write");
        std::fs::create_dir_all(&new).expect("mkdir");
        let left = t.path().join("l");
        migrate(&old, &new, &left).expect("migrate");
        assert!(!old.exists());
        assert_eq!(
            std::fs::read_to_string(left.join("volumes/ws/seat-01/f")).expect("read"),
            "old",
            "nothing is lost"
        );
    }
}
