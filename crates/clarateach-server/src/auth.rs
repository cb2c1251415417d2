//! Auth extractors: a handler that takes [`Instructor`] or [`Learner`] cannot forget the check.
//! Both read only `Authorization: Bearer ...`: a long-lived token in a URL ends up in proxies'
//! access logs and browser history, so `?token=` is refused everywhere (WebSockets, which
//! browsers cannot give headers, use a one-time ticket instead, see `handlers::sessions`).
//! Every failure is 401 `unauthorized`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use clarateach_core::{TokenClaims, WorkshopStatus};
use clarateach_store::{InstructorRecord, WorkshopRecord};

use crate::accounts::hash_token;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::state::AppState;

/// Prefix of instructor session tokens (the long-lived instructor token starts with `cti_`).
pub const SESSION_TOKEN_PREFIX: &str = "cts_";

/// The bearer token of a request, from the Authorization header only.
pub fn bearer_token(parts: &Parts) -> Option<String> {
    clarateach_core::secret::bearer_token(&parts.headers).map(str::to_string)
}

/// Which kind of instructor credential a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstructorCredential {
    /// The long-lived token `instructor add` printed.
    Token,
    /// A short-lived browser session minted from it.
    Session,
}

/// The instructor a token (long-lived or session) belongs to; `None` when it is neither.
pub async fn instructor_for_token(
    state: &AppState,
    token: &str,
) -> Result<Option<(InstructorRecord, InstructorCredential)>, ApiError> {
    let hash = hash_token(token);
    if token.starts_with(SESSION_TOKEN_PREFIX) {
        let found = state
            .store()
            .instructor_by_session_hash(&hash, chrono::Utc::now())
            .await?;
        return Ok(found.map(|r| (r, InstructorCredential::Session)));
    }
    let found = state.store().instructor_by_token_hash(&hash).await?;
    Ok(found.map(|r| (r, InstructorCredential::Token)))
}

/// An authenticated instructor (by the long-lived token or a session token).
#[derive(Debug, Clone)]
pub struct Instructor {
    pub id: String,
    pub name: String,
}

impl From<InstructorRecord> for Instructor {
    fn from(rec: InstructorRecord) -> Self {
        Self {
            id: rec.id,
            name: rec.name,
        }
    }
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
        match instructor_for_token(state, &token).await? {
            Some((rec, _)) => Ok(rec.into()),
            None => Err(ApiError::unauthorized("The instructor token is not valid.")),
        }
    }
}

/// An instructor and one of their workshops, the one the route's `{id}` names: the preamble of
/// the `/api/workshops/{id}/...` handlers in one extractor. 401 without a valid instructor token
/// (checked first, as when a handler takes [`Instructor`] before the path), 404 for a workshop
/// that is missing or another instructor's ([`Instructor::workshop`]).
#[derive(Debug, Clone)]
pub struct OwnedWorkshop {
    pub instructor: Instructor,
    pub workshop: WorkshopRecord,
}

impl FromRequestParts<AppState> for OwnedWorkshop {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let instructor = Instructor::from_request_parts(parts, state).await?;
        let ApiPath(params) =
            ApiPath::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
                .await?;
        let id = params
            .get("id")
            .ok_or_else(|| ApiError::invalid_request("The route names no workshop."))?;
        let workshop = instructor.workshop(state, id).await?;
        Ok(Self {
            instructor,
            workshop,
        })
    }
}

/// A learner holding a valid token for a seat of a running workshop.
#[derive(Debug, Clone)]
pub struct Learner {
    pub claims: TokenClaims,
}

impl Learner {
    /// Checks a learner token: signature, expiry, and that the workshop still runs and the seat
    /// still belongs to the token's reconnect code and generation (a reset refuses older ones).
    pub async fn verify(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let claims = state
            .keys()
            .verify(token)
            .ok_or_else(|| ApiError::unauthorized("The learner token is not valid."))?;
        Self::check(state, claims).await
    }

    /// The store half of [`Learner::verify`] for claims whose signature was already checked
    /// (a ticket re-checks them when it is redeemed: the seat may have been reset since).
    pub async fn check(state: &AppState, claims: TokenClaims) -> Result<Self, ApiError> {
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
        let held = seat.is_some_and(|s| {
            s.generation == claims.generation && s.odehash.as_deref() == Some(&claims.odehash)
        });
        if !held {
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
