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
