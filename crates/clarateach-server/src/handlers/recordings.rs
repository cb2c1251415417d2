//! A seat's terminal recordings (issue 10), for the workshop's instructor:
//! `GET /api/workshops/{id}/seats/{seat}/recordings` lists them (oldest first) and
//! `GET .../recordings/{name}` returns one asciicast v2 file. The agent hosting the seat keeps
//! them (see `clarateach_agent::recording`: host side, out of the learner's reach); the control
//! plane asks it over the data path. Learners cannot list or read recordings, not even their
//! own seat's.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use clarateach_core::presenter::{valid_recording_name, RecordingList};
use clarateach_core::{ErrorBody, ErrorCode};
use std::time::Duration;

use crate::auth::Instructor;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::gateway::seat_call::{self, SeatCallError, SeatRequest};
use crate::state::AppState;

/// Largest cast fetched from an agent (the agent's per-seat cap is 32 MiB).
const MAX_CAST: usize = 40 * 1024 * 1024;

async fn seat_of(
    state: &AppState,
    instructor: &Instructor,
    id: &str,
    seat: u32,
) -> Result<String, ApiError> {
    let w = instructor.workshop(state, id).await?;
    if seat == 0 || seat > w.seats {
        return Err(ApiError::not_found("This workshop has no such seat."));
    }
    Ok(w.id)
}

fn call_failed(e: SeatCallError, workshop_id: &str, seat: u32) -> ApiError {
    if matches!(e, SeatCallError::NoRoute) {
        return ApiError::conflict(
            ErrorCode::SeatNotReady,
            "The seat is not on a connected agent; its recordings are there.",
        );
    }
    tracing::warn!(workshop.id = %workshop_id, seat, error = %clarateach_core::error::error_chain(&e), "recordings call failed");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        ErrorCode::WorkspaceUnreachable,
        "The seat's agent did not answer.",
    )
}

/// The seat's recordings, oldest first.
#[utoipa::path(get, path = "/api/workshops/{id}/seats/{seat}/recordings", tag = "classroom",
    params(("id" = String, Path, description = "Workshop id"), ("seat" = u32, Path, description = "Seat number")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = RecordingList),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The seat is not on a connected agent", body = ErrorBody),
        (status = 502, body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath((id, seat)): ApiPath<(String, u32)>,
) -> Result<Json<RecordingList>, ApiError> {
    let ws = seat_of(&state, &instructor, &id, seat).await?;
    let answer = seat_call::call(
        &state,
        &ws,
        seat,
        SeatRequest::get("recordings", Duration::from_secs(10), 1024 * 1024),
    )
    .await
    .map_err(|e| call_failed(e, &ws, seat))?;
    if answer.status != StatusCode::OK {
        return Err(call_failed(SeatCallError::Body(0), &ws, seat));
    }
    let list: RecordingList = serde_json::from_slice(&answer.body)
        .map_err(|_| call_failed(SeatCallError::Body(0), &ws, seat))?;
    Ok(Json(list))
}

/// One recording, as asciicast v2 (`application/x-asciicast`).
#[utoipa::path(get, path = "/api/workshops/{id}/seats/{seat}/recordings/{name}", tag = "classroom",
    params(("id" = String, Path, description = "Workshop id"), ("seat" = u32, Path, description = "Seat number"),
        ("name" = String, Path, description = "Recording name from the list")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "asciicast v2: a JSON header line, then [time, code, data] lines", content_type = "application/x-asciicast", body = String),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 502, body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath((id, seat, name)): ApiPath<(String, u32, String)>,
) -> Result<Response, ApiError> {
    let ws = seat_of(&state, &instructor, &id, seat).await?;
    if !valid_recording_name(&name) {
        return Err(ApiError::not_found("No such recording."));
    }
    let answer = seat_call::call(
        &state,
        &ws,
        seat,
        SeatRequest::get(
            format!("recordings/{name}"),
            Duration::from_secs(60),
            MAX_CAST,
        ),
    )
    .await
    .map_err(|e| call_failed(e, &ws, seat))?;
    match answer.status {
        StatusCode::OK => Ok((
            [
                (header::CONTENT_TYPE, "application/x-asciicast"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            answer.body,
        )
            .into_response()),
        StatusCode::NOT_FOUND => Err(ApiError::not_found("No such recording.")),
        _ => Err(call_failed(SeatCallError::Body(0), &ws, seat)),
    }
}
