//! The web UI (React app in `web/`, built to `web/dist` by this crate's build script), embedded
//! in the binary and served as an axum router: hashed assets cached for a year, `index.html`
//! never cached, every other non-API path answered with `index.html` so client-side routes work.

#![forbid(unsafe_code)]

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rust_embed::{EmbeddedFile, RustEmbed};

#[derive(RustEmbed)]
#[folder = "$CLARATEACH_WEB_DIST"]
struct Assets;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";

/// Router serving the single-page app. Mount it as the control plane's fallback, after the
/// `/api` routes: `app.fallback_service(clarateach_web::router())`.
pub fn router() -> Router {
    Router::new().fallback(serve)
}

/// Whether real UI assets were embedded (false when built with `CLARATEACH_SKIP_WEB_BUILD=1`).
pub fn has_ui() -> bool {
    Assets::iter().any(|p| p.starts_with("assets/"))
}

async fn serve(req: Request) -> Response {
    let method = req.method();
    if method != Method::GET && method != Method::HEAD {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Only GET and HEAD are served here.",
        );
    }
    let path = req.uri().path().trim_start_matches('/');
    if path == "api" || path.starts_with("api/") {
        return error(StatusCode::NOT_FOUND, "not_found", "No such API route.");
    }
    let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
    if !path.is_empty() && !path.ends_with('/') {
        if let Some(file) = Assets::get(path) {
            let cache = if path.starts_with("assets/") {
                IMMUTABLE
            } else {
                NO_CACHE
            };
            return respond(path, file, cache, if_none_match.as_ref());
        }
        // A missing hashed asset must not turn into HTML (the browser would run it as a script).
        if path.starts_with("assets/") || looks_like_file(path) {
            return error(StatusCode::NOT_FOUND, "not_found", "No such file.");
        }
    }
    match Assets::get("index.html") {
        Some(file) => respond("index.html", file, NO_CACHE, if_none_match.as_ref()),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "The web UI is not embedded in this build.",
        ),
    }
}

/// `/favicon.ico` or `/robots.txt` asked for but absent: a 404 beats the SPA shell.
fn looks_like_file(path: &str) -> bool {
    path.rsplit('/').next().is_some_and(|last| {
        last.rsplit_once('.').is_some_and(|(stem, ext)| {
            !stem.is_empty()
                && (1..=5).contains(&ext.len())
                && ext.bytes().all(|b| b.is_ascii_alphanumeric())
        })
    })
}

fn respond(
    path: &str,
    file: EmbeddedFile,
    cache: &'static str,
    if_none_match: Option<&HeaderValue>,
) -> Response {
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    let mut res = if if_none_match.is_some_and(|v| v.as_bytes() == etag.as_bytes()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(Body::from(file.data.into_owned()));
        if let Ok(v) = HeaderValue::from_str(&content_type(path, file.metadata.mimetype())) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    };
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    res
}

fn content_type(path: &str, guessed: &str) -> String {
    let base = match path.rsplit_once('.').map(|(_, e)| e) {
        Some("js" | "mjs") => "text/javascript",
        Some("wasm") => "application/wasm",
        _ => guessed,
    };
    if base.starts_with("text/") || base == "application/json" || base == "image/svg+xml" {
        format!("{base}; charset=utf-8")
    } else {
        base.to_string()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "code": code, "message": message });
    (
        status,
        [(header::CACHE_CONTROL, NO_CACHE)],
        axum::Json(body),
    )
        .into_response()
}
