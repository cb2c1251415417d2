//! What a seat export reads and what the readers hand their findings to. A volume is written by
//! the learner, so its contents are hostile input: the backend only says *where* the files are
//! ([`ExportSource`]) and *as whom* they may be read ([`crate::Backend::volume_owner`]); walkers
//! (the agent's fd walker for directories, [`crate::microvm::volume`] for ext4 images) feed a
//! [`VolumeSink`], which owns the archive format, the size cap and the report of skipped entries.

use std::io::Read;
use std::path::PathBuf;

/// Where one seat's files are, as far as an export is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportSource {
    /// A host directory the seat writes live (sandbox): walk it by file descriptor.
    Dir(PathBuf),
    /// A raw ext4 image the guest writes (microVM): parse it in user space, never mount it.
    Ext4Image(PathBuf),
}

/// Metadata of an exported entry that an archive keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    /// Modification time, seconds since the epoch (negative values are clamped by archives).
    pub mtime: i64,
}

/// Deepest directory nesting a walker descends into; deeper directories are reported, not walked
/// (a learner can nest directories until path lengths or fd counts break a naive walker).
pub const MAX_DEPTH: usize = 128;

/// Receives a volume's entries in walk order (a directory before what is inside it). Paths are
/// relative to the volume root, `/`-separated, as raw bytes (names need not be UTF-8).
///
/// An `Err` from any method means the archive cannot be written any more (the reader went away):
/// the walker stops at once. Everything wrong with the *volume* goes to [`VolumeSink::skip`].
pub trait VolumeSink {
    fn dir(&mut self, path: &[u8], meta: EntryMeta) -> std::io::Result<()>;
    /// A regular file of `size` bytes (as stat said when it was opened); `data` may end early or
    /// fail part-way (the file changed or vanished), which the sink pads and reports.
    fn file(
        &mut self,
        path: &[u8],
        meta: EntryMeta,
        size: u64,
        data: &mut dyn Read,
    ) -> std::io::Result<()>;
    /// A symbolic link, stored as a link and never followed.
    fn symlink(&mut self, path: &[u8], meta: EntryMeta, target: &[u8]) -> std::io::Result<()>;
    /// An entry left out: `kind` says what it was (`fifo`, `socket`, `directory`, ...).
    fn skip(&mut self, path: &[u8], kind: &str, reason: &str);
    /// Asked before a regular file is opened for reading, with what `fstat` said of it: `false`
    /// leaves it unopened and unread (a sync that already has this version). Archives take all.
    fn wants_file(&mut self, _path: &[u8], _stamp: &FileStamp) -> bool {
        true
    }
}

/// What `fstat` says of a regular file before it is read: a sync compares it with what it
/// uploaded last (ctime cannot be set back by the learner, unlike mtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileStamp {
    pub size: u64,
    pub ino: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

/// Joins a relative walk path and a name with `/` (the root is the empty path).
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        p.extend_from_slice(parent);
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}
