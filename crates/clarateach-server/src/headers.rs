//! Browser hardening headers on every answer the control plane gives: UI pages, API answers,
//! errors and 404s alike, so the instructor dashboard cannot be framed (clickjacked into Stop or
//! Delete) and no injected markup can load script from elsewhere.
//!
//! Each header is set only when the handler did not set it: the session gateway answers with its
//! own `Content-Security-Policy: sandbox` for files it serves from a seat, and that must win.

use axum::extract::Request;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The UI's policy. Monaco runs its language services in web workers (`worker-src blob:` for the
/// ones it spawns from blobs) and, like xterm.js, sets inline styles; no inline script is allowed.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The headers and the values they get when absent.
pub fn defaults() -> [(HeaderName, HeaderValue); 4] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ]
}

/// Middleware: adds [`defaults`] to the answer, keeping any the handler set.
pub async fn harden(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    for (name, value) in defaults() {
        if !h.contains_key(&name) {
            h.insert(name, value);
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    #[tokio::test]
    async fn adds_headers_and_keeps_a_handlers_own_csp() {
        let app = Router::new()
            .route("/plain", get(|| async { "x" }))
            .route(
                "/own",
                get(|| async { ([(header::CONTENT_SECURITY_POLICY, "sandbox")], "x") }),
            )
            .layer(axum::middleware::from_fn(harden));
        let get = |p: &'static str| {
            app.clone().oneshot(
                Request::get(p)
                    .body(axum::body::Body::empty())
                    .expect("req"),
            )
        };
        let plain = get("/plain").await.expect("plain");
        for (name, value) in defaults() {
            assert_eq!(plain.headers().get(&name), Some(&value), "{name}");
        }
        let own = get("/own").await.expect("own");
        assert_eq!(own.headers()[header::CONTENT_SECURITY_POLICY], "sandbox");
        assert_eq!(own.headers()[header::X_FRAME_OPTIONS], "DENY");
        let missing = get("/nope").await.expect("404");
        assert_eq!(missing.status(), 404);
        assert_eq!(missing.headers()[header::CONTENT_SECURITY_POLICY], CSP);
    }
}
