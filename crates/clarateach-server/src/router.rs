//! The control plane's router: API routes, the gateway's routes, metrics middleware, body
//! limits (small JSON bodies for the API, the file limit for what the gateway streams to a seat),
//! JSON 404/405 for the API, the web UI as fallback for everything else, and the browser
//! hardening headers on all of it.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use clarateach_core::ErrorCode;

use crate::error::ApiError;
use crate::handlers::moves;
use crate::handlers::{
    agents, health, help, images, join, pause, presenter, previews, recordings, sandboxes, screens,
    seats, sessions, templates, workshops,
};
use crate::handlers::{audit, broadcast, checks};
use crate::state::AppState;
use crate::{gateway, headers, metrics};

/// Builds the full router; `web` (the UI) answers every path the API does not.
pub fn build(state: AppState, web: Option<Router>) -> Router {
    let limit = state.config().body_limit;
    let file_limit = state.config().file_body_limit;
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
        .route(
            "/api/sandboxes",
            get(sandboxes::list).post(sandboxes::create),
        )
        .route(
            "/api/sandboxes/{id}",
            get(sandboxes::get).delete(sandboxes::delete),
        )
        .route("/api/sandboxes/{id}/run", post(sandboxes::run))
        .route("/api/sandboxes/{id}/exec", get(sandboxes::exec))
        .route(
            "/api/sandboxes/{id}/files/{*path}",
            get(sandboxes::read_file).put(sandboxes::write_file),
        )
        .route("/api/workshops/{id}/start", post(workshops::start))
        .route("/api/workshops/{id}/stop", post(workshops::stop))
        .route("/api/workshops/{id}/seats", get(seats::list))
        .route("/api/workshops/{id}/seats/{seat}/reset", post(seats::reset))
        .route(
            "/api/workshops/{id}/seats/{seat}/move",
            post(moves::move_seat),
        )
        .route("/api/session/seat", get(moves::session_seat))
        .route("/api/workshops/{id}/pause", post(pause::pause_workshop))
        .route("/api/workshops/{id}/resume", post(pause::resume_workshop))
        .route(
            "/api/workshops/{id}/seats/{seat}/pause",
            post(pause::pause_seat),
        )
        .route(
            "/api/workshops/{id}/seats/{seat}/resume",
            post(pause::resume_seat),
        )
        .route(
            "/api/workshops/{id}/idle-policy",
            axum::routing::put(pause::idle_policy),
        )
        .route("/api/workshops/{id}/screens", get(screens::screens))
        .route("/api/workshops/{id}/help", get(help::list))
        .route(
            "/api/workshops/{id}/help/{help_id}/claim",
            post(help::claim),
        )
        .route(
            "/api/workshops/{id}/help/{help_id}/resolve",
            post(help::resolve),
        )
        .route("/api/session/help", get(help::mine).post(help::ask))
        .route(
            "/api/workshops/{id}/announcements",
            get(presenter::list_announcements).post(presenter::announce),
        )
        .route(
            "/api/workshops/{id}/announcements/{announcement_id}",
            axum::routing::delete(presenter::dismiss),
        )
        .route(
            "/api/workshops/{id}/spotlight",
            get(presenter::spotlight_get)
                .put(presenter::spotlight_on)
                .delete(presenter::spotlight_off),
        )
        .route("/api/session/events", get(presenter::events))
        .route("/api/session/spotlight", get(gateway::spotlight::spotlight))
        .route(
            "/api/workshops/{id}/seats/{seat}/recordings",
            get(recordings::list),
        )
        .route(
            "/api/workshops/{id}/seats/{seat}/recordings/{name}",
            get(recordings::get),
        )
        .route(
            "/api/workshops/{id}/broadcast",
            get(broadcast::latest)
                .post(broadcast::broadcast)
                .layer(DefaultBodyLimit::max(limit.max(broadcast::BODY_LIMIT))),
        )
        .route("/api/session/broadcast", get(broadcast::mine))
        .route(
            "/api/workshops/{id}/checks",
            get(checks::latest).post(checks::run),
        )
        .route("/api/workshops/{id}/audit", get(audit::list))
        .route("/api/session/presence", get(audit::presence))
        .route(
            "/api/instructor/sessions",
            post(sessions::create).delete(sessions::revoke),
        )
        .route("/api/session/ticket", post(sessions::ticket))
        .route("/api/session/previews", get(previews::list))
        .route(
            "/api/session/previews/{port}",
            axum::routing::put(previews::set_public),
        )
        .route("/api/session/previews/{port}/open", post(previews::open))
        .route("/api/join", post(join::join))
        .route("/api/me", get(join::me))
        .route(
            "/api/templates",
            get(templates::list)
                .post(templates::create)
                .layer(DefaultBodyLimit::max(limit.max(templates::BODY_LIMIT))),
        )
        .route(
            "/api/templates/{name}",
            get(templates::get).delete(templates::delete),
        )
        .route("/api/images", get(images::list))
        .route("/api/agents", get(agents::list))
        .route("/api/agents/connect", get(agents::connect))
        .merge(gateway::routes().layer(from_fn_with_state(FileLimit(file_limit), limit_stream)))
        .route("/api/{*rest}", any(api_not_found))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state.clone());
    let app = match web {
        Some(web) => api.fallback_service(web),
        None => api.fallback(api_not_found),
    };
    // After the fallback so UI pages and unknown paths are counted too (as `unmatched`).
    app.layer(from_fn_with_state(state.metrics_handle(), metrics::track))
        .layer(from_fn(headers::harden))
        .layer(from_fn_with_state(state, gateway::preview::route_by_host))
}

#[derive(Clone, Copy)]
struct FileLimit(usize);

/// Caps a body the gateway streams on to a seat (it never reads it whole, so `DefaultBodyLimit`
/// does not apply): a declared length over the cap is refused with 413 before anything is sent,
/// an undeclared one is cut off at the cap (the seat then sees a broken upload).
async fn limit_stream(
    State(FileLimit(max)): State<FileLimit>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("The request body is larger than {max} bytes."),
        )
        .into_response();
    }
    let req = req.map(|b| Body::new(http_body_util::Limited::new(b, max)));
    next.run(req).await
}

async fn api_not_found() -> ApiError {
    ApiError::not_found("No such route.")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "This route does not accept that method.",
    )
}
