//! The main origin's side of previews (issue 12): which ports of a seat listen, as its daemon
//! finds them, with their URLs; the learner's public/private toggle per port (kept in the store,
//! `PreviewStore`, so it survives a restart and holds on every replica); and the one-time
//! ticket that signs the seat's learner (or an instructor of its workshop) in to one preview
//! host. The preview traffic itself never touches this origin (see `gateway::preview`).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use clarateach_core::preview::{
    ListeningPorts, Preview, PreviewAccess, PreviewList, PreviewOpen, PreviewTarget,
};
use clarateach_core::{ErrorBody, ErrorCode};

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::gateway::access::{authorize, SeatSelector};
use crate::gateway::preview::{self, PreviewGrant, AUTH_PATH};
use crate::gateway::seat_call::{self, SeatRequest};
use crate::gateway::{Role, SeatAccess};
use crate::state::AppState;

/// The host the browser reached the control plane as (for the preview URLs' port).
fn host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost")
        .to_string()
}

async fn listening(state: &AppState, access: &SeatAccess) -> Result<Vec<u16>, ApiError> {
    let answer = seat_call::call(
        state,
        &access.workshop_id,
        access.seat,
        SeatRequest::get("previews", Duration::from_secs(3), 64 * 1024),
    )
    .await
    .map_err(|e| {
        tracing::debug!(workshop.id = %access.workshop_id, seat = access.seat, error = %e, "listing previews failed");
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::WorkspaceUnreachable,
            "The seat's workspace did not answer.",
        )
    })?;
    if !answer.status.is_success() {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::WorkspaceUnreachable,
            "The seat's workspace did not answer.",
        ));
    }
    let ports: ListeningPorts = serde_json::from_slice(&answer.body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::WorkspaceUnreachable,
            "The seat's workspace gave a malformed answer.",
        )
    })?;
    Ok(ports.ports.into_iter().take(64).collect())
}

/// Ports listening in the seat, with their preview URLs and whether each is public. A learner
/// lists their own seat; an instructor names one with `workshop_id` and `seat`.
#[utoipa::path(get, path = "/api/session/previews", tag = "session", security(("bearer" = [])),
    params(
        ("workshop_id" = Option<String>, Query, description = "Instructors: the workshop"),
        ("seat" = Option<u32>, Query, description = "Instructors: the seat"),
    ),
    responses(
        (status = 200, body = PreviewList),
        (status = 401, body = ErrorBody),
        (status = 502, body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    access: SeatAccess,
    headers: HeaderMap,
) -> Result<Json<PreviewList>, ApiError> {
    crate::pause::admit(&state, &access).await?;
    let host = host(&headers);
    let ports = listening(&state, &access).await?;
    let public = state
        .store()
        .public_preview_ports(&access.workshop_id, access.seat)
        .await?;
    let previews = ports
        .into_iter()
        .map(|port| Preview {
            port,
            url: preview::url(&state, &host, &access.workshop_id, access.seat, port),
            public: public.contains(&port),
        })
        .collect();
    Ok(Json(PreviewList { previews }))
}

fn port_of(port: u32) -> Result<u16, ApiError> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| ApiError::invalid_request("port must be 1-65535."))
}

/// The learner makes one port of their seat public (anyone with the URL) or private again.
#[utoipa::path(put, path = "/api/session/previews/{port}", tag = "session",
    params(("port" = u16, Path, description = "Port inside the seat")),
    request_body = PreviewAccess, security(("bearer" = [])),
    responses(
        (status = 200, body = Preview),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ))]
pub async fn set_public(
    State(state): State<AppState>,
    access: SeatAccess,
    ApiPath(port): ApiPath<u32>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PreviewAccess>,
) -> Result<Json<Preview>, ApiError> {
    let port = port_of(port)?;
    if access.role != Role::Learner {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "Only the seat's learner shares its previews.",
        ));
    }
    // In the store: a control-plane restart or another replica keeps the port as set here.
    state
        .store()
        .set_preview_public(&access.workshop_id, access.seat, port, body.public)
        .await?;
    Ok(Json(Preview {
        port,
        url: preview::url(
            &state,
            &host(&headers),
            &access.workshop_id,
            access.seat,
            port,
        ),
        public: body.public,
    }))
}

/// A URL on the preview's own origin with a one-time ticket (30 s): opening it signs this
/// browser in to that one preview host (a cookie of its own) and shows the app.
#[utoipa::path(post, path = "/api/session/previews/{port}/open", tag = "session",
    params(
        ("port" = u16, Path, description = "Port inside the seat"),
        ("workshop_id" = Option<String>, Query, description = "Instructors: the workshop"),
        ("seat" = Option<u32>, Query, description = "Instructors: the seat"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, body = PreviewOpen),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn open(
    State(state): State<AppState>,
    ApiPath(port): ApiPath<u32>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<PreviewOpen>, ApiError> {
    let port = port_of(port)?;
    let token = clarateach_core::secret::bearer_token(&headers)
        .ok_or_else(|| ApiError::unauthorized("A learner or instructor token is required."))?;
    let seat = match query.get("seat") {
        Some(s) => Some(
            s.parse::<u32>()
                .map_err(|_| ApiError::invalid_request("seat must be a positive number."))?,
        ),
        None => None,
    };
    let selector = SeatSelector {
        workshop_id: query.get("workshop_id").map(String::as_str),
        seat,
        mode: None,
    };
    let grant = authorize(&state, token, selector).await?;
    let access = grant.access;
    let ticket = state
        .previews()
        .issue_ticket(PreviewGrant {
            target: PreviewTarget {
                port,
                workshop_id: access.workshop_id.clone(),
                seat: access.seat,
            },
            role: access.role,
            learner: grant.learner,
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::SeatUnavailable,
                "Too many preview tickets; try again in a moment.",
            )
        })?;
    let base = preview::url(
        &state,
        &host(&headers),
        &access.workshop_id,
        access.seat,
        port,
    );
    Ok(Json(PreviewOpen {
        url: format!(
            "{}{}?ticket={ticket}",
            base.trim_end_matches('/'),
            AUTH_PATH
        ),
    }))
}
