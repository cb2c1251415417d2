//! Agents: the WebSocket agents dial (`GET /api/agents/connect`, agent token) and the list of
//! connected agents for instructors.

use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use clarateach_core::ErrorBody;
use clarateach_core::ErrorCode;
use serde::Serialize;
use utoipa::ToSchema;

pub use crate::agent_auth::{agent_id_mismatch, authorize_agent_id, AgentAuth, AgentCredential};
use crate::auth::Instructor;
use crate::error::ApiError;
use crate::scheduler::session;
use crate::state::AppState;

/// Header in which an agent names the id it is about to register as, so a token bound to
/// another id is refused before the WebSocket upgrade (403 `agent_id_mismatch`).
pub const AGENT_ID_HEADER: &str = "clarateach-agent-id";

/// Agent control channel (WebSocket, protocol in api/ws-protocol.md). The agent names its id
/// in the `ClaraTeach-Agent-Id` header; a token bound to another id gets 403
/// `agent_id_mismatch`, and a live session of that id held by another credential 409
/// `agent_already_connected`; neither touches the existing session.
#[utoipa::path(get, path = "/api/agents/connect", tag = "agents", security(("bearer" = [])),
    params(("clarateach-agent-id" = Option<String>, Header, description = "The agent id the agent will register as")),
    responses(
        (status = 101, description = "Switching to the agent protocol"),
        (status = 400, description = "Not a WebSocket upgrade", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The token is bound to another agent id", body = ErrorBody),
        (status = 409, description = "Another credential holds this agent id's live session", body = ErrorBody),
    ))]
pub async fn connect(
    State(state): State<AppState>,
    AgentAuth(credential): AgentAuth,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let named = headers
        .get(AGENT_ID_HEADER)
        .map(|v| v.to_str().map(str::to_string))
        .transpose()
        .map_err(|_| ApiError::invalid_request("The agent id header is not valid text."))?;
    let credential = match &named {
        Some(id) => {
            let credential = authorize_agent_id(&state, &credential, id).await?;
            if !state
                .registry()
                .may_take_over(id, &credential.token_id)
                .await
            {
                return Err(ApiError::conflict(
                    ErrorCode::AgentAlreadyConnected,
                    "Another credential holds this agent id's live session.",
                ));
            }
            credential
        }
        None => credential,
    };
    let ws =
        ws.map_err(|e| ApiError::invalid_request(format!("Expected a WebSocket upgrade: {e}")))?;
    // Agent messages are small JSON (register, heartbeats, seat reports): cap what one may buffer.
    let max = state.config().ws_max_message;
    Ok(ws
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| session::run(state, socket, credential)))
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
