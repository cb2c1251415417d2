//! Liveness, the OpenAPI document and Prometheus metrics: the unauthenticated read-only routes.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use clarateach_core::{ErrorBody, HealthResponse, SeatState, WorkshopStatus};

use crate::error::ApiError;
use crate::extract::ClientIp;
use crate::state::AppState;

/// Liveness.
#[utoipa::path(get, path = "/api/health", tag = "meta",
    responses((status = 200, description = "The server is up", body = HealthResponse)))]
pub async fn health() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/json")],
        crate::openapi::document(),
    )
}

/// Prometheus text exposition: requests, latency, joins, workshops by status, seats by state,
/// connected agents. Needs the metrics token when one is set, else a loopback client.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 401, description = "Metrics token missing or wrong", body = ErrorBody),
        (status = 403, description = "No metrics token set and the client is not on loopback", body = ErrorBody),
    ))]
pub async fn metrics(
    State(state): State<AppState>,
    ClientIp(peer): ClientIp,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    crate::metrics::authorize(state.config().metrics_token.as_deref(), &headers, peer)?;
    let workshops = state.store().count_workshops_by_status().await?;
    let seats = state.store().count_seats_by_state().await?;
    let agents = state.provisioner().agents().await;
    let mut gauges = Vec::new();
    for status in WorkshopStatus::ALL {
        let n = workshops
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n);
        gauges.push((
            "clarateach_workshops",
            "Workshops by status.",
            format!("{{status=\"{}\"}}", status.as_str()),
            n,
        ));
    }
    for state in SeatState::ALL {
        let n = seats
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n);
        gauges.push((
            "clarateach_seats",
            "Seats by state.",
            format!("{{state=\"{}\"}}", state.as_str()),
            n,
        ));
    }
    gauges.push((
        "clarateach_agents_connected",
        "Connected agents.",
        String::new(),
        agents.len() as i64,
    ));
    let capacity: i64 = agents.iter().map(|a| i64::from(a.capacity)).sum();
    gauges.push((
        "clarateach_agent_capacity_seats",
        "Seat capacity of connected agents.",
        String::new(),
        capacity,
    ));
    let body = state.metrics().render(&gauges);
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}
