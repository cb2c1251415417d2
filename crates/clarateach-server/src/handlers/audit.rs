//! `GET /api/workshops/{id}/audit` (the instructor's record of watching, typing, broadcasts,
//! checks, resets and exports, newest first) and `GET /api/session/presence` (whether an
//! instructor watches or types in the learner's terminal right now, for the learner's notice).

use axum::extract::State;
use axum::Json;
use clarateach_core::toolkit::{AuditResponse, Presence, AUDIT_PAGE};
use clarateach_core::ErrorBody;

use crate::auth::{Learner, OwnedWorkshop};
use crate::error::ApiError;
use crate::state::AppState;

/// The workshop's audit, newest first (at most 500 events).
#[utoipa::path(get, path = "/api/workshops/{id}/audit", tag = "classroom",
    params(("id" = String, Path, description = "Workshop id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = AuditResponse),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    owned: OwnedWorkshop,
) -> Result<Json<AuditResponse>, ApiError> {
    Ok(Json(AuditResponse {
        events: state
            .store()
            .list_audit(&owned.workshop.id, AUDIT_PAGE)
            .await?,
    }))
}

/// Whether an instructor is watching or typing in the learner's seat now.
#[utoipa::path(get, path = "/api/session/presence", tag = "classroom", security(("bearer" = [])),
    responses((status = 200, body = Presence), (status = 401, body = ErrorBody)))]
pub async fn presence(
    State(state): State<AppState>,
    learner: Learner,
) -> Result<Json<Presence>, ApiError> {
    let c = &learner.claims;
    Ok(Json(state.presence().of(&c.workshop_id, c.seat)))
}
