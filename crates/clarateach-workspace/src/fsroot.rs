//! Every file operation, confined to one directory by the kernel.
//!
//! Paths are opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` from a directory fd
//! of the root, so `..`, absolute symlinks and symlinks leading outside (including a symlinked
//! parent directory, or one swapped in between a check and a use) fail in the kernel with EXDEV
//! instead of being caught (or missed) by string checks. The last component is then handled
//! with `*at` calls on the parent's fd that never follow it (create-exclusive, rename, unlink).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use clarateach_core::FileInfo;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags};
use rustix::io::Errno;

/// Why a file operation failed; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{0}")]
    BadPath(&'static str),
    #[error("path leaves the workspace")]
    Escape,
    #[error("permission denied")]
    Denied,
    #[error("no such file or directory")]
    NotFound,
    #[error("not a directory")]
    NotADirectory,
    #[error("is a directory")]
    IsADirectory,
    #[error("not a regular file")]
    NotAFile,
    #[error("already exists")]
    Exists,
    #[error("directory not empty")]
    NotEmpty,
    #[error("file is larger than {0} bytes")]
    TooLarge(u64),
    #[error("file system error")]
    Io(#[source] std::io::Error),
}

impl From<Errno> for FsError {
    fn from(e: Errno) -> Self {
        match e {
            Errno::XDEV | Errno::LOOP => FsError::Escape,
            Errno::ACCESS | Errno::PERM | Errno::ROFS => FsError::Denied,
            Errno::NOENT => FsError::NotFound,
            Errno::NOTDIR => FsError::NotADirectory,
            Errno::ISDIR => FsError::IsADirectory,
            Errno::EXIST => FsError::Exists,
            Errno::NOTEMPTY => FsError::NotEmpty,
            Errno::NAMETOOLONG => FsError::BadPath("path component too long"),
            Errno::INVAL => FsError::BadPath("invalid operation for this path"),
            other => FsError::Io(other.into()),
        }
    }
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(n) => Errno::from_raw_os_error(n).into(),
            None => FsError::Io(e),
        }
    }
}

/// A path inside the root: validated components, never `.`, `..` or empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelPath(Vec<String>);

impl RelPath {
    /// Accepts `a/b`, `/a/b` and `/workspace/a/b` (the seed's style); refuses `..` and NUL.
    pub fn parse(raw: &str) -> Result<Self, FsError> {
        if raw.contains('\0') {
            return Err(FsError::BadPath("path contains a NUL byte"));
        }
        let s = match raw.strip_prefix("/workspace") {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
            _ => raw,
        };
        let mut parts = Vec::new();
        for c in s.split('/') {
            match c {
                "" | "." => {}
                ".." => return Err(FsError::Escape),
                c if c.len() > 255 => return Err(FsError::BadPath("path component too long")),
                c => parts.push(c.to_string()),
            }
        }
        Ok(Self(parts))
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// `a/b` for the kernel (`.` for the root).
    fn as_rel(&self) -> String {
        if self.0.is_empty() {
            ".".into()
        } else {
            self.0.join("/")
        }
    }

    /// `/a/b` as the API shows it.
    pub fn display(&self) -> String {
        format!("/{}", self.0.join("/"))
    }

    /// The containing directory (the root's parent is the root).
    pub fn parent(&self) -> Self {
        Self(
            self.0
                .split_last()
                .map(|(_, p)| p.to_vec())
                .unwrap_or_default(),
        )
    }

    fn child(&self, name: &str) -> Self {
        let mut v = self.0.clone();
        v.push(name.to_string());
        Self(v)
    }

    fn split_last(&self) -> Result<(RelPath, &str), FsError> {
        match self.0.split_last() {
            Some((last, parent)) => Ok((RelPath(parent.to_vec()), last.as_str())),
            None => Err(FsError::BadPath("not allowed on the workspace root")),
        }
    }
}

/// The workspace root, held open as a directory fd.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
}

/// When a write reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Before the write answers: the file and its directory are fsynced (two flushes of the
    /// seat's disk per file).
    Now,
    /// At the next [`Root::sync`]: for a batch of writes (a broadcast of 20 files), which then
    /// pays one flush instead of forty. The rename is atomic either way: a reader sees the old
    /// content or the new, never a mix.
    Later,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);
/// Marker in temp file names, so the change watcher can ignore them.
pub const TMP_MARKER: &str = ".clarateach-tmp-";

impl Root {
    pub fn open(path: &Path) -> Result<Self, FsError> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self { fd })
    }

    fn resolve(&self, path: &RelPath, flags: OFlags) -> Result<OwnedFd, FsError> {
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        let rel = path.as_rel();
        // EAGAIN: a concurrent rename elsewhere made the kernel unsure; retrying is the advice.
        for _ in 0..16 {
            match rustix::fs::openat2(
                &self.fd,
                &rel,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                resolve,
            ) {
                Err(Errno::AGAIN) => continue,
                r => return r.map_err(FsError::from),
            }
        }
        Err(FsError::Io(Errno::AGAIN.into()))
    }

    fn open_dir(&self, path: &RelPath) -> Result<OwnedFd, FsError> {
        self.resolve(path, OFlags::RDONLY | OFlags::DIRECTORY)
    }

    /// Whether `path` resolves inside the root (used to filter change events).
    pub fn contains(&self, path: &RelPath) -> bool {
        self.resolve(path, OFlags::PATH).is_ok()
    }

    /// Directory entries: directories first, then by name ignoring case.
    pub fn list(&self, path: &RelPath) -> Result<Vec<FileInfo>, FsError> {
        let dir = self.open_dir(path)?;
        let mut out = Vec::new();
        for entry in rustix::fs::Dir::read_from(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            let child = path.child(&name);
            let Ok(mut st) = rustix::fs::statat(&dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)
            else {
                continue; // removed while listing
            };
            if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                // Show what a link points to only when that stays inside the root.
                if let Ok(target) = self
                    .resolve(&child, OFlags::PATH)
                    .and_then(|fd| Ok(rustix::fs::fstat(fd)?))
                {
                    st = target;
                }
            }
            out.push(FileInfo {
                is_directory: FileType::from_raw_mode(st.st_mode) == FileType::Directory,
                size: st.st_size.max(0) as u64,
                modified_at: DateTime::<Utc>::from_timestamp(
                    st.st_mtime as i64,
                    st.st_mtime_nsec as u32,
                )
                .unwrap_or_default(),
                path: child.display(),
                name,
            });
        }
        out.sort_by(|a, b| {
            b.is_directory
                .cmp(&a.is_directory)
                .then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase()))
        });
        Ok(out)
    }

    /// Reads a regular file of at most `cap` bytes.
    pub fn read(&self, path: &RelPath, cap: u64) -> Result<Vec<u8>, FsError> {
        // NONBLOCK so a FIFO cannot hang the request; NOCTTY in case of a terminal device.
        let fd = self.resolve(path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY)?;
        let st = rustix::fs::fstat(&fd)?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {}
            FileType::Directory => return Err(FsError::IsADirectory),
            _ => return Err(FsError::NotAFile),
        }
        if st.st_size as u64 > cap {
            return Err(FsError::TooLarge(cap));
        }
        let mut data = Vec::with_capacity(st.st_size.max(0) as usize);
        File::from(fd).take(cap + 1).read_to_end(&mut data)?;
        if data.len() as u64 > cap {
            return Err(FsError::TooLarge(cap));
        }
        Ok(data)
    }

    /// Creates `path` and its missing parents; returns the directory open for reading.
    fn make_dirs(&self, path: &RelPath) -> Result<OwnedFd, FsError> {
        let mut cur = self.open_dir(&RelPath(Vec::new()))?;
        for i in 0..path.0.len() {
            let prefix = RelPath(path.0[..=i].to_vec());
            cur = match self.open_dir(&prefix) {
                Ok(fd) => fd,
                Err(FsError::NotFound) => {
                    match rustix::fs::mkdirat(&cur, path.0[i].as_str(), Mode::from_raw_mode(0o755))
                    {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    self.open_dir(&prefix)?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(cur)
    }

    /// Replaces the file atomically: temp file in the same directory, fsync, rename, fsync dir.
    /// Parents are created. A symlink at `path` is replaced by the file, not written through.
    pub fn write(&self, path: &RelPath, data: &[u8]) -> Result<(), FsError> {
        self.write_if(path, data, Durability::Now, || Ok(()))
    }

    /// Flushes every change of the workspace's file system to disk (`syncfs`): the end of a
    /// batch of [`Durability::Later`] writes.
    pub fn sync(&self) -> Result<(), FsError> {
        let dir = rustix::fs::openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        rustix::fs::syncfs(&dir)?;
        Ok(())
    }

    /// [`Self::write`] with a precondition: `check` runs once the new content is staged beside
    /// the file, right before the rename, so the check sees the file as late as possible; an
    /// error from it leaves the file alone (the temp file is removed).
    pub fn write_if<E: From<FsError>>(
        &self,
        path: &RelPath,
        data: &[u8],
        durability: Durability,
        check: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), E> {
        let (parent, name) = path.split_last()?;
        let dir = self.make_dirs(&parent)?;
        let mode = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                return Err(FsError::IsADirectory.into())
            }
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
                st.st_mode & 0o7777
            }
            _ => 0o644,
        };
        let tmp = format!(
            "{TMP_MARKER}{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let fd = rustix::fs::openat(
            &dir,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(FsError::from)?;
        let written = (|| -> Result<(), E> {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(FsError::from)?;
            let mut file = File::from(fd);
            file.write_all(data).map_err(FsError::from)?;
            if durability == Durability::Now {
                file.sync_all().map_err(FsError::from)?;
            }
            drop(file);
            check()?;
            rustix::fs::renameat(&dir, tmp.as_str(), &dir, name).map_err(FsError::from)?;
            Ok(())
        })();
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        }
        written?;
        if durability == Durability::Now {
            rustix::fs::fsync(&dir).map_err(FsError::from)?;
        }
        Ok(())
    }

    /// Removes a file, a symlink (not its target) or a whole directory tree.
    pub fn delete(&self, path: &RelPath) -> Result<(), FsError> {
        let (parent, name) = path.split_last()?;
        let dir = self.open_dir(&parent)?;
        remove_at(&dir, name)
    }

    /// Moves `from` to `to`; fails with `Exists` rather than replacing anything.
    pub fn rename(&self, from: &RelPath, to: &RelPath) -> Result<(), FsError> {
        let (from_parent, from_name) = from.split_last()?;
        let (to_parent, to_name) = to.split_last()?;
        let from_dir = self.open_dir(&from_parent)?;
        let to_dir = self.open_dir(&to_parent)?;
        rustix::fs::renameat_with(
            &from_dir,
            from_name,
            &to_dir,
            to_name,
            RenameFlags::NOREPLACE,
        )?;
        Ok(())
    }

    /// `mkdir -p`; an existing directory is fine, an existing file is `Exists`.
    pub fn mkdir(&self, path: &RelPath) -> Result<(), FsError> {
        match self.make_dirs(path) {
            Err(FsError::NotADirectory) => Err(FsError::Exists),
            r => r.map(drop),
        }
    }
}

fn remove_at(dir: impl AsFd, name: &str) -> Result<(), FsError> {
    let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        rustix::fs::unlinkat(&dir, name, AtFlags::empty())?;
        return Ok(());
    }
    let sub = rustix::fs::openat(
        &dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&sub)? {
        let entry = entry?;
        let n = entry.file_name().to_string_lossy().into_owned();
        if n != "." && n != ".." {
            names.push(n);
        }
    }
    for n in names {
        remove_at(&sub, &n)?;
    }
    rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_paths() {
        assert_eq!(
            RelPath::parse("/workspace/a/b").ok(),
            RelPath::parse("a/b").ok()
        );
        assert_eq!(
            RelPath::parse("/a//./b/").ok().map(|p| p.display()),
            Some("/a/b".into())
        );
        assert!(RelPath::parse("/workspace").is_ok_and(|p| p.is_root()));
        assert_eq!(
            RelPath::parse("/workspacex/a").ok().map(|p| p.display()),
            Some("/workspacex/a".into())
        );
        assert!(matches!(RelPath::parse("a/../b"), Err(FsError::Escape)));
        assert!(matches!(RelPath::parse("a\0b"), Err(FsError::BadPath(_))));
    }
}
