//! Wire shapes for browser sessions, one-time WebSocket tickets and seat resets (issue 9): the
//! web UI never keeps the long-lived instructor token, and no long-lived token rides in a URL.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/instructor/sessions`: a short-lived token standing in for the instructor token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InstructorSessionResponse {
    /// Session token (`cts_...`); accepted wherever the instructor token is. Only its hash is
    /// stored; `DELETE /api/instructor/sessions` with it revokes it.
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// `POST /api/session/ticket`: what the ticket will open. A learner names nothing (its token
/// names its seat); an instructor names the seat with `workshop_id` and `seat`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketRequest {
    #[serde(default)]
    pub workshop_id: Option<String>,
    #[serde(default)]
    pub seat: Option<u32>,
    /// Terminal mode the ticket is for: `interactive`, `watch` or `takeover` (as on the
    /// WebSocket; the same rules decide which a token may have).
    #[serde(default)]
    pub mode: Option<String>,
}

/// A one-time ticket for one WebSocket upgrade (`?ticket=`), bound to the seat and mode.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TicketResponse {
    pub ticket: String,
    /// Seconds the ticket stays valid (30).
    pub expires_in: u64,
}

/// `POST /api/workshops/{id}/seats/{seat}/reset`: the seat's new reconnect code.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResetSeatResponse {
    pub seat: u32,
    /// The new reconnect code; the old one and every token issued before are refused.
    pub odehash: String,
    pub generation: u32,
}

/// `POST /api/workshops/{id}/seats/{seat}/move` (issue 13): where the seat went; its files come
/// back from object storage on the new agent, its reconnect code and URL stay.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MoveSeatResponse {
    pub seat: u32,
    pub from_agent: String,
    pub agent_id: String,
    pub moved_at: DateTime<Utc>,
}

/// `GET /api/session/seat`: the learner's seat, and when it last moved to another machine
/// (its host was lost, or the instructor moved it): the UI says so once it sees a new time.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionSeatResponse {
    pub workshop_id: String,
    pub seat: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use crate::TokenClaims;

    #[test]
    fn tokens_from_before_generations_read_as_generation_zero() {
        let old = r#"{"workshop_id":"ws-a","container_id":"ws-a-seat-01","seat":1,
            "odehash":"abcde","agent_id":null,"exp":10,"iat":0}"#;
        let claims: TokenClaims = serde_json::from_str(old).expect("old claims");
        assert_eq!(claims.generation, 0);
        let new = serde_json::to_value(TokenClaims {
            generation: 3,
            ..claims
        })
        .expect("json");
        assert_eq!(new["generation"], 3);
    }

    #[test]
    fn ticket_requests_refuse_unknown_fields() {
        assert!(serde_json::from_str::<super::TicketRequest>(r#"{"token":"x"}"#).is_err());
        let r: super::TicketRequest =
            serde_json::from_str(r#"{"workshop_id":"ws-a","seat":2,"mode":"watch"}"#)
                .expect("request");
        assert_eq!((r.seat, r.mode.as_deref()), (Some(2), Some("watch")));
    }
}
