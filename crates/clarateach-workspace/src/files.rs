//! The file API: list, read, write, delete, rename, mkdir, all through [`crate::fsroot::Root`].
//!
//! File system calls block, so each runs on tokio's blocking pool.

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

use crate::error::{parse_json, parse_raw, ApiError};
use crate::fsroot::{FsError, RelPath, Root};
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

/// Runs a blocking file operation against the root.
async fn with_root<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Root) -> Result<T, FsError> + Send + 'static,
) -> Result<T, ApiError> {
    let root = state.root.clone();
    tokio::task::spawn_blocking(move || f(&root))
        .await
        .map_err(|e| ApiError::internal("The file operation was aborted.", &e))?
        .map_err(ApiError::from)
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
    let wants_raw = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/octet-stream"));
    if wants_raw {
        return Ok((
            [(header::CONTENT_TYPE, "application/octet-stream")],
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
    Ok(Json(body).into_response())
}

/// `PUT /files/{path}`: JSON `{content, encoding?}`, or the raw bytes with
/// `Content-Type: application/octet-stream`.
pub async fn write(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SuccessResponse>, ApiError> {
    let path = rel(&raw)?;
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
    with_root(&state, move |r| r.write(&path, &data)).await?;
    Ok(Json(SuccessResponse { success: true }))
}

/// `DELETE /files/{path}`: a file, a symlink or a directory tree.
pub async fn delete(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<SuccessResponse>, ApiError> {
    let path = rel(&raw)?;
    with_root(&state, move |r| r.delete(&path)).await?;
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
    with_root(&state, move |r| r.rename(&from, &to)).await?;
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
    with_root(&state, move |r| r.mkdir(&path)).await?;
    Ok(Json(SuccessResponse { success: true }))
}
