//! `GET /api/workshops/{id}/seats`: every seat of an instructor's workshop, with its learner
//! and the last activity the gateway saw; `POST .../seats/{seat}/reset`: a new reconnect code
//! and generation for a seat, so every earlier token and the old code stop working (a leaked
//! code, or another learner taking the chair) while the seat's files stay.

use axum::extract::State;
use axum::Json;
use clarateach_core::ErrorCode;
use clarateach_core::{ids, ErrorBody, ListSeatsResponse, ResetSeatResponse, Seat};
use clarateach_store::StoreError;

use crate::auth::Instructor;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::state::AppState;

/// Seats of a workshop.
#[utoipa::path(get, path = "/api/workshops/{id}/seats", tag = "workshops",
    params(("id" = String, Path, description = "Workshop id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ListSeatsResponse),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ListSeatsResponse>, ApiError> {
    let w = instructor.workshop(&state, &id).await?;
    let moves = state.store().seat_moves(&w.id).await?;
    let seats = state
        .store()
        .list_seats(&w.id)
        .await?
        .into_iter()
        .map(seat_to_api)
        .map(|mut s| {
            s.moved_at = moves.iter().find(|m| m.seat == s.seat).map(|m| m.moved_at);
            s
        })
        .collect();
    Ok(Json(ListSeatsResponse { seats }))
}

/// The API shape of a seat row.
pub(crate) fn seat_to_api(s: clarateach_store::SeatRecord) -> Seat {
    Seat {
        seat: s.seat,
        state: s.state,
        joined: s.odehash.is_some(),
        name: s.name,
        agent_id: s.agent_id,
        joined_at: s.joined_at,
        last_activity_at: s.last_activity_at,
        moved_at: None,
    }
}

/// Reset a seat's learner: new reconnect code, earlier tokens refused, files kept.
#[utoipa::path(post, path = "/api/workshops/{id}/seats/{seat}/reset", tag = "workshops",
    params(("id" = String, Path, description = "Workshop id"),
        ("seat" = u32, Path, description = "Seat number")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ResetSeatResponse),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`seat_not_joined`: nobody holds the seat", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn reset(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath((id, seat)): ApiPath<(String, u32)>,
) -> Result<Json<ResetSeatResponse>, ApiError> {
    let w = instructor.workshop(&state, &id).await?;
    if seat == 0 || seat > w.seats {
        return Err(ApiError::not_found("This workshop has no such seat."));
    }
    for _ in 0..5 {
        match state.store().reset_seat(&w.id, seat, &ids::odehash()).await {
            Ok(Some(rec)) => {
                tracing::info!(workshop.id = %w.id, seat, generation = rec.generation, "seat reset");
                state.announce_seat_reset(&w.id, seat);
                crate::audit::record(
                    &state,
                    &w.id,
                    &instructor.id,
                    clarateach_core::toolkit::AuditAction::Reset,
                    Some(seat),
                    None,
                )
                .await;
                return Ok(Json(ResetSeatResponse {
                    seat,
                    odehash: rec.odehash.unwrap_or_default(),
                    generation: rec.generation,
                }));
            }
            Ok(None) => {
                return Err(ApiError::conflict(
                    ErrorCode::SeatNotJoined,
                    "Nobody holds this seat; there is nothing to reset.",
                ))
            }
            Err(StoreError::Conflict) => continue, // the new reconnect code is taken: draw again
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::internal(&StoreError::Conflict))
}
