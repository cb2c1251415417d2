//! What a seat daemon's answer may look like by the time it reaches a browser on the control
//! plane's origin. The daemon runs as the learner's uid, so a learner can replace or tamper with
//! it: its status line and headers are data, never instructions. The gateway keeps only an
//! allow-list of headers, decides `Content-Type` itself from what was asked (JSON for API answers,
//! `application/octet-stream` as an attachment for raw file bytes) and adds
//! `Content-Security-Policy: sandbox` and `nosniff`, so even a page the learner wrote that a
//! browser is navigated to cannot run script where the instructor's token lives.

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};

/// How the gateway labels an answer's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyKind {
    /// Every API answer of the daemon (listings, `{content, encoding}`, run results, errors).
    Json,
    /// Raw file bytes (`GET files/{path}` with `Accept: application/octet-stream`).
    Download,
}

impl BodyKind {
    /// Decided from the request alone, before the daemon says anything.
    pub(super) fn of_request(method: &Method, rest: &str, headers: &HeaderMap) -> Self {
        let raw = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/octet-stream"));
        if raw && rest.starts_with("files/") && matches!(*method, Method::GET | Method::HEAD) {
            Self::Download
        } else {
            Self::Json
        }
    }
}

/// Headers of a WebSocket handshake answer that the browser needs; nothing else survives a `101`.
const UPGRADE_HEADERS: [HeaderName; 5] = [
    header::UPGRADE,
    header::CONNECTION,
    header::SEC_WEBSOCKET_ACCEPT,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_EXTENSIONS,
];

/// The status a browser sees. A daemon's `401`/`407` would make the web UI think the learner's
/// own token failed, and a stray `1xx` or `101` outside an upgrade is not a real answer: both
/// become `502`. Everything else (2xx, 3xx without its `Location`, 4xx, 5xx) passes.
pub(super) fn status(from_daemon: StatusCode, upgraded: bool) -> StatusCode {
    match from_daemon.as_u16() {
        101 if upgraded => from_daemon,
        100..=199 | 401 | 407 => StatusCode::BAD_GATEWAY,
        _ => from_daemon,
    }
}

/// Builds the headers of a plain (non-upgrade) answer: only `Content-Length` is kept from the
/// daemon; everything else is the gateway's.
pub(super) fn headers(from_daemon: &HeaderMap, kind: BodyKind) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(len) = from_daemon.get(header::CONTENT_LENGTH) {
        h.insert(header::CONTENT_LENGTH, len.clone());
    }
    match kind {
        BodyKind::Json => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        BodyKind::Download => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment"),
            );
        }
    }
    common(&mut h);
    h
}

/// Builds the headers of a `101 Switching Protocols` answer.
pub(super) fn upgrade_headers(from_daemon: &HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::new();
    for name in &UPGRADE_HEADERS {
        for v in from_daemon.get_all(name) {
            h.append(name.clone(), v.clone());
        }
    }
    common(&mut h);
    h
}

fn common(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hostile() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("content-type", "text/html"),
            ("content-length", "42"),
            ("set-cookie", "session=stolen; Path=/"),
            ("location", "https://evil.example/"),
            ("content-security-policy", "default-src *"),
            ("access-control-allow-origin", "*"),
            ("refresh", "0; url=https://evil.example/"),
            ("link", "<https://evil.example/x.js>; rel=preload"),
            ("x-custom", "1"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_tampered_daemon_cannot_choose_headers() {
        let h = headers(&hostile(), BodyKind::Json);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "content-length",
                "content-type",
                "content-security-policy",
                "x-content-type-options",
                "cache-control"
            ]
        );
        assert_eq!(h[header::CONTENT_TYPE], "application/json");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], "sandbox");
        let d = headers(&hostile(), BodyKind::Download);
        assert_eq!(d[header::CONTENT_TYPE], "application/octet-stream");
        assert_eq!(d[header::CONTENT_DISPOSITION], "attachment");
    }

    #[test]
    fn upgrade_answers_keep_only_the_handshake() {
        let mut from = hostile();
        from.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        from.insert(
            header::SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_static("abc"),
        );
        let h = upgrade_headers(&from);
        assert_eq!(h[header::SEC_WEBSOCKET_ACCEPT], "abc");
        assert!(h.get(header::SET_COOKIE).is_none());
        assert!(h.get(header::CONTENT_TYPE).is_none());
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], "sandbox");
    }

    #[test]
    fn statuses() {
        assert_eq!(status(StatusCode::OK, false), StatusCode::OK);
        assert_eq!(status(StatusCode::NOT_FOUND, false), StatusCode::NOT_FOUND);
        assert_eq!(
            status(StatusCode::UNAUTHORIZED, false),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            status(StatusCode::SWITCHING_PROTOCOLS, false),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            status(StatusCode::SWITCHING_PROTOCOLS, true),
            StatusCode::SWITCHING_PROTOCOLS
        );
    }

    #[test]
    fn only_raw_file_reads_are_downloads() {
        let mut raw = HeaderMap::new();
        raw.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/octet-stream"),
        );
        assert_eq!(
            BodyKind::of_request(&Method::GET, "files/a.html", &raw),
            BodyKind::Download
        );
        assert_eq!(
            BodyKind::of_request(&Method::GET, "files/a.html", &HeaderMap::new()),
            BodyKind::Json
        );
        assert_eq!(
            BodyKind::of_request(&Method::PUT, "files/a.html", &raw),
            BodyKind::Json
        );
        assert_eq!(
            BodyKind::of_request(&Method::POST, "run", &raw),
            BodyKind::Json
        );
    }
}
