//! Agents: the WebSocket agents dial (`GET /api/agents/connect`, agent token) and the list of
//! connected agents for instructors.

use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use clarateach_core::ErrorBody;
use clarateach_core::ErrorCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::accounts::{hash_token, valid_agent_id};
use crate::auth::{bearer_token, Instructor};
use crate::error::ApiError;
use crate::scheduler::session;
use crate::state::AppState;

/// Header in which an agent names the id it is about to register as, so a token bound to
/// another id is refused before the WebSocket upgrade (403 `agent_id_mismatch`).
pub const AGENT_ID_HEADER: &str = "clarateach-agent-id";

/// The credential an agent connected with: which token (by its store id) and the one agent id
/// it may register as (`None` for a legacy token not yet bound; the session binds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCredential {
    pub token_id: String,
    pub agent_id: Option<String>,
}

/// A request carrying a valid, unrevoked agent token (issued by `clarateach agent token`).
pub struct AgentAuth(pub AgentCredential);

impl FromRequestParts<AppState> for AgentAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)
            .ok_or_else(|| ApiError::unauthorized("An agent token is required."))?;
        match state
            .store()
            .agent_token_by_hash(&hash_token(&token))
            .await?
        {
            Some(t) if !t.revoked => Ok(Self(AgentCredential {
                token_id: t.id,
                agent_id: t.agent_id,
            })),
            Some(_) => Err(ApiError::unauthorized("The agent token was revoked.")),
            None => Err(ApiError::unauthorized("The agent token is not valid.")),
        }
    }
}

/// The refusal for a credential that is not the named agent's.
pub fn agent_id_mismatch() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::AgentIdMismatch,
        "This agent token is for another agent id.",
    )
}

/// Checks that `credential` may register as `agent_id`, binding a legacy token on first use.
/// Returns the credential as bound.
pub async fn authorize_agent_id(
    state: &AppState,
    credential: &AgentCredential,
    agent_id: &str,
) -> Result<AgentCredential, ApiError> {
    match &credential.agent_id {
        Some(bound) if bound == agent_id => Ok(credential.clone()),
        Some(_) => Err(agent_id_mismatch()),
        None => {
            if !valid_agent_id(agent_id) {
                return Err(ApiError::validation(
                    "An agent id is 1 to 64 letters, digits, '-', '_' or '.'.",
                ));
            }
            if state
                .store()
                .bind_agent_token(&credential.token_id, agent_id)
                .await?
            {
                tracing::warn!(agent.id = agent_id, token.id = %credential.token_id,
                    "legacy agent token bound to the first agent id it registered with");
                Ok(AgentCredential {
                    token_id: credential.token_id.clone(),
                    agent_id: Some(agent_id.to_string()),
                })
            } else {
                Err(agent_id_mismatch())
            }
        }
    }
}

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
