//! The help queue (issue 10). A learner asks (`POST /api/session/help`, from the IDE's button
//! or the `help` command in their terminal, which the IDE picks up); the control plane adds the
//! context the learner would otherwise have to type, read from the seat's terminal screen
//! (cwd, last commands with exit codes); the IDE adds the open file. The instructor lists the
//! queue, longest waiting first (`GET /api/workshops/{id}/help`), claims ("on my way") and
//! resolves. The learner polls `GET /api/session/help` for their place and whether someone is
//! coming. Requests live in the store, so the queue survives reloads and restarts.
//!
//! A seat has at most one request in the queue: asking again while one is open updates
//! nothing and answers the one already waiting (no queue-jumping by re-asking, no flooding).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use clarateach_core::classroom::{
    bounded_text, AskHelpRequest, HelpRequest, HelpStatus, HelpStatusResponse, ListHelpResponse,
    COMMAND_CHARS, HELP_MESSAGE_CHARS,
};
use clarateach_core::ErrorBody;

use crate::accounts::new_token;
use crate::auth::{Learner, OwnedWorkshop};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::handlers::screens::seat_screen;
use crate::state::AppState;

/// The learner's request and their place among the open ones.
async fn status_of(state: &AppState, learner: &Learner) -> Result<HelpStatusResponse, ApiError> {
    let c = &learner.claims;
    let Some(request) = state
        .store()
        .active_help_for_seat(&c.workshop_id, c.seat)
        .await?
    else {
        return Ok(HelpStatusResponse {
            request: None,
            position: None,
        });
    };
    let position = if request.status == HelpStatus::Open {
        let queue = state.store().list_active_help(&c.workshop_id).await?;
        queue
            .iter()
            .filter(|r| r.status == HelpStatus::Open)
            .position(|r| r.id == request.id)
            .and_then(|i| u32::try_from(i + 1).ok())
    } else {
        None
    };
    Ok(HelpStatusResponse {
        request: Some(request),
        position,
    })
}

fn clean(s: Option<String>, max: usize) -> Option<String> {
    s.map(|m| bounded_text(m.trim(), max))
        .filter(|m| !m.is_empty())
}

/// Ask for help from a learner's seat.
#[utoipa::path(post, path = "/api/session/help", tag = "classroom",
    request_body = AskHelpRequest, security(("bearer" = [])),
    responses(
        (status = 201, description = "Filed", body = HelpStatusResponse),
        (status = 200, description = "Already in the queue: the waiting request", body = HelpStatusResponse),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn ask(
    State(state): State<AppState>,
    learner: Learner,
    ApiJson(body): ApiJson<AskHelpRequest>,
) -> Result<(StatusCode, Json<HelpStatusResponse>), ApiError> {
    let c = &learner.claims;
    if state
        .store()
        .active_help_for_seat(&c.workshop_id, c.seat)
        .await?
        .is_some()
    {
        return Ok((StatusCode::OK, Json(status_of(&state, &learner).await?)));
    }
    let screen = seat_screen(&state, &c.workshop_id, c.seat, None).await;
    let seat = state.store().get_seat(&c.workshop_id, c.seat).await?;
    let now = Utc::now();
    let req = HelpRequest {
        id: format!("help-{}", &new_token("")[..16]),
        workshop_id: c.workshop_id.clone(),
        seat: c.seat,
        name: seat.and_then(|s| s.name),
        message: clean(body.message, HELP_MESSAGE_CHARS),
        cwd: screen.as_ref().and_then(|s| s.cwd.clone()),
        commands: screen.map(|s| s.commands).unwrap_or_default(),
        open_file: clean(body.open_file, COMMAND_CHARS),
        status: HelpStatus::Open,
        created_at: now,
        claimed_by: None,
        claimed_at: None,
        resolved_at: None,
    };
    state.store().insert_help(&req).await?;
    tracing::info!(workshop.id = %c.workshop_id, seat = c.seat, help.id = %req.id, "help requested");
    Ok((
        StatusCode::CREATED,
        Json(status_of(&state, &learner).await?),
    ))
}

/// The learner's own request and place in the queue.
#[utoipa::path(get, path = "/api/session/help", tag = "classroom", security(("bearer" = [])),
    responses((status = 200, body = HelpStatusResponse), (status = 401, body = ErrorBody)))]
pub async fn mine(
    State(state): State<AppState>,
    learner: Learner,
) -> Result<Json<HelpStatusResponse>, ApiError> {
    Ok(Json(status_of(&state, &learner).await?))
}

/// The workshop's help queue, longest waiting first.
#[utoipa::path(get, path = "/api/workshops/{id}/help", tag = "classroom",
    params(("id" = String, Path, description = "Workshop id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ListHelpResponse),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    owned: OwnedWorkshop,
) -> Result<Json<ListHelpResponse>, ApiError> {
    Ok(Json(ListHelpResponse {
        requests: state.store().list_active_help(&owned.workshop.id).await?,
    }))
}

fn no_request() -> ApiError {
    ApiError::not_found("No such open help request in this workshop.")
}

/// Claim a request: the learner sees that someone is coming.
#[utoipa::path(post, path = "/api/workshops/{id}/help/{help_id}/claim", tag = "classroom",
    params(("id" = String, Path, description = "Workshop id"),
        ("help_id" = String, Path, description = "Help request id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = HelpRequest),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn claim(
    State(state): State<AppState>,
    OwnedWorkshop {
        instructor,
        workshop: w,
    }: OwnedWorkshop,
    ApiPath((_id, help_id)): ApiPath<(String, String)>,
) -> Result<Json<HelpRequest>, ApiError> {
    let r = state
        .store()
        .claim_help(&w.id, &help_id, &instructor.name, Utc::now())
        .await?
        .ok_or_else(no_request)?;
    tracing::info!(workshop.id = %w.id, seat = r.seat, help.id = %r.id, instructor.id = %instructor.id, "help claimed");
    Ok(Json(r))
}

/// Resolve a request: it leaves the queue.
#[utoipa::path(post, path = "/api/workshops/{id}/help/{help_id}/resolve", tag = "classroom",
    params(("id" = String, Path, description = "Workshop id"),
        ("help_id" = String, Path, description = "Help request id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = HelpRequest),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn resolve(
    State(state): State<AppState>,
    OwnedWorkshop {
        instructor,
        workshop: w,
    }: OwnedWorkshop,
    ApiPath((_id, help_id)): ApiPath<(String, String)>,
) -> Result<Json<HelpRequest>, ApiError> {
    let r = state
        .store()
        .resolve_help(&w.id, &help_id, Utc::now())
        .await?
        .ok_or_else(no_request)?;
    tracing::info!(workshop.id = %w.id, seat = r.seat, help.id = %r.id, instructor.id = %instructor.id, "help resolved");
    Ok(Json(r))
}
