//! A small HTTP/1 client for one sandbox's workspace daemon (Unix socket for the sandbox backend,
//! TCP for microVMs), with the daemon's bearer token: `run` (buffered, or streamed line by line
//! as the command writes), file reads and writes, health.
//! One connection per request: the daemon is local, a connect costs microseconds.

use bytes::Bytes;
use clarateach_core::{RunEvent, RunRequest, RunResponse, RUN_STREAM_MEDIA_TYPE};
use clarateach_isolation::{DaemonAddr, DaemonEndpoint};
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// Why a daemon request failed.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot connect to the sandbox's daemon")]
    Connect(#[source] std::io::Error),
    #[error("HTTP exchange with the sandbox's daemon failed")]
    Http(#[source] hyper::Error),
    #[error("invalid request to the daemon")]
    Build(#[source] http::Error),
    #[error("the daemon refused the request ({status}, {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("the daemon's answer is not what was expected")]
    Decode(#[source] serde_json::Error),
    #[error("the daemon's run stream ended before the command's exit")]
    StreamEnded,
}

impl DaemonError {
    /// The daemon's error code, when it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A connection to a daemon: a Unix socket or TCP stream.
pub trait DaemonIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> DaemonIo for T {}

/// A client for one daemon.
#[derive(Debug, Clone)]
pub struct Daemon {
    ep: DaemonEndpoint,
}

impl Daemon {
    pub fn new(ep: DaemonEndpoint) -> Self {
        Self { ep }
    }

    pub fn endpoint(&self) -> &DaemonEndpoint {
        &self.ep
    }

    /// A fresh connection to the daemon (for protocols of its own, e.g. a terminal WebSocket).
    pub async fn stream(&self) -> Result<Box<dyn DaemonIo>, DaemonError> {
        Ok(match &self.ep.addr {
            DaemonAddr::Unix(path) => Box::new(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(DaemonError::Connect)?,
            ),
            DaemonAddr::Tcp(sa) => {
                let s = tokio::net::TcpStream::connect(sa)
                    .await
                    .map_err(DaemonError::Connect)?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
        })
    }

    /// One request; returns the answer with its body still to read.
    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        accept: Option<&str>,
        body: Bytes,
    ) -> Result<http::Response<hyper::body::Incoming>, DaemonError> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "workspace")
            .header(header::AUTHORIZATION, format!("Bearer {}", self.ep.token));
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        let req = req.body(Full::new(body)).map_err(DaemonError::Build)?;
        let io = self.stream().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(DaemonError::Http)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "daemon connection ended with an error");
            }
        });
        sender.send_request(req).await.map_err(DaemonError::Http)
    }

    /// One request; returns the status and the whole body.
    async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        accept: Option<&str>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), DaemonError> {
        let resp = self.send(method, path, content_type, accept, body).await?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(DaemonError::Http)?
            .to_bytes();
        Ok((status, body))
    }

    /// The body of a 2xx answer, or the daemon's `{code, message}` as an error.
    async fn ok(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        accept: Option<&str>,
        body: Bytes,
    ) -> Result<Bytes, DaemonError> {
        let (status, body) = self
            .request(method, path, content_type, accept, body)
            .await?;
        if status.is_success() {
            return Ok(body);
        }
        Err(refused(status, &body))
    }

    /// `GET /health` answers.
    pub async fn healthy(&self) -> bool {
        matches!(
            self.request(Method::GET, "/health", None, None, Bytes::new()).await,
            Ok((s, _)) if s.is_success()
        )
    }

    /// `POST /run`.
    pub async fn run(&self, req: &RunRequest) -> Result<RunResponse, DaemonError> {
        let body = serde_json::to_vec(req).map_err(DaemonError::Decode)?;
        let out = self
            .ok(
                Method::POST,
                "/run",
                Some("application/json"),
                None,
                body.into(),
            )
            .await?;
        serde_json::from_slice(&out).map_err(DaemonError::Decode)
    }

    /// `POST /run` streamed: `on_event` gets each stdout and stderr chunk as the command writes
    /// it; returns the final `exit` event.
    pub async fn run_stream(
        &self,
        req: &RunRequest,
        mut on_event: impl FnMut(&RunEvent),
    ) -> Result<RunEvent, DaemonError> {
        let body = serde_json::to_vec(req).map_err(DaemonError::Decode)?;
        let resp = self
            .send(
                Method::POST,
                "/run",
                Some("application/json"),
                Some(RUN_STREAM_MEDIA_TYPE),
                body.into(),
            )
            .await?;
        let status = resp.status();
        let streamed = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(RUN_STREAM_MEDIA_TYPE));
        let mut body = resp.into_body();
        if !status.is_success() {
            let all = body.collect().await.map_err(DaemonError::Http)?.to_bytes();
            return Err(refused(status, &all));
        }
        if !streamed {
            // A daemon from before streamed runs (e.g. in an older microVM guest image)
            // answers the whole run at its end: hand it on in one piece.
            let all = body.collect().await.map_err(DaemonError::Http)?.to_bytes();
            let r: RunResponse = serde_json::from_slice(&all).map_err(DaemonError::Decode)?;
            for ev in [
                RunEvent::Stdout { data: r.stdout },
                RunEvent::Stderr { data: r.stderr },
            ] {
                if matches!(&ev, RunEvent::Stdout { data } | RunEvent::Stderr { data } if !data.is_empty())
                {
                    on_event(&ev);
                }
            }
            return Ok(RunEvent::Exit {
                exit_code: r.exit_code,
                timed_out: r.timed_out,
                duration_ms: r.duration_ms,
                truncated: r.truncated,
            });
        }
        let mut pending: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(DaemonError::Http)?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            pending.extend_from_slice(data);
            while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                let ev: RunEvent =
                    serde_json::from_slice(&line[..nl]).map_err(DaemonError::Decode)?;
                if matches!(ev, RunEvent::Exit { .. }) {
                    return Ok(ev);
                }
                on_event(&ev);
            }
        }
        Err(DaemonError::StreamEnded)
    }

    /// `PUT /files/{path}` with the raw bytes (`path` relative to `/workspace`).
    pub async fn write_file(&self, path: &str, data: Vec<u8>) -> Result<(), DaemonError> {
        let uri = format!("/files/{}", encode_path(path));
        self.ok(
            Method::PUT,
            &uri,
            Some("application/octet-stream"),
            None,
            data.into(),
        )
        .await
        .map(|_| ())
    }

    /// `GET /files/{path}` as raw bytes.
    pub async fn read_file(&self, path: &str) -> Result<Bytes, DaemonError> {
        let uri = format!("/files/{}", encode_path(path));
        self.ok(
            Method::GET,
            &uri,
            None,
            Some("application/octet-stream"),
            Bytes::new(),
        )
        .await
    }
}

/// The daemon's `{code, message}` answer as an error.
fn refused(status: StatusCode, body: &[u8]) -> DaemonError {
    let err: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |k: &str| {
        err.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    DaemonError::Refused {
        status: status.as_u16(),
        code: field("code"),
        message: field("message"),
    }
}

/// Percent-encodes a relative path for a URI, keeping `/` as the separator.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.trim_start_matches('/').bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_for_the_uri() {
        assert_eq!(encode_path("/a b/c?.txt"), "a%20b/c%3F.txt");
        assert_eq!(encode_path("dir/ü"), "dir/%C3%BC");
    }
}
