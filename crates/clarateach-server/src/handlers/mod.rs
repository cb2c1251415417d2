//! HTTP handlers, one file per resource. Each handler authenticates through an extractor
//! ([`crate::auth::Instructor`]), reads input through our own rejecting extractors and fails
//! with [`crate::error::ApiError`].

pub mod agents;
pub mod audit;
pub mod broadcast;
pub mod checks;
pub mod health;
pub mod help;
pub mod images;
pub mod join;
pub mod moves;
pub mod pause;
pub mod presenter;
pub mod previews;
pub mod recordings;
pub mod sandboxes;
pub mod screens;
pub mod seats;
pub mod sessions;
pub mod templates;
pub mod workshops;

use axum::extract::FromRequestParts;
use axum::http::header::HOST;
use axum::http::request::Parts;

use clarateach_core::ErrorCode;

use crate::error::ApiError;
use crate::lifecycle::LifecycleError;
use crate::state::AppState;

/// The public base URL of the control plane (no trailing slash): the configured `public_url`,
/// else `http://` + the request's Host header, else the listen address.
#[derive(Debug, Clone)]
pub struct BaseUrl(pub String);

impl FromRequestParts<AppState> for BaseUrl {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(url) = &state.config().public_url {
            return Ok(Self(url.trim_end_matches('/').to_string()));
        }
        let host = parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_string)
            .unwrap_or_else(|| state.config().listen.to_string());
        Ok(Self(format!("http://{host}")))
    }
}

/// The HTTP answer to each lifecycle failure (same codes and sentences as before the domain
/// error existed). Here in the HTTP layer: the domain (`lifecycle`) knows nothing of HTTP, and
/// `error` nothing of the domain.
impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        use LifecycleError as L;
        match e {
            L::NotFound => ApiError::workshop_not_found(),
            L::Stopping => ApiError::conflict(
                ErrorCode::WorkshopStopping,
                "The workshop is still stopping; try again shortly.",
            ),
            L::Running => ApiError::conflict(
                ErrorCode::WorkshopRunning,
                "Stop the workshop before deleting it.",
            ),
            L::NoCapacity(cause) => ApiError::no_capacity(format!(
                "Cannot start the workshop: {cause}. Start an agent (`clarateach agent`) or add capacity."
            )),
            L::Place(_) | L::OpenApiKey(_) | L::Store(_) => ApiError::internal(&e),
        }
    }
}
