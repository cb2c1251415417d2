//! Named terminal sessions that outlive their WebSockets.
//!
//! Each session owns a shell on a PTY, a scrollback ring and a broadcast channel of events. One
//! task reads the PTY and publishes; one task writes viewers' input. Viewers subscribe to the
//! broadcast, which never blocks the reader: a viewer that falls behind sees `Lagged` and
//! resyncs from the ring, so a slow viewer can stall neither the shell nor the other viewers.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};

use crate::pty::{self, PtyMaster, SpawnSpec};

/// How the shells of all sessions are started.
#[derive(Debug, Clone)]
pub struct ShellConfig {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env_remove: Vec<OsString>,
    /// Bytes of scrollback kept per session and replayed on attach.
    pub scrollback_bytes: usize,
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
}

/// Errors starting a session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot start the shell")]
    Spawn(#[source] std::io::Error),
    #[error("too many sessions (at most {0})")]
    TooMany(usize),
}

/// Broadcast capacity in chunks (a chunk is one PTY read, at most `READ_BUF` bytes).
const EVENT_CAPACITY: usize = 1024;
const READ_BUF: usize = 64 * 1024;
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
}

struct Shared {
    ring: Ring,
    exited: Option<i32>,
    takeovers: usize,
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
        let (a, b) = self.buf.as_slices();
        let mut v = Vec::with_capacity(self.buf.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        if self.total > self.buf.len() as u64 {
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
            env: vec![("TERM".into(), "xterm-256color".into())],
            env_remove: self.cfg.env_remove.clone(),
            cols,
            rows,
        };
        let (master, child) = pty::spawn(&spec).map_err(SessionError::Spawn)?;
        let (input_tx, input_rx) = mpsc::channel(256);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
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
            }),
        });
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
        let shared = lock(&self.shared);
        let (replay, next) = shared.ring.snapshot();
        Attachment {
            replay,
            next,
            events: self.events.subscribe(),
            exited: shared.exited,
            takeover_active: shared.takeovers > 0,
        }
    }

    /// The scrollback now, for a viewer that lagged; its receiver stays subscribed.
    pub fn snapshot(&self) -> (Bytes, u64) {
        lock(&self.shared).ring.snapshot()
    }

    /// Queues input for the shell; waits if 256 writes are already queued.
    pub async fn input(&self, data: Bytes) -> bool {
        self.input.send(data).await.is_ok()
    }

    pub fn resize(&self, cols: u16, rows: u16) -> std::io::Result<()> {
        self.pty.resize(cols, rows)
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
    let status = loop {
        tokio::select! {
            biased;
            r = session.pty.read(&mut buf) => match r {
                Ok(n) if n > 0 => session.publish(&buf[..n]),
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
    }

    #[test]
    fn ring_replay_starts_on_a_utf8_boundary() {
        let mut r = Ring::new(4);
        r.push("aé€".as_bytes()); // 1 + 2 + 3 bytes: the cut falls inside 'é'
        let (bytes, _) = r.snapshot();
        assert_eq!(&bytes[..], "€".as_bytes());
    }
}
