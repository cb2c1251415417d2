//! The web UI (React app in `web/`, built to `web/dist` by this crate's build script), embedded
//! in the binary and served as an axum router: hashed assets cached for a year, `index.html`
//! never cached, every other non-API path answered with `index.html` so client-side routes work.
//!
//! The build writes a brotli (`.br`) and a gzip (`.gz`) copy next to every compressible file
//! (`web/scripts/compress.mjs`); a request whose `Accept-Encoding` allows one gets it with
//! `Content-Encoding` and `Vary: Accept-Encoding`, so nothing is compressed per request.
//!
//! Every file is loaded into a map when the router is made, embedded ([`router`]) or read from a
//! directory ([`router_from_dir`], for a UI build with test hooks or a UI developer's own build):
//! a request can only name a key of that map, never a path on disk.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

#[derive(RustEmbed)]
#[folder = "$CLARATEACH_WEB_DIST"]
struct Embedded;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";

/// A precompressed copy of a file, in the encodings the build writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Brotli,
    Gzip,
}

impl Encoding {
    /// Preference order when the client accepts several.
    const ALL: [Encoding; 2] = [Encoding::Brotli, Encoding::Gzip];

    fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Encoding::Brotli => ".br",
            Encoding::Gzip => ".gz",
        }
    }
}

/// One servable file: its bytes, the precompressed copies the build made, and its validators.
struct Asset {
    data: Bytes,
    /// Strong ETag of the uncompressed bytes; an encoded copy's tag adds the encoding.
    tag: String,
    content_type: String,
    encoded: Vec<(Encoding, Bytes)>,
}

/// The files of one UI build, by URL path without the leading `/`.
struct Assets {
    files: HashMap<String, Asset>,
}

impl Assets {
    /// Groups `(path, bytes)` pairs: `x.br`/`x.gz` become copies of `x` when `x` exists.
    fn from_files(files: Vec<(String, Bytes)>) -> Self {
        let mut plain: HashMap<String, Bytes> = HashMap::new();
        let mut copies: Vec<(String, Encoding, Bytes)> = Vec::new();
        for (path, data) in files {
            match Encoding::ALL
                .iter()
                .find_map(|e| path.strip_suffix(e.suffix()).map(|base| (*e, base)))
            {
                Some((enc, base)) => copies.push((base.to_string(), enc, data)),
                None => {
                    plain.insert(path, data);
                }
            }
        }
        let mut map: HashMap<String, Asset> = plain
            .into_iter()
            .map(|(path, data)| {
                let tag = hex(&Sha256::digest(&data)[..16]);
                let content_type = content_type(&path);
                let asset = Asset {
                    data,
                    tag,
                    content_type,
                    encoded: Vec::new(),
                };
                (path, asset)
            })
            .collect();
        for (base, enc, data) in copies {
            if let Some(asset) = map.get_mut(&base) {
                asset.encoded.push((enc, data));
            }
        }
        for asset in map.values_mut() {
            asset
                .encoded
                .sort_by_key(|(e, _)| Encoding::ALL.iter().position(|x| x == e));
        }
        Assets { files: map }
    }

    fn embedded() -> Self {
        let files = Embedded::iter()
            .filter_map(|p| {
                let file = Embedded::get(&p)?;
                let data = match file.data {
                    std::borrow::Cow::Borrowed(b) => Bytes::from_static(b),
                    std::borrow::Cow::Owned(v) => Bytes::from(v),
                };
                Some((p.into_owned(), data))
            })
            .collect();
        Assets::from_files(files)
    }
}

/// Why a UI directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WebDirError {
    #[error("cannot read the web UI directory {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the web UI directory {0} has no index.html (run `npm run build` in web/)")]
    NoIndex(PathBuf),
}

/// Router serving the embedded single-page app. Mount it as the control plane's fallback, after
/// the `/api` routes: `app.fallback_service(clarateach_web::router())`.
pub fn router() -> Router {
    with_assets(Assets::embedded())
}

/// Router serving the UI build in `dir` (read once, now; later changes to `dir` are not seen).
/// Symbolic links inside `dir` are not followed.
pub fn router_from_dir(dir: &Path) -> Result<Router, WebDirError> {
    let mut files = Vec::new();
    read_tree(dir, dir, &mut files)?;
    if !files.iter().any(|(p, _)| p == "index.html") {
        return Err(WebDirError::NoIndex(dir.to_path_buf()));
    }
    Ok(with_assets(Assets::from_files(files)))
}

fn read_tree(root: &Path, dir: &Path, out: &mut Vec<(String, Bytes)>) -> Result<(), WebDirError> {
    fn read(path: &Path) -> impl FnOnce(std::io::Error) -> WebDirError + '_ {
        move |source| WebDirError::Read {
            path: path.to_path_buf(),
            source,
        }
    }
    for entry in std::fs::read_dir(dir).map_err(read(dir))? {
        let entry = entry.map_err(read(dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(read(&path))?;
        if kind.is_dir() {
            read_tree(root, &path, out)?;
        } else if kind.is_file() {
            let Some(rel) = path
                .strip_prefix(root)
                .ok()
                .and_then(|r| r.to_str())
                .map(|r| r.replace(std::path::MAIN_SEPARATOR, "/"))
            else {
                continue;
            };
            let data = std::fs::read(&path).map_err(read(&path))?;
            out.push((rel, Bytes::from(data)));
        }
    }
    Ok(())
}

fn with_assets(assets: Assets) -> Router {
    Router::new().fallback(serve).with_state(Arc::new(assets))
}

/// Whether real UI assets were embedded (false when built with `CLARATEACH_SKIP_WEB_BUILD=1`).
pub fn has_ui() -> bool {
    Embedded::iter().any(|p| p.starts_with("assets/"))
}

async fn serve(State(assets): State<Arc<Assets>>, req: Request) -> Response {
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
    let headers = req.headers();
    if !path.is_empty() && !path.ends_with('/') {
        if let Some(file) = assets.files.get(path) {
            let cache = if path.starts_with("assets/") {
                IMMUTABLE
            } else {
                NO_CACHE
            };
            return respond(file, cache, headers);
        }
        // A missing hashed asset must not turn into HTML (the browser would run it as a script).
        if path.starts_with("assets/") || looks_like_file(path) {
            return error(StatusCode::NOT_FOUND, "not_found", "No such file.");
        }
    }
    match assets.files.get("index.html") {
        Some(file) => respond(file, NO_CACHE, headers),
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

fn respond(file: &Asset, cache: &'static str, req: &HeaderMap) -> Response {
    let accepted = accepted_encodings(req);
    let chosen = file
        .encoded
        .iter()
        .find(|(enc, _)| accepted.contains(enc))
        .map(|(enc, data)| (Some(*enc), data))
        .unwrap_or((None, &file.data));
    let etag = match chosen.0 {
        Some(enc) => format!("\"{}-{}\"", file.tag, enc.token()),
        None => format!("\"{}\"", file.tag),
    };
    let not_modified = req
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut res = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(Body::from(chosen.1.clone()));
        if let Ok(v) = HeaderValue::from_str(&file.content_type) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        if let Some(enc) = chosen.0 {
            r.headers_mut().insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(enc.token()),
            );
        }
        r
    };
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !file.encoded.is_empty() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    res
}

/// The precompressed encodings `Accept-Encoding` allows (RFC 9110 §12.5.3): a coding listed
/// with `q=0` is refused, `*` stands for every coding not listed.
fn accepted_encodings(req: &HeaderMap) -> Vec<Encoding> {
    let mut listed: Vec<(String, bool)> = Vec::new();
    for value in req.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            if coding.is_empty() {
                continue;
            }
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            listed.push((coding, !refused));
        }
    }
    let star = listed.iter().find(|(c, _)| c == "*").map(|(_, ok)| *ok);
    Encoding::ALL
        .into_iter()
        .filter(|enc| {
            let named = listed
                .iter()
                .find(|(c, _)| c == enc.token() || (*enc == Encoding::Gzip && c == "x-gzip"));
            match named {
                Some((_, ok)) => *ok,
                None => star.unwrap_or(false),
            }
        })
        .collect()
}

fn content_type(path: &str) -> String {
    let base = match path.rsplit_once('.').map(|(_, e)| e) {
        Some("js" | "mjs") => "text/javascript".to_string(),
        Some("wasm") => "application/wasm".to_string(),
        _ => mime_guess::from_path(path)
            .first_or_octet_stream()
            .essence_str()
            .to_string(),
    };
    if base.starts_with("text/") || base == "application/json" || base == "image/svg+xml" {
        format!("{base}; charset=utf-8")
    } else {
        base
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(accept).unwrap(),
        );
        h
    }

    #[test]
    fn accept_encoding_table() {
        use Encoding::*;
        let cases: &[(&str, &[Encoding])] = &[
            ("gzip, deflate, br, zstd", &[Brotli, Gzip]),
            ("gzip", &[Gzip]),
            ("br;q=0, gzip;q=0.5", &[Gzip]),
            ("*", &[Brotli, Gzip]),
            ("*;q=0", &[]),
            ("br;q=0, *", &[Gzip]),
            ("identity", &[]),
            ("GZIP ; Q=0.3", &[Gzip]),
            ("x-gzip", &[Gzip]),
            ("", &[]),
        ];
        for (accept, want) in cases {
            assert_eq!(&accepted_encodings(&headers(accept)), want, "{accept:?}");
        }
        assert!(accepted_encodings(&HeaderMap::new()).is_empty());
    }

    #[test]
    fn copies_attach_to_their_file_and_orphans_are_plain_files() {
        let a = Assets::from_files(vec![
            ("assets/a.js".into(), Bytes::from_static(b"plain")),
            ("assets/a.js.gz".into(), Bytes::from_static(b"gz")),
            ("assets/a.js.br".into(), Bytes::from_static(b"br")),
            ("orphan.txt.br".into(), Bytes::from_static(b"x")),
        ]);
        let js = &a.files["assets/a.js"];
        assert_eq!(
            js.encoded.iter().map(|(e, _)| *e).collect::<Vec<_>>(),
            vec![Encoding::Brotli, Encoding::Gzip]
        );
        assert!(!a.files.contains_key("assets/a.js.gz"));
        assert!(!a.files.contains_key("orphan.txt.br"));
        assert!(!a.files.contains_key("orphan.txt"));
    }
}
