//! Announcements and the spotlight (issue 10), instructor side, and the learner event stream.
//!
//! - `POST|GET /api/workshops/{id}/announcements`, `DELETE .../announcements/{announcement_id}`:
//!   banners every learner of the workshop sees.
//! - `PUT|GET|DELETE /api/workshops/{id}/spotlight`: share one seat's terminal session with
//!   every learner (read-only, see [`crate::gateway::spotlight`]), or stop.
//! - `GET /api/session/events`: the learner's live stream (WebSocket, one-time ticket) of
//!   [`LearnerEvent`] snapshots, one per topic at connect and on every change; without an
//!   upgrade, the current snapshots once as JSON. It is always the caller's own workshop: the
//!   workshop comes from the token or ticket, never from the request.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use clarateach_core::presenter::{
    valid_session, AnnounceRequest, Announcement, AnnouncementList, LearnerEvent, SpotlightRequest,
    SpotlightState, MAX_ANNOUNCEMENT_CHARS,
};
use clarateach_core::ErrorBody;
use futures::{Sink, SinkExt, Stream, StreamExt};

use crate::auth::Instructor;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::gateway::SeatAccess;
use crate::presenter::Shown;
use crate::state::AppState;

/// Shows a banner to every learner of the workshop.
#[utoipa::path(post, path = "/api/workshops/{id}/announcements", tag = "classroom",
    params(("id" = String, Path, description = "Workshop id")),
    request_body = AnnounceRequest, security(("bearer" = [])),
    responses(
        (status = 201, body = Announcement),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Empty or longer than 500 characters", body = ErrorBody),
    ))]
pub async fn announce(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AnnounceRequest>,
) -> Result<(StatusCode, Json<Announcement>), ApiError> {
    let w = instructor.workshop(&state, &id).await?;
    let message = body.message.trim();
    if message.is_empty() || message.chars().count() > MAX_ANNOUNCEMENT_CHARS {
        return Err(ApiError::validation(format!(
            "message must be 1-{MAX_ANNOUNCEMENT_CHARS} characters."
        )));
    }
    let message = clarateach_core::classroom::bounded_text(message, MAX_ANNOUNCEMENT_CHARS);
    let a = state
        .presenter()
        .announce(state.store(), &w.id, message)
        .await?;
    tracing::info!(workshop.id = %w.id, announcement = %a.id, "announcement");
    Ok((StatusCode::CREATED, Json(a)))
}

/// The workshop's announcements, oldest first.
#[utoipa::path(get, path = "/api/workshops/{id}/announcements", tag = "classroom",
    params(("id" = String, Path, description = "Workshop id")),
    security(("bearer" = [])),
    responses((status = 200, body = AnnouncementList), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_announcements(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AnnouncementList>, ApiError> {
    let w = instructor.workshop(&state, &id).await?;
    Ok(Json(AnnouncementList {
        announcements: state
            .presenter()
            .announcements(state.store(), &w.id)
            .await?,
    }))
}

/// Takes a banner down.
#[utoipa::path(delete, path = "/api/workshops/{id}/announcements/{announcement_id}",
    tag = "classroom",
    params(("id" = String, Path, description = "Workshop id"),
        ("announcement_id" = String, Path, description = "Announcement id")),
    security(("bearer" = [])),
    responses((status = 204, description = "Dismissed"), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn dismiss(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath((id, announcement_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let w = instructor.workshop(&state, &id).await?;
    if state
        .presenter()
        .dismiss(state.store(), &w.id, &announcement_id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "No such announcement in this workshop.",
        ))
    }
}

/// Shares one seat's terminal with every learner of the workshop, read-only.
#[utoipa::path(put, path = "/api/workshops/{id}/spotlight", tag = "classroom",
    params(("id" = String, Path, description = "Workshop id")),
    request_body = SpotlightRequest, security(("bearer" = [])),
    responses(
        (status = 200, body = SpotlightState),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such workshop or seat", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn spotlight_on(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SpotlightRequest>,
) -> Result<Json<SpotlightState>, ApiError> {
    let w = instructor.workshop(&state, &id).await?;
    if body.seat == 0 || body.seat > w.seats {
        return Err(ApiError::not_found("This workshop has no such seat."));
    }
    let session = body.session.unwrap_or_else(|| "main".into());
    if !valid_session(&session) {
        return Err(ApiError::validation(
            "session must be 1-32 letters, digits, '-' or '_'.",
        ));
    }
    let s = state
        .presenter()
        .spotlight_on(state.store(), &w.id, body.seat, session)
        .await?;
    tracing::info!(workshop.id = %w.id, seat = s.seat, session = %s.session, "spotlight on");
    Ok(Json(SpotlightState { spotlight: Some(s) }))
}

/// What is shared now.
#[utoipa::path(get, path = "/api/workshops/{id}/spotlight", tag = "classroom",
    params(("id" = String, Path, description = "Workshop id")),
    security(("bearer" = [])),
    responses((status = 200, body = SpotlightState), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn spotlight_get(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SpotlightState>, ApiError> {
    let w = instructor.workshop(&state, &id).await?;
    Ok(Json(SpotlightState {
        spotlight: state.presenter().spotlight(state.store(), &w.id).await?,
    }))
}

/// Stops sharing (learners' Presenter tabs close).
#[utoipa::path(delete, path = "/api/workshops/{id}/spotlight", tag = "classroom",
    params(("id" = String, Path, description = "Workshop id")),
    security(("bearer" = [])),
    responses((status = 204, description = "Stopped (or nothing was shared)"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn spotlight_off(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let w = instructor.workshop(&state, &id).await?;
    if state
        .presenter()
        .spotlight_off(state.store(), &w.id)
        .await?
    {
        tracing::info!(workshop.id = %w.id, "spotlight off");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The snapshots of every topic.
fn snapshot(shown: Shown) -> Vec<LearnerEvent> {
    vec![
        LearnerEvent::Announcements {
            announcements: shown.announcements,
        },
        LearnerEvent::Spotlight {
            spotlight: shown.spotlight,
        },
    ]
}

/// The learner's live announcements and spotlight (WebSocket), or the current ones (JSON).
#[utoipa::path(get, path = "/api/session/events", tag = "classroom",
    params(("ticket" = Option<String>, Query, description = "One-time ticket (WebSocket only) from POST /api/session/ticket")),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "WebSocket of LearnerEvent text frames"),
        (status = 200, body = [LearnerEvent]),
        (status = 401, body = ErrorBody),
    ))]
pub async fn events(
    State(state): State<AppState>,
    access: SeatAccess,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (mut parts, _) = req.into_parts();
    if !clarateach_core::hop::is_upgrade(&parts.headers) {
        let shown = state
            .presenter()
            .shown(state.store(), &access.workshop_id)
            .await?;
        return Ok(Json(snapshot(shown)).into_response());
    }
    let ws = <WebSocketUpgrade as axum::extract::FromRequestParts<AppState>>::from_request_parts(
        &mut parts, &state,
    )
    .await
    .map_err(|_| ApiError::invalid_request("This route needs a WebSocket upgrade."))?;
    Ok(ws.on_upgrade(move |socket: WebSocket| async move {
        let (sink, stream) = socket.split();
        run_events(sink, stream, state, access.workshop_id).await;
    }))
}

/// Sends each topic's snapshot at start and whenever it changes (made through this replica: at
/// once; through another: within [`crate::presenter::REFRESH`]), until the client leaves.
/// Generic over `Sink`/`Stream` for tests.
pub async fn run_events<S, R, E>(mut sink: S, mut stream: R, state: AppState, workshop_id: String)
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    let mut changes = state.presenter().subscribe();
    let _viewer = match state
        .presenter()
        .watch(state.store_arc(), &workshop_id)
        .await
    {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(workshop.id = %workshop_id, error = %clarateach_core::error::error_chain(&e), "cannot read the presenter state");
            return;
        }
    };
    let mut shutdown = state.shutdown_signal();
    let mut sent: Vec<LearnerEvent> = Vec::new();
    loop {
        // Before reading, so a change made while sending is not missed.
        changes.mark_unchanged();
        let now = snapshot(state.presenter().cached(&workshop_id));
        for (i, event) in now.iter().enumerate() {
            if sent.get(i) == Some(event) {
                continue;
            }
            let Ok(text) = serde_json::to_string(event) else {
                continue;
            };
            let send = sink.send(Message::Text(text.into()));
            if !matches!(
                tokio::time::timeout(std::time::Duration::from_secs(10), send).await,
                Ok(Ok(()))
            ) {
                return;
            }
        }
        sent = now;
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = shutdown.wait_for(|v| *v) => return,
            msg = stream.next() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
