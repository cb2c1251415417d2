//! The tar side of an export: a [`VolumeSink`] that writes each entry as the walkers hand it
//! over, caps what one seat may put in the archive, and ends the seat's entries with
//! `<prefix>/EXPORT-REPORT.json` listing everything skipped, failed or truncated. Holes in a
//! sparse file count as data (the tar crate writes no sparse entries), which the cap bounds:
//! each file gets at most half of what is left of it, so one 100 GiB sparse file costs at most
//! half the cap and the seat's other files still fit. Every entry it
//! starts it finishes with exactly the size its header announced (a file that shrinks, fails or
//! makes its reader panic mid-read is padded with zeros and reported), so one broken seat never
//! corrupts the archive the other seats' fragments are concatenated into.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use clarateach_isolation::export::{EntryMeta, VolumeSink};
use serde::Serialize;

/// File name of the report at the top of each seat's entries.
pub const REPORT_NAME: &str = "EXPORT-REPORT.json";
/// Default per-seat cap on archived bytes (file data plus 512 per entry header): 1 GiB.
pub const DEFAULT_CAP_BYTES: u64 = 1 << 30;
/// The report lists at most this many problems and counts the rest.
const MAX_LISTED: usize = 1000;
const HEADER_BYTES: u64 = 512;

/// One entry the archive does not hold in full.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// Relative to the seat's volume root (lossy UTF-8); empty for the volume itself.
    pub path: String,
    pub kind: String,
    pub reason: String,
}

/// `EXPORT-REPORT.json`.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    /// File bytes stored (after truncation).
    pub file_bytes: u64,
    pub cap_bytes: u64,
    /// True when the cap cut files short or left entries out.
    pub truncated: bool,
    pub problems: Vec<Problem>,
    /// Problems beyond the first 1000, counted but not listed.
    pub problems_not_listed: u64,
}

/// A writer that remembers whether writing failed (the reader went away), and that swallows
/// writes once `closed` (a fragment must not get the end-of-archive blocks tar appends on drop).
pub struct Output<W> {
    inner: W,
    pub failed: bool,
    pub closed: bool,
}

impl<W: Write> Write for Output<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        self.inner.write(buf).inspect_err(|_| self.failed = true)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

/// Archives one seat's entries under `prefix/`.
pub struct TarSink<W: Write> {
    builder: tar::Builder<Output<W>>,
    prefix: Vec<u8>,
    used: u64,
    report: Report,
}

impl<W: Write> TarSink<W> {
    /// `prefix` is already validated (`seat-01`, or `.` for the archive root).
    pub fn new(out: W, prefix: &str, cap_bytes: u64) -> Self {
        let builder = tar::Builder::new(Output {
            inner: out,
            failed: false,
            closed: false,
        });
        Self {
            builder,
            prefix: prefix.as_bytes().to_vec(),
            used: 0,
            report: Report {
                cap_bytes,
                ..Report::default()
            },
        }
    }

    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Writes the report; then either the end-of-archive blocks (`close`) or nothing more (a
    /// fragment), and returns the writer.
    pub fn finish(mut self, close: bool) -> std::io::Result<W> {
        let json = serde_json::to_vec_pretty(&self.report).map_err(std::io::Error::other)?;
        let mut h = header(tar::EntryType::Regular, 0o644, 0);
        h.set_size(json.len() as u64);
        let path = self.archive_path(REPORT_NAME.as_bytes());
        self.builder
            .append_data(&mut h, Path::new(OsStr::from_bytes(&path)), &json[..])?;
        if close {
            self.builder.finish()?;
        } else {
            self.builder.get_mut().closed = true;
        }
        let out = self.builder.into_inner()?;
        Ok(out.inner)
    }

    fn archive_path(&self, rel: &[u8]) -> Vec<u8> {
        clarateach_isolation::export::join(&self.prefix, rel)
    }

    fn problem(&mut self, path: &[u8], kind: &str, reason: String) {
        if self.report.problems.len() >= MAX_LISTED {
            self.report.problems_not_listed += 1;
            return;
        }
        self.report.problems.push(Problem {
            path: String::from_utf8_lossy(path).into_owned(),
            kind: kind.to_string(),
            reason,
        });
    }

    /// Reserves a header's bytes; false (and reported) when the cap leaves no room for it.
    fn admit(&mut self, path: &[u8], kind: &str) -> bool {
        if path == REPORT_NAME.as_bytes() {
            self.problem(path, kind, "the name is reserved for this report".into());
            return false;
        }
        if self.used + HEADER_BYTES > self.report.cap_bytes {
            self.report.truncated = true;
            self.problem(
                path,
                kind,
                "left out: the seat's export size cap was reached".into(),
            );
            return false;
        }
        self.used += HEADER_BYTES;
        true
    }

    /// Appends an entry; an error from the archive that is not an output failure (a path tar
    /// cannot encode) is reported and the walk goes on.
    fn append(
        &mut self,
        rel: &[u8],
        kind: &str,
        h: &mut tar::Header,
        data: impl Read,
        link: Option<&[u8]>,
    ) -> std::io::Result<()> {
        let path = self.archive_path(rel);
        let path = Path::new(OsStr::from_bytes(&path));
        let r = match link {
            Some(target) => self
                .builder
                .append_link(h, path, Path::new(OsStr::from_bytes(target))),
            None => self.builder.append_data(h, path, data),
        };
        match r {
            Err(e) if self.builder.get_ref().failed => Err(e),
            Err(e) => {
                self.problem(rel, kind, format!("cannot be archived: {e}"));
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }
}

fn header(kind: tar::EntryType, mode: u32, mtime: i64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode & 0o7777);
    h.set_mtime(u64::try_from(mtime).unwrap_or(0));
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h
}

impl<W: Write> VolumeSink for TarSink<W> {
    fn dir(&mut self, path: &[u8], meta: EntryMeta) -> std::io::Result<()> {
        if !self.admit(path, "directory") {
            return Ok(());
        }
        self.report.directories += 1;
        let mut h = header(tar::EntryType::Directory, meta.mode, meta.mtime);
        self.append(path, "directory", &mut h, std::io::empty(), None)
    }

    fn file(
        &mut self,
        path: &[u8],
        meta: EntryMeta,
        size: u64,
        data: &mut dyn Read,
    ) -> std::io::Result<()> {
        if !self.admit(path, "file") {
            return Ok(());
        }
        // No file takes more than half of what is left, so a huge (or sparse: holes count as
        // data) file cannot starve the files walked after it.
        let room = (self.report.cap_bytes - self.used) / 2;
        let stored = size.min(room);
        if stored < size {
            self.report.truncated = true;
            self.problem(
                path,
                "file",
                format!(
                    "truncated to {stored} of {size} bytes: a file may take at most half of \
                     what is left of the seat's export size cap"
                ),
            );
        }
        self.used += stored;
        self.report.files += 1;
        self.report.file_bytes += stored;
        let mut h = header(tar::EntryType::Regular, meta.mode, meta.mtime);
        h.set_size(stored);
        let mut exact = Exact {
            inner: data,
            left: stored,
            trouble: None,
        };
        self.append(path, "file", &mut h, &mut exact, None)?;
        if let Some(why) = exact.trouble {
            self.problem(path, "file", why);
        }
        Ok(())
    }

    fn symlink(&mut self, path: &[u8], meta: EntryMeta, target: &[u8]) -> std::io::Result<()> {
        if !self.admit(path, "symlink") {
            return Ok(());
        }
        self.report.symlinks += 1;
        let mut h = header(tar::EntryType::Symlink, meta.mode, meta.mtime);
        self.append(path, "symlink", &mut h, std::io::empty(), Some(target))
    }

    fn skip(&mut self, path: &[u8], kind: &str, reason: &str) {
        self.problem(path, kind, reason.to_string());
    }
}

/// Yields exactly `left` bytes: the source's, then zeros once it ends early, fails or panics
/// (a parser of a hostile image may), and never more.
struct Exact<'a> {
    inner: &'a mut dyn Read,
    left: u64,
    trouble: Option<String>,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let buf = &mut buf[..want];
        while self.trouble.is_none() {
            let inner = &mut *self.inner;
            let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.read(buf)));
            let left = self.left;
            self.trouble = Some(match got {
                Ok(Ok(n)) if n > 0 => {
                    self.left -= n as u64;
                    return Ok(n);
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(Ok(_)) => format!("shrank while it was read: the last {left} bytes are zeros"),
                Ok(Err(e)) => format!("reading failed ({e}): the last {left} bytes are zeros"),
                Err(_) => format!("the reader crashed on it: the last {left} bytes are zeros"),
            });
        }
        buf.fill(0);
        self.left -= want as u64;
        Ok(want)
    }
}
