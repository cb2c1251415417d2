//! Agents: the WebSocket agents dial (`GET /api/agents/connect`, agent token) and the list of
//! connected agents for instructors.

use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::Json;
use clarateach_core::ErrorBody;
use serde::Serialize;
use utoipa::ToSchema;

use crate::accounts::hash_token;
use crate::auth::{bearer_token, Instructor};
use crate::error::ApiError;
use crate::scheduler::session;
use crate::state::AppState;

/// A request carrying a valid agent token (issued by `clarateach agent token`).
pub struct AgentAuth;

impl FromRequestParts<AppState> for AgentAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)
            .ok_or_else(|| ApiError::unauthorized("An agent token is required."))?;
        if state
            .store()
            .agent_token_exists(&hash_token(&token))
            .await?
        {
            Ok(Self)
        } else {
            Err(ApiError::unauthorized("The agent token is not valid."))
        }
    }
}

/// Agent control channel (WebSocket, protocol in api/ws-protocol.md).
#[utoipa::path(get, path = "/api/agents/connect", tag = "agents", security(("bearer" = [])),
    responses(
        (status = 101, description = "Switching to the agent protocol"),
        (status = 400, description = "Not a WebSocket upgrade", body = ErrorBody),
        (status = 401, body = ErrorBody),
    ))]
pub async fn connect(
    State(state): State<AppState>,
    _auth: AgentAuth,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws =
        ws.map_err(|e| ApiError::invalid_request(format!("Expected a WebSocket upgrade: {e}")))?;
    // Agent messages are small JSON (register, heartbeats, seat reports): cap what one may buffer.
    let max = state.config().ws_max_message;
    Ok(ws
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| session::run(state, socket)))
}

/// A connected agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentSummary {
    pub agent_id: String,
    pub hostname: String,
    pub capacity: u32,
    /// Seats the control plane placed on it.
    pub placed: u32,
    /// Seats it reported hosting at its last heartbeat.
    pub used: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListAgentsResponse {
    pub agents: Vec<AgentSummary>,
}

/// Connected agents and their capacity.
#[utoipa::path(get, path = "/api/agents", tag = "agents", security(("bearer" = [])),
    responses((status = 200, body = ListAgentsResponse), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _instructor: Instructor,
) -> Json<ListAgentsResponse> {
    let agents = state
        .provisioner()
        .agents()
        .await
        .into_iter()
        .map(|a| AgentSummary {
            agent_id: a.agent_id,
            hostname: a.hostname,
            capacity: a.capacity,
            placed: a.placed,
            used: a.used,
        })
        .collect();
    Json(ListAgentsResponse { agents })
}
