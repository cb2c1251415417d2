//! Instructor routes for workshops: create, list, get, start, stop, delete. An instructor only
//! ever sees their own workshops; another instructor's is 404.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use clarateach_core::ErrorCode;
use clarateach_core::{
    ids, CreateWorkshopRequest, ErrorBody, ListWorkshopsResponse, StartWorkshopRequest,
    WorkshopResponse, WorkshopStatus,
};
use clarateach_store::{NewWorkshop, StoreError};

use super::BaseUrl;
use crate::auth::Instructor;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::lifecycle::{self, to_api};
use crate::secrets::ApiKey;
use crate::state::AppState;

/// Tries before giving up on finding a free id and join code (1M codes: collisions are rare).
const INSERT_TRIES: usize = 8;

/// Create a workshop (status `created`).
#[utoipa::path(post, path = "/api/workshops", tag = "workshops", request_body = CreateWorkshopRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, body = WorkshopResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "A field is missing, of the wrong type or out of range; `unknown_template` or `unknown_image` naming it", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    instructor: Instructor,
    BaseUrl(base): BaseUrl,
    ApiJson(mut req): ApiJson<CreateWorkshopRequest>,
) -> Result<(StatusCode, Json<WorkshopResponse>), ApiError> {
    req.validate().map_err(ApiError::validation)?;
    let starter = super::templates::apply_template(&state, &instructor, &mut req).await?;
    let api_key = req.api_key.map(ApiKey::new);
    for _ in 0..INSERT_TRIES {
        let id = ids::workshop_id();
        let api_key_enc = match &api_key {
            Some(k) => Some(
                state
                    .secrets()
                    .seal(&id, k)
                    .map_err(|e| ApiError::internal(&e))?,
            ),
            None => None,
        };
        let new = NewWorkshop {
            id: id.clone(),
            instructor_id: instructor.id.clone(),
            name: req.name.trim().to_string(),
            code: ids::join_code(),
            seats: req.seats,
            created_at: Utc::now(),
            image: req.image.clone(),
            limits: req.limits.clone().unwrap_or_default(),
            api_key_enc,
        };
        match state.store().insert_workshop(&new).await {
            Ok(()) => {
                if let Some(s) = &starter {
                    state.store().set_workshop_starter(&id, s).await?;
                }
                tracing::info!(workshop.id = %id, seats = new.seats, instructor.id = %instructor.id, "workshop created");
                let w = instructor.workshop(&state, &id).await?;
                crate::prepare::ahead(&state, &w).await;
                return Ok((
                    StatusCode::CREATED,
                    Json(WorkshopResponse {
                        workshop: to_api(w, &base),
                    }),
                ));
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::internal(&StoreError::Conflict))
}

/// The instructor's workshops, oldest first.
#[utoipa::path(get, path = "/api/workshops", tag = "workshops", security(("bearer" = [])),
    responses((status = 200, body = ListWorkshopsResponse), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    instructor: Instructor,
    BaseUrl(base): BaseUrl,
) -> Result<Json<ListWorkshopsResponse>, ApiError> {
    let mut workshops = Vec::new();
    for w in state.store().list_workshops(&instructor.id).await? {
        workshops.push(lifecycle::to_api_scheduled(&state, w, &base).await?);
    }
    Ok(Json(ListWorkshopsResponse { workshops }))
}

/// One workshop.
#[utoipa::path(get, path = "/api/workshops/{id}", tag = "workshops", security(("bearer" = [])),
    params(("id" = String, Path, description = "Workshop id")),
    responses((status = 200, body = WorkshopResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    instructor: Instructor,
    BaseUrl(base): BaseUrl,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WorkshopResponse>, ApiError> {
    let w = instructor.workshop(&state, &id).await?;
    Ok(Json(WorkshopResponse {
        workshop: lifecycle::to_api_scheduled(&state, w, &base).await?,
    }))
}

/// Start: seats are placed on agents (`provisioning`), `running` once every seat is ready.
/// With `{"at": RFC 3339}` in the future the start is scheduled instead (kept across restarts,
/// shown as `start_at`); a time in the past starts at once.
#[utoipa::path(post, path = "/api/workshops/{id}/start", tag = "workshops", security(("bearer" = [])),
    params(("id" = String, Path, description = "Workshop id")),
    request_body(content = Option<StartWorkshopRequest>, description = "Optional: when to start"),
    responses(
        (status = 202, description = "Provisioning (or already provisioning/running)", body = WorkshopResponse),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`workshop_stopping`", body = ErrorBody),
        (status = 422, description = "The body is not a start request", body = ErrorBody),
        (status = 503, description = "`no_capacity`: no agent with enough free seats; the workshop stays as it was", body = ErrorBody),
    ))]
pub async fn start(
    State(state): State<AppState>,
    instructor: Instructor,
    BaseUrl(base): BaseUrl,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<WorkshopResponse>), ApiError> {
    let req: StartWorkshopRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StartWorkshopRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::validation(format!(
                "The body must be {{\"at\": \"RFC 3339 time\"}} or empty: {e}"
            ))
        })?
    };
    let w = instructor.workshop(&state, &id).await?;
    let w = match req.at {
        Some(at) if at > Utc::now() => {
            if !matches!(
                w.status,
                WorkshopStatus::Created | WorkshopStatus::Stopped | WorkshopStatus::Failed
            ) {
                return Err(ApiError::conflict(
                    ErrorCode::WorkshopRunning,
                    "The workshop is already started; stop it before scheduling a start.",
                ));
            }
            state.store().set_start_at(&w.id, Some(at)).await?;
            tracing::info!(workshop.id = %w.id, start_at = %at, "workshop start scheduled");
            crate::prepare::ahead(&state, &w).await;
            instructor.workshop(&state, &id).await?
        }
        _ => {
            // Starting now replaces any scheduled start.
            state.store().set_start_at(&w.id, None).await?;
            lifecycle::start(&state, w).await?
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(WorkshopResponse {
            workshop: lifecycle::to_api_scheduled(&state, w, &base).await?,
        }),
    ))
}

/// Stop: every workspace is destroyed (volumes kept) and the api key deleted.
#[utoipa::path(post, path = "/api/workshops/{id}/stop", tag = "workshops", security(("bearer" = [])),
    params(("id" = String, Path, description = "Workshop id")),
    responses(
        (status = 200, description = "Stopped", body = WorkshopResponse),
        (status = 202, description = "Still `stopping`: agents are destroying workspaces", body = WorkshopResponse),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn stop(
    State(state): State<AppState>,
    instructor: Instructor,
    BaseUrl(base): BaseUrl,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<WorkshopResponse>), ApiError> {
    let w = instructor.workshop(&state, &id).await?;
    let w = lifecycle::stop(&state, w).await?;
    // Banners and the spotlight end with the workshop.
    if let Err(e) = state.presenter().forget(state.store(), &w.id).await {
        tracing::warn!(workshop.id = %w.id, error = %clarateach_core::error::error_chain(&e), "cannot clear the announcements and spotlight");
    }
    let status = if w.status == WorkshopStatus::Stopped {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        Json(WorkshopResponse {
            workshop: to_api(w, &base),
        }),
    ))
}

/// Delete a workshop that is not running, with its seat volumes.
#[utoipa::path(delete, path = "/api/workshops/{id}", tag = "workshops", security(("bearer" = [])),
    params(("id" = String, Path, description = "Workshop id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`workshop_running`: stop it first", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let w = instructor.workshop(&state, &id).await?;
    lifecycle::delete(&state, w).await?;
    Ok(StatusCode::NO_CONTENT)
}
