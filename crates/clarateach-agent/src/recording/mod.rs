//! Terminal recordings, kept by the agent on the host (issue 10). The workspace daemon runs as
//! the learner's uid, so a cast it wrote could be rewritten by the learner; the agent instead
//! records the bytes it relays between the gateway and the daemon, into
//! `{data_dir}/recordings/{workshop}/seat-{N}/` (root-owned, 0700, outside every seat volume).
//!
//! One cast per interactive (learner) or take-over terminal connection: it starts with the
//! scrollback the daemon replays on attach and goes on live, so each cast replays on its own.
//! Watchers are not recorded (they see the same bytes). Only output and resizes are kept, never
//! keystrokes (passwords typed at a prompt would end up in the file; what the shell echoes is
//! already in the output).
//!
//! The relay never waits for the disk: the tap parses frame headers inline and hands payload
//! copies to a writer thread over a bounded channel; if the writer falls behind, events are
//! dropped (counted, logged) rather than slowing the terminal. Per seat, casts are bounded by
//! [`DEFAULT_SEAT_CAP`] together: the oldest casts are deleted first, and a single cast that
//! reaches the cap ends with a marker.

pub mod cast;
pub mod frames;

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clarateach_core::agent_proto::SeatKey;
use clarateach_core::presenter::{valid_recording_name, valid_session, RecordingInfo};
use futures::StreamExt;
use tokio::sync::mpsc;

use cast::CastWriter;
use frames::{FrameTap, Seen};

/// Bytes of casts kept per seat (all its casts together).
pub const DEFAULT_SEAT_CAP: u64 = 32 * 1024 * 1024;
/// Events queued between the relay and the writer thread.
const QUEUE: usize = 1024;
/// The seat's older casts are pruned each time a cast grows by this much.
const PRUNE_EVERY: u64 = 1024 * 1024;

/// Why a recording could not be listed or read.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("cannot read the seat's recordings directory")]
    ListDir(#[source] std::io::Error),
    #[error("cannot read the recording")]
    Read(#[source] std::io::Error),
}

/// The agent's recordings: where they live, the per-seat cap, and the on/off switch.
#[derive(Debug)]
pub struct Recorder {
    root: PathBuf,
    seat_cap: u64,
    enabled: AtomicBool,
}

#[derive(Debug)]
enum Event {
    Output(Duration, Bytes),
    Resize(Duration, u16, u16),
}

impl Recorder {
    /// Recordings under `root` (created 0700 when first used), `seat_cap` bytes per seat.
    pub fn new(root: PathBuf, seat_cap: u64) -> Self {
        Self {
            root,
            seat_cap,
            enabled: AtomicBool::new(true),
        }
    }

    /// Turns recording of new connections on or off (the throughput bench compares both).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    fn seat_dir(&self, key: &SeatKey) -> PathBuf {
        // The workshop id was validated by the data path ([A-Za-z0-9_-], <= 64).
        self.root
            .join(&key.workshop_id)
            .join(format!("seat-{}", key.seat))
    }

    /// Starts a cast for a new terminal connection of `key`'s `session`; `None` when recording
    /// is off or the file cannot be created (logged: the terminal works without it).
    pub fn start(&self, key: &SeatKey, session: &str) -> Option<Tap> {
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        let session = file_session(session);
        let dir = self.seat_dir(key);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!("{session}-{}.cast", now.as_millis());
        let file = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(dir.join(&name))
            });
        let file = match file {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, error = %e, "cannot start a terminal recording");
                return None;
            }
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = CastWriter::new(
            std::io::BufWriter::with_capacity(64 * 1024, file),
            now.as_secs(),
            format!("seat {}: {session}", key.seat),
            self.seat_cap,
        );
        let (cap, key2) = (self.seat_cap, key.clone());
        tokio::task::spawn_blocking(move || write_cast(writer, rx, &dir, &name, cap, &key2));
        Some(Tap {
            tx,
            start: Instant::now(),
            down: FrameTap::default(),
            up: FrameTap::default(),
            dropped: 0,
        })
    }

    /// The seat's casts, oldest first.
    pub fn list(&self, key: &SeatKey) -> Result<Vec<RecordingInfo>, RecordingError> {
        Ok(casts(&self.seat_dir(key))
            .map_err(RecordingError::ListDir)?
            .into_iter()
            .map(|c| c.info)
            .collect())
    }

    /// One cast's bytes; `None` when the name is not one the recorder writes or no such cast.
    pub fn read(&self, key: &SeatKey, name: &str) -> Result<Option<Vec<u8>>, RecordingError> {
        if !valid_recording_name(name) {
            return Ok(None);
        }
        match std::fs::read(self.seat_dir(key).join(name)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RecordingError::Read(e)),
        }
    }
}

impl Recorder {
    /// The seat's casts as tar entries (no end-of-archive blocks: a fragment the workshop
    /// export appends to the seat's files), named `recordings/{prefix}/{name}`, one entry per
    /// item so the stream never holds more than one cast. A cast that cannot be read is left out
    /// (logged).
    pub fn tar_entries(
        self: std::sync::Arc<Self>,
        key: SeatKey,
        prefix: Option<String>,
    ) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let listed = casts(&self.seat_dir(&key)).unwrap_or_default();
        futures::stream::iter(listed).filter_map(move |c| {
            let prefix = prefix.clone();
            let key = key.clone();
            async move {
                let read = tokio::task::spawn_blocking(move || {
                    let data = std::fs::read(&c.path)?;
                    let dir = match &prefix {
                        Some(p) => format!("recordings/{p}"),
                        None => "recordings".into(),
                    };
                    tar_entry(&format!("{dir}/{}", c.info.name), &data, c.info.started_ms / 1000)
                })
                .await;
                match read {
                    Ok(Ok(entry)) => Some(Ok(Bytes::from(entry))),
                    Ok(Err(e)) => {
                        tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, error = %e, "a recording was left out of the export");
                        None
                    }
                    Err(e) => Some(Err(std::io::Error::other(e))),
                }
            }
        })
    }
}

/// One regular-file tar entry: header, data, padding to 512 bytes.
fn tar_entry(path: &str, data: &[u8], mtime: u64) -> std::io::Result<Vec<u8>> {
    let mut h = tar::Header::new_gnu();
    h.set_path(path)?;
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o600);
    h.set_size(data.len() as u64);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    let mut out = Vec::with_capacity(512 + data.len() + 512);
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    Ok(out)
}

/// A session name as it may appear in a file name: invalid characters become `_`.
fn file_session(s: &str) -> String {
    if valid_session(s) {
        return s.to_string();
    }
    let mut out: String = s
        .chars()
        .take(32)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

struct Cast {
    info: RecordingInfo,
    path: PathBuf,
}

fn casts(dir: &Path) -> std::io::Result<Vec<Cast>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !valid_recording_name(&name) {
            continue;
        }
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let stem = name.trim_end_matches(".cast");
        let (session, ms) = stem.rsplit_once('-').unwrap_or((stem, "0"));
        out.push(Cast {
            info: RecordingInfo {
                session: session.to_string(),
                started_ms: ms.parse().unwrap_or(0),
                bytes: meta.len(),
                name,
            },
            path: entry.path(),
        });
    }
    out.sort_by(|a, b| (a.info.started_ms, &a.info.name).cmp(&(b.info.started_ms, &b.info.name)));
    Ok(out)
}

/// Deletes the seat's oldest casts (never `current`) until all of them, `current` counted as
/// `current_bytes`, fit in `cap`.
fn prune(dir: &Path, current: &str, current_bytes: u64, cap: u64) -> std::io::Result<()> {
    let all = casts(dir)?;
    let mut total: u64 = current_bytes
        + all
            .iter()
            .filter(|c| c.info.name != current)
            .map(|c| c.info.bytes)
            .sum::<u64>();
    for c in all.iter().filter(|c| c.info.name != current) {
        if total <= cap {
            break;
        }
        std::fs::remove_file(&c.path)?;
        total -= c.info.bytes;
    }
    Ok(())
}

/// The writer thread of one cast: drains the tap's events into the file.
fn write_cast<W: Write>(
    mut w: CastWriter<W>,
    mut rx: mpsc::Receiver<Event>,
    dir: &Path,
    name: &str,
    cap: u64,
    key: &SeatKey,
) {
    let mut pruned_at = 0;
    let mut result = prune(dir, name, 0, cap);
    while result.is_ok() {
        let Some(ev) = rx.blocking_recv() else { break };
        result = match ev {
            Event::Output(at, b) => w.output(at, &b),
            Event::Resize(at, c, r) => w.resize(at, c, r),
        };
        if result.is_ok() && rx.is_empty() {
            result = w.flush();
        }
        if result.is_ok() && w.written() >= pruned_at + PRUNE_EVERY {
            pruned_at = w.written();
            result = prune(dir, name, w.written(), cap);
        }
    }
    let result = result.and_then(|()| w.flush());
    if let Err(e) = result {
        tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, error = %e, "terminal recording stopped");
    }
}

/// The relay's view of one recorded connection: fed every chunk it copies, in both directions.
#[derive(Debug)]
pub struct Tap {
    tx: mpsc::Sender<Event>,
    start: Instant,
    down: FrameTap,
    up: FrameTap,
    dropped: u64,
}

impl Tap {
    fn send(&mut self, ev: Event) {
        if self.tx.try_send(ev).is_err() {
            self.dropped += 1;
        }
    }

    /// Bytes the daemon sent towards the browser.
    pub fn from_daemon(&mut self, chunk: &[u8]) {
        let at = self.start.elapsed();
        let mut events = Vec::new();
        self.down.feed(chunk, &mut |seen| match seen {
            Seen::Binary(b) => events.push(Event::Output(at, Bytes::copy_from_slice(b))),
            Seen::Text(t) => {
                // JSON-format viewers get output as {"type":"output","data":...}.
                #[derive(serde::Deserialize)]
                struct Output {
                    r#type: String,
                    data: Option<String>,
                }
                if let Ok(Output {
                    r#type,
                    data: Some(d),
                }) = serde_json::from_slice(t)
                {
                    if r#type == "output" {
                        events.push(Event::Output(at, Bytes::from(d.into_bytes())));
                    }
                }
            }
        });
        for ev in events {
            self.send(ev);
        }
    }

    /// Bytes the browser sent towards the daemon: only resizes are recorded.
    pub fn from_client(&mut self, chunk: &[u8]) {
        let at = self.start.elapsed();
        let mut resize = None;
        self.up.feed(chunk, &mut |seen| {
            #[derive(serde::Deserialize)]
            struct Resize {
                r#type: String,
                cols: Option<u16>,
                rows: Option<u16>,
            }
            if let Seen::Text(t) = seen {
                if let Ok(Resize {
                    r#type,
                    cols: Some(c),
                    rows: Some(r),
                }) = serde_json::from_slice(t)
                {
                    if r#type == "resize" {
                        resize = Some((c, r));
                    }
                }
            }
        });
        if let Some((c, r)) = resize {
            self.send(Event::Resize(at, c, r));
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if self.dropped > 0 {
            tracing::warn!(
                dropped = self.dropped,
                "terminal recording lost events: the writer fell behind"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SeatKey {
        SeatKey {
            workshop_id: "ws-rec".into(),
            seat: 2,
        }
    }

    fn ws_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mut f = vec![
            0x80 | opcode,
            payload.len() as u8 | if mask.is_some() { 0x80 } else { 0 },
        ];
        match mask {
            Some(k) => {
                f.extend_from_slice(&k);
                f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => f.extend_from_slice(payload),
        }
        f
    }

    async fn wait_for(mut ok: impl FnMut() -> bool) {
        for _ in 0..200 {
            if ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not met in 2 s");
    }

    #[tokio::test]
    async fn a_tapped_connection_becomes_a_private_cast() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::new(dir.path().join("recordings"), 1 << 20);
        let mut tap = rec.start(&key(), "main").unwrap();
        tap.from_client(&ws_frame(
            1,
            br#"{"type":"resize","cols":132,"rows":43}"#,
            Some([1, 2, 3, 4]),
        ));
        tap.from_client(&ws_frame(
            1,
            br#"{"type":"input","data":"secret\r"}"#,
            Some([4, 3, 2, 1]),
        ));
        tap.from_daemon(&ws_frame(
            1,
            br#"{"type":"attached","session":"main"}"#,
            None,
        ));
        tap.from_daemon(&ws_frame(2, b"$ echo hi\r\nhi\r\n", None));
        drop(tap);
        let list = || rec.list(&key()).unwrap();
        wait_for(|| list().first().is_some_and(|c| c.bytes > 0)).await;
        let info = &list()[0];
        assert_eq!(info.session, "main");
        // The writer thread flushes when the queue is empty; give it the last write.
        let mut text = String::new();
        wait_for(|| {
            text = String::from_utf8(rec.read(&key(), &info.name).unwrap().unwrap()).unwrap();
            text.lines().count() == 2
        })
        .await;
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["width"], 132);
        assert_eq!(lines[0]["height"], 43);
        assert_eq!(lines[1][1], "o");
        assert_eq!(lines[1][2], "$ echo hi\r\nhi\r\n");
        assert!(!text.contains("secret"), "keystrokes are not recorded");
        let path = dir.path().join("recordings/ws-rec/seat-2").join(&info.name);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o700);
        for bad in ["../seat-2/x-1.cast", "main.cast", "x"] {
            assert!(rec.read(&key(), bad).unwrap().is_none(), "{bad}");
        }
    }

    #[test]
    fn oldest_casts_go_first_when_the_seat_cap_is_reached() {
        let dir = tempfile::tempdir().unwrap();
        for (i, size) in [(1u64, 400usize), (2, 400), (3, 400)] {
            std::fs::write(dir.path().join(format!("main-{i}.cast")), vec![b'x'; size]).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), b"not a cast").unwrap();
        prune(dir.path(), "main-4.cast", 500, 1000).unwrap();
        let left: Vec<String> = casts(dir.path())
            .unwrap()
            .into_iter()
            .map(|c| c.info.name)
            .collect();
        assert_eq!(left, ["main-3.cast"]);
        assert!(dir.path().join("notes.txt").exists());
    }

    #[test]
    fn odd_session_names_are_still_recorded() {
        assert_eq!(file_session("main"), "main");
        assert_eq!(file_session("../../etc"), "______etc");
        assert_eq!(file_session(""), "_");
        assert!(valid_session(&file_session(&"é".repeat(100))));
    }

    #[tokio::test]
    async fn casts_export_as_tar_entries() {
        let dir = tempfile::tempdir().unwrap();
        let rec = std::sync::Arc::new(Recorder::new(dir.path().to_path_buf(), 1 << 20));
        let seat = dir.path().join("ws-rec/seat-2");
        std::fs::create_dir_all(&seat).unwrap();
        std::fs::write(seat.join("main-1000.cast"), b"{\"version\":2}\n").unwrap();
        std::fs::write(seat.join("s2-2000.cast"), b"x").unwrap();
        let parts: Vec<Bytes> = rec
            .tar_entries(key(), Some("seat-02".into()))
            .map(|r| r.unwrap())
            .collect()
            .await;
        let mut all: Vec<u8> = parts.concat();
        all.extend_from_slice(&[0u8; 1024]);
        let mut ar = tar::Archive::new(&all[..]);
        let names: Vec<(String, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), e.size())
            })
            .collect();
        assert_eq!(
            names,
            [
                ("recordings/seat-02/main-1000.cast".to_string(), 14),
                ("recordings/seat-02/s2-2000.cast".to_string(), 1)
            ]
        );
    }

    #[tokio::test]
    async fn off_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::new(dir.path().to_path_buf(), 1 << 20);
        rec.set_enabled(false);
        assert!(rec.start(&key(), "main").is_none());
        assert!(rec.list(&key()).unwrap().is_empty());
    }
}
