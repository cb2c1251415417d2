//! Handing files out to every seat without clobbering learners' work (issue 10).
//!
//! For each file and seat, three versions meet: the *base* (what this seat last got for this
//! path from a broadcast, kept in the store: a base inside the seat would let the learner decide
//! what counts as untouched), *ours* (the learner's file now) and *theirs* (the new version).
//! The rule ([`decide`]):
//! - no file in the seat, or ours is the base (untouched) or already theirs: replaced;
//! - ours was edited: merged three-way (`diffy`), written when the changes do not overlap;
//! - overlapping changes, binary content, or a file the seat had before any broadcast: the
//!   learner's file is kept and the new one is written beside it as `name.new`.
//!
//! Files are read and written through the seat's own daemon (files API), which runs as the seat
//! user inside the seat and resolves every path with `openat2(RESOLVE_BENEATH)`: a `..`, an
//! absolute or escaping symlink, or a symlinked parent fails there; a symlink planted as the
//! last component is replaced by the written file, never followed. The control plane checks
//! paths before sending anything ([`clean_path`]).
//!
//! No edit is lost between the read of ours and the write: every write is conditional on the
//! content the decision was made from (`If-Match: "<sha256 of ours>"`, or `If-None-Match: *`
//! when the seat had no file), checked by the daemon right before its rename. When the learner
//! changed the file meanwhile the daemon answers 412 and the file is read and decided again, at
//! most [`TRIES`] times; a file still changing then is kept and the new version goes beside it
//! as `name.new` (conflicted), never over it.

use std::collections::HashMap;
use std::io::Read;

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use bytes::Bytes;
use clarateach_core::toolkit::{
    BroadcastFile, BroadcastFileResult, BroadcastOutcome, FileEncoding, SeatBroadcast,
    BROADCAST_MAX_BYTES, BROADCAST_MAX_FILES,
};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use clarateach_core::api::FILES_SYNC_HEADER as SYNC_HEADER;

use crate::gateway::seat_call::{self, SeatRequest};
use crate::state::AppState;

/// Longest path handed out, and deepest.
const MAX_PATH: usize = 1024;
const MAX_DEPTH: usize = 32;
/// Deadline of one file read or write in a seat.
const FILE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Files of one seat handled at once: each is a read and a write round trip to the seat's
/// daemon (the writes are flushed once per seat at the end, see `flush`).
const FILES_AT_ONCE: usize = 16;
/// Decisions per file and seat: each after the learner's file changed under the previous one.
pub const TRIES: usize = 3;

/// A checked file, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub path: String,
    pub content: Bytes,
    pub hash: String,
}

/// Why a broadcast was refused before anything was sent.
#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    #[error("{0}")]
    BadPath(String),
    #[error("file {0:?} is not valid base64")]
    BadBase64(String),
    #[error("a broadcast carries 1 to {BROADCAST_MAX_FILES} files")]
    FileCount,
    #[error("the files are larger than {BROADCAST_MAX_BYTES} bytes together")]
    TooLarge,
    #[error("path {0:?} appears twice")]
    Duplicate(String),
    #[error("the archive cannot be read")]
    Archive(#[source] std::io::Error),
}

/// A path as handed out: relative to the workspace, `/`-separated, no empty, `.` or `..`
/// segment, no control characters. A leading `/workspace/` (the IDE's spelling) is dropped.
pub fn clean_path(raw: &str) -> Result<String, BroadcastError> {
    let bad = |why: &str| BroadcastError::BadPath(format!("path {raw:?}: {why}"));
    let p = raw.strip_prefix("/workspace/").unwrap_or(raw);
    if p.starts_with('/') {
        return Err(bad("must be relative to the workspace"));
    }
    if p.is_empty() || p.len() > MAX_PATH {
        return Err(bad("must be 1 to 1024 bytes"));
    }
    if p.chars().any(char::is_control) {
        return Err(bad("has a control character"));
    }
    let segs: Vec<&str> = p.split('/').collect();
    if segs.len() > MAX_DEPTH {
        return Err(bad("is too deep"));
    }
    if segs.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
        return Err(bad("has an empty, `.` or `..` segment"));
    }
    Ok(segs.join("/"))
}

fn hash(content: &[u8]) -> String {
    format!("{:x}", Sha256::digest(content))
}

/// Checks and decodes the files of a JSON broadcast.
pub fn payloads(files: Vec<BroadcastFile>) -> Result<Vec<Payload>, BroadcastError> {
    use base64::Engine;
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let path = clean_path(&f.path)?;
        let content = match f.encoding {
            FileEncoding::Utf8 => Bytes::from(f.content.into_bytes()),
            FileEncoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(f.content.trim())
                .map(Bytes::from)
                .map_err(|_| BroadcastError::BadBase64(path.clone()))?,
        };
        out.push(Payload {
            hash: hash(&content),
            path,
            content,
        });
    }
    limits(out)
}

fn limits(files: Vec<Payload>) -> Result<Vec<Payload>, BroadcastError> {
    if files.is_empty() || files.len() > BROADCAST_MAX_FILES {
        return Err(BroadcastError::FileCount);
    }
    if files.iter().map(|f| f.content.len()).sum::<usize>() > BROADCAST_MAX_BYTES {
        return Err(BroadcastError::TooLarge);
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = files.iter().find(|f| !seen.insert(f.path.as_str())) {
        return Err(BroadcastError::Duplicate(dup.path.clone()));
    }
    Ok(files)
}

/// The regular files of a tar.gz upload (directories are implied; links and devices are
/// refused, not followed), read with a cap on the decompressed size.
pub fn payloads_from_tar_gz(body: &[u8]) -> Result<Vec<Payload>, BroadcastError> {
    let gz = flate2::read::GzDecoder::new(body).take(BROADCAST_MAX_BYTES as u64 * 2 + 1);
    let mut archive = tar::Archive::new(gz);
    let mut out = Vec::new();
    for entry in archive.entries().map_err(BroadcastError::Archive)? {
        let mut entry = entry.map_err(BroadcastError::Archive)?;
        let kind = entry.header().entry_type();
        let raw = entry
            .path()
            .map_err(BroadcastError::Archive)?
            .to_string_lossy()
            .into_owned();
        let raw = raw.trim_start_matches("./");
        if kind.is_dir() || raw.is_empty() {
            continue;
        }
        if !kind.is_file() {
            return Err(BroadcastError::BadPath(format!(
                "path {raw:?}: only regular files can be handed out"
            )));
        }
        let path = clean_path(raw)?;
        if entry.size() > BROADCAST_MAX_BYTES as u64 || out.len() >= BROADCAST_MAX_FILES {
            return Err(BroadcastError::TooLarge);
        }
        let mut content = Vec::new();
        entry
            .read_to_end(&mut content)
            .map_err(BroadcastError::Archive)?;
        out.push(Payload {
            hash: hash(&content),
            path,
            content: content.into(),
        });
    }
    limits(out)
}

/// What to do with one file in one seat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The seat has it already: nothing to write.
    Keep,
    /// Write the new version over (or in place of) the seat's file.
    Replace,
    /// The learner edited it: write this merge of both.
    Merge(Vec<u8>),
    /// Keep the learner's file; write the new version as `name.new`.
    Conflict,
}

/// The three-way rule (see the module header). `base` is `None` when this seat never got the
/// path from a broadcast, `ours` is `None` when the seat has no such file.
pub fn decide(base: Option<&[u8]>, ours: Option<&[u8]>, theirs: &[u8]) -> Decision {
    let Some(ours) = ours else {
        return Decision::Replace;
    };
    if ours == theirs {
        return Decision::Keep;
    }
    let Some(base) = base else {
        return Decision::Conflict;
    };
    if ours == base {
        return Decision::Replace;
    }
    let texts = (
        std::str::from_utf8(base),
        std::str::from_utf8(ours),
        std::str::from_utf8(theirs),
    );
    let (Ok(b), Ok(o), Ok(t)) = texts else {
        return Decision::Conflict;
    };
    if [b, o, t].iter().any(|s| s.contains('\0')) {
        return Decision::Conflict;
    }
    match diffy::merge(b, o, t) {
        Ok(merged) => Decision::Merge(merged.into_bytes()),
        Err(_) => Decision::Conflict,
    }
}

/// Percent-encodes each segment of a clean path for the daemon's `files/{path}` route.
fn url_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Why one file did not reach one seat: a short sentence for the instructor.
fn failure(path: &str, why: impl Into<String>) -> BroadcastFileResult {
    BroadcastFileResult {
        path: path.to_string(),
        outcome: BroadcastOutcome::Failed,
        new_path: None,
        error: Some(why.into()),
    }
}

/// The daemon's error code from its JSON answer, for the instructor's report.
fn daemon_code(body: &[u8]) -> String {
    serde_json::from_slice::<clarateach_core::ErrorBody>(body)
        .map(|b| b.code)
        .unwrap_or_else(|_| "unreadable answer".into())
}

/// The seat's file: `None` when it has none. Read as the daemon's JSON (`utf-8` or `base64`),
/// at most `max` bytes of content.
async fn read_ours(
    state: &AppState,
    ws: &str,
    seat: u32,
    path: &str,
    max: usize,
) -> Result<Option<Bytes>, String> {
    use base64::Engine;
    // JSON escaping may take 6 bytes per content byte (control characters).
    let req = SeatRequest::get(
        format!("files/{}", url_path(path)),
        FILE_TIMEOUT,
        max * 6 + 1024,
    );
    let answer = match seat_call::call(state, ws, seat, req).await {
        Ok(a) if a.status == StatusCode::OK => a.body,
        Ok(a) if a.status == StatusCode::NOT_FOUND => return Ok(None),
        Ok(a) => {
            return Err(format!(
                "cannot read the seat's file: {}",
                daemon_code(&a.body)
            ))
        }
        Err(e) => return Err(format!("cannot read the seat's file: {e}")),
    };
    let unreadable = || "the seat's file answer is unreadable".to_string();
    let file: clarateach_core::ReadFileResponse =
        serde_json::from_slice(&answer).map_err(|_| unreadable())?;
    let content = match file.encoding.as_str() {
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(file.content.as_bytes())
            .map_err(|_| unreadable())?,
        _ => file.content.into_bytes(),
    };
    if content.len() > max {
        return Err("the seat's file is too large to merge".into());
    }
    Ok(Some(content.into()))
}

/// Why a write into a seat did not happen.
#[derive(Debug)]
enum WriteFailed {
    /// The seat's file is no longer the one the decision was made from.
    Changed,
    /// Anything else, as a sentence for the instructor's report.
    Other(String),
}

/// The precondition of a write decided from `ours`: the file must still be exactly that.
fn unchanged(ours: Option<&[u8]>) -> HeaderMap {
    let mut h = HeaderMap::new();
    match ours {
        Some(o) => {
            if let Ok(tag) = HeaderValue::from_str(&format!("\"{}\"", hash(o))) {
                h.insert(header::IF_MATCH, tag);
            }
        }
        None => {
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        }
    }
    h
}

/// Writes `data` at `path` in the seat, only over the content `expect` names (`None`: any).
async fn write(
    state: &AppState,
    ws: &str,
    seat: u32,
    path: &str,
    data: Bytes,
    expect: Option<HeaderMap>,
) -> Result<(), WriteFailed> {
    let req = SeatRequest {
        method: Method::PUT,
        path: format!("files/{}", url_path(path)),
        body: Some((data, "application/octet-stream")),
        timeout: FILE_TIMEOUT,
        max_body: 64 * 1024,
    };
    let mut extra = expect.unwrap_or_default();
    // One flush for the whole seat at the end (`flush`), not two per file.
    extra.insert(SYNC_HEADER, HeaderValue::from_static("later"));
    match seat_call::call_with_headers(state, ws, seat, req, extra).await {
        Ok(a) if a.status.is_success() => Ok(()),
        Ok(a) if a.status == StatusCode::PRECONDITION_FAILED => Err(WriteFailed::Changed),
        Ok(a) => Err(WriteFailed::Other(format!(
            "cannot write: {}",
            daemon_code(&a.body)
        ))),
        Err(e) => Err(WriteFailed::Other(format!("cannot write: {e}"))),
    }
}

/// One file into one seat, by the rule; decided again when the learner's file changed
/// between the read and the write (see the module header).
async fn deliver_file(
    state: &AppState,
    ws: &str,
    seat: u32,
    base: Option<&[u8]>,
    file: &Payload,
) -> BroadcastFileResult {
    let done = |outcome, new_path| BroadcastFileResult {
        path: file.path.clone(),
        outcome,
        new_path,
        error: None,
    };
    for _ in 0..TRIES {
        // Ours larger than the biggest file we could hand out cannot be merged; read a bit
        // more than theirs so an equal-size check stays exact.
        let ours = match read_ours(state, ws, seat, &file.path, BROADCAST_MAX_BYTES + 1).await {
            Ok(o) => o,
            Err(e) => return failure(&file.path, e),
        };
        let (data, outcome) = match decide(base, ours.as_deref(), &file.content) {
            Decision::Keep => return done(BroadcastOutcome::Written, None),
            Decision::Replace => (file.content.clone(), BroadcastOutcome::Written),
            Decision::Merge(m) => (Bytes::from(m), BroadcastOutcome::Merged),
            Decision::Conflict => break,
        };
        let expect = Some(unchanged(ours.as_deref()));
        match write(state, ws, seat, &file.path, data, expect).await {
            Ok(()) => return done(outcome, None),
            Err(WriteFailed::Changed) => {
                tracing::info!(workshop.id = %ws, seat, path = %file.path,
                    "the learner's file changed between read and write; deciding again");
            }
            Err(WriteFailed::Other(e)) => return failure(&file.path, e),
        }
    }
    // A conflict, or a file that kept changing: the learner's stays, the new one goes beside.
    let beside = format!("{}.new", file.path);
    match write(state, ws, seat, &beside, file.content.clone(), None).await {
        Ok(()) => done(BroadcastOutcome::Conflicted, Some(beside)),
        Err(WriteFailed::Changed) => failure(&file.path, "cannot write: file_changed"),
        Err(WriteFailed::Other(e)) => failure(&file.path, e),
    }
}

/// Every file into one seat; `bases` are the seat's, by path.
pub async fn deliver_seat(
    state: &AppState,
    ws: &str,
    seat: u32,
    bases: HashMap<String, Vec<u8>>,
    files: &[Payload],
) -> SeatBroadcast {
    let bases = &bases;
    // By index, so the closure takes no reference (a closure over `&Payload` makes the
    // handler's future fail axum's `Send` check for every lifetime).
    let mut results: Vec<BroadcastFileResult> = futures::stream::iter(0..files.len())
        .map(move |i| {
            let f = &files[i];
            deliver_file(state, ws, seat, bases.get(&f.path).map(Vec::as_slice), f)
        })
        .buffered(FILES_AT_ONCE)
        .collect()
        .await;
    results.sort_by(|a, b| a.path.cmp(&b.path));
    let wrote = results
        .iter()
        .any(|r| r.outcome != BroadcastOutcome::Failed);
    if wrote {
        if let Err(why) = flush(state, ws, seat).await {
            // Written but not known to be on disk: reported, so the instructor can send again.
            for r in results
                .iter_mut()
                .filter(|r| r.outcome != BroadcastOutcome::Failed)
            {
                *r = failure(&r.path, why.clone());
            }
        }
    }
    SeatBroadcast {
        seat,
        files: results,
    }
}

/// Puts the seat's broadcast writes on its disk: one `POST /files-sync` (a `syncfs` in the
/// seat) after every file of the seat, instead of two fsyncs per file (most of a broadcast's
/// time on a seat's loop-mounted ext4).
async fn flush(state: &AppState, ws: &str, seat: u32) -> Result<(), String> {
    let req = SeatRequest {
        method: Method::POST,
        path: "files-sync".into(),
        body: None,
        timeout: FILE_TIMEOUT,
        max_body: 64 * 1024,
    };
    match seat_call::call(state, ws, seat, req).await {
        Ok(a) if a.status.is_success() => Ok(()),
        Ok(a) => Err(format!(
            "written, but not flushed to the seat's disk: {}",
            daemon_code(&a.body)
        )),
        Err(e) => Err(format!("written, but not flushed to the seat's disk: {e}")),
    }
}

/// The files under `dir` of a seat, as they are now (for "from seat N, directory D"): walks the
/// daemon's listing, at most [`BROADCAST_MAX_FILES`] files and [`BROADCAST_MAX_BYTES`] bytes.
pub async fn collect_from_seat(
    state: &AppState,
    ws: &str,
    seat: u32,
    dir: &str,
) -> Result<Vec<Payload>, CollectError> {
    let mut pending = vec![dir.to_string()];
    let mut files = Vec::new();
    let mut total = 0usize;
    while let Some(d) = pending.pop() {
        let path = format!("files?path={}", url_path(&d).replace('/', "%2F"));
        let listing = seat_call::call(
            state,
            ws,
            seat,
            SeatRequest::get(path, FILE_TIMEOUT, 1 << 20),
        )
        .await
        .map_err(CollectError::Seat)?;
        if listing.status != StatusCode::OK {
            return Err(CollectError::Listing(daemon_code(&listing.body)));
        }
        let list: clarateach_core::ListFilesResponse = serde_json::from_slice(&listing.body)
            .map_err(|_| CollectError::Listing("unreadable listing".into()))?;
        for entry in list.files {
            let rel = if d.is_empty() {
                entry.name.clone()
            } else {
                format!("{d}/{}", entry.name)
            };
            let rel = clean_path(&rel).map_err(|e| CollectError::Listing(e.to_string()))?;
            if entry.is_directory {
                pending.push(rel);
                continue;
            }
            if files.len() >= BROADCAST_MAX_FILES {
                return Err(CollectError::TooMany);
            }
            let content = read_ours(state, ws, seat, &rel, BROADCAST_MAX_BYTES + 1)
                .await
                .map_err(CollectError::Listing)?
                .unwrap_or_default();
            total += content.len();
            if total > BROADCAST_MAX_BYTES {
                return Err(CollectError::TooMany);
            }
            files.push(Payload {
                hash: hash(&content),
                path: rel,
                content,
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Why the files of the source seat could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("the source seat did not answer")]
    Seat(#[source] seat_call::SeatCallError),
    #[error("the source seat's files cannot be read: {0}")]
    Listing(String),
    #[error(
        "the directory holds more than {BROADCAST_MAX_FILES} files or {BROADCAST_MAX_BYTES} bytes"
    )]
    TooMany,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(d: Decision) -> String {
        match d {
            Decision::Merge(m) => String::from_utf8(m).expect("utf8"),
            other => panic!("not merged: {other:?}"),
        }
    }

    /// `decide` over text.
    fn d(base: Option<&str>, ours: Option<&str>, theirs: &str) -> Decision {
        decide(
            base.map(str::as_bytes),
            ours.map(str::as_bytes),
            theirs.as_bytes(),
        )
    }

    #[test]
    fn untouched_or_missing_files_are_replaced() {
        assert_eq!(d(None, None, "new"), Decision::Replace);
        assert_eq!(
            d(Some("old"), None, "new"),
            Decision::Replace,
            "deleted: back"
        );
        assert_eq!(d(Some("old"), Some("old"), "new"), Decision::Replace);
        assert_eq!(d(Some("old"), Some("new"), "new"), Decision::Keep);
        assert_eq!(d(None, Some("new"), "new"), Decision::Keep);
    }

    #[test]
    fn edits_elsewhere_in_the_file_are_merged() {
        let base = "def f():\n    return 1\n\n\n\ndef g():\n    pass\n";
        let ours = "def f():\n    return 42  # mine\n\n\n\ndef g():\n    pass\n";
        let theirs = "def f():\n    return 1\n\n\n\ndef g():\n    return 'step 2'\n";
        let m = merged(d(Some(base), Some(ours), theirs));
        assert!(m.contains("return 42  # mine"), "{m}");
        assert!(m.contains("return 'step 2'"), "{m}");
        // The same broadcast again changes nothing the learner did.
        assert_eq!(merged(d(Some(base), Some(ours), base)), ours);
    }

    #[test]
    fn overlapping_edits_binary_and_unknown_files_conflict() {
        assert_eq!(
            d(Some("x = 1\n"), Some("x = 2\n"), "x = 3\n"),
            Decision::Conflict
        );
        let (b, o, t): (&[u8], &[u8], &[u8]) = (&[0, 1, 2], &[0, 1, 3], &[9, 1, 2]);
        assert_eq!(
            decide(Some(b), Some(o), t),
            Decision::Conflict,
            "binary content is never merged"
        );
        let (b, o, t): (&[u8], &[u8], &[u8]) = (b"a\n", &[0xff, b'\n'], b"b\n");
        assert_eq!(decide(Some(b), Some(o), t), Decision::Conflict, "not UTF-8");
        assert_eq!(
            d(None, Some("learner's own\n"), "handout\n"),
            Decision::Conflict,
            "a file the seat had before any broadcast is the learner's"
        );
    }

    #[test]
    fn paths_stay_inside_the_workspace() {
        assert_eq!(clean_path("src/a.py").expect("ok"), "src/a.py");
        assert_eq!(clean_path("/workspace/a.py").expect("ok"), "a.py");
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "a\nb",
            "a\0b",
        ] {
            assert!(clean_path(bad).is_err(), "{bad:?}");
        }
        assert!(
            clean_path(&format!("{}b", "a/".repeat(40))).is_err(),
            "too deep"
        );
        assert_eq!(url_path("a b/ü?#.py"), "a%20b/%C3%BC%3F%23.py");
    }

    #[test]
    fn json_and_archive_payloads_are_checked() {
        let f = |p: &str, c: &str, e| BroadcastFile {
            path: p.into(),
            content: c.into(),
            encoding: e,
        };
        let p = payloads(vec![f("a.txt", "aGk=", FileEncoding::Base64)]).expect("ok");
        assert_eq!(&p[0].content[..], b"hi");
        assert!(matches!(
            payloads(vec![f("a", "!", FileEncoding::Base64)]),
            Err(BroadcastError::BadBase64(_))
        ));
        assert!(matches!(payloads(vec![]), Err(BroadcastError::FileCount)));
        assert!(matches!(
            payloads(vec![
                f("a", "1", FileEncoding::Utf8),
                f("a", "2", FileEncoding::Utf8)
            ]),
            Err(BroadcastError::Duplicate(_))
        ));

        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8], kind| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_path(path).expect("path");
            h.set_cksum();
            tar.append(&h, data).expect("append");
        };
        add("./ex/", b"", tar::EntryType::Directory);
        add("./ex/a.py", b"print(1)\n", tar::EntryType::Regular);
        let gz = |tar: tar::Builder<Vec<u8>>| {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut enc, &tar.into_inner().expect("tar")).expect("gz");
            enc.finish().expect("gz")
        };
        let p = payloads_from_tar_gz(&gz(tar)).expect("archive");
        assert_eq!((p.len(), p[0].path.as_str()), (1, "ex/a.py"));

        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_path("link").expect("path");
        h.set_link_name("/etc/passwd").expect("link");
        h.set_cksum();
        tar.append(&h, std::io::empty()).expect("append");
        assert!(matches!(
            payloads_from_tar_gz(&gz(tar)),
            Err(BroadcastError::BadPath(_))
        ));
        assert!(matches!(
            payloads_from_tar_gz(b"not gzip"),
            Err(BroadcastError::Archive(_))
        ));
    }
}
