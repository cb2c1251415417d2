//! The agent HTTP server's shared vocabulary: the state every handler gets, the `{code,
//! message}` error, the caller extractors and seat-path parsing. Both route modules
//! ([`crate::api`] and [`crate::recordings_api`]) build on it, so neither imports the other.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use clarateach_core::agent_proto::SeatKey;
use clarateach_core::secret::{bearer_token, constant_time_eq};
use clarateach_core::{ErrorBody, ErrorCode};
use clarateach_isolation::Backend;

use crate::state::{StateError, StateHandle};

/// Shared by every handler of the agent's server.
#[derive(Clone)]
pub struct ApiState {
    pub state: StateHandle,
    pub backend: Arc<dyn Backend>,
    pub data_token: Arc<str>,
    pub agent_token: Arc<str>,
    /// Per-seat cap on the bytes an export archives (`AgentConfig::export_cap_bytes`).
    pub export_cap_bytes: u64,
    /// Terminal recordings of this host's seats.
    pub recorder: Arc<crate::recording::Recorder>,
}

/// An HTTP error answered as `{code, message}`, with the codes every ClaraTeach service uses.
#[derive(Debug)]
pub struct ApiError(
    pub(crate) StatusCode,
    pub(crate) ErrorCode,
    pub(crate) String,
);

impl ApiError {
    pub(crate) fn unauthorized() -> Self {
        Self(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "a valid bearer token is required".into(),
        )
    }
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            message.into(),
        )
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
                ErrorCode::ShuttingDown,
                e.to_string(),
            ),
            // The cause was logged by the reconciler (and reported to the control plane); the
            // caller gets a generic sentence, never the backend's words.
            StateError::CreateFailed(_) => Self(
                StatusCode::BAD_GATEWAY,
                ErrorCode::CreateFailed,
                "creating the workspace failed; see the agent's log".into(),
            ),
        }
    }
}

/// A caller holding the data-path token (the control plane's gateway). A handler that takes
/// this extractor cannot forget the check.
pub struct DataCaller;

/// A caller of the local API: the data-path token or the agent's own token.
pub struct LocalCaller;

impl FromRequestParts<ApiState> for DataCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, ApiError> {
        match bearer_token(&parts.headers) {
            Some(t) if constant_time_eq(t, &s.data_token) => Ok(Self),
            _ => Err(ApiError::unauthorized()),
        }
    }
}

impl FromRequestParts<ApiState> for LocalCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, ApiError> {
        match bearer_token(&parts.headers) {
            Some(t)
                if constant_time_eq(t, &s.data_token) || constant_time_eq(t, &s.agent_token) =>
            {
                Ok(Self)
            }
            _ => Err(ApiError::unauthorized()),
        }
    }
}

/// Parses a seat key from path or body parts, answering 400 on anything odd.
pub(crate) fn seat_key(workshop_id: &str, seat: &str) -> Result<SeatKey, ApiError> {
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

/// Parses the `{workshop_id}/{seat}` path of a data-path route.
pub(crate) fn parse_seat(
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<SeatKey, ApiError> {
    let Path((ws, seat)) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    seat_key(&ws, &seat)
}

pub(crate) fn bad_request_text(message: String) -> ApiError {
    ApiError::bad_request(message)
}

pub(crate) fn not_found(message: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, ErrorCode::NotFound, message.into())
}

pub(crate) fn internal(message: &str) -> ApiError {
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Internal,
        message.into(),
    )
}
