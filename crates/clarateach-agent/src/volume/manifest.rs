//! What a seat's sync last uploaded, and one scan of the volume against it. The scan is a
//! [`VolumeSink`] fed by the export's fd walker ([`crate::export::walk`]), so it inherits every
//! rule of that walk: nothing is opened by a path the learner could swap, symlinks are never
//! followed (a link is not synced at all), FIFOs, sockets and devices are never opened. A file
//! whose `fstat` stamp (size, inode, mtime, ctime in ns) matches the manifest is not even opened:
//! an idle seat costs one `fstat` per entry and no request.
//!
//! Timestamps are coarse (a kernel tick): a file written twice within one tick, once before the
//! scan read it and once after, would keep its stamp. So an entry changed less than
//! [`SETTLE_NS`] before the scan began stays *unsettled* and is read and hashed again next scan;
//! only a different SHA-256 is uploaded.

use std::collections::BTreeMap;
use std::io::Read;

use clarateach_isolation::export::{EntryMeta, FileStamp, VolumeSink};
use serde::{Deserialize, Serialize};

/// A change younger than this at scan time is checked again by content next scan.
pub const SETTLE_NS: i64 = 2_000_000_000;

/// One uploaded file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub stamp: Stamp,
    /// Hex SHA-256 of what was uploaded; `None` for an object found in the bucket but not
    /// uploaded by this manifest (re-read and compared next scan).
    pub sha256: Option<String>,
    pub settled: bool,
}

/// [`FileStamp`] in a serializable form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Stamp {
    pub size: u64,
    pub ino: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl From<&FileStamp> for Stamp {
    fn from(s: &FileStamp) -> Self {
        Self {
            size: s.size,
            ino: s.ino,
            mtime_ns: s.mtime_ns,
            ctime_ns: s.ctime_ns,
        }
    }
}

/// Uploaded files by path relative to the volume root (UTF-8 names only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: BTreeMap<String, Entry>,
}

/// Caps a scan honours.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Larger files are not synced (and reported).
    pub file_bytes: u64,
    /// The seat's synced files together at most this; files past it are not synced.
    pub seat_bytes: u64,
    /// File data one scan holds in memory at most; the rest waits for the next scan.
    pub batch_bytes: u64,
}

/// A file to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    pub rel: String,
    pub data: Vec<u8>,
    pub entry: Entry,
}

/// What one scan found: the manifest if every upload and delete succeeds, and those.
#[derive(Debug, Default)]
pub struct Scan {
    pub next: Manifest,
    pub puts: Vec<Put>,
    pub deletes: Vec<String>,
    /// Entries left out (not UTF-8, too big, over the seat cap, special files).
    pub skipped: usize,
}

impl Scan {
    /// Nothing to send to the bucket.
    pub fn is_idle(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty()
    }
}

/// The sink one scan walks the volume into.
pub struct ScanSink<'a> {
    old: &'a Manifest,
    now_ns: i64,
    caps: Caps,
    out: Scan,
    /// Bytes of synced files seen so far (old sizes for the unchanged).
    total: u64,
    batch: u64,
    /// The stamp of the file `wants_file` just let through.
    pending: Option<(String, FileStamp)>,
}

impl<'a> ScanSink<'a> {
    pub fn new(old: &'a Manifest, now_ns: i64, caps: Caps) -> Self {
        Self {
            old,
            now_ns,
            caps,
            out: Scan::default(),
            total: 0,
            batch: 0,
            pending: None,
        }
    }

    /// The scan's result; every old entry not seen again is to be deleted.
    pub fn finish(mut self) -> Scan {
        let gone: Vec<String> = self
            .old
            .files
            .keys()
            .filter(|k| !self.out.next.files.contains_key(*k))
            .cloned()
            .collect();
        self.out.deletes = gone;
        self.out
    }

    /// Keeps what the manifest had for `rel` (the file is left for a later scan, not deleted).
    fn keep_old(&mut self, rel: &str) {
        if let Some(e) = self.old.files.get(rel) {
            self.out.next.files.insert(rel.to_string(), e.clone());
        }
    }

    fn settled(&self, s: &FileStamp) -> bool {
        self.now_ns.saturating_sub(s.mtime_ns.max(s.ctime_ns)) > SETTLE_NS
    }
}

impl VolumeSink for ScanSink<'_> {
    fn dir(&mut self, _path: &[u8], _meta: EntryMeta) -> std::io::Result<()> {
        Ok(())
    }

    fn wants_file(&mut self, path: &[u8], stamp: &FileStamp) -> bool {
        let Ok(rel) = std::str::from_utf8(path) else {
            self.out.skipped += 1;
            return false;
        };
        let size = stamp.size;
        match self.old.files.get(rel) {
            Some(e) if e.settled && e.stamp == Stamp::from(stamp) => {
                self.total += size;
                self.keep_old(rel);
                return false;
            }
            _ => {}
        }
        if size > self.caps.file_bytes || self.total + size > self.caps.seat_bytes {
            self.out.skipped += 1;
            self.keep_old(rel);
            return false;
        }
        if self.batch + size > self.caps.batch_bytes && self.batch > 0 {
            self.keep_old(rel);
            return false;
        }
        self.pending = Some((rel.to_string(), *stamp));
        true
    }

    fn file(
        &mut self,
        path: &[u8],
        _meta: EntryMeta,
        _size: u64,
        data: &mut dyn Read,
    ) -> std::io::Result<()> {
        let Some((rel, stamp)) = self.pending.take() else {
            return Ok(());
        };
        if rel.as_bytes() != path {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(usize::try_from(stamp.size).unwrap_or(0).min(1 << 20));
        // The file may grow while read: never past the cap.
        if let Err(e) = data.take(self.caps.file_bytes + 1).read_to_end(&mut buf) {
            tracing::debug!(path = %rel, error = %e, "sync: file changed or vanished while read");
            self.keep_old(&rel);
            return Ok(());
        }
        if buf.len() as u64 > self.caps.file_bytes {
            self.out.skipped += 1;
            self.keep_old(&rel);
            return Ok(());
        }
        let sha = hex_sha256(&buf);
        let entry = Entry {
            stamp: Stamp::from(&stamp),
            sha256: Some(sha.clone()),
            settled: self.settled(&stamp),
        };
        self.total += buf.len() as u64;
        let same = self
            .old
            .files
            .get(&rel)
            .is_some_and(|e| e.sha256.as_deref() == Some(sha.as_str()));
        if same {
            self.out.next.files.insert(rel, entry);
        } else {
            self.batch += buf.len() as u64;
            self.out.next.files.insert(rel.clone(), entry.clone());
            self.out.puts.push(Put {
                rel,
                data: buf,
                entry,
            });
        }
        Ok(())
    }

    fn symlink(&mut self, _path: &[u8], _meta: EntryMeta, _target: &[u8]) -> std::io::Result<()> {
        // Never synced: a restored link could point anywhere on its new host.
        self.out.skipped += 1;
        Ok(())
    }

    fn skip(&mut self, path: &[u8], _kind: &str, _reason: &str) {
        // A file that could not be read this time is retried, not deleted.
        if let Ok(rel) = std::str::from_utf8(path) {
            self.keep_old(rel);
        }
        self.out.skipped += 1;
    }
}

/// Hex SHA-256 of `data`.
pub fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Nanoseconds since the epoch now (the clock `ctime` is taken from).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps {
        file_bytes: 100,
        seat_bytes: 250,
        batch_bytes: 1000,
    };

    fn stamp(size: u64, ino: u64, t: i64) -> FileStamp {
        FileStamp {
            size,
            ino,
            mtime_ns: t,
            ctime_ns: t,
        }
    }

    fn offer(sink: &mut ScanSink<'_>, rel: &str, st: FileStamp, data: &[u8]) {
        if sink.wants_file(rel.as_bytes(), &st) {
            let meta = EntryMeta {
                mode: 0o644,
                mtime: 0,
            };
            sink.file(rel.as_bytes(), meta, st.size, &mut &data[..])
                .expect("file");
        }
    }

    /// Scans a volume given as `(path, stamp, data)` against `old` at time `now`.
    fn scan(old: &Manifest, now: i64, files: &[(&str, FileStamp, &[u8])]) -> Scan {
        let mut sink = ScanSink::new(old, now, CAPS);
        for (rel, st, data) in files {
            offer(&mut sink, rel, *st, data);
        }
        sink.finish()
    }

    /// The manifest after every put and delete of `s` succeeded.
    fn applied(s: &Scan) -> Manifest {
        s.next.clone()
    }

    #[test]
    fn new_files_are_put_unchanged_ones_not_even_read_and_gone_ones_deleted() {
        let t = 10 * SETTLE_NS;
        let s1 = scan(
            &Manifest::default(),
            t,
            &[("a", stamp(1, 1, 0), b"a"), ("d/b", stamp(2, 2, 0), b"bb")],
        );
        assert_eq!(
            s1.puts.iter().map(|p| p.rel.as_str()).collect::<Vec<_>>(),
            ["a", "d/b"]
        );
        let m1 = applied(&s1);
        // Same stamps, settled: nothing read (data would not match if it were), nothing sent.
        let s2 = scan(
            &m1,
            t,
            &[("a", stamp(1, 1, 0), b"X"), ("d/b", stamp(2, 2, 0), b"XX")],
        );
        assert!(s2.is_idle(), "{s2:?}");
        assert_eq!(s2.next, m1);
        // An edit (new stamp) is put; a deleted file is deleted.
        let s3 = scan(&m1, t, &[("a", stamp(2, 1, 5), b"a2")]);
        assert_eq!(s3.puts.len(), 1);
        assert_eq!(s3.puts[0].data, b"a2");
        assert_eq!(s3.deletes, ["d/b"]);
        // touch: new stamp, same bytes: read and hashed, not uploaded.
        let s4 = scan(
            &m1,
            t,
            &[("a", stamp(1, 1, 7), b"a"), ("d/b", stamp(2, 2, 0), b"bb")],
        );
        assert!(s4.is_idle(), "{s4:?}");
        assert_eq!(s4.next.files["a"].stamp.mtime_ns, 7);
    }

    #[test]
    fn a_change_within_the_settle_window_is_compared_by_content_next_time() {
        let t = 10 * SETTLE_NS;
        // Written just before the scan: uploaded, but not settled.
        let s1 = scan(
            &Manifest::default(),
            t,
            &[("f", stamp(3, 1, t - 1000), b"one")],
        );
        let m1 = applied(&s1);
        assert!(!m1.files["f"].settled);
        // Rewritten within the same tick (same stamp, other bytes): caught by its hash.
        let s2 = scan(&m1, t + 1, &[("f", stamp(3, 1, t - 1000), b"two")]);
        assert_eq!(s2.puts.len(), 1, "{s2:?}");
        assert_eq!(s2.puts[0].data, b"two");
        // Later, settled and unchanged: left alone.
        let m2 = applied(&s2);
        let s3 = scan(
            &m2,
            t + 3 * SETTLE_NS,
            &[("f", stamp(3, 1, t - 1000), b"two")],
        );
        assert!(s3.is_idle());
        assert!(s3.next.files["f"].settled);
    }

    #[test]
    fn caps_and_odd_entries_skip_without_deleting() {
        let t = 10 * SETTLE_NS;
        let big = vec![b'x'; 101];
        let s = scan(
            &Manifest::default(),
            t,
            &[
                ("big", stamp(101, 1, 0), &big),
                ("a", stamp(100, 2, 0), &[b'a'; 100]),
                ("b", stamp(100, 3, 0), &[b'b'; 100]),
                ("c", stamp(100, 4, 0), &[b'c'; 100]), // over the 250-byte seat cap
            ],
        );
        assert_eq!(
            s.puts.iter().map(|p| p.rel.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(s.skipped, 2);
        // A file that grows past the cap while read is not uploaded either.
        let empty = Manifest::default();
        let mut sink = ScanSink::new(&empty, t, CAPS);
        assert!(sink.wants_file(b"grows", &stamp(10, 9, 0)));
        let meta = EntryMeta {
            mode: 0o644,
            mtime: 0,
        };
        sink.file(b"grows", meta, 10, &mut &big[..]).expect("file");
        assert!(sink.finish().puts.is_empty());
        // Names that are not UTF-8, symlinks and specials are skipped; an unreadable file
        // that was synced before stays in the manifest (retried, not deleted).
        let old = applied(&s);
        let mut sink = ScanSink::new(&old, t, CAPS);
        assert!(!sink.wants_file(b"\xff", &stamp(1, 5, 0)));
        sink.symlink(b"link", meta, b"/etc/shadow")
            .expect("symlink");
        sink.skip(b"a", "file", "vanished");
        offer(&mut sink, "b", stamp(100, 3, 0), &[b'b'; 100]);
        let s = sink.finish();
        assert!(s.is_idle(), "{s:?}");
        assert!(s.next.files.contains_key("a"));
    }
}
