//! The agent's HTTP server: the local API of seed 000 (`/health`, `/vms`) and the data path
//! (`/seats/{workshop_id}/{seat}/...`) the control plane's gateway uses to reach each seat's
//! workspace daemon, plus `/seats/{workshop_id}/{seat}/export` for archives of a seat volume.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get};
use axum::{Json, Router};
use clarateach_core::agent_proto::SeatKey;
use clarateach_core::{ErrorBody, HealthResponse};
use clarateach_isolation::Backend;
use serde::Deserialize;

use crate::export::{self, ExportFormat};
use crate::identity::secret_eq;
use crate::state::{SeatView, StateError, StateHandle};

/// Shared by every handler of the agent's server.
#[derive(Clone)]
pub struct ApiState {
    pub state: StateHandle,
    pub backend: Arc<dyn Backend>,
    pub data_token: Arc<str>,
    pub agent_token: Arc<str>,
    /// Per-seat cap on the bytes an export archives (`AgentConfig::export_cap_bytes`).
    pub export_cap_bytes: u64,
}

/// An HTTP error answered as `{code, message}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, &'static str, String);

impl ApiError {
    fn unauthorized() -> Self {
        Self(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required".into(),
        )
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, "bad_request", message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody::new(self.1, self.2))).into_response()
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::ShuttingDown => Self(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                e.to_string(),
            ),
            StateError::CreateFailed(_) => {
                Self(StatusCode::BAD_GATEWAY, "create_failed", e.to_string())
            }
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

impl ApiState {
    fn check_data(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match bearer(headers) {
            Some(t) if secret_eq(t, &self.data_token) => Ok(()),
            _ => Err(ApiError::unauthorized()),
        }
    }

    fn check_local(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match bearer(headers) {
            Some(t) if secret_eq(t, &self.data_token) || secret_eq(t, &self.agent_token) => Ok(()),
            _ => Err(ApiError::unauthorized()),
        }
    }
}

/// Builds the agent's router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/vms", get(list_vms).post(create_vm))
        .route("/vms/{workshop_id}/{seat_id}", delete(delete_vm))
        .route("/seats/{workshop_id}/{seat}/export", get(export_seat))
        .route("/seats/{workshop_id}/{seat}/{*rest}", any(relay_seat))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "not_found", "no such route".into()) })
        .with_state(state)
}

async fn health() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateVm {
    workshop_id: String,
    seat_id: u32,
}

/// Parses a seat key from path or body parts, answering 400 on anything odd.
fn seat_key(workshop_id: &str, seat: &str) -> Result<SeatKey, ApiError> {
    let ok = !workshop_id.is_empty()
        && workshop_id.len() <= 64
        && workshop_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(ApiError::bad_request(
            "workshop_id must be 1-64 letters, digits, '-' or '_'",
        ));
    }
    match seat.parse::<u32>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(SeatKey {
            workshop_id: workshop_id.to_string(),
            seat: n,
        }),
        _ => Err(ApiError::bad_request(
            "seat must be a number from 1 to 1000",
        )),
    }
}

async fn list_vms(
    State(s): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.check_local(&headers)?;
    let vms: Vec<SeatView> = s.state.list().await?;
    Ok(Json(serde_json::json!({ "vms": vms })))
}

async fn create_vm(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    s.check_local(&headers)?;
    let req: CreateVm = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
    let key = seat_key(&req.workshop_id, &req.seat_id.to_string())?;
    let view = s.state.create_local(key).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn delete_vm(
    State(s): State<ApiState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, ApiError> {
    s.check_local(&headers)?;
    let Path((ws, seat)) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    s.state.destroy_local(seat_key(&ws, &seat)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct ExportQuery {
    prefix: Option<String>,
    format: Option<String>,
}

async fn export_seat(
    State(s): State<ApiState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    s.check_data(&headers)?;
    let Path((ws, seat)) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let key = seat_key(&ws, &seat)?;
    let format = ExportFormat::parse(q.format.as_deref())
        .ok_or_else(|| ApiError::bad_request("format must be tar.gz or tar-fragment"))?;
    if let Some(p) = &q.prefix {
        if !export::valid_prefix(p) {
            return Err(ApiError::bad_request(
                "prefix must be 1-64 letters, digits, '-', '_' or '.'",
            ));
        }
    }
    let content_type = match format {
        ExportFormat::TarGz => "application/gzip",
        ExportFormat::TarFragment => "application/x-tar",
    };
    let body = Body::from_stream(export::stream(export::ExportJob {
        source: s.backend.export_source(&key),
        owner: s.backend.volume_owner(&key),
        prefix: q.prefix,
        format,
        cap_bytes: s.export_cap_bytes,
    }));
    Ok(([(http::header::CONTENT_TYPE, content_type)], body).into_response())
}

async fn relay_seat(State(s): State<ApiState>, req: Request) -> Result<Response, ApiError> {
    s.check_data(req.headers())?;
    // Take the raw (still percent-encoded) path so the daemon sees exactly what the client sent.
    let mut parts = req.uri().path().splitn(5, '/').skip(2);
    let (ws, seat, rest) = match (parts.next(), parts.next(), parts.next()) {
        (Some(ws), Some(seat), Some(rest)) => (ws, seat, rest),
        _ => {
            return Err(ApiError::bad_request(
                "expected /seats/{workshop_id}/{seat}/{path}",
            ))
        }
    };
    let key = seat_key(ws, seat)?;
    let mut target = format!("/{rest}");
    if let Some(q) = req.uri().query() {
        target.push('?');
        target.push_str(q);
    }
    let Some(ep) = s.state.route(&key) else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "seat_not_ready",
            "this seat has no running workspace".into(),
        ));
    };
    crate::relay::relay(&ep, req, &target).await.map_err(|e| {
        tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, error = %crate::reconcile::error_chain(&e), "relay failed");
        ApiError(StatusCode::BAD_GATEWAY, "workspace_unreachable", "the seat's workspace did not answer".into())
    })
}
