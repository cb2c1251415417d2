//! `GET /api/workshops/{id}/seats`: every seat of an instructor's workshop, with its learner
//! and the last activity the gateway saw.

use axum::extract::State;
use axum::Json;
use clarateach_core::{ErrorBody, ListSeatsResponse, Seat};

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
    let seats = state
        .store()
        .list_seats(&w.id)
        .await?
        .into_iter()
        .map(|s| Seat {
            seat: s.seat,
            state: s.state,
            joined: s.odehash.is_some(),
            name: s.name,
            agent_id: s.agent_id,
            joined_at: s.joined_at,
            last_activity_at: s.last_activity_at,
        })
        .collect();
    Ok(Json(ListSeatsResponse { seats }))
}
