//! Instructor routes for workshop templates (issue 11): create, list, get, delete; and what a
//! workshop takes from one (`POST /api/workshops {template}`): its image and limits unless given
//! explicitly, and a copy of its starter files and README, kept with the workshop.
//! Templates are per instructor: another instructor's template is 404/422 like a missing one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use chrono::Utc;
use clarateach_core::ErrorCode;
use clarateach_core::{
    CreateTemplateRequest, CreateWorkshopRequest, ErrorBody, Limits, ListTemplatesResponse,
    SeatStarter, Template, TemplateResponse, MAX_STARTER_BYTES,
};
use clarateach_store::{StoreError, TemplateRecord, WorkshopStarter};
use sha2::{Digest, Sha256};

use crate::auth::Instructor;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;

/// Request bodies of `POST /api/templates` may carry the starter files (base64 of at most
/// `MAX_STARTER_BYTES`), so the route has its own, larger body limit.
pub const BODY_LIMIT: usize = MAX_STARTER_BYTES * 4 / 3 + 256 * 1024;

fn to_api(t: TemplateRecord) -> Template {
    Template {
        limits: t
            .limits_json
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok()),
        files_bytes: t.files.as_ref().map_or(0, |f| f.len() as u64),
        files_sha256: t.files_sha256,
        name: t.name,
        description: t.description,
        image: t.image,
        readme: t.readme,
        check: t.check_cmd,
        created_at: t.created_at,
    }
}

fn template_not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::TemplateNotFound,
        format!("No template named {name:?}."),
    )
}

/// Create a template.
#[utoipa::path(post, path = "/api/templates", tag = "templates", request_body = CreateTemplateRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, body = TemplateResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "`template_exists`", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "A field is invalid, or `unknown_image`", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiJson(req): ApiJson<CreateTemplateRequest>,
) -> Result<(StatusCode, Json<TemplateResponse>), ApiError> {
    req.validate().map_err(ApiError::validation)?;
    check_image(&state, &req.image).await?;
    let files = match &req.files_tar_gz {
        None => None,
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| ApiError::validation("files_tar_gz must be base64"))?;
            if bytes.len() > MAX_STARTER_BYTES {
                return Err(ApiError::validation(format!(
                    "files_tar_gz must be at most {MAX_STARTER_BYTES} bytes decoded"
                )));
            }
            if !bytes.starts_with(&[0x1f, 0x8b]) {
                return Err(ApiError::validation("files_tar_gz must be a gzipped tar"));
            }
            Some(bytes)
        }
    };
    let limits_json = req
        .limits
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| ApiError::internal(&e))?;
    let rec = TemplateRecord {
        instructor_id: instructor.id.clone(),
        name: req.name.clone(),
        description: req.description.trim().to_string(),
        image: req.image.clone(),
        readme: req.readme.clone(),
        check_cmd: req.check.clone(),
        limits_json,
        files_sha256: files.as_ref().map(|f| hex(&Sha256::digest(f))),
        files,
        created_at: Utc::now(),
    };
    match state.store().insert_template(&rec).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(ApiError::conflict(
                ErrorCode::TemplateExists,
                format!("A template named {:?} exists already.", req.name),
            ))
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(template = %rec.name, instructor.id = %instructor.id, "template created");
    Ok((
        StatusCode::CREATED,
        Json(TemplateResponse {
            template: to_api(rec),
        }),
    ))
}

/// The instructor's templates, by name.
#[utoipa::path(get, path = "/api/templates", tag = "templates", security(("bearer" = [])),
    responses((status = 200, body = ListTemplatesResponse), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    instructor: Instructor,
) -> Result<Json<ListTemplatesResponse>, ApiError> {
    let list = state.store().list_templates(&instructor.id).await?;
    Ok(Json(ListTemplatesResponse {
        templates: list.into_iter().map(to_api).collect(),
    }))
}

/// One template.
#[utoipa::path(get, path = "/api/templates/{name}", tag = "templates", security(("bearer" = [])),
    params(("name" = String, Path, description = "Template name")),
    responses((status = 200, body = TemplateResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<TemplateResponse>, ApiError> {
    let t = state
        .store()
        .get_template(&instructor.id, &name)
        .await?
        .ok_or_else(|| template_not_found(&name))?;
    Ok(Json(TemplateResponse {
        template: to_api(t),
    }))
}

/// Delete a template (workshops made from it keep their copy).
#[utoipa::path(delete, path = "/api/templates/{name}", tag = "templates", security(("bearer" = [])),
    params(("name" = String, Path, description = "Template name")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if state.store().delete_template(&instructor.id, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(template_not_found(&name))
    }
}

/// An image no connected agent has built or can build (a built-in recipe on a host that can
/// build) is refused (422 `unknown_image`, naming it) while at least one agent is connected;
/// with none connected nobody can tell, and `start` reports it.
pub async fn check_image(state: &AppState, image: &str) -> Result<(), ApiError> {
    let agents = state.registry().list().await;
    let known = |list: &[String]| list.iter().any(|i| i == image);
    if agents.is_empty()
        || agents
            .iter()
            .any(|a| known(&a.images) || known(&a.buildable))
    {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::UnknownImage,
        format!(
            "No agent has the image {image:?}; build it on the agents' hosts with \
             `clarateach image build {image}`."
        ),
    ))
}

/// Fills `req`'s image and limits from its template (explicit fields win) and returns the
/// starter to keep with the workshop; 422 `unknown_template` naming it when there is none.
pub async fn apply_template(
    state: &AppState,
    instructor: &Instructor,
    req: &mut CreateWorkshopRequest,
) -> Result<Option<WorkshopStarter>, ApiError> {
    let Some(name) = req.template.clone() else {
        if let Some(image) = &req.image {
            check_image(state, image).await?;
        }
        return Ok(None);
    };
    let t = state
        .store()
        .get_template(&instructor.id, &name)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::UnknownTemplate,
                format!("No template named {name:?} (see GET /api/templates)."),
            )
        })?;
    if req.image.is_none() {
        req.image = Some(t.image.clone());
    }
    if req.limits.is_none() {
        req.limits = t
            .limits_json
            .as_deref()
            .and_then(|j| serde_json::from_str::<Limits>(j).ok());
    }
    if let Some(image) = &req.image {
        check_image(state, image).await?;
    }
    Ok(Some(WorkshopStarter {
        template: t.name,
        readme: t.readme,
        check_cmd: t.check_cmd,
        files: t.files,
        files_sha256: t.files_sha256,
    }))
}

/// The starter files a seat of `workshop_id` gets in a new volume, if its template had any.
pub async fn seat_starter(
    state: &AppState,
    workshop_id: &str,
) -> Result<Option<SeatStarter>, clarateach_store::StoreError> {
    let Some(s) = state.store().workshop_starter(workshop_id).await? else {
        return Ok(None);
    };
    Ok(match (s.files, s.files_sha256) {
        (Some(files), Some(sha256)) => Some(SeatStarter {
            template: s.template,
            sha256,
            tar_gz: base64::engine::general_purpose::STANDARD.encode(files),
        }),
        _ => None,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
