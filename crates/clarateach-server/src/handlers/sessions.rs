//! Browser sessions and WebSocket tickets, so no long-lived token is kept in a browser or
//! written into a URL:
//! - `POST /api/instructor/sessions` trades the long-lived instructor token (header) for a
//!   12 h session token (only its hash is stored), accepted wherever the instructor token is;
//!   `DELETE /api/instructor/sessions` revokes the session in the header.
//! - `POST /api/session/ticket` trades a learner token, an instructor token or a session (header)
//!   plus the seat and mode for a one-time ticket that opens one WebSocket within 30 s.

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use clarateach_core::ErrorCode;
use clarateach_core::{ErrorBody, InstructorSessionResponse, TicketRequest, TicketResponse};

use crate::accounts::{hash_token, new_token};
use crate::auth::{bearer_token, instructor_for_token, InstructorCredential, SESSION_TOKEN_PREFIX};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::gateway::access::{authorize, SeatSelector};
use crate::state::AppState;
use crate::tickets::TICKET_TTL;

/// The bearer token of a request, or 401.
pub struct Bearer(pub String);

impl axum::extract::FromRequestParts<AppState> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        bearer_token(parts)
            .map(Self)
            .ok_or_else(|| ApiError::unauthorized("A token is required."))
    }
}

/// Create a browser session from the long-lived instructor token.
#[utoipa::path(post, path = "/api/instructor/sessions", tag = "instructors",
    security(("bearer" = [])),
    responses(
        (status = 201, body = InstructorSessionResponse),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`session_cannot_mint`: a session token cannot create sessions", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Bearer(token): Bearer,
) -> Result<(StatusCode, Json<InstructorSessionResponse>), ApiError> {
    let (instructor, credential) = instructor_for_token(&state, &token)
        .await?
        .ok_or_else(|| ApiError::unauthorized("The instructor token is not valid."))?;
    if credential == InstructorCredential::Session {
        // Otherwise a session could renew itself forever and outlive its revocation.
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::SessionCannotMint,
            "A session cannot create another session; use the instructor token.",
        ));
    }
    let session = new_token(SESSION_TOKEN_PREFIX);
    let ttl = chrono::Duration::from_std(state.config().session_ttl)
        .unwrap_or_else(|_| chrono::Duration::hours(12));
    let expires_at = Utc::now() + ttl;
    state
        .store()
        .create_instructor_session(&hash_token(&session), &instructor.id, expires_at)
        .await?;
    tracing::info!(instructor.id = %instructor.id, "instructor session created");
    Ok((
        StatusCode::CREATED,
        Json(InstructorSessionResponse {
            token: session,
            expires_at,
        }),
    ))
}

/// Revoke the session token in the Authorization header.
#[utoipa::path(delete, path = "/api/instructor/sessions", tag = "instructors",
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    Bearer(token): Bearer,
) -> Result<StatusCode, ApiError> {
    if token.starts_with(SESSION_TOKEN_PREFIX)
        && state
            .store()
            .delete_instructor_session(&hash_token(&token))
            .await?
    {
        tracing::info!("instructor session revoked");
        return Ok(StatusCode::NO_CONTENT);
    }
    Err(ApiError::unauthorized("That is not a live session token."))
}

/// A one-time ticket for one WebSocket of a seat (`?ticket=` on the upgrade).
#[utoipa::path(post, path = "/api/session/ticket", tag = "sessions",
    request_body = TicketRequest, security(("bearer" = [])),
    responses(
        (status = 200, body = TicketResponse),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden_mode`", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, description = "`too_many_tickets`", body = ErrorBody),
    ))]
pub async fn ticket(
    State(state): State<AppState>,
    Bearer(token): Bearer,
    ApiJson(req): ApiJson<TicketRequest>,
) -> Result<Json<TicketResponse>, ApiError> {
    let selector = SeatSelector {
        workshop_id: req.workshop_id.as_deref(),
        seat: req.seat,
        mode: req.mode.as_deref(),
    };
    let grant = authorize(&state, &token, selector).await?;
    let ticket = state.tickets().issue(grant).ok_or_else(|| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyTickets,
            "Too many unused tickets; try again in a few seconds.",
        )
    })?;
    Ok(Json(TicketResponse {
        ticket,
        expires_in: TICKET_TTL.as_secs(),
    }))
}
