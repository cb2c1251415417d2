//! Who may open which seat, and how: a learner token opens its own seat (terminal mode
//! `interactive` or `watch`, never `takeover`); an instructor token opens any seat of the
//! instructor's own workshops, named by `workshop_id` and `seat`, read-only (`watch`) unless it
//! asks for `mode=takeover`. As an extractor, a gateway handler cannot skip the check.
//!
//! Credentials come from the Authorization header, or for a WebSocket upgrade from a one-time
//! `?ticket=` (see [`crate::tickets`]); `?token=` is refused with a message saying so.

use clarateach_core::ErrorCode;
use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;

use clarateach_core::hop::is_upgrade;

use crate::auth::{bearer_token, instructor_for_token, Instructor, Learner};
use crate::error::ApiError;
use crate::state::AppState;
use crate::tickets::Grant;

pub use super::seat::{Role, SeatAccess, TerminalMode};

fn learner_mode(asked: Option<&str>) -> Result<TerminalMode, ApiError> {
    match asked {
        None | Some("interactive") => Ok(TerminalMode::Interactive),
        Some("watch") => Ok(TerminalMode::Watch),
        Some("takeover") => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::ForbiddenMode,
            "Only the workshop's instructor can take over a terminal.",
        )),
        Some(_) => Err(ApiError::invalid_request(
            "mode must be interactive, watch or takeover.",
        )),
    }
}

fn instructor_mode(asked: Option<&str>) -> Result<TerminalMode, ApiError> {
    match asked {
        None | Some("watch") => Ok(TerminalMode::Watch),
        // An instructor typing always shows the learner a notice, so interactive means takeover.
        Some("takeover") | Some("interactive") => Ok(TerminalMode::Takeover),
        Some(_) => Err(ApiError::invalid_request(
            "mode must be interactive, watch or takeover.",
        )),
    }
}

/// What a request names: the seat (instructors only) and the terminal mode.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeatSelector<'a> {
    pub workshop_id: Option<&'a str>,
    pub seat: Option<u32>,
    pub mode: Option<&'a str>,
}

/// Authorises `token` (learner JWT, instructor token or instructor session) for the seat
/// `selector` names. Shared by header-authenticated requests and the ticket endpoint, so a
/// ticket never grants more than its token would.
pub async fn authorize(
    state: &AppState,
    token: &str,
    selector: SeatSelector<'_>,
) -> Result<Grant, ApiError> {
    // Learner tokens are signed JWTs; anything the key does not verify may be an instructor's.
    if state.keys().verify(token).is_some() {
        let learner = Learner::verify(state, token).await?;
        let mode = learner_mode(selector.mode)?;
        return Ok(Grant {
            access: SeatAccess {
                workshop_id: learner.claims.workshop_id.clone(),
                seat: learner.claims.seat,
                role: Role::Learner,
                mode,
            },
            learner: Some(learner.claims),
        });
    }
    let Some((instructor, _)) = instructor_for_token(state, token).await? else {
        return Err(ApiError::unauthorized("The token is not valid."));
    };
    let (Some(workshop_id), Some(seat)) = (selector.workshop_id, selector.seat) else {
        return Err(ApiError::invalid_request(
            "An instructor must name the seat with workshop_id and seat.",
        ));
    };
    let instructor = Instructor::from(instructor);
    let workshop = instructor.workshop(state, workshop_id).await?;
    if seat == 0 || seat > workshop.seats {
        return Err(ApiError::not_found("This workshop has no such seat."));
    }
    Ok(Grant {
        access: SeatAccess {
            workshop_id: workshop.id,
            seat,
            role: Role::Instructor,
            mode: instructor_mode(selector.mode)?,
        },
        learner: None,
    })
}

fn ticket_mismatch() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::TicketMismatch,
        "The ticket was issued for another seat or mode.",
    )
}

/// Redeems a `?ticket=` (WebSocket upgrades only). The URL may repeat the seat and mode the
/// ticket was issued for, never name others; a learner's seat is checked again, since it may
/// have been reset since the ticket was issued.
async fn redeem(
    state: &AppState,
    parts: &Parts,
    ticket: &str,
    selector: SeatSelector<'_>,
) -> Result<SeatAccess, ApiError> {
    if !is_upgrade(&parts.headers) {
        return Err(ApiError::invalid_request(
            "A ticket opens only a WebSocket; send the token in the Authorization header.",
        ));
    }
    let grant = state.tickets().redeem(ticket).ok_or_else(|| {
        ApiError::unauthorized("The ticket is not valid: unknown, expired or already used.")
    })?;
    let access = grant.access;
    if selector
        .workshop_id
        .is_some_and(|w| w != access.workshop_id)
        || selector.seat.is_some_and(|s| s != access.seat)
    {
        return Err(ticket_mismatch());
    }
    if selector.mode.is_some() {
        let asked = match access.role {
            Role::Learner => learner_mode(selector.mode),
            Role::Instructor => instructor_mode(selector.mode),
        };
        if asked.ok() != Some(access.mode) {
            return Err(ticket_mismatch());
        }
    }
    if let Some(claims) = grant.learner {
        Learner::check(state, claims).await?;
    }
    Ok(access)
}

impl FromRequestParts<AppState> for SeatAccess {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let query: HashMap<String, String> = Query::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .unwrap_or_default();
        if query.contains_key("token") {
            return Err(ApiError::unauthorized(
                "Tokens are not accepted in URLs: send the Authorization header, or open a \
                 WebSocket with a ticket from POST /api/session/ticket.",
            ));
        }
        let seat = match query.get("seat") {
            Some(s) => Some(
                s.parse::<u32>()
                    .map_err(|_| ApiError::invalid_request("seat must be a positive number."))?,
            ),
            None => None,
        };
        let selector = SeatSelector {
            workshop_id: query.get("workshop_id").map(String::as_str),
            seat,
            mode: query.get("mode").map(String::as_str),
        };
        if let Some(ticket) = query.get("ticket") {
            return redeem(state, parts, ticket, selector).await;
        }
        let token = bearer_token(parts)
            .ok_or_else(|| ApiError::unauthorized("A learner or instructor token is required."))?;
        Ok(authorize(state, &token, selector).await?.access)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(
            learner_mode(None).expect("default"),
            TerminalMode::Interactive
        );
        assert_eq!(
            learner_mode(Some("watch")).expect("watch"),
            TerminalMode::Watch
        );
        assert!(learner_mode(Some("takeover")).is_err());
        assert!(learner_mode(Some("root")).is_err());
        assert_eq!(instructor_mode(None).expect("default"), TerminalMode::Watch);
        assert_eq!(
            instructor_mode(Some("takeover")).expect("takeover"),
            TerminalMode::Takeover
        );
        assert_eq!(
            instructor_mode(Some("interactive")).expect("interactive"),
            TerminalMode::Takeover
        );
    }
}
