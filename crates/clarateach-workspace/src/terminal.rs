//! The terminal WebSocket: attaches a viewer to a named session (see api/ws-protocol.md).
//!
//! The viewer loop is generic over `Sink`/`Stream` so it runs the same over axum's socket and
//! over plain channels. Output goes out in batches (everything already queued, up to 256 KiB)
//! so a fast producer costs few frames; each send has a deadline so a stalled client is dropped.

use clarateach_core::ErrorCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use clarateach_core::{TerminalClientMessage, TerminalServerMessage};
use futures::{Sink, SinkExt, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::session::{Event, Session};
use crate::AppState;

const BATCH_BYTES: usize = 256 * 1024;
const SEND_TIMEOUT: Duration = Duration::from_secs(20);
/// A viewer that needs more than this many resyncs within `RESYNC_WINDOW` is closed. A viewer
/// slower than a flood (`cat` of a big file) resyncs a few times a second; that is fine.
const MAX_RESYNCS: usize = 50;
const RESYNC_WINDOW: Duration = Duration::from_secs(10);
/// Scrollback tail replayed on a resync (the attach replay sends the whole ring).
const RESYNC_REPLAY: usize = 256 * 1024;

pub use clarateach_core::TerminalMode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Binary,
    Json,
}

#[derive(Debug, Deserialize)]
pub struct TerminalQuery {
    session: Option<String>,
    mode: Option<String>,
    format: Option<String>,
    cols: Option<u16>,
    rows: Option<u16>,
}

/// Session names are what a URL and a log line can carry safely.
pub fn valid_session_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

static NEXT_VIEWER: AtomicU64 = AtomicU64::new(1);

/// `GET /terminal?session=&mode=&format=` (WebSocket upgrade).
pub async fn handler(
    State(state): State<AppState>,
    query: Result<Query<TerminalQuery>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(crate::error::query_rejection)?;
    let ws = ws.map_err(|_| {
        ApiError::bad_request(
            ErrorCode::WebsocketRequired,
            "this route needs a WebSocket upgrade",
        )
    })?;
    let name = q.session.unwrap_or_else(|| "main".into());
    if !valid_session_name(&name) {
        return Err(ApiError::bad_request(
            ErrorCode::BadSession,
            "session must be 1-32 of A-Z a-z 0-9 _ -",
        ));
    }
    let mode = match q.mode.as_deref() {
        None => TerminalMode::Interactive,
        Some(m) => TerminalMode::parse(m).ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::BadMode,
                "mode must be interactive, watch or takeover",
            )
        })?,
    };
    let format = match q.format.as_deref() {
        None | Some("binary") => Format::Binary,
        Some("json") => Format::Json,
        Some(_) => {
            return Err(ApiError::bad_request(
                ErrorCode::BadFormat,
                "format must be binary or json",
            ))
        }
    };
    let cols = q.cols.unwrap_or(80).clamp(1, 1000);
    let rows = q.rows.unwrap_or(24).clamp(1, 1000);
    let (session, new) = state
        .sessions
        .get_or_start(&name, cols, rows)
        .map_err(|e| ApiError::internal("Cannot start the terminal session.", &e))?;
    let cancel = state.cancel.clone();
    Ok(ws
        .max_message_size(1 << 20)
        .on_upgrade(move |socket: WebSocket| async move {
            let (sink, stream) = socket.split();
            run_viewer(sink, stream, session, new, mode, format, cancel).await;
        }))
}

/// Runs one viewer until it leaves, the shell exits, the daemon stops or the viewer is too slow.
pub async fn run_viewer<S, R, E>(
    sink: S,
    stream: R,
    session: Arc<Session>,
    new: bool,
    mode: TerminalMode,
    format: Format,
    cancel: CancellationToken,
) where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    let id = NEXT_VIEWER.fetch_add(1, Ordering::Relaxed);
    let att = session.attach();
    let (ctl_tx, ctl_rx) = mpsc::channel(16);
    let mut out = Output {
        sink,
        format,
        next: att.next,
        pending: Vec::new(),
        pending_len: 0,
        utf8: Utf8Stream::default(),
        session: session.clone(),
        position: att.position,
    };
    let attached = TerminalServerMessage::Attached {
        session: session.name.clone(),
        new,
        mode,
        replay_bytes: att.replay.len() as u64,
    };
    if out.control(&attached).await.is_err() {
        return;
    }
    if mode == TerminalMode::Takeover {
        session.takeover(true, id);
    } else if att.takeover_active
        && out
            .control(&TerminalServerMessage::Takeover { active: true })
            .await
            .is_err()
    {
        return;
    }
    let events = att.events;
    let replay = att.replay;
    let exited = att.exited;
    tokio::select! {
        _ = async {
            if out.replay(replay).await.is_ok() {
                match exited {
                    Some(code) => out.exit(code).await,
                    None => out.run(events, ctl_rx, &session, id, &cancel).await,
                }
            }
        } => {}
        _ = input_loop(stream, &session, mode, ctl_tx) => {}
    }
    if mode == TerminalMode::Takeover {
        session.takeover(false, id);
    }
}

async fn input_loop<R, E>(
    mut stream: R,
    session: &Session,
    mode: TerminalMode,
    ctl: mpsc::Sender<TerminalServerMessage>,
) where
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    while let Some(Ok(msg)) = stream.next().await {
        let parsed = match msg {
            Message::Text(t) => serde_json::from_str::<TerminalClientMessage>(t.as_str()),
            Message::Binary(b) => Ok(TerminalClientMessage::Input {
                data: String::from_utf8_lossy(&b).into_owned(),
            }),
            Message::Close(_) => return,
            _ => continue,
        };
        let reply = match parsed {
            Ok(_) if mode == TerminalMode::Watch => Some(error_msg(
                "read_only",
                "this viewer is read-only (mode=watch); input is refused",
            )),
            Ok(TerminalClientMessage::Input { data }) => {
                if !session.input(Bytes::from(data.into_bytes())).await {
                    return;
                }
                None
            }
            Ok(TerminalClientMessage::Resize { cols, rows }) => {
                if (1..=1000).contains(&cols) && (1..=1000).contains(&rows) {
                    session
                        .resize(cols, rows)
                        .err()
                        .map(|e| {
                            // The cause stays in the log; the client gets the step that failed.
                            tracing::warn!(error = %clarateach_core::error::error_chain(&e), "resizing a terminal failed");
                            error_msg("resize_failed", "the terminal could not be resized")
                        })
                } else {
                    Some(error_msg("bad_message", "cols and rows must be 1-1000"))
                }
            }
            Err(e) => Some(error_msg(
                "bad_message",
                &format!("expected input or resize: {e}"),
            )),
        };
        if let Some(reply) = reply {
            if ctl.send(reply).await.is_err() {
                return;
            }
        }
    }
}

fn error_msg(code: &str, message: &str) -> TerminalServerMessage {
    TerminalServerMessage::Error {
        code: code.into(),
        message: message.into(),
    }
}

struct Output<S> {
    sink: S,
    format: Format,
    /// Stream offset of the next byte this viewer should get.
    next: u64,
    pending: Vec<Bytes>,
    pending_len: usize,
    utf8: Utf8Stream,
    /// Told how far this viewer got, so the session paces the shell to its fastest viewer.
    session: Arc<Session>,
    position: Arc<AtomicU64>,
}

/// Why a viewer's output loop stopped early.
struct Gone;

impl<S: Sink<Message> + Unpin> Output<S> {
    async fn send(&mut self, msg: Message) -> Result<(), Gone> {
        match tokio::time::timeout(SEND_TIMEOUT, self.sink.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Gone),
        }
    }

    async fn control(&mut self, msg: &TerminalServerMessage) -> Result<(), Gone> {
        let text = serde_json::to_string(msg).map_err(|_| Gone)?;
        self.send(Message::Text(text.into())).await
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let _ = self
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }

    async fn replay(&mut self, data: Bytes) -> Result<(), Gone> {
        self.utf8 = Utf8Stream::default();
        for chunk in data.chunks(BATCH_BYTES) {
            self.queue(data.slice_ref(chunk));
            self.flush().await?;
        }
        Ok(())
    }

    async fn exit(&mut self, code: i32) {
        if self
            .control(&TerminalServerMessage::Exit { code })
            .await
            .is_ok()
        {
            self.close(1000, "exit").await;
        }
    }

    /// Queues the part of an output chunk this viewer has not seen yet.
    fn push(&mut self, offset: u64, data: Bytes) {
        let end = offset + data.len() as u64;
        if end <= self.next {
            return;
        }
        let skip = self.next.saturating_sub(offset) as usize;
        self.next = end;
        self.queue(data.slice(skip..));
    }

    fn queue(&mut self, data: Bytes) {
        self.pending_len += data.len();
        self.pending.push(data);
    }

    async fn flush(&mut self) -> Result<(), Gone> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let data = if self.pending.len() == 1 {
            self.pending.pop().unwrap_or_default()
        } else {
            let mut all = BytesMut::with_capacity(self.pending_len);
            for c in self.pending.drain(..) {
                all.extend_from_slice(&c);
            }
            all.freeze()
        };
        self.pending.clear();
        self.pending_len = 0;
        match self.format {
            Format::Binary => self.send(Message::Binary(data)).await?,
            Format::Json => {
                let text = self.utf8.push(&data);
                if !text.is_empty() {
                    self.control(&TerminalServerMessage::Output { data: text })
                        .await?;
                }
            }
        }
        self.session.delivered(&self.position, self.next);
        Ok(())
    }

    async fn run(
        &mut self,
        mut events: broadcast::Receiver<Event>,
        mut ctl: mpsc::Receiver<TerminalServerMessage>,
        session: &Session,
        id: u64,
        cancel: &CancellationToken,
    ) {
        let mut resyncs: Vec<Instant> = Vec::new();
        loop {
            let first = tokio::select! {
                biased;
                _ = cancel.cancelled() => return self.close(1001, "shutdown").await,
                Some(msg) = ctl.recv() => {
                    if self.control(&msg).await.is_err() { return; }
                    continue;
                }
                ev = events.recv() => ev,
            };
            let mut batch = vec![first];
            let mut queued = 0usize;
            while queued < BATCH_BYTES {
                match events.try_recv() {
                    Ok(ev) => {
                        if let Event::Output { data, .. } = &ev {
                            queued += data.len();
                        }
                        batch.push(Ok(ev));
                    }
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        batch.push(Err(broadcast::error::RecvError::Lagged(n)));
                        break;
                    }
                    Err(_) => break,
                }
            }
            for ev in batch {
                let step = match ev {
                    Ok(Event::Output { offset, data }) => {
                        self.push(offset, data);
                        Ok(())
                    }
                    Ok(Event::Exit(code)) => {
                        if self.flush().await.is_ok() {
                            self.exit(code).await;
                        }
                        return;
                    }
                    Ok(Event::Takeover { active, by }) if by != id => match self.flush().await {
                        Ok(()) => {
                            self.control(&TerminalServerMessage::Takeover { active })
                                .await
                        }
                        Err(g) => Err(g),
                    },
                    Ok(Event::Takeover { .. }) => Ok(()),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let now = Instant::now();
                        resyncs.retain(|t| now.duration_since(*t) < RESYNC_WINDOW);
                        resyncs.push(now);
                        if resyncs.len() > MAX_RESYNCS {
                            tracing::info!(session = %session.name, viewer = id, "viewer too slow; closing");
                            return self.close(1008, "too_slow").await;
                        }
                        tracing::debug!(session = %session.name, viewer = id, missed, "viewer lagged; resync");
                        self.pending.clear();
                        self.pending_len = 0;
                        let msg = error_msg("resync", "output was skipped because this viewer fell behind; replaying the scrollback");
                        let (replay, next) = session.snapshot(RESYNC_REPLAY);
                        self.next = next;
                        match self.control(&msg).await {
                            Ok(()) => self.replay(replay).await,
                            Err(g) => Err(g),
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if step.is_err() {
                    return;
                }
            }
            if self.flush().await.is_err() {
                return;
            }
        }
    }
}

/// Turns a byte stream into text without splitting characters: an incomplete sequence at the
/// end of a chunk is held until the next chunk; invalid bytes become U+FFFD.
#[derive(Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn push(&mut self, data: &[u8]) -> String {
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(data);
        let mut out = String::with_capacity(buf.len());
        let mut rest = &buf[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(&String::from_utf8_lossy(valid));
                    match e.error_len() {
                        None => {
                            self.pending = after.to_vec();
                            break;
                        }
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &after[n..];
                        }
                    }
                }
            }
        }
        out
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct ScreenQuery {
    session: Option<String>,
    since: Option<u64>,
}

/// `GET /screen?session=main&since=V`: the session's screen (200), 204 when its version is
/// still `since`, 404 `no_session` when no such session runs.
pub async fn screen_handler(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    query: Result<axum::extract::Query<ScreenQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, crate::error::ApiError> {
    use axum::response::IntoResponse;
    let axum::extract::Query(q) = query.map_err(|e| {
        crate::error::ApiError::bad_request(
            clarateach_core::ErrorCode::InvalidRequest,
            e.body_text(),
        )
    })?;
    let name = q.session.unwrap_or_else(|| "main".into());
    if !valid_session_name(&name) {
        return Err(crate::error::ApiError::bad_request(
            clarateach_core::ErrorCode::BadSession,
            "session must be 1-32 of A-Z a-z 0-9 _ -",
        ));
    }
    let session = state.sessions.get(&name).ok_or_else(|| {
        crate::error::ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            clarateach_core::ErrorCode::NoSession,
            "no such terminal session runs",
        )
    })?;
    Ok(match session.screen(q.since) {
        Some(snap) => axum::Json(snap).into_response(),
        None => axum::http::StatusCode::NO_CONTENT.into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stream_holds_split_characters() {
        let mut d = Utf8Stream::default();
        let e = "é€".as_bytes();
        assert_eq!(d.push(&e[..1]), "");
        assert_eq!(d.push(&e[1..3]), "é");
        assert_eq!(d.push(&e[3..]), "€");
        assert_eq!(d.push(b"a\xffb"), "a\u{FFFD}b");
    }

    #[test]
    fn session_names() {
        assert!(valid_session_name("main"));
        assert!(valid_session_name("tab-2_x"));
        assert!(!valid_session_name(""));
        assert!(!valid_session_name("a/b"));
        assert!(!valid_session_name(&"x".repeat(33)));
    }
}
