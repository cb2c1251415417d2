//! A daemon started ahead of its seat's Start (`--await-activation`, issue 12: a class ready
//! within a second). The sandbox backend runs the seat before the workshop starts, frozen, with
//! no environment of the workshop and a start-up token of its own; at Start the agent thaws it
//! and sends `POST /activate` with the token it uses from then on and the workshop's
//! environment (the API key). Until then every route but `/activate` answers 409
//! `not_activated`, so no shell or command can start without the workshop's environment; after
//! it the start-up token is dead and a second activation answers 409 `already_activated`.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use bytes::Bytes;
use clarateach_core::{ActivateRequest, ErrorCode, SuccessResponse};

use crate::error::{parse_json, ApiError};
use crate::AppState;

/// The token and environment a seat got at its Start.
struct Activated {
    token: Arc<str>,
    env: Vec<(String, String)>,
}

/// Whether the daemon waits for its activation, and what that brought.
#[derive(Default)]
pub struct Activation {
    awaiting: bool,
    done: OnceLock<Activated>,
}

impl std::fmt::Debug for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activation")
            .field("awaiting", &self.awaiting)
            .field("activated", &self.done.get().is_some())
            .finish()
    }
}

impl Activation {
    pub fn new(awaiting: bool) -> Self {
        Self {
            awaiting,
            done: OnceLock::new(),
        }
    }

    /// The token requests must bear: the activation's once it came, else the start-up one.
    pub fn token<'a>(&'a self, startup: &'a str) -> &'a str {
        self.done.get().map_or(startup, |a| &a.token)
    }

    /// Routes other than `/activate` are served: the daemon was not started ahead, or it was
    /// activated.
    pub fn serving(&self) -> bool {
        !self.awaiting || self.done.get().is_some()
    }

    /// The workshop's environment for shells and commands (empty without an activation).
    pub fn env(&self) -> &[(String, String)] {
        self.done.get().map_or(&[], |a| &a.env)
    }
}

/// Checks a set of environment variables a caller gives: names without `=` or NUL, values
/// without NUL.
pub fn check_env(env: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if let Some(k) = env.keys().find(|k| k.is_empty() || k.contains(['=', '\0'])) {
        return Err(ApiError::bad_request(
            ErrorCode::BadEnv,
            format!("invalid environment variable name {k:?}"),
        ));
    }
    if env.values().any(|v| v.contains('\0')) {
        return Err(ApiError::bad_request(
            ErrorCode::BadEnv,
            "environment values must not contain NUL",
        ));
    }
    Ok(())
}

/// `POST /activate` (behind the token check, which takes the start-up token until it succeeds).
pub async fn handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SuccessResponse>, ApiError> {
    let act = &state.activation;
    if !act.awaiting {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::AlreadyActivated,
            "This daemon was started with its seat; it takes no activation.",
        ));
    }
    let req: ActivateRequest = parse_json(&headers, body)?;
    if req.token.len() < 16 {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidRequest,
            "the new token must have at least 16 characters",
        ));
    }
    check_env(&req.env)?;
    let activated = Activated {
        token: req.token.into(),
        env: req.env.into_iter().collect(),
    };
    if act.done.set(activated).is_err() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::AlreadyActivated,
            "This seat was activated already.",
        ));
    }
    tracing::info!("seat activated");
    Ok(Json(SuccessResponse { success: true }))
}
