//! The agent's HTTP server: the local API of seed 000 (`/health`, `/vms`) and the data path
//! (`/seats/{workshop_id}/{seat}/...`) the control plane's gateway uses to reach each seat's
//! workspace daemon, plus `/seats/{workshop_id}/{seat}/export` for archives of a seat volume.

use clarateach_core::ErrorCode;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get};
use axum::{Json, Router};
use clarateach_core::HealthResponse;
use serde::Deserialize;

use crate::export::{self, ExportFormat};
use crate::http::seat_key;
pub use crate::http::{ApiError, ApiState, DataCaller, LocalCaller};
use crate::state::SeatView;

/// Most bytes a local-API JSON body may have (a `create_vm` body is under 100).
const MAX_JSON_BODY: usize = 64 * 1024;

/// Parses a JSON body with the codes every ClaraTeach service uses: no JSON content type or not
/// JSON is 400 `invalid_request`, JSON of the wrong shape 422 `validation_failed`, a body over
/// the limit 413 `payload_too_large`.
fn parse_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                "the request body is too large".into(),
            )
        } else {
            ApiError::bad_request("cannot read the request body")
        }
    })?;
    let json_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| {
            v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
        });
    if !json_type {
        return Err(ApiError::bad_request(
            "expected a JSON body with `Content-Type: application/json`",
        ));
    }
    serde_json::from_slice(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ValidationFailed,
            format!("invalid request body: {e}"),
        ),
        _ => ApiError::bad_request("the request body is not valid JSON"),
    })
}

/// Builds the agent's router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route(
            "/vms",
            get(list_vms)
                .post(create_vm)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_JSON_BODY)),
        )
        .route("/vms/{workshop_id}/{seat_id}", delete(delete_vm))
        .route("/seats/{workshop_id}/{seat}/export", get(export_seat))
        .route(
            "/seats/{workshop_id}/{seat}/recordings",
            get(crate::recordings_api::list),
        )
        .route(
            "/seats/{workshop_id}/{seat}/recordings/{name}",
            get(crate::recordings_api::get),
        )
        .route("/seats/{workshop_id}/{seat}/{*rest}", any(relay_seat))
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such route".into(),
            )
        })
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

async fn list_vms(
    _: LocalCaller,
    State(s): State<ApiState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let vms: Vec<SeatView> = s.state.list().await?;
    Ok(Json(serde_json::json!({ "vms": vms })))
}

async fn create_vm(
    _: LocalCaller,
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let req: CreateVm = parse_json(&headers, body)?;
    let key = seat_key(&req.workshop_id, &req.seat_id.to_string())?;
    let view = s.state.create_local(key).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn delete_vm(
    _: LocalCaller,
    State(s): State<ApiState>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, ApiError> {
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
    _: DataCaller,
    State(s): State<ApiState>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
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
    let files = export::stream(export::ExportJob {
        source: s.backend.export_source(&key),
        owner: s.backend.volume_owner(&key),
        prefix: q.prefix.clone(),
        format,
        cap_bytes: s.export_cap_bytes,
    });
    // The workshop export (fragments) carries the seat's terminal recordings after its files.
    let body = match format {
        ExportFormat::TarFragment => {
            use futures::StreamExt;
            let casts = Arc::clone(&s.recorder).tar_entries(key, q.prefix);
            Body::from_stream(files.chain(casts))
        }
        ExportFormat::TarGz => Body::from_stream(files),
    };
    Ok(([(http::header::CONTENT_TYPE, content_type)], body).into_response())
}

async fn relay_seat(
    _: DataCaller,
    State(s): State<ApiState>,
    req: Request,
) -> Result<Response, ApiError> {
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
            ErrorCode::SeatNotReady,
            "this seat has no running workspace".into(),
        ));
    };
    let tap = (rest == "terminal" && clarateach_core::hop::is_upgrade(req.headers()))
        .then(|| recorded_session(req.uri().query()))
        .flatten()
        .and_then(|session| s.recorder.start(&key, &session));
    crate::relay::relay_recorded(&ep, req, &target, tap).await.map_err(|e| {
        tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, error = %crate::reconcile::error_chain(&e), "relay failed");
        ApiError(StatusCode::BAD_GATEWAY, ErrorCode::WorkspaceUnreachable, "the seat's workspace did not answer".into())
    })
}

/// The session a terminal connection records, if it is recorded: interactive (the learner) and
/// take-over connections are; watchers see the same bytes and are not. The gateway always sets
/// `mode`; a connection without one is the daemon's default, interactive.
fn recorded_session(query: Option<&str>) -> Option<String> {
    let mut session = "main".to_string();
    let mut mode = "interactive";
    for (k, v) in query
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
    {
        match k {
            "session" if !v.is_empty() => session = v.to_string(),
            "mode" => mode = v,
            _ => {}
        }
    }
    matches!(mode, "interactive" | "takeover").then_some(session)
}

#[cfg(test)]
mod recorded_tests {
    #[test]
    fn which_connections_are_recorded() {
        use super::recorded_session as r;
        assert_eq!(
            r(Some("session=main&mode=interactive")).as_deref(),
            Some("main")
        );
        assert_eq!(r(Some("session=s2&mode=takeover")).as_deref(), Some("s2"));
        assert_eq!(r(None).as_deref(), Some("main"));
        assert_eq!(r(Some("session=main&mode=watch")), None);
    }
}
