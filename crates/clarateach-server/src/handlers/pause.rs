//! Instructor routes for breaks: `POST /api/workshops/{id}/pause|resume`, the same per seat
//! (`.../seats/{seat}/pause|resume`), and `PUT /api/workshops/{id}/idle-policy`. The work is in
//! [`crate::pause`]; these answer once the agents reported the change (or after a few seconds).

use axum::extract::State;
use axum::Json;
use clarateach_core::{
    ErrorBody, IdlePolicyRequest, ListSeatsResponse, PauseReason, WorkshopResponse,
};

use super::seats::seat_to_api;
use super::BaseUrl;
use crate::auth::Instructor;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::lifecycle::to_api_scheduled;
use crate::pause;
use crate::state::AppState;

async fn change(
    state: &AppState,
    instructor: &Instructor,
    id: &str,
    seat: Option<u32>,
    paused: bool,
) -> Result<Json<ListSeatsResponse>, ApiError> {
    let w = instructor.workshop(state, id).await?;
    if let Some(seat) = seat {
        if seat == 0 || seat > w.seats {
            return Err(ApiError::not_found("This workshop has no such seat."));
        }
    }
    let only = seat.map(|s| vec![s]);
    let seats = pause::set_paused(state, &w, only.as_deref(), paused, PauseReason::Instructor)
        .await?
        .into_iter()
        .map(seat_to_api)
        .collect();
    Ok(Json(ListSeatsResponse { seats }))
}

/// Pause every ready seat: processes, memory and terminal sessions are kept; learners see
/// "paused by the instructor" (`423 seat_paused`) until resumed.
#[utoipa::path(post, path = "/api/workshops/{id}/pause", tag = "workshops", security(("bearer" = [])),
    params(("id" = String, Path, description = "Workshop id")),
    responses(
        (status = 200, description = "The seats after the agents froze them", body = ListSeatsResponse),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`workshop_not_running`", body = ErrorBody),
    ))]
pub async fn pause_workshop(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ListSeatsResponse>, ApiError> {
    change(&state, &instructor, &id, None, true).await
}

/// Resume every paused seat where it was.
#[utoipa::path(post, path = "/api/workshops/{id}/resume", tag = "workshops", security(("bearer" = [])),
    params(("id" = String, Path, description = "Workshop id")),
    responses(
        (status = 200, description = "The seats after the agents thawed them", body = ListSeatsResponse),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`workshop_not_running`", body = ErrorBody),
    ))]
pub async fn resume_workshop(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ListSeatsResponse>, ApiError> {
    change(&state, &instructor, &id, None, false).await
}

/// Pause one seat.
#[utoipa::path(post, path = "/api/workshops/{id}/seats/{seat}/pause", tag = "workshops", security(("bearer" = [])),
    params(("id" = String, Path, description = "Workshop id"), ("seat" = u32, Path, description = "Seat number")),
    responses(
        (status = 200, body = ListSeatsResponse),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`workshop_not_running`", body = ErrorBody),
    ))]
pub async fn pause_seat(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath((id, seat)): ApiPath<(String, u32)>,
) -> Result<Json<ListSeatsResponse>, ApiError> {
    change(&state, &instructor, &id, Some(seat), true).await
}

/// Resume one seat.
#[utoipa::path(post, path = "/api/workshops/{id}/seats/{seat}/resume", tag = "workshops", security(("bearer" = [])),
    params(("id" = String, Path, description = "Workshop id"), ("seat" = u32, Path, description = "Seat number")),
    responses(
        (status = 200, body = ListSeatsResponse),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`workshop_not_running`", body = ErrorBody),
    ))]
pub async fn resume_seat(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath((id, seat)): ApiPath<(String, u32)>,
) -> Result<Json<ListSeatsResponse>, ApiError> {
    change(&state, &instructor, &id, Some(seat), false).await
}

/// Set or clear the idle policy.
#[utoipa::path(put, path = "/api/workshops/{id}/idle-policy", tag = "workshops", security(("bearer" = [])),
    params(("id" = String, Path, description = "Workshop id")),
    request_body = IdlePolicyRequest,
    responses(
        (status = 200, body = WorkshopResponse),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "minutes out of range", body = ErrorBody),
    ))]
pub async fn idle_policy(
    State(state): State<AppState>,
    instructor: Instructor,
    BaseUrl(base): BaseUrl,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<IdlePolicyRequest>,
) -> Result<Json<WorkshopResponse>, ApiError> {
    if req
        .pause_after_minutes
        .is_some_and(|m| !(1..=1440).contains(&m))
    {
        return Err(ApiError::validation(
            "pause_after_minutes must be 1-1440, or null to turn the idle policy off.",
        ));
    }
    let w = instructor.workshop(&state, &id).await?;
    state
        .store()
        .set_idle_pause(&w.id, req.pause_after_minutes)
        .await?;
    tracing::info!(workshop.id = %w.id, minutes = ?req.pause_after_minutes, "idle policy set");
    let w = instructor.workshop(&state, &id).await?;
    Ok(Json(WorkshopResponse {
        workshop: to_api_scheduled(&state, w, &base).await?,
    }))
}
