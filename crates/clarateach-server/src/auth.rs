//! Auth extractors: a handler that takes [`Instructor`] or [`Learner`] cannot forget the check.
//! Both read `Authorization: Bearer ...` or, for WebSockets (browsers cannot set headers there),
//! a `token` query parameter. Every failure is 401 `unauthorized`.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use clarateach_core::{TokenClaims, WorkshopStatus};
use clarateach_store::WorkshopRecord;

use crate::accounts::hash_token;
use crate::error::ApiError;
use crate::state::AppState;

/// The bearer token of a request: the Authorization header, else the `token` query parameter.
pub fn bearer_token(parts: &Parts) -> Option<String> {
    if let Some(value) = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let mut it = value.splitn(2, ' ');
        if let (Some(scheme), Some(token)) = (it.next(), it.next()) {
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
                return Some(token.trim().to_string());
            }
        }
        return None;
    }
    let query: Query<HashMap<String, String>> = Query::try_from_uri(&parts.uri).ok()?;
    query.0.get("token").filter(|t| !t.is_empty()).cloned()
}

/// An authenticated instructor.
#[derive(Debug, Clone)]
pub struct Instructor {
    pub id: String,
    pub name: String,
}

impl Instructor {
    /// The instructor's workshop `id`; another instructor's workshop is 404, like a missing one.
    pub async fn workshop(&self, state: &AppState, id: &str) -> Result<WorkshopRecord, ApiError> {
        match state.store().get_workshop(id).await? {
            Some(w) if w.instructor_id == self.id => Ok(w),
            _ => Err(ApiError::workshop_not_found()),
        }
    }
}

impl FromRequestParts<AppState> for Instructor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)
            .ok_or_else(|| ApiError::unauthorized("An instructor token is required."))?;
        match state
            .store()
            .instructor_by_token_hash(&hash_token(&token))
            .await?
        {
            Some(rec) => Ok(Self {
                id: rec.id,
                name: rec.name,
            }),
            None => Err(ApiError::unauthorized("The instructor token is not valid.")),
        }
    }
}

/// A learner holding a valid token for a seat of a running workshop.
#[derive(Debug, Clone)]
pub struct Learner {
    pub claims: TokenClaims,
}

impl Learner {
    /// Checks a learner token: signature, expiry, and that the workshop still runs and the seat
    /// still belongs to the token's reconnect code.
    pub async fn verify(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let claims = state
            .keys()
            .verify(token)
            .ok_or_else(|| ApiError::unauthorized("The learner token is not valid."))?;
        let workshop = state.store().get_workshop(&claims.workshop_id).await?;
        if !matches!(workshop.map(|w| w.status), Some(WorkshopStatus::Running)) {
            return Err(ApiError::unauthorized(
                "The token's workshop is not running.",
            ));
        }
        let seat = state
            .store()
            .get_seat(&claims.workshop_id, claims.seat)
            .await?;
        if seat.and_then(|s| s.odehash).as_deref() != Some(claims.odehash.as_str()) {
            return Err(ApiError::unauthorized(
                "The token's seat is no longer held.",
            ));
        }
        Ok(Self { claims })
    }
}

impl FromRequestParts<AppState> for Learner {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)
            .ok_or_else(|| ApiError::unauthorized("A learner token is required."))?;
        Self::verify(state, &token).await
    }
}
