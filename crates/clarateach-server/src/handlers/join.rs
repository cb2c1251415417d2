//! `POST /api/join`: a learner trades a join code (and optionally a reconnect code) for a
//! seat and a token. Unknown join codes and unknown reconnect codes are counted by
//! [`crate::throttle`]; past a budget the join is 429 for the rest of the minute.

use clarateach_core::ErrorCode;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use clarateach_core::{
    ids, text, ErrorBody, JoinRequest, JoinResponse, TokenClaims, WorkshopStatus,
};
use clarateach_store::{SeatRecord, StoreError};

use super::BaseUrl;
use crate::error::ApiError;
use crate::extract::{ApiJson, ClientIp};
use crate::join_codes::JoinTarget;
use crate::keys::expiry;
use crate::state::AppState;

/// Join a running workshop.
#[utoipa::path(post, path = "/api/join", tag = "learners", request_body = JoinRequest,
    responses(
        (status = 200, body = JoinResponse),
        (status = 400, body = ErrorBody),
        (status = 404, description = "`workshop_not_found` or `not_found` (unknown reconnect code)", body = ErrorBody),
        (status = 409, description = "`workshop_full` or `workshop_not_running`", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, description = "`too_many_attempts`, with Retry-After", body = ErrorBody),
    ))]
pub async fn join(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    BaseUrl(base): BaseUrl,
    ApiJson(req): ApiJson<JoinRequest>,
) -> Result<Json<JoinResponse>, ApiError> {
    if let Err(secs) = state.throttle().check_code(ip) {
        state.metrics().observe_join("too_many_attempts");
        return Err(ApiError::too_many_attempts(secs));
    }
    let result = join_seat(&state, &base, req, ip).await;
    match &result {
        Ok(joined) => {
            state.throttle().succeeded(ip, &joined.workshop_id);
            state.metrics().observe_join("accepted");
        }
        Err(e) => {
            state.metrics().observe_join(e.code.as_str());
            if e.code == "workshop_not_found" {
                state.throttle().fail_code(ip).await;
            }
        }
    }
    result.map(Json)
}

async fn join_seat(
    state: &AppState,
    base: &str,
    req: JoinRequest,
    ip: std::net::IpAddr,
) -> Result<JoinResponse, ApiError> {
    if req.code.trim().is_empty() || req.code.chars().count() > 40 {
        return Err(ApiError::validation("code must be 1 to 40 characters"));
    }
    // No name (or only spaces) joins anonymously; a name given follows the display-text rule.
    let name = match req.name.as_deref().filter(|n| !n.trim().is_empty()) {
        None => None,
        Some(n) => Some(
            text::display_text(n, text::LEARNER_NAME_MAX)
                .map_err(|e| ApiError::validation(format!("name {e}")))?,
        ),
    };
    let code = ids::normalize_code(&req.code);
    let odehash = req
        .odehash
        .as_deref()
        .map(ids::normalize_odehash)
        .filter(|o| !o.is_empty());
    if let Some(odehash) = odehash {
        let target = running_by_code(state, &code).await?;
        if let Err(secs) = state.throttle().check_reconnect(ip, &target.id) {
            return Err(ApiError::too_many_attempts(secs));
        }
        let found = if ids::is_valid_odehash(&odehash) {
            state.store().seat_by_odehash(&target.id, &odehash).await?
        } else {
            None
        };
        let Some(seat) = found else {
            state.throttle().fail_reconnect(ip, &target.id).await;
            return Err(ApiError::not_found(
                "No seat with that reconnect code in this workshop.",
            ));
        };
        if seat.state == clarateach_core::SeatState::Paused {
            crate::pause::wake(state, &target.id, seat.seat);
        }
        return token_for(state, base, &target, seat);
    }
    let target = match state.join_codes().get(&code) {
        Some(target) => target,
        None => running_by_code(state, &code).await?,
    };
    if let Some(seat) = claim(state, &target, name).await? {
        return token_for(state, base, &target, seat);
    }
    // No seat: the workshop is full, or it stopped (or was deleted and its code reused) since
    // its code was remembered. The store tells which.
    let fresh = running_by_code(state, &code).await?;
    if fresh.id != target.id {
        if let Some(seat) = claim(state, &fresh, name).await? {
            return token_for(state, base, &fresh, seat);
        }
    }
    Err(ApiError::conflict(
        ErrorCode::WorkshopFull,
        "Every seat of this workshop is taken.",
    ))
}

/// Looks the code up in the store: 404 when unknown, 409 when its workshop is not running.
/// A running workshop's code is remembered for the next joins, any other is forgotten.
async fn running_by_code(state: &AppState, code: &str) -> Result<Arc<JoinTarget>, ApiError> {
    let Some(workshop) = state.store().workshop_by_code(code).await? else {
        state.join_codes().forget(code);
        return Err(ApiError::workshop_not_found());
    };
    if workshop.status != WorkshopStatus::Running {
        state.join_codes().forget(code);
        return Err(ApiError::conflict(
            ErrorCode::WorkshopNotRunning,
            "The workshop is not running; ask your instructor.",
        ));
    }
    let target = Arc::new(JoinTarget {
        id: workshop.id,
        name: workshop.name,
    });
    state.join_codes().insert(code, target.clone());
    Ok(target)
}

/// The lowest free seat of `w`, or `None` when it is full or no longer running.
async fn claim(
    state: &AppState,
    w: &JoinTarget,
    name: Option<&str>,
) -> Result<Option<SeatRecord>, ApiError> {
    for _ in 0..5 {
        match state
            .store()
            .claim_seat(&w.id, &ids::odehash(), name, Utc::now())
            .await
        {
            Ok(Some(seat)) => {
                tracing::info!(workshop.id = %w.id, seat = seat.seat, "learner joined");
                return Ok(Some(seat));
            }
            Ok(None) => return Ok(None),
            Err(StoreError::Conflict) => continue, // reconnect code already used in this workshop
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::internal(&StoreError::Conflict))
}

fn token_for(
    state: &AppState,
    base: &str,
    w: &JoinTarget,
    seat: SeatRecord,
) -> Result<JoinResponse, ApiError> {
    let odehash = seat.odehash.unwrap_or_default();
    let (iat, exp) = expiry(state.config().token_ttl);
    let claims = TokenClaims {
        workshop_id: w.id.clone(),
        container_id: ids::container_id(&w.id, seat.seat),
        seat: seat.seat,
        odehash: odehash.clone(),
        agent_id: seat.agent_id,
        exp,
        iat,
        generation: seat.generation,
    };
    let token = state
        .keys()
        .sign(&claims)
        .map_err(|e| ApiError::internal(&e))?;
    Ok(JoinResponse {
        token,
        endpoint: format!("{base}/api/session"),
        odehash,
        seat: seat.seat,
        workshop_id: w.id.clone(),
        workshop_name: w.name.clone(),
    })
}

/// What a learner token stands for (`GET /api/me`).
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LearnerInfo {
    pub workshop_id: String,
    pub workshop_name: String,
    pub seat: u32,
    pub odehash: String,
    /// Base URL of the session gateway.
    pub endpoint: String,
    /// Token expiry, seconds since the epoch.
    pub expires_at: u64,
    /// Template the workshop was created from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The template's README (Markdown, shown to the learner as text), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readme: Option<String>,
}

/// The seat a learner token holds; 401 when the token is tampered, expired, or its workshop is
/// no longer running. Lets the web UI check a stored token before opening the IDE.
#[utoipa::path(get, path = "/api/me", tag = "learners", security(("bearer" = [])),
    responses((status = 200, body = LearnerInfo), (status = 401, body = ErrorBody)))]
pub async fn me(
    State(state): State<AppState>,
    learner: crate::auth::Learner,
    BaseUrl(base): BaseUrl,
) -> Result<Json<LearnerInfo>, ApiError> {
    let c = learner.claims;
    let w = state
        .store()
        .get_workshop(&c.workshop_id)
        .await?
        .ok_or_else(ApiError::workshop_not_found)?;
    let starter = state.store().workshop_starter(&c.workshop_id).await?;
    let (template, readme) = match starter {
        Some(s) => {
            let readme = Some(s.readme).filter(|r| !r.trim().is_empty());
            (Some(s.template), readme)
        }
        None => (None, None),
    };
    Ok(Json(LearnerInfo {
        template,
        readme,
        workshop_id: c.workshop_id,
        workshop_name: w.name,
        seat: c.seat,
        odehash: c.odehash,
        endpoint: format!("{base}/api/session"),
        expires_at: c.exp,
    }))
}
