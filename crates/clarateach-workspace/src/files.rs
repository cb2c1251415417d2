//! The file API: list, read, write, delete, rename, mkdir, all through [`crate::fsroot::Root`].
//!
//! File system calls block, so each runs on tokio's blocking pool.
//!
//! Conditional writes, so a writer that decided from what it read (the control plane's
//! broadcast, which merges with the learner's file) never overwrites an edit made since: a read
//! answers `ETag: "<sha256 of the content>"`; a `PUT` with `If-Match: "<sha256>"` (or `*`:
//! "must exist") or `If-None-Match: *` ("must not exist") is answered 412 `file_changed` and
//! changes nothing when the file is not so. The new content is staged beside the file first,
//! then the current file is hashed and the temp file renamed over it; every change this daemon
//! makes to the workspace holds one lock ([`CHANGES`]), so no other request of the daemon can
//! land between that check and the rename. (The learner's own programs do not take the lock:
//! their write in the microseconds between check and rename is not seen, as with any
//! compare-and-swap over a POSIX file; a write during the writer's round trip is.)

use axum::body::Body;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use bytes::Bytes;
use clarateach_core::ErrorCode;
use clarateach_core::{
    ListFilesResponse, MkdirRequest, ReadFileResponse, RenameRequest, SuccessResponse,
    WriteFileRequest,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{parse_json, parse_raw, ApiError};
use crate::fsroot::{Durability, FsError, RelPath, Root};
use crate::AppState;

impl From<FsError> for ApiError {
    fn from(e: FsError) -> Self {
        let status = match &e {
            FsError::BadPath(_)
            | FsError::NotADirectory
            | FsError::IsADirectory
            | FsError::NotAFile => StatusCode::BAD_REQUEST,
            FsError::Escape | FsError::Denied => StatusCode::FORBIDDEN,
            FsError::NotFound => StatusCode::NOT_FOUND,
            FsError::Exists | FsError::NotEmpty => StatusCode::CONFLICT,
            FsError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            FsError::Io(err) => {
                tracing::error!(error = %err, "file operation failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let code = match &e {
            FsError::BadPath(_) => ErrorCode::BadPath,
            FsError::Escape => ErrorCode::OutsideWorkspace,
            FsError::Denied => ErrorCode::PermissionDenied,
            FsError::NotFound => ErrorCode::NotFound,
            FsError::NotADirectory => ErrorCode::NotADirectory,
            FsError::IsADirectory => ErrorCode::IsADirectory,
            FsError::NotAFile => ErrorCode::NotAFile,
            FsError::Exists => ErrorCode::AlreadyExists,
            FsError::NotEmpty => ErrorCode::NotEmpty,
            FsError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            FsError::Io(_) => ErrorCode::Internal,
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// Held by every change this daemon makes to the workspace, for the check-and-rename of a
/// conditional write (see the module header). One daemon serves one workspace, so one lock.
static CHANGES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs a blocking file operation against the root.
async fn with_root<T: Send + 'static, E: Into<ApiError> + Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Root) -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError> {
    let root = state.root.clone();
    tokio::task::spawn_blocking(move || f(&root))
        .await
        .map_err(|e| ApiError::internal("The file operation was aborted.", &e))?
        .map_err(Into::into)
}

/// [`with_root`] for an operation that changes the workspace: holds [`CHANGES`].
async fn changing<T: Send + 'static, E: Into<ApiError> + Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Root) -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError> {
    with_root(state, move |root| {
        // A panic while holding it poisoned nothing the lock protects (it guards no data).
        let _held = CHANGES.lock().unwrap_or_else(|p| p.into_inner());
        f(root)
    })
    .await
}

/// The entity tag of a file's content: its SHA-256, hex, quoted.
fn etag(data: &[u8]) -> String {
    format!("\"{:x}\"", Sha256::digest(data))
}

/// What a `PUT` requires of the file it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// No header: write whatever is there.
    Any,
    /// `If-None-Match: *`: there must be no file.
    Absent,
    /// `If-Match: *`: there must be a file.
    Exists,
    /// `If-Match: "<sha256>", ...`: the file's content must have one of these tags (quoted).
    OneOf(Vec<String>),
}

impl Precondition {
    /// From the request's `If-Match` / `If-None-Match`; malformed or both is 400.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let bad = |why: &str| ApiError::bad_request(ErrorCode::InvalidRequest, why.to_string());
        let text = |name| {
            headers
                .get(name)
                .map(|v| {
                    v.to_str()
                        .map(str::trim)
                        .map_err(|_| bad("a precondition header is not text"))
                })
                .transpose()
        };
        match (text(header::IF_MATCH)?, text(header::IF_NONE_MATCH)?) {
            (None, None) => Ok(Self::Any),
            (Some(_), Some(_)) => Err(bad("send If-Match or If-None-Match, not both")),
            (None, Some("*")) => Ok(Self::Absent),
            (None, Some(_)) => Err(bad("If-None-Match on a write must be *")),
            (Some("*"), None) => Ok(Self::Exists),
            (Some(list), None) => {
                let tags: Vec<String> = list
                    .split(',')
                    .map(str::trim)
                    .map(|t| {
                        let hex = t.trim_matches('"');
                        let ok = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
                        ok.then(|| format!("\"{}\"", hex.to_ascii_lowercase()))
                    })
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("If-Match must list \"<sha256 hex>\" tags or be *"))?;
                Ok(Self::OneOf(tags))
            }
        }
    }

    /// Whether the file now (`None`: no file; `Some(None)`: a file too large to have been read
    /// through this API, so no tag can name it) satisfies this.
    fn holds(&self, current: Option<Option<&str>>) -> bool {
        match (self, current) {
            (Self::Any, _) => true,
            (Self::Absent, c) => c.is_none(),
            (Self::Exists, c) => c.is_some(),
            (Self::OneOf(tags), Some(Some(tag))) => tags.iter().any(|t| t == tag),
            (Self::OneOf(_), _) => false,
        }
    }
}

/// A conditional write that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("the file changed since it was read: read it again")]
    Changed,
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Fs(e) => e.into(),
            WriteError::Changed => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                ErrorCode::FileChanged,
                e.to_string(),
            ),
        }
    }
}

/// Writes `data` at `path` if the file there satisfies `pre` right before the rename. The
/// caller holds [`CHANGES`].
pub fn write_checked(
    root: &Root,
    path: &RelPath,
    data: &[u8],
    pre: &Precondition,
    durability: Durability,
    cap: u64,
) -> Result<(), WriteError> {
    root.write_if(path, data, durability, || {
        if *pre == Precondition::Any {
            return Ok(());
        }
        let current = match root.read(path, cap) {
            Ok(now) => Some(Some(etag(&now))),
            Err(FsError::NotFound) => None,
            Err(FsError::TooLarge(_)) => Some(None),
            Err(e) => return Err(e.into()),
        };
        if pre.holds(current.as_ref().map(|t| t.as_deref())) {
            Ok(())
        } else {
            Err(WriteError::Changed)
        }
    })
}

fn rel(raw: &str) -> Result<RelPath, ApiError> {
    RelPath::parse(raw).map_err(ApiError::from)
}

#[derive(Deserialize)]
pub struct ListQuery {
    path: Option<String>,
}

/// `GET /files?path=`
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ListFilesResponse>, ApiError> {
    let Query(q) = q.map_err(crate::error::query_rejection)?;
    let path = rel(q.path.as_deref().unwrap_or(""))?;
    let files = with_root(&state, move |r| r.list(&path)).await?;
    Ok(Json(ListFilesResponse { files }))
}

/// `GET /files/{path}`: JSON `{content, encoding}`, or raw bytes for `Accept: application/octet-stream`.
pub async fn read(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let path = rel(&raw)?;
    let cap = state.max_file_bytes;
    let data = with_root(&state, move |r| r.read(&path, cap)).await?;
    let tag = etag(&data);
    let wants_raw = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/octet-stream"));
    if wants_raw {
        return Ok((
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (header::ETAG, tag),
            ],
            Body::from(data),
        )
            .into_response());
    }
    let body = match String::from_utf8(data) {
        Ok(text) => ReadFileResponse {
            content: text,
            encoding: "utf-8".into(),
        },
        Err(e) => ReadFileResponse {
            content: base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
            encoding: "base64".into(),
        },
    };
    Ok(([(header::ETAG, tag)], Json(body)).into_response())
}

/// `PUT /files/{path}`: JSON `{content, encoding?}`, or the raw bytes with
/// `Content-Type: application/octet-stream`; `If-Match` / `If-None-Match` make it conditional
/// (412 `file_changed`, see the module header).
pub async fn write(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SuccessResponse>, ApiError> {
    let path = rel(&raw)?;
    let pre = Precondition::from_headers(&headers)?;
    let is_raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"));
    let data: Vec<u8> = if is_raw {
        parse_raw(body)?.to_vec()
    } else {
        let req: WriteFileRequest = parse_json(&headers, body)?;
        match req.encoding.as_deref() {
            None | Some("utf-8") | Some("utf8") => req.content.into_bytes(),
            Some("base64") => base64::engine::general_purpose::STANDARD
                .decode(req.content.as_bytes())
                .map_err(|_| {
                    ApiError::bad_request(ErrorCode::BadBase64, "content is not valid base64")
                })?,
            Some(_) => {
                return Err(ApiError::bad_request(
                    ErrorCode::BadEncoding,
                    "encoding must be utf-8 or base64",
                ))
            }
        }
    };
    if data.len() as u64 > state.max_file_bytes {
        return Err(FsError::TooLarge(state.max_file_bytes).into());
    }
    let cap = state.max_file_bytes;
    let durability = durability(&headers)?;
    changing(&state, move |r| {
        write_checked(r, &path, &data, &pre, durability, cap)
    })
    .await?;
    Ok(Json(SuccessResponse { success: true }))
}

/// See [`Durability::Later`].
pub use clarateach_core::api::FILES_SYNC_HEADER as SYNC_HEADER;

fn durability(headers: &HeaderMap) -> Result<Durability, ApiError> {
    match headers.get(SYNC_HEADER).map(|v| v.to_str()) {
        None | Some(Ok("now")) => Ok(Durability::Now),
        Some(Ok("later")) => Ok(Durability::Later),
        Some(_) => Err(ApiError::bad_request(
            ErrorCode::InvalidRequest,
            format!("{SYNC_HEADER} must be `now` or `later`"),
        )),
    }
}

/// `POST /files-sync`: every change of the workspace on disk (the end of a batch of writes).
pub async fn sync(State(state): State<AppState>) -> Result<Json<SuccessResponse>, ApiError> {
    // Not under the change lock: a flush may take a while and orders nothing.
    with_root(&state, |r| r.sync()).await?;
    Ok(Json(SuccessResponse { success: true }))
}

/// `DELETE /files/{path}`: a file, a symlink or a directory tree.
pub async fn delete(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<SuccessResponse>, ApiError> {
    let path = rel(&raw)?;
    changing(&state, move |r| r.delete(&path)).await?;
    Ok(Json(SuccessResponse { success: true }))
}

/// `POST /files-rename {from, to}`; 409 if `to` exists.
pub async fn rename(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SuccessResponse>, ApiError> {
    let req: RenameRequest = parse_json(&headers, body)?;
    let (from, to) = (rel(&req.from)?, rel(&req.to)?);
    changing(&state, move |r| r.rename(&from, &to)).await?;
    Ok(Json(SuccessResponse { success: true }))
}

/// `POST /files-mkdir {path}` (with parents; an existing directory is fine).
pub async fn mkdir(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SuccessResponse>, ApiError> {
    let req: MkdirRequest = parse_json(&headers, body)?;
    let path = rel(&req.path)?;
    if path.is_root() {
        return Ok(Json(SuccessResponse { success: true }));
    }
    changing(&state, move |r| r.mkdir(&path)).await?;
    Ok(Json(SuccessResponse { success: true }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn root() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Root::open(dir.path()).expect("root");
        (dir, root)
    }

    fn pre(name: header::HeaderName, value: &str) -> Result<Precondition, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).expect("header"));
        Precondition::from_headers(&h)
    }

    fn p(raw: &str) -> RelPath {
        RelPath::parse(raw).expect("path")
    }

    #[test]
    fn if_match_writes_only_over_the_content_it_names() {
        let (dir, root) = root();
        root.write(&p("a.py"), b"v1\n").expect("v1");
        let v1 = pre(header::IF_MATCH, &etag(b"v1\n")).expect("tag");
        // The learner's edit lands after the writer read v1: the write is refused.
        root.write(&p("a.py"), b"v1 + mine\n").expect("edit");
        assert!(matches!(
            write_checked(&root, &p("a.py"), b"v2\n", &v1, Durability::Now, 1 << 20),
            Err(WriteError::Changed)
        ));
        assert_eq!(
            std::fs::read(dir.path().join("a.py")).expect("read"),
            b"v1 + mine\n",
            "the edit survives"
        );
        let mine = pre(header::IF_MATCH, &etag(b"v1 + mine\n")).expect("tag");
        write_checked(
            &root,
            &p("a.py"),
            b"merged\n",
            &mine,
            Durability::Now,
            1 << 20,
        )
        .expect("matches");
        assert_eq!(
            std::fs::read(dir.path().join("a.py")).expect("read"),
            b"merged\n"
        );
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.py"], "no temp file is left behind");
        // Unquoted and listed tags are taken too; a file too large to read matches no tag.
        let list = format!(
            "\"{}\", {}",
            "0".repeat(64),
            etag(b"merged\n").trim_matches('"')
        );
        write_checked(
            &root,
            &p("a.py"),
            b"big file\n",
            &pre(header::IF_MATCH, &list).expect("list"),
            Durability::Now,
            1 << 20,
        )
        .expect("one of the list matches");
        let big = pre(header::IF_MATCH, &etag(b"big file\n")).expect("tag");
        assert!(matches!(
            write_checked(&root, &p("a.py"), b"x", &big, Durability::Now, 4),
            Err(WriteError::Changed)
        ));
    }

    #[test]
    fn if_none_match_star_needs_no_file_and_if_match_star_one() {
        let (dir, root) = root();
        let absent = pre(header::IF_NONE_MATCH, "*").expect("absent");
        let exists = pre(header::IF_MATCH, "*").expect("exists");
        let tag = pre(header::IF_MATCH, &etag(b"")).expect("tag of empty");
        assert!(matches!(
            write_checked(
                &root,
                &p("d/new.txt"),
                b"x",
                &exists,
                Durability::Now,
                1 << 20
            ),
            Err(WriteError::Changed)
        ));
        assert!(
            matches!(
                write_checked(&root, &p("d/new.txt"), b"x", &tag, Durability::Now, 1 << 20),
                Err(WriteError::Changed),
            ),
            "a tag never matches a missing file"
        );
        write_checked(
            &root,
            &p("d/new.txt"),
            b"first",
            &absent,
            Durability::Now,
            1 << 20,
        )
        .expect("absent");
        assert!(matches!(
            write_checked(
                &root,
                &p("d/new.txt"),
                b"second",
                &absent,
                Durability::Now,
                1 << 20
            ),
            Err(WriteError::Changed)
        ));
        write_checked(
            &root,
            &p("d/new.txt"),
            b"third",
            &exists,
            Durability::Now,
            1 << 20,
        )
        .expect("exists");
        assert_eq!(
            std::fs::read(dir.path().join("d/new.txt")).expect("read"),
            b"third"
        );
    }

    #[test]
    fn malformed_preconditions_are_bad_requests() {
        assert_eq!(
            Precondition::from_headers(&HeaderMap::new()).ok(),
            Some(Precondition::Any)
        );
        for (name, value) in [
            (header::IF_MATCH, "\"abc\""),
            (header::IF_MATCH, "W/\"x\""),
            (header::IF_NONE_MATCH, &etag(b"x")),
        ] {
            let e = pre(name, value).expect_err(value);
            assert_eq!(
                e.into_response().status(),
                StatusCode::BAD_REQUEST,
                "{value}"
            );
        }
        let mut both = HeaderMap::new();
        both.insert(header::IF_MATCH, HeaderValue::from_static("*"));
        both.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(Precondition::from_headers(&both).is_err());
        let changed = ApiError::from(WriteError::Changed).into_response();
        assert_eq!(changed.status(), StatusCode::PRECONDITION_FAILED);
    }

    #[test]
    fn a_deferred_write_is_visible_at_once_and_flushed_by_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Root::open(dir.path()).expect("root");
        let any = Precondition::Any;
        write_checked(
            &root,
            &p("b/c.txt"),
            b"later\n",
            &any,
            Durability::Later,
            1 << 20,
        )
        .expect("deferred write");
        assert_eq!(root.read(&p("b/c.txt"), 1 << 20).expect("read"), b"later\n");
        root.sync().expect("syncfs");
        let mut h = HeaderMap::new();
        assert_eq!(durability(&h).expect("absent"), Durability::Now);
        h.insert(SYNC_HEADER, "later".parse().expect("value"));
        assert_eq!(durability(&h).expect("later"), Durability::Later);
        h.insert(SYNC_HEADER, "soon".parse().expect("value"));
        assert!(durability(&h).is_err(), "an unknown value is refused");
    }
}
