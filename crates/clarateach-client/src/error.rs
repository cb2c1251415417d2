//! What can go wrong talking to the control plane, split so callers can tell "the server is not
//! there" from "the server said no" from "the server said something we cannot read".

use std::error::Error as StdError;
use std::io;

/// Error of every client call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL (or a URL built from it) is not a usable http(s)/ws(s) URL.
    #[error("invalid control plane URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// No connection could be made (refused, DNS failure, connect timeout).
    #[error("cannot reach the control plane at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    /// The server did not answer in time.
    #[error("the control plane at {url} did not answer in time")]
    Timeout {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    /// The connection broke after it was made (reset, truncated body, ...).
    #[error("request to {url} failed")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    /// The server answered with an error in the API's `{code, message}` shape.
    #[error("{message} ({code})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },

    /// The server answered with an error status but not in the API's error shape (a proxy, a
    /// different service on that port, ...).
    #[error("{url} answered HTTP {status}: {body}")]
    Http {
        url: String,
        status: u16,
        body: String,
    },

    /// A success response whose body is not what the route promises.
    #[error("unexpected response body from {url}")]
    Decode {
        url: String,
        #[source]
        source: serde_json::Error,
    },

    /// The terminal WebSocket failed (handshake refused, connection lost, protocol error).
    #[error("terminal WebSocket to {url} failed")]
    WebSocket {
        url: String,
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },

    /// A terminal did not print what was expected before a deadline or before it closed.
    #[error("terminal output never contained {expected:?}: {reason}; last output: {tail:?}")]
    TerminalExpect {
        expected: String,
        reason: String,
        tail: String,
    },

    /// Writing a download (export) to its destination failed.
    #[error("cannot write the download")]
    Io(#[source] io::Error),
}

impl ClientError {
    /// HTTP status of an answered request, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Http { status, .. } => Some(*status),
            Self::WebSocket { source, .. } => match source.as_ref() {
                tokio_tungstenite::tungstenite::Error::Http(resp) => Some(resp.status().as_u16()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Machine-readable API error code (`workshop_not_found`, ...), if the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True when the server could not be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }

    /// The error as one line, with the innermost cause appended
    /// (`cannot reach the control plane at http://...: connection refused`), for CLIs that must
    /// not print a multi-line chain.
    pub fn summary(&self) -> String {
        match self.source() {
            Some(source) => format!("{self}: {}", root_reason(source)),
            None => self.to_string(),
        }
    }
}

/// A short description of the innermost cause, with OS errors in plain words.
fn root_reason(err: &(dyn StdError + 'static)) -> String {
    let mut current = err;
    let mut io_kind = None;
    loop {
        if let Some(io) = current.downcast_ref::<io::Error>() {
            io_kind = Some(io.kind());
        }
        match current.source() {
            Some(next) => current = next,
            None => break,
        }
    }
    match io_kind {
        Some(io::ErrorKind::ConnectionRefused) => "connection refused".to_string(),
        Some(io::ErrorKind::ConnectionReset) => "connection reset".to_string(),
        Some(io::ErrorKind::TimedOut) => "timed out".to_string(),
        _ => current.to_string(),
    }
}

/// Turns a transport-level reqwest error into the matching variant. `url` is the request's URL;
/// an unreachable server is named by the URL the caller configured (`base`), which is what the
/// user typed.
pub(crate) fn from_reqwest_at(base: &str, url: &str, source: reqwest::Error) -> ClientError {
    if source.is_connect() {
        return ClientError::Unreachable {
            url: base.trim_end_matches('/').to_string(),
            source,
        };
    }
    from_reqwest(url, source)
}

/// Turns a reqwest error on an established request into the matching variant.
pub(crate) fn from_reqwest(url: &str, source: reqwest::Error) -> ClientError {
    let url = url.to_string();
    if source.is_connect() {
        ClientError::Unreachable { url, source }
    } else if source.is_timeout() {
        ClientError::Timeout { url, source }
    } else {
        ClientError::Transport { url, source }
    }
}

/// Turns a failed response's status and body into `Api` when the body has the `{code, message}`
/// shape, `Http` otherwise.
pub(crate) fn from_error_body(url: &str, status: u16, body: &[u8]) -> ClientError {
    if let Ok(b) = serde_json::from_slice::<clarateach_core::ErrorBody>(body) {
        return ClientError::Api {
            status,
            code: b.code,
            message: b.message,
        };
    }
    let text = String::from_utf8_lossy(body);
    let mut line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 200 {
        line = line.chars().take(200).collect::<String>() + "...";
    }
    if line.is_empty() {
        line = "(empty body)".to_string();
    }
    ClientError::Http {
        url: url.to_string(),
        status,
        body: line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_shaped_bodies_become_api_errors() {
        let body = br#"{"code":"workshop_not_found","message":"workshop ws-abc123 not found"}"#;
        let e = from_error_body("http://x/api/workshops/ws-abc123", 404, body);
        assert_eq!(e.status(), Some(404));
        assert_eq!(e.code(), Some("workshop_not_found"));
        assert_eq!(
            e.summary(),
            "workshop ws-abc123 not found (workshop_not_found)"
        );
    }

    #[test]
    fn other_bodies_become_http_errors_on_one_line() {
        let e = from_error_body("http://x/api", 502, b"<html>\n  Bad gateway\n</html>");
        assert_eq!(e.code(), None);
        assert_eq!(
            e.summary(),
            "http://x/api answered HTTP 502: <html> Bad gateway </html>"
        );
        let e = from_error_body("http://x/api", 500, b"");
        assert!(e.summary().ends_with("(empty body)"));
        let e = from_error_body("http://x/api", 500, "é".repeat(500).as_bytes());
        assert!(e.summary().chars().count() < 260);
    }
}
