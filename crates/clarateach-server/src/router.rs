//! The control plane's router: API routes, the gateway's routes, metrics middleware, body
//! limit, JSON 404/405 for the API, and the web UI as fallback for everything else.

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{any, get, post};
use axum::Router;

use crate::error::ApiError;
use crate::handlers::{agents, health, join, seats, sessions, workshops};
use crate::state::AppState;
use crate::{gateway, metrics};

/// Builds the full router; `web` (the UI) answers every path the API does not.
pub fn build(state: AppState, web: Option<Router>) -> Router {
    let limit = state.config().body_limit;
    let api = Router::new()
        .route("/api/health", get(health::health))
        .route("/api/openapi.json", get(health::openapi))
        .route("/metrics", get(health::metrics))
        .route(
            "/api/workshops",
            get(workshops::list).post(workshops::create),
        )
        .route(
            "/api/workshops/{id}",
            get(workshops::get).delete(workshops::delete),
        )
        .route("/api/workshops/{id}/start", post(workshops::start))
        .route("/api/workshops/{id}/stop", post(workshops::stop))
        .route("/api/workshops/{id}/seats", get(seats::list))
        .route("/api/workshops/{id}/seats/{seat}/reset", post(seats::reset))
        .route(
            "/api/instructor/sessions",
            post(sessions::create).delete(sessions::revoke),
        )
        .route("/api/session/ticket", post(sessions::ticket))
        .route("/api/join", post(join::join))
        .route("/api/me", get(join::me))
        .route("/api/agents", get(agents::list))
        .route("/api/agents/connect", get(agents::connect))
        .merge(gateway::routes())
        .route("/api/{*rest}", any(api_not_found))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .with_state(state);
    match web {
        Some(web) => api.fallback_service(web),
        None => api.fallback(api_not_found),
    }
}

async fn api_not_found() -> ApiError {
    ApiError::not_found("No such route.")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This route does not accept that method.",
    )
}
