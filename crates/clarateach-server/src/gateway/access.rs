//! Who may open which seat, and how: a learner token opens its own seat (terminal mode
//! `interactive` or `watch`, never `takeover`); an instructor token opens any seat of the
//! instructor's own workshops, named by `workshop_id` and `seat`, read-only (`watch`) unless it
//! asks for `mode=takeover`. As an extractor, a gateway handler cannot skip the check.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;

use crate::accounts::hash_token;
use crate::auth::{bearer_token, Learner};
use crate::error::ApiError;
use crate::state::AppState;

/// Terminal attach mode, as in api/ws-protocol.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Interactive,
    Watch,
    Takeover,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interactive => "interactive",
            Self::Watch => "watch",
            Self::Takeover => "takeover",
        }
    }
}

/// Whose token opened the seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Learner,
    Instructor,
}

/// An authorised request for one seat's traffic.
#[derive(Debug, Clone)]
pub struct SeatAccess {
    pub workshop_id: String,
    pub seat: u32,
    pub role: Role,
    pub mode: Mode,
}

impl SeatAccess {
    /// Whether this access may change the workspace (write files, run commands): learners
    /// always; instructors only when they took over.
    pub fn may_write(&self) -> bool {
        self.role == Role::Learner || self.mode == Mode::Takeover
    }
}

fn learner_mode(asked: Option<&str>) -> Result<Mode, ApiError> {
    match asked {
        None | Some("interactive") => Ok(Mode::Interactive),
        Some("watch") => Ok(Mode::Watch),
        Some("takeover") => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_mode",
            "Only the workshop's instructor can take over a terminal.",
        )),
        Some(_) => Err(ApiError::invalid_request(
            "mode must be interactive, watch or takeover.",
        )),
    }
}

fn instructor_mode(asked: Option<&str>) -> Result<Mode, ApiError> {
    match asked {
        None | Some("watch") => Ok(Mode::Watch),
        // An instructor typing always shows the learner a notice, so interactive means takeover.
        Some("takeover") | Some("interactive") => Ok(Mode::Takeover),
        Some(_) => Err(ApiError::invalid_request(
            "mode must be interactive, watch or takeover.",
        )),
    }
}

impl FromRequestParts<AppState> for SeatAccess {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)
            .ok_or_else(|| ApiError::unauthorized("A learner or instructor token is required."))?;
        let query: HashMap<String, String> = Query::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .unwrap_or_default();
        let asked = query.get("mode").map(String::as_str);

        // Learner tokens are signed JWTs; anything the key does not verify may be an instructor's.
        if state.keys().verify(&token).is_some() {
            let learner = Learner::verify(state, &token).await?;
            return Ok(Self {
                workshop_id: learner.claims.workshop_id,
                seat: learner.claims.seat,
                role: Role::Learner,
                mode: learner_mode(asked)?,
            });
        }
        let Some(instructor) = state
            .store()
            .instructor_by_token_hash(&hash_token(&token))
            .await?
        else {
            return Err(ApiError::unauthorized("The token is not valid."));
        };
        let (Some(workshop_id), Some(seat)) = (query.get("workshop_id"), query.get("seat")) else {
            return Err(ApiError::invalid_request(
                "An instructor must name the seat with workshop_id and seat.",
            ));
        };
        let seat: u32 = seat
            .parse()
            .map_err(|_| ApiError::invalid_request("seat must be a positive number."))?;
        let instructor = crate::auth::Instructor {
            id: instructor.id,
            name: instructor.name,
        };
        let workshop = instructor.workshop(state, workshop_id).await?;
        if seat == 0 || seat > workshop.seats {
            return Err(ApiError::not_found("This workshop has no such seat."));
        }
        Ok(Self {
            workshop_id: workshop.id,
            seat,
            role: Role::Instructor,
            mode: instructor_mode(asked)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(learner_mode(None).expect("default"), Mode::Interactive);
        assert_eq!(learner_mode(Some("watch")).expect("watch"), Mode::Watch);
        assert!(learner_mode(Some("takeover")).is_err());
        assert!(learner_mode(Some("root")).is_err());
        assert_eq!(instructor_mode(None).expect("default"), Mode::Watch);
        assert_eq!(
            instructor_mode(Some("takeover")).expect("takeover"),
            Mode::Takeover
        );
        assert_eq!(
            instructor_mode(Some("interactive")).expect("interactive"),
            Mode::Takeover
        );
    }
}
