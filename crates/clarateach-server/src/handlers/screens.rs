//! `GET /api/workshops/{id}/screens`: every seat's live terminal screen for the instructor's
//! grid. As a WebSocket it is one multiplexed stream for the whole grid: a text frame
//! `{"seat":N,"lines":[...],"cursor":{...},...}` per seat whose screen changed, at most one per
//! seat per second. Without an upgrade it answers the current screens once as JSON (the CLI,
//! scripts).
//!
//! The control plane asks each seat's daemon for `GET /screen?since=V` through the agent's data
//! path once a second; an unchanged screen answers 204, so a quiet seat costs one tiny request
//! and no frame. Instructor only: the instructor's token or session in the header, or (browsers
//! cannot set headers on a WebSocket) a one-time ticket from `POST /api/session/ticket` for any
//! seat of this workshop. A learner's token or ticket is refused: a learner sees no other seat.

use clarateach_core::ErrorCode;
use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use clarateach_core::classroom::{ScreenFrame, ScreenSnapshot};
use clarateach_core::ErrorBody;
use futures::{Sink, SinkExt, Stream, StreamExt};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{bearer_token, instructor_for_token, Instructor};
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::gateway::access::Role;
use crate::gateway::seat_call::{self, SeatRequest};
use crate::state::AppState;

/// How often each seat is asked for its screen.
const PERIOD: Duration = Duration::from_secs(1);
/// Deadline for one seat's answer; a slow seat skips a round, never delays the others.
const SEAT_TIMEOUT: Duration = Duration::from_millis(900);
/// Largest screen answer read from a seat (a snapshot is a few KiB).
const MAX_SCREEN: usize = 64 * 1024;
/// Seats asked at once.
const PARALLEL: usize = 32;

/// `GET /api/workshops/{id}/screens` without an upgrade.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScreensResponse {
    pub screens: Vec<ScreenFrame>,
}

/// The instructor of the workshop a request may see the screens of.
pub struct GridViewer;

impl GridViewer {
    /// Header auth for any request; a ticket only on an upgrade (checked when redeemed).
    async fn authorize(
        state: &AppState,
        parts: &Parts,
        query: Option<&str>,
        workshop_id: &str,
    ) -> Result<String, ApiError> {
        let ticket = query.and_then(|q| {
            q.split('&')
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| *k == "ticket")
                .map(|(_, v)| v.to_string())
        });
        if let Some(ticket) = ticket {
            if !clarateach_core::hop::is_upgrade(&parts.headers) {
                return Err(ApiError::invalid_request(
                    "A ticket opens only a WebSocket; send the token in the Authorization header.",
                ));
            }
            let grant = state.tickets().redeem(&ticket).ok_or_else(|| {
                ApiError::unauthorized("The ticket is not valid: unknown, expired or already used.")
            })?;
            if grant.access.role != Role::Instructor || grant.learner.is_some() {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    ErrorCode::Forbidden,
                    "Only the workshop's instructor can see every seat's screen.",
                ));
            }
            if grant.access.workshop_id != workshop_id {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    ErrorCode::TicketMismatch,
                    "The ticket was issued for another workshop.",
                ));
            }
            return Ok(grant.access.workshop_id);
        }
        let token = bearer_token(parts)
            .ok_or_else(|| ApiError::unauthorized("An instructor token is required."))?;
        let Some((rec, _)) = instructor_for_token(state, &token).await? else {
            return Err(ApiError::unauthorized("The instructor token is not valid."));
        };
        Ok(Instructor::from(rec).workshop(state, workshop_id).await?.id)
    }
}

/// Live screens of every seat (WebSocket), or the current ones once (JSON).
#[utoipa::path(get, path = "/api/workshops/{id}/screens", tag = "classroom",
    params(("id" = String, Path, description = "Workshop id"),
        ("ticket" = Option<String>, Query, description = "One-time ticket (WebSocket only) from POST /api/session/ticket for any seat of this workshop")),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "WebSocket of ScreenFrame text frames"),
        (status = 200, body = ScreensResponse),
        (status = 401, body = ErrorBody),
        (status = 403, description = "A learner's ticket, or one for another workshop", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn screens(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    RawQuery(query): RawQuery,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (mut parts, _) = req.into_parts();
    let workshop_id = GridViewer::authorize(&state, &parts, query.as_deref(), &id).await?;
    if !clarateach_core::hop::is_upgrade(&parts.headers) {
        let mut versions = HashMap::new();
        let screens = poll_round(&state, &workshop_id, &mut versions).await?;
        return Ok(Json(ScreensResponse { screens }).into_response());
    }
    let ws = <WebSocketUpgrade as axum::extract::FromRequestParts<AppState>>::from_request_parts(
        &mut parts, &state,
    )
    .await
    .map_err(|_| ApiError::invalid_request("This route needs a WebSocket upgrade."))?;
    tracing::info!(workshop.id = %workshop_id, "screens stream opened");
    Ok(ws.on_upgrade(move |socket: WebSocket| async move {
        let (sink, stream) = socket.split();
        run_grid(sink, stream, state, workshop_id).await;
    }))
}

/// Streams frames until the client leaves. Generic over `Sink`/`Stream` for tests.
pub async fn run_grid<S, R, E>(mut sink: S, mut stream: R, state: AppState, workshop_id: String)
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    let mut versions = HashMap::new();
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            msg = stream.next() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        }
        let frames = match poll_round(&state, &workshop_id, &mut versions).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(workshop.id = %workshop_id, error = %e, "screens round failed");
                continue;
            }
        };
        for frame in frames {
            let Ok(text) = serde_json::to_string(&frame) else {
                continue;
            };
            let send = sink.send(Message::Text(text.into()));
            if !matches!(tokio::time::timeout(PERIOD * 10, send).await, Ok(Ok(()))) {
                return;
            }
        }
    }
}

/// Asks every seat for its screen once; returns the ones that changed since `versions`.
async fn poll_round(
    state: &AppState,
    workshop_id: &str,
    versions: &mut HashMap<u32, u64>,
) -> Result<Vec<ScreenFrame>, ApiError> {
    let seats: Vec<u32> = state
        .store()
        .list_seats(workshop_id)
        .await?
        .into_iter()
        .filter(|s| s.agent_id.is_some())
        .map(|s| s.seat)
        .collect();
    let asks = seats.into_iter().map(|seat| {
        let since = versions.get(&seat).copied();
        async move { (seat, seat_screen(state, workshop_id, seat, since).await) }
    });
    let answers: Vec<(u32, Option<ScreenSnapshot>)> = futures::stream::iter(asks)
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut frames = Vec::new();
    for (seat, screen) in answers {
        if let Some(screen) = screen {
            versions.insert(seat, screen.version);
            frames.push(ScreenFrame { seat, screen });
        }
    }
    frames.sort_by_key(|f| f.seat);
    Ok(frames)
}

/// One seat's screen when it changed since `since`; `None` when unchanged, absent or failed.
pub async fn seat_screen(
    state: &AppState,
    workshop_id: &str,
    seat: u32,
    since: Option<u64>,
) -> Option<ScreenSnapshot> {
    let path = match since {
        Some(v) => format!("screen?session=main&since={v}"),
        None => "screen?session=main".to_string(),
    };
    let req = SeatRequest::get(path, SEAT_TIMEOUT, MAX_SCREEN);
    match seat_call::call(state, workshop_id, seat, req).await {
        Ok(a) if a.status == StatusCode::OK => match serde_json::from_slice(&a.body) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(workshop.id = workshop_id, seat, error = %e, "unreadable screen");
                None
            }
        },
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(workshop.id = workshop_id, seat, error = %e, "no screen");
            None
        }
    }
}
