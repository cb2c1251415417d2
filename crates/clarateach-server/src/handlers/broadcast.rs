//! `POST /api/workshops/{id}/broadcast`: hand files out to every running seat by the three-way
//! rule of [`crate::broadcast`], as JSON files, a tar.gz upload, or a directory of one seat;
//! `GET` gives the latest report. `GET /api/session/broadcast` tells a learner what the latest
//! broadcast brought their seat (the IDE shows it once).

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use clarateach_core::toolkit::{
    AuditAction, BroadcastReport, BroadcastRequest, LatestBroadcastResponse, LearnerBroadcast,
    BROADCAST_MAX_BYTES,
};
use clarateach_core::{ErrorBody, ErrorCode, SeatState, WorkshopStatus};
use clarateach_store::{BaseEntry, LatestKind};
use futures::StreamExt;

use crate::accounts::new_token;
use crate::auth::{Instructor, Learner};
use crate::broadcast::{self, BroadcastError, Payload};
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::state::AppState;

/// The route's body limit: base64 JSON of the largest broadcast, with room for the framing.
pub const BODY_LIMIT: usize = BROADCAST_MAX_BYTES * 4 / 3 + 256 * 1024;
/// Seats written at once.
const SEATS_AT_ONCE: usize = 32;

impl From<BroadcastError> for ApiError {
    fn from(e: BroadcastError) -> Self {
        match e {
            BroadcastError::BadPath(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::BadPath,
                e.to_string(),
            ),
            BroadcastError::TooLarge => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                e.to_string(),
            ),
            BroadcastError::Archive(_) => ApiError::invalid_request(e.to_string()),
            _ => ApiError::validation(e.to_string()),
        }
    }
}

/// Running seats of the workshop (routed, not paused), by number.
pub async fn running_seats(state: &AppState, workshop_id: &str) -> Result<Vec<u32>, ApiError> {
    Ok(state
        .store()
        .list_seats(workshop_id)
        .await?
        .into_iter()
        .filter(|s| s.agent_id.is_some() && s.state == SeatState::Ready)
        .map(|s| s.seat)
        .collect())
}

/// The workshop, which must be running.
async fn running_workshop(
    state: &AppState,
    instructor: &Instructor,
    id: &str,
) -> Result<clarateach_store::WorkshopRecord, ApiError> {
    let w = instructor.workshop(state, id).await?;
    if w.status != WorkshopStatus::Running {
        return Err(ApiError::conflict(
            ErrorCode::WorkshopNotRunning,
            "The workshop is not running: start it first.",
        ));
    }
    Ok(w)
}

async fn files_of(
    state: &AppState,
    workshop_id: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Vec<Payload>, ApiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if [
        "application/gzip",
        "application/x-gzip",
        "application/x-tar+gzip",
    ]
    .iter()
    .any(|t| ctype.starts_with(t))
    {
        return Ok(broadcast::payloads_from_tar_gz(&body)?);
    }
    if !ctype.starts_with("application/json") {
        return Err(ApiError::invalid_request(
            "Send JSON (`Content-Type: application/json`) or a tar.gz (`application/gzip`).",
        ));
    }
    let req: BroadcastRequest = serde_json::from_slice(&body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::invalid_request("The request body is not valid JSON.")
        } else {
            ApiError::validation(format!("Invalid request body: {e}"))
        }
    })?;
    match (req.from_seat, req.files.is_empty()) {
        (Some(_), false) => Err(ApiError::validation(
            "Give either files or from_seat, not both.",
        )),
        (None, _) => Ok(broadcast::payloads(req.files)?),
        (Some(seat), true) => {
            let dir = match req.dir.as_deref().map(str::trim).unwrap_or("") {
                "" | "." | "/workspace" | "/" => String::new(),
                d => broadcast::clean_path(d)?,
            };
            if !running_seats(state, workshop_id).await?.contains(&seat) {
                return Err(ApiError::not_found(
                    "from_seat names no running seat of this workshop.",
                ));
            }
            let files = broadcast::collect_from_seat(state, workshop_id, seat, &dir)
                .await
                .map_err(|e| ApiError::conflict(ErrorCode::WorkspaceUnreachable, e.to_string()))?;
            if files.is_empty() {
                return Err(ApiError::validation("The source directory holds no files."));
            }
            Ok(files)
        }
    }
}

/// Hand files out to every running seat without clobbering learners' edits.
#[utoipa::path(post, path = "/api/workshops/{id}/broadcast", tag = "classroom",
    params(("id" = String, Path, description = "Workshop id")),
    request_body(content(
        (BroadcastRequest = "application/json"),
        (Vec<u8> = "application/gzip"),
    )),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Per seat and file: written, merged, conflicted or failed", body = BroadcastReport),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`workshop_not_running`, or the source seat cannot be read", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "A path or file is invalid (`bad_path`, `validation_failed`)", body = ErrorBody),
    ))]
pub async fn broadcast(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BroadcastReport>, ApiError> {
    let w = running_workshop(&state, &instructor, &id).await?;
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                "The request body is too large.",
            )
        } else {
            ApiError::invalid_request("The request body cannot be read.")
        }
    })?;
    let files = files_of(&state, &w.id, &headers, body).await?;
    let started = Instant::now();
    for f in &files {
        state
            .store()
            .put_broadcast_blob(&w.id, &f.hash, &f.content)
            .await?;
    }
    let seats = running_seats(&state, &w.id).await?;
    let mut work = Vec::with_capacity(seats.len());
    for seat in seats {
        let bases: HashMap<String, Vec<u8>> = state
            .store()
            .broadcast_bases(&w.id, seat)
            .await?
            .into_iter()
            .collect();
        work.push((seat, bases));
    }
    let (st, ws, files_ref) = (&state, w.id.as_str(), files.as_slice());
    let mut reports: Vec<_> = futures::stream::iter(work)
        .map(move |(seat, bases)| broadcast::deliver_seat(st, ws, seat, bases, files_ref))
        .buffer_unordered(SEATS_AT_ONCE)
        .collect()
        .await;
    reports.sort_by_key(|r| r.seat);
    // What each seat got becomes its base for these paths; a failed file keeps the old one.
    let by_path: HashMap<&str, &str> = files
        .iter()
        .map(|f| (f.path.as_str(), f.hash.as_str()))
        .collect();
    let mut bases = Vec::new();
    for r in &reports {
        for f in &r.files {
            if f.outcome == clarateach_core::toolkit::BroadcastOutcome::Failed {
                continue;
            }
            if let Some(hash) = by_path.get(f.path.as_str()) {
                bases.push(BaseEntry {
                    seat: r.seat,
                    path: f.path.clone(),
                    hash: (*hash).to_string(),
                });
            }
        }
    }
    state.store().set_broadcast_bases(&w.id, &bases).await?;
    let report = BroadcastReport {
        id: format!("bc-{}", &new_token("")[..12]),
        at: Utc::now(),
        files: files.iter().map(|f| f.path.clone()).collect(),
        seats: reports,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    let json = serde_json::to_string(&report).map_err(|e| ApiError::internal(&e))?;
    state
        .store()
        .put_latest(&w.id, LatestKind::BroadcastReport, &json)
        .await?;
    let detail = format!(
        "{} file(s): {}",
        report.files.len(),
        report.files.join(", ")
    );
    crate::audit::record(
        &state,
        &w.id,
        &instructor.id,
        AuditAction::Broadcast,
        None,
        Some(detail),
    )
    .await;
    tracing::info!(workshop.id = %w.id, files = report.files.len(), seats = report.seats.len(), ms = report.duration_ms, "broadcast");
    Ok(Json(report))
}

async fn latest_report(
    state: &AppState,
    workshop_id: &str,
) -> Result<Option<BroadcastReport>, ApiError> {
    let Some(json) = state
        .store()
        .latest(workshop_id, LatestKind::BroadcastReport)
        .await?
    else {
        return Ok(None);
    };
    Ok(serde_json::from_str(&json).ok())
}

/// The workshop's latest broadcast report.
#[utoipa::path(get, path = "/api/workshops/{id}/broadcast", tag = "classroom",
    params(("id" = String, Path, description = "Workshop id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = LatestBroadcastResponse),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn latest(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<LatestBroadcastResponse>, ApiError> {
    let w = instructor.workshop(&state, &id).await?;
    Ok(Json(LatestBroadcastResponse {
        report: latest_report(&state, &w.id).await?,
    }))
}

/// What the latest broadcast brought the learner's seat.
#[utoipa::path(get, path = "/api/session/broadcast", tag = "classroom", security(("bearer" = [])),
    responses((status = 200, body = LearnerBroadcast), (status = 401, body = ErrorBody)))]
pub async fn mine(
    State(state): State<AppState>,
    learner: Learner,
) -> Result<Json<LearnerBroadcast>, ApiError> {
    let c = &learner.claims;
    let report = latest_report(&state, &c.workshop_id).await?;
    let Some(report) = report else {
        return Ok(Json(LearnerBroadcast {
            id: None,
            at: None,
            files: Vec::new(),
        }));
    };
    let files = report
        .seats
        .into_iter()
        .find(|s| s.seat == c.seat)
        .map(|s| s.files)
        .unwrap_or_default();
    Ok(Json(LearnerBroadcast {
        id: Some(report.id),
        at: Some(report.at),
        files,
    }))
}
