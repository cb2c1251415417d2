//! Named terminal sessions that outlive their WebSockets.
//!
//! Each session owns a shell on a PTY, a scrollback ring and a broadcast channel of events. One
//! task reads the PTY and publishes; one task writes viewers' input. Viewers subscribe to the
//! broadcast, which never blocks the reader: a viewer that falls behind sees `Lagged` and
//! resyncs from the ring, so a slow viewer can stall neither the shell nor the other viewers.
//!
//! Flow control: the reader paces the shell to the *fastest* viewer, as ssh paces it to its
//! socket: while even that viewer is more than `HIGH_WATER` bytes behind, the reader stops
//! reading the PTY (the shell's writes block in the kernel) until a viewer catches up. A flood
//! (`cat` of a big file) then reaches a viewer whole instead of as skipped output and replays.
//! When no viewer makes progress for `STALL`, the reader goes on without them (they resync),
//! so a stalled viewer never stalls the shell for longer than that.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, Notify};

use crate::pty::{self, PtyMaster, SpawnSpec};
use crate::screen::{self, Screen, SharedScreen};

/// How the shells of all sessions are started.
#[derive(Debug, Clone)]
pub struct ShellConfig {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env_remove: Vec<OsString>,
    /// Bytes of scrollback kept per session and replayed on attach.
    pub scrollback_bytes: usize,
    /// The workshop's environment, once a daemon started ahead got it (`activate`).
    pub activation: Arc<crate::activate::Activation>,
}

/// Something a viewer receives.
#[derive(Debug, Clone)]
pub enum Event {
    /// PTY bytes; `offset` is the position of `data[0]` in the session's output stream.
    Output {
        offset: u64,
        data: Bytes,
    },
    Exit(i32),
    /// A takeover viewer attached (`active`) or detached; `by` is its viewer id.
    Takeover {
        active: bool,
        by: u64,
    },
}

/// What a viewer gets when it attaches.
pub struct Attachment {
    pub replay: Bytes,
    /// Stream offset just past `replay`.
    pub next: u64,
    pub events: broadcast::Receiver<Event>,
    pub exited: Option<i32>,
    pub takeover_active: bool,
    /// Where this viewer is; it reports each delivery with [`Session::delivered`].
    pub position: Arc<AtomicU64>,
}

/// Errors starting a session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot start the shell")]
    Spawn(#[source] std::io::Error),
    #[error("too many sessions (at most {0})")]
    TooMany(usize),
}

/// Broadcast capacity in chunks. A chunk is what the PTY had buffered when read (reads are
/// repeated until it is empty), at most `READ_BUF` bytes; the channel keeps its last
/// `EVENT_CAPACITY` chunks alive, so this bounds its memory (4 MiB).
const EVENT_CAPACITY: usize = 128;
const READ_BUF: usize = 32 * 1024;
/// The reader stops while the fastest viewer is this many bytes behind (well inside the
/// broadcast's capacity, so a viewer that keeps pace never lags).
const HIGH_WATER: u64 = 1024 * 1024;
/// How long the reader waits for a viewer to make progress before going on without it.
const STALL: Duration = Duration::from_millis(250);
const MAX_SESSIONS: usize = 32;

/// All sessions of the daemon, by name.
pub struct SessionManager {
    cfg: ShellConfig,
    sessions: Arc<Mutex<HashMap<String, Arc<Session>>>>,
}

pub struct Session {
    pub name: String,
    pty: Arc<PtyMaster>,
    pid: Option<u32>,
    input: mpsc::Sender<Bytes>,
    events: broadcast::Sender<Event>,
    shared: Mutex<Shared>,
    /// Signalled when a viewer delivered output (flow control).
    progress: Notify,
    /// The live screen and shell facts (see `screen`), fed by a follower of `events`.
    screen: SharedScreen,
}

struct Shared {
    ring: Ring,
    exited: Option<i32>,
    takeovers: usize,
    /// Stream offsets the attached viewers have delivered up to; dead ones are pruned.
    viewers: Vec<Weak<AtomicU64>>,
}

/// A byte ring that remembers how many bytes went through it.
pub struct Ring {
    buf: VecDeque<u8>,
    cap: usize,
    total: u64,
}

impl Ring {
    pub fn new(cap: usize) -> Self {
        Self {
            buf: VecDeque::new(),
            cap: cap.max(1),
            total: 0,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let data = if data.len() > self.cap {
            &data[data.len() - self.cap..]
        } else {
            data
        };
        let overflow = (self.buf.len() + data.len()).saturating_sub(self.cap);
        self.buf.drain(..overflow);
        self.buf.extend(data);
    }

    /// The kept bytes and the stream offset just past them. When older output was dropped, a
    /// UTF-8 character cut at the start is skipped so the replay begins on a boundary.
    pub fn snapshot(&self) -> (Bytes, u64) {
        self.tail(usize::MAX)
    }

    /// The bytes from stream offset `from` to the end, if the ring still holds them all and
    /// they are at most `max`.
    pub fn since(&self, from: u64, max: usize) -> Option<Bytes> {
        let behind = usize::try_from(self.total.checked_sub(from)?).ok()?;
        if behind > max || behind > self.buf.len() {
            return None;
        }
        let mut v = Vec::with_capacity(behind);
        v.extend(self.buf.range(self.buf.len() - behind..));
        Some(Bytes::from(v))
    }

    /// Like [`Ring::snapshot`], limited to the last `max` bytes kept.
    pub fn tail(&self, max: usize) -> (Bytes, u64) {
        let keep = self.buf.len().min(max);
        let mut v = Vec::with_capacity(keep);
        v.extend(self.buf.range(self.buf.len() - keep..));
        if self.total > keep as u64 {
            let skip = v.iter().take(3).take_while(|&&c| c & 0xC0 == 0x80).count();
            v.drain(..skip);
        }
        (Bytes::from(v), self.total)
    }
}

impl SessionManager {
    pub fn new(cfg: ShellConfig) -> Self {
        Self {
            cfg,
            sessions: Arc::default(),
        }
    }

    /// Returns the named session, starting a shell if there is none. `bool` = newly started.
    pub fn get_or_start(
        &self,
        name: &str,
        cols: u16,
        rows: u16,
    ) -> Result<(Arc<Session>, bool), SessionError> {
        let mut map = lock(&self.sessions);
        if let Some(s) = map.get(name) {
            return Ok((s.clone(), false));
        }
        if map.len() >= MAX_SESSIONS {
            return Err(SessionError::TooMany(MAX_SESSIONS));
        }
        let spec = SpawnSpec {
            argv: self.cfg.argv.clone(),
            cwd: self.cfg.cwd.clone(),
            // The workshop's variables first: the terminal's own win.
            env: (self.cfg.activation.env().iter().cloned())
                .chain(std::iter::once((
                    "TERM".to_string(),
                    "xterm-256color".to_string(),
                )))
                .chain(screen::shell_integration_env())
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            env_remove: self.cfg.env_remove.clone(),
            cols,
            rows,
        };
        let (master, child) = pty::spawn(&spec).map_err(SessionError::Spawn)?;
        let (input_tx, input_rx) = mpsc::channel(256);
        let (events, screen_events) = broadcast::channel(EVENT_CAPACITY);
        let screen = Arc::new(Mutex::new(Screen::new(rows, cols)));
        let session = Arc::new(Session {
            name: name.to_string(),
            pty: Arc::new(master),
            pid: child.id(),
            input: input_tx,
            events,
            shared: Mutex::new(Shared {
                ring: Ring::new(self.cfg.scrollback_bytes),
                exited: None,
                takeovers: 0,
                viewers: Vec::new(),
            }),
            progress: Notify::new(),
            screen: screen.clone(),
        });
        tokio::spawn(follow_screen(
            Arc::downgrade(&session),
            screen,
            screen_events,
        ));
        tokio::spawn(write_input(session.pty.clone(), input_rx));
        tokio::spawn(pump_output(
            session.clone(),
            child,
            Arc::downgrade(&self.sessions),
        ));
        tracing::info!(session = name, pid = session.pid, "started shell");
        map.insert(name.to_string(), session.clone());
        Ok((session, true))
    }

    /// The named session, if it runs.
    pub fn get(&self, name: &str) -> Option<Arc<Session>> {
        lock(&self.sessions).get(name).cloned()
    }

    /// Hangs up every shell (daemon shutdown).
    pub fn shutdown(&self) {
        for s in lock(&self.sessions).values() {
            s.hangup();
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Session {
    pub fn attach(&self) -> Attachment {
        let mut shared = lock(&self.shared);
        let (replay, next) = shared.ring.snapshot();
        let position = Arc::new(AtomicU64::new(next));
        shared.viewers.push(Arc::downgrade(&position));
        Attachment {
            replay,
            next,
            events: self.events.subscribe(),
            exited: shared.exited,
            takeover_active: shared.takeovers > 0,
            position,
        }
    }

    /// A viewer has sent everything before stream offset `next`.
    pub fn delivered(&self, position: &AtomicU64, next: u64) {
        position.store(next, Ordering::Relaxed);
        self.progress.notify_one();
    }

    /// Bytes the fastest viewer is behind the PTY, or `None` without viewers.
    fn lead_lag(&self) -> Option<(u64, u64)> {
        let mut shared = lock(&self.shared);
        shared.viewers.retain(|v| v.strong_count() > 0);
        let lead = shared
            .viewers
            .iter()
            .filter_map(|v| Some(v.upgrade()?.load(Ordering::Relaxed)))
            .max()?;
        Some((lead, shared.ring.total.saturating_sub(lead)))
    }

    /// Waits while the fastest viewer is more than `HIGH_WATER` behind, at most `STALL` without
    /// progress. `stalled` remembers the position that timed out, so a viewer that stopped
    /// reading costs the shell one `STALL`, not one per read.
    async fn pace(&self, stalled: &mut Option<u64>) {
        loop {
            let Some((lead, lag)) = self.lead_lag() else {
                return;
            };
            if lag <= HIGH_WATER || *stalled == Some(lead) {
                return;
            }
            if tokio::time::timeout(STALL, self.progress.notified())
                .await
                .is_err()
            {
                *stalled = Some(lead);
                return;
            }
        }
    }

    /// The last `max` bytes of scrollback now, for a viewer that lagged; its receiver stays
    /// subscribed.
    pub fn snapshot(&self, max: usize) -> (Bytes, u64) {
        lock(&self.shared).ring.tail(max)
    }

    /// Queues input for the shell; waits if 256 writes are already queued.
    pub async fn input(&self, data: Bytes) -> bool {
        screen::lock(&self.screen).input();
        self.input.send(data).await.is_ok()
    }

    pub fn resize(&self, cols: u16, rows: u16) -> std::io::Result<()> {
        self.pty.resize(cols, rows)?;
        screen::lock(&self.screen).resize(rows, cols);
        Ok(())
    }

    /// The screen now, or `None` when its version is still `since`.
    pub fn screen(&self, since: Option<u64>) -> Option<clarateach_core::classroom::ScreenSnapshot> {
        let mut screen = screen::lock(&self.screen);
        if since == Some(screen.version()) {
            return None;
        }
        // The output the VT state has not seen, copied out under the ring's lock (inside the
        // screen's: the only nesting of the two) and parsed after it, so the PTY reader waits
        // for a copy at most.
        let (next, output) = {
            let shared = lock(&self.shared);
            let ring = &shared.ring;
            let output = match ring.since(screen.vt_next(), screen::CATCH_UP_BYTES) {
                Some(bytes) => screen::CatchUp::Since(bytes),
                None => screen::CatchUp::Tail(ring.tail(screen::CATCH_UP_BYTES).0),
            };
            (ring.total, output)
        };
        screen.catch_up(next, output);
        Some(screen.snapshot(&self.name))
    }

    /// Records a takeover viewer attaching or leaving and tells the others on the first/last.
    pub fn takeover(&self, active: bool, by: u64) {
        let mut shared = lock(&self.shared);
        let before = shared.takeovers;
        shared.takeovers = if active {
            before + 1
        } else {
            before.saturating_sub(1)
        };
        if (before == 0) != (shared.takeovers == 0) {
            let _ = self.events.send(Event::Takeover { active, by });
        }
    }

    fn hangup(&self) {
        if let Some(pid) = self
            .pid
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::Hup);
        }
    }

    fn publish(&self, data: &[u8]) {
        let mut shared = lock(&self.shared);
        let offset = shared.ring.total;
        shared.ring.push(data);
        // No receivers is fine: the ring keeps the output for the next viewer.
        let _ = self.events.send(Event::Output {
            offset,
            data: Bytes::copy_from_slice(data),
        });
    }
}

async fn write_input(pty: Arc<PtyMaster>, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(data) = rx.recv().await {
        if let Err(e) = pty.write_all(&data).await {
            tracing::debug!(error = %e, "pty write failed; input closed");
            break;
        }
    }
}

/// Reads the PTY until the shell exits, then announces the exit and forgets the session.
async fn pump_output(
    session: Arc<Session>,
    mut child: tokio::process::Child,
    sessions: Weak<Mutex<HashMap<String, Arc<Session>>>>,
) {
    let mut buf = vec![0u8; READ_BUF];
    let mut stalled = None;
    let status = loop {
        session.pace(&mut stalled).await;
        tokio::select! {
            biased;
            r = session.pty.read(&mut buf) => match r {
                Ok(n) if n > 0 => {
                    // The line discipline hands out at most 4 KiB a read: take everything
                    // buffered now as one chunk, so a flood costs few events and frames.
                    let mut len = n;
                    let mut eof = false;
                    while len < buf.len() {
                        match session.pty.try_read(&mut buf[len..]) {
                            Ok(Some(0)) => { eof = true; break; }
                            Ok(Some(m)) => len += m,
                            Ok(None) | Err(_) => break,
                        }
                    }
                    session.publish(&buf[..len]);
                    if eof {
                        break child.wait().await;
                    }
                }
                Ok(_) => break child.wait().await,
                Err(e) => {
                    tracing::warn!(error = %e, "pty read failed");
                    session.hangup();
                    break child.wait().await;
                }
            },
            status = child.wait() => {
                // Output the shell wrote just before exiting may still be in flight through
                // the line discipline: read until EIO or a short quiet period.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                while tokio::time::Instant::now() < deadline {
                    match tokio::time::timeout(Duration::from_millis(50), session.pty.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => session.publish(&buf[..n]),
                        _ => break,
                    }
                }
                break status;
            }
        }
    };
    let code = match status {
        Ok(s) => s.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + s.signal().unwrap_or(0)
        }),
        Err(_) => -1,
    };
    tracing::info!(session = %session.name, code, "shell exited");
    if let Some(map) = sessions.upgrade() {
        let mut map = lock(&map);
        if map
            .get(&session.name)
            .is_some_and(|s| Arc::ptr_eq(s, &session))
        {
            map.remove(&session.name);
        }
    }
    let mut shared = lock(&session.shared);
    shared.exited = Some(code);
    let _ = session.events.send(Event::Exit(code));
}

/// Locks a mutex; a poisoned one still holds consistent data here (no multi-step updates).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Scrollback tail whose marks are scanned after the screen follower lagged.
const RESYNC_BYTES: usize = 64 * 1024;

/// Feeds `screen` from the session's events until the shell exits. `events` must be subscribed
/// before the shell's first output, so nothing is missed.
async fn follow_screen(
    session: std::sync::Weak<Session>,
    screen: SharedScreen,
    mut events: broadcast::Receiver<Event>,
) {
    loop {
        match events.recv().await {
            Ok(Event::Output { offset, data }) => screen::lock(&screen).feed(offset, &data),
            Ok(Event::Takeover { .. }) => {}
            Ok(Event::Exit(_)) | Err(broadcast::error::RecvError::Closed) => break,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let Some(session) = session.upgrade() else {
                    break;
                };
                let (tail, next) = session.snapshot(RESYNC_BYTES);
                screen::lock(&screen).lagged(&tail, next);
            }
        }
    }
    screen::lock(&screen).mark_exited();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_tail_and_counts_everything() {
        let mut r = Ring::new(4);
        r.push(b"ab");
        r.push(b"cdef");
        assert_eq!(r.snapshot(), (Bytes::from_static(b"cdef"), 6));
        r.push(b"0123456789");
        assert_eq!(r.snapshot(), (Bytes::from_static(b"6789"), 16));
        assert_eq!(r.since(14, 8), Some(Bytes::from_static(b"89")));
        assert_eq!(r.since(16, 8), Some(Bytes::new()));
        assert_eq!(r.since(11, 8), None, "dropped from the ring");
        assert_eq!(r.since(13, 2), None, "more than asked for");
        assert_eq!(r.since(17, 8), None, "past the end");
    }

    #[test]
    fn ring_replay_starts_on_a_utf8_boundary() {
        let mut r = Ring::new(4);
        r.push("aé€".as_bytes()); // 1 + 2 + 3 bytes: the cut falls inside 'é'
        let (bytes, _) = r.snapshot();
        assert_eq!(&bytes[..], "€".as_bytes());
        assert_eq!(r.tail(2), (Bytes::from_static(b""), 6));
    }
}
