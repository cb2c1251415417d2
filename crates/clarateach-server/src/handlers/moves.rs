//! `POST /api/workshops/{id}/seats/{seat}/move` (an instructor moves a seat to another agent,
//! files following through object storage) and `GET /api/session/seat` (the learner's seat and
//! when it last moved, for the "moved to another machine" notice). The logic is in
//! [`crate::relocate`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use clarateach_core::{ErrorBody, ErrorCode, MoveSeatResponse, SessionSeatResponse};

use crate::auth::{Instructor, Learner};
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::relocate::{self, MoveError};
use crate::state::AppState;

/// Move a seat to another agent: the old agent saves its files and drops its copy, another
/// agent recreates the seat from object storage; the learner's code and URL keep working.
#[utoipa::path(post, path = "/api/workshops/{id}/seats/{seat}/move", tag = "workshops",
    params(("id" = String, Path, description = "Workshop id"),
        ("seat" = u32, Path, description = "Seat number")),
    security(("bearer" = [])),
    responses(
        (status = 202, body = MoveSeatResponse),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`no_other_agent`, `workshop_not_running`, `seat_moving`, `agent_unavailable` (no object storage)", body = ErrorBody),
    ))]
pub async fn move_seat(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath((id, seat)): ApiPath<(String, u32)>,
) -> Result<(StatusCode, Json<MoveSeatResponse>), ApiError> {
    let w = instructor.workshop(&state, &id).await?;
    if seat == 0 || seat > w.seats {
        return Err(ApiError::not_found("This workshop has no such seat."));
    }
    if state.config().object_store.is_none() {
        // The deployment's set-up, not an outage: 409, as for a workshop that is not running.
        return Err(ApiError::conflict(
            ErrorCode::AgentUnavailable,
            "Seats can only move when the control plane has object storage (--object-store).",
        ));
    }
    let moved = relocate::move_seat(&state, &w.id, seat)
        .await
        .map_err(move_error)?;
    let moved_at = state
        .store()
        .seat_moves(&w.id)
        .await?
        .into_iter()
        .find(|m| m.seat == seat)
        .map(|m| m.moved_at)
        .unwrap_or_else(chrono::Utc::now);
    Ok((
        StatusCode::ACCEPTED,
        Json(MoveSeatResponse {
            seat,
            from_agent: moved.from,
            agent_id: moved.to,
            moved_at,
        }),
    ))
}

fn move_error(e: MoveError) -> ApiError {
    match e {
        MoveError::NoOtherAgent(_) => ApiError::conflict(
            ErrorCode::NoOtherAgent,
            "No other connected agent has room for this seat.",
        ),
        MoveError::NotRunning => ApiError::conflict(
            ErrorCode::WorkshopNotRunning,
            "Only seats of a running workshop can move.",
        ),
        MoveError::NoSeat | MoveError::Unplaced => {
            ApiError::not_found("This seat is not placed on any agent.")
        }
        MoveError::Raced | MoveError::ReleaseTimeout => ApiError::conflict(
            ErrorCode::SeatMoving,
            "The seat is changing hands already; try again in a moment.",
        ),
        MoveError::Store(e) => e.into(),
        other => ApiError::internal(&other),
    }
}

/// The learner's seat and when it last moved to another machine.
#[utoipa::path(get, path = "/api/session/seat", tag = "session", security(("bearer" = [])),
    responses((status = 200, body = SessionSeatResponse), (status = 401, body = ErrorBody)))]
pub async fn session_seat(
    State(state): State<AppState>,
    learner: Learner,
) -> Result<Json<SessionSeatResponse>, ApiError> {
    let c = &learner.claims;
    let moved_at = state
        .store()
        .seat_moves(&c.workshop_id)
        .await?
        .into_iter()
        .find(|m| m.seat == c.seat)
        .map(|m| m.moved_at);
    Ok(Json(SessionSeatResponse {
        workshop_id: c.workshop_id.clone(),
        seat: c.seat,
        moved_at,
    }))
}
