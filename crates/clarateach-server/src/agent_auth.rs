//! Agent authentication: the agent-token extractor ([`AgentAuth`]) and the check that a token
//! may register as the agent id it names. The WebSocket handler (`handlers::agents`) checks
//! before the upgrade and the agent session (`scheduler::session`) again on `register`; both
//! build on this module, so neither imports the other.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use clarateach_core::ErrorCode;

use crate::accounts::{hash_token, valid_agent_id};
use crate::auth::bearer_token;
use crate::error::ApiError;
use crate::state::AppState;

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
