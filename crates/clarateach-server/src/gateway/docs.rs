//! OpenAPI entries for the session gateway. The gateway serves these paths through one
//! catch-all relay (`/api/session/{*rest}`), so the document gets one annotated item per path
//! here; the functions are never routed. Every path takes the learner token, or the instructor
//! token (or session) with `workshop_id` and `seat` query parameters, in the Authorization
//! header; WebSocket upgrades may instead carry a one-time `ticket` (`POST /api/session/ticket`).
//! A `token` query parameter is refused (401).
#![allow(dead_code)]

use clarateach_core::{
    ErrorBody, ListFilesResponse, MkdirRequest, ReadFileResponse, RenameRequest, RunRequest,
    RunResponse, SuccessResponse, WriteFileRequest,
};

/// Terminal WebSocket; protocol in api/ws-protocol.md.
#[utoipa::path(get, path = "/api/session/terminal", tag = "session",
    params(
        ("session" = Option<String>, Query, description = "Session name, default `main`"),
        ("mode" = Option<String>, Query, description = "interactive | watch | takeover (instructors)"),
        ("format" = Option<String>, Query, description = "binary (default) | json"),
        ("ticket" = Option<String>, Query, description = "One-time ticket from POST /api/session/ticket (instead of the Authorization header)"),
        ("workshop_id" = Option<String>, Query, description = "Instructor only"),
        ("seat" = Option<u32>, Query, description = "Instructor only"),
    ),
    responses((status = 101, description = "WebSocket upgrade"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub fn terminal() {}

/// Lists a directory of the seat's workspace.
#[utoipa::path(get, path = "/api/session/files", tag = "session",
    params(("path" = Option<String>, Query, description = "Directory, default `/`")),
    responses((status = 200, body = ListFilesResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub fn list_files() {}

/// Reads a file (utf-8 or base64; raw bytes with `Accept: application/octet-stream`).
#[utoipa::path(get, path = "/api/session/files/{path}", tag = "session",
    params(("path" = String, Path, description = "Path relative to /workspace")),
    responses((status = 200, body = ReadFileResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub fn read_file() {}

/// Writes a file atomically, creating parents.
#[utoipa::path(put, path = "/api/session/files/{path}", tag = "session",
    params(("path" = String, Path, description = "Path relative to /workspace")),
    request_body = WriteFileRequest,
    responses((status = 200, body = SuccessResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub fn write_file() {}

/// Deletes a file or directory.
#[utoipa::path(delete, path = "/api/session/files/{path}", tag = "session",
    params(("path" = String, Path, description = "Path relative to /workspace")),
    responses((status = 200, body = SuccessResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub fn delete_file() {}

/// Change events of the workspace (WebSocket).
#[utoipa::path(get, path = "/api/session/files/watch", tag = "session",
    params(("ticket" = Option<String>, Query, description = "One-time ticket from POST /api/session/ticket (instead of the Authorization header)")),
    responses((status = 101, description = "WebSocket upgrade"), (status = 401, body = ErrorBody)))]
pub fn watch_files() {}

/// Renames or moves a file or directory.
#[utoipa::path(post, path = "/api/session/files-rename", tag = "session",
    request_body = RenameRequest,
    responses((status = 200, body = SuccessResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub fn rename() {}

/// Creates a directory (and its parents).
#[utoipa::path(post, path = "/api/session/files-mkdir", tag = "session",
    request_body = MkdirRequest,
    responses((status = 200, body = SuccessResponse), (status = 403, body = ErrorBody)))]
pub fn mkdir() {}

/// Runs a command with staged files in a fresh directory of the seat.
#[utoipa::path(post, path = "/api/session/run", tag = "session",
    request_body = RunRequest,
    responses((status = 200, body = RunResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub fn run() {}
