//! A terminal WebSocket client speaking api/ws-protocol.md: JSON control frames out
//! (`input`, `resize`), raw PTY bytes (or `output` JSON) and control frames in. Used by tests and
//! benchmarks against the gateway (`/api/session/terminal`) or a daemon's `/terminal` directly.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use clarateach_core::{TerminalClientMessage, TerminalServerMessage};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{HeaderValue, AUTHORIZATION};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::ClientError;

/// Who is attaching and how (query parameters of the terminal route).
#[derive(Debug, Clone, Default)]
pub struct TerminalOptions {
    /// Session name (`main` when unset).
    pub session: Option<String>,
    /// `interactive`, `watch` or `takeover` (the server's default when unset).
    pub mode: Option<String>,
    /// Ask for output as `{"type":"output"}` text frames instead of binary frames.
    pub json_output: bool,
    /// Instructor attaching to a seat: the workshop and seat number.
    pub workshop_id: Option<String>,
    pub seat: Option<u32>,
}

impl TerminalOptions {
    /// Query pairs for these options (without the token).
    pub fn query_pairs(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(s) = &self.session {
            q.push(("session", s.clone()));
        }
        if let Some(m) = &self.mode {
            q.push(("mode", m.clone()));
        }
        if self.json_output {
            q.push(("format", "json".to_string()));
        }
        if let Some(w) = &self.workshop_id {
            q.push(("workshop_id", w.clone()));
        }
        if let Some(s) = self.seat {
            q.push(("seat", s.to_string()));
        }
        q
    }
}

/// What arrives from the terminal.
#[derive(Debug, Clone, PartialEq)]
pub enum TerminalEvent {
    /// PTY output (binary frames, or the data of `output` frames in JSON format).
    Output(Bytes),
    /// A control frame (`attached`, `exit`, `error`, `takeover`).
    Control(TerminalServerMessage),
    /// A text frame this client does not know (e.g. `notice`), verbatim.
    Text(String),
    /// The server closed the connection.
    Closed { code: Option<u16>, reason: String },
}

/// An open terminal connection over any byte stream (TCP, TLS-less, or a Unix socket).
pub struct Terminal<S> {
    ws: WebSocketStream<S>,
    url: String,
}

impl Terminal<MaybeTlsStream<TcpStream>> {
    /// Connects to a `ws://` URL, with an optional `Authorization: Bearer` header.
    pub async fn connect(url: &str, bearer: Option<&str>) -> Result<Self, ClientError> {
        let request = request(url, bearer)?;
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| ws_error(url, e))?;
        Ok(Self {
            ws,
            url: url.to_string(),
        })
    }
}

impl Terminal<UnixStream> {
    /// Connects to a daemon listening on a Unix socket; `path_and_query` is e.g. `/terminal`.
    pub async fn connect_unix(
        socket: &Path,
        path_and_query: &str,
        bearer: Option<&str>,
    ) -> Result<Self, ClientError> {
        let url = format!("ws://localhost{path_and_query}");
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|e| ws_error(&url, e.into()))?;
        let (ws, _) = tokio_tungstenite::client_async(request(&url, bearer)?, stream)
            .await
            .map_err(|e| ws_error(&url, e))?;
        Ok(Self { ws, url })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Terminal<S> {
    /// Sends keystrokes (`{"type":"input"}`).
    pub async fn send_input(&mut self, data: &str) -> Result<(), ClientError> {
        self.send(&TerminalClientMessage::Input {
            data: data.to_string(),
        })
        .await
    }

    /// Resizes the PTY (`{"type":"resize"}`).
    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<(), ClientError> {
        self.send(&TerminalClientMessage::Resize { cols, rows })
            .await
    }

    /// The next event; `None` once the stream has ended after a close.
    pub async fn next_event(&mut self) -> Result<Option<TerminalEvent>, ClientError> {
        loop {
            let msg = match self.ws.next().await {
                None => return Ok(None),
                Some(m) => m.map_err(|e| ws_error(&self.url, e))?,
            };
            return Ok(Some(match msg {
                Message::Binary(b) => TerminalEvent::Output(b),
                Message::Text(t) => match serde_json::from_str::<TerminalServerMessage>(t.as_str())
                {
                    Ok(TerminalServerMessage::Output { data }) => {
                        TerminalEvent::Output(Bytes::from(data))
                    }
                    Ok(control) => TerminalEvent::Control(control),
                    Err(_) => TerminalEvent::Text(t.as_str().to_string()),
                },
                Message::Close(frame) => TerminalEvent::Closed {
                    code: frame.as_ref().map(|f| u16::from(f.code)),
                    reason: frame
                        .map(|f| f.reason.as_str().to_string())
                        .unwrap_or_default(),
                },
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            }));
        }
    }

    /// Reads until the output seen so far contains `needle`, and returns all of it. Fails when
    /// `timeout` passes or the terminal closes first, with the tail of what was seen.
    pub async fn read_until(
        &mut self,
        needle: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if contains(&seen, needle) {
                return Ok(seen);
            }
            let reason = match tokio::time::timeout_at(deadline, self.next_event()).await {
                Err(_) => format!("nothing matched within {} ms", timeout.as_millis()),
                Ok(Ok(Some(TerminalEvent::Output(b)))) => {
                    seen.extend_from_slice(&b);
                    continue;
                }
                Ok(Ok(Some(TerminalEvent::Closed { code, reason }))) => {
                    format!("closed ({code:?} {reason})")
                }
                Ok(Ok(None)) => "closed".to_string(),
                Ok(Ok(Some(_))) => continue,
                Ok(Err(e)) => return Err(e),
            };
            let tail_start = seen.len().saturating_sub(300);
            return Err(ClientError::TerminalExpect {
                expected: String::from_utf8_lossy(needle).into_owned(),
                reason,
                tail: String::from_utf8_lossy(&seen[tail_start..]).into_owned(),
            });
        }
    }

    /// Sends a close frame and waits for the server's.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.ws
            .close(None)
            .await
            .map_err(|e| ws_error(&self.url, e))
    }

    /// The underlying WebSocket, for callers that need raw frames.
    pub fn into_inner(self) -> WebSocketStream<S> {
        self.ws
    }

    async fn send(&mut self, msg: &TerminalClientMessage) -> Result<(), ClientError> {
        let text = serde_json::to_string(msg).map_err(|source| ClientError::Decode {
            url: self.url.clone(),
            source,
        })?;
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| ws_error(&self.url, e))
    }
}

impl crate::Client {
    /// `ws(s)://.../api/session/terminal?...` with the options; never a token (tokens in URLs
    /// are refused: [`crate::Client::terminal`] sends it in the Authorization header).
    pub fn terminal_url(&self, opts: &TerminalOptions) -> Result<reqwest::Url, ClientError> {
        let mut url = self.url(&["session", "terminal"])?;
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme)
            .map_err(|()| ClientError::InvalidUrl {
                url: url.to_string(),
                reason: "cannot use ws scheme".into(),
            })?;
        let pairs = opts.query_pairs();
        if !pairs.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in pairs {
                q.append_pair(k, &v);
            }
        }
        Ok(url)
    }

    /// Opens a seat's terminal through the control plane's gateway, authorised by this client's
    /// token (learner or instructor) in the Authorization header of the upgrade.
    pub async fn terminal(
        &self,
        opts: &TerminalOptions,
    ) -> Result<Terminal<MaybeTlsStream<TcpStream>>, ClientError> {
        let url = self.terminal_url(opts)?;
        Terminal::connect(url.as_str(), self.token()).await
    }

    /// Like [`crate::Client::terminal`], with a one-time ticket in the URL instead of the
    /// header (what a browser does; here for tests and tools that want the same path).
    pub async fn terminal_with_ticket(
        &self,
        opts: &TerminalOptions,
        req: &clarateach_core::TicketRequest,
    ) -> Result<Terminal<MaybeTlsStream<TcpStream>>, ClientError> {
        let ticket = self.session_ticket(req).await?;
        let mut url = self.terminal_url(opts)?;
        url.query_pairs_mut().append_pair("ticket", &ticket.ticket);
        Terminal::connect(url.as_str(), None).await
    }
}

fn request(
    url: &str,
    bearer: Option<&str>,
) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, ClientError> {
    let mut req = url.into_client_request().map_err(|e| ws_error(url, e))?;
    if let Some(token) = bearer {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| {
            ClientError::InvalidUrl {
                url: url.to_string(),
                reason: e.to_string(),
            }
        })?;
        req.headers_mut().insert(AUTHORIZATION, value);
    }
    Ok(req)
}

fn ws_error(url: &str, e: tokio_tungstenite::tungstenite::Error) -> ClientError {
    ClientError::WebSocket {
        url: url.to_string(),
        source: Box::new(e),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
