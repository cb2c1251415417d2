//! Rows as the store hands them out: domain enums already parsed, secrets still encrypted.

use chrono::{DateTime, Utc};
use clarateach_core::{Limits, SeatState, WorkshopStatus};

/// An instructor account (the token itself is never stored, only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstructorRecord {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// An agent token (only its hash is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTokenRecord {
    pub id: String,
    /// The only agent id the token may register as; `None` for a token issued before tokens
    /// were bound (it binds on first registration).
    pub agent_id: Option<String>,
    pub revoked: bool,
}

/// What `insert_workshop` needs.
#[derive(Clone)]
pub struct NewWorkshop {
    pub id: String,
    pub instructor_id: String,
    pub name: String,
    pub code: String,
    pub seats: u32,
    pub created_at: DateTime<Utc>,
    pub image: Option<String>,
    pub limits: Limits,
    /// Already encrypted by the caller.
    pub api_key_enc: Option<Vec<u8>>,
}

impl std::fmt::Debug for NewWorkshop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewWorkshop")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("seats", &self.seats)
            .field(
                "api_key_enc",
                &self.api_key_enc.as_ref().map(|_| "<encrypted>"),
            )
            .finish_non_exhaustive()
    }
}

/// A workshop row plus seat counts.
#[derive(Clone, PartialEq)]
pub struct WorkshopRecord {
    pub id: String,
    pub instructor_id: String,
    pub name: String,
    pub code: String,
    pub seats: u32,
    pub status: WorkshopStatus,
    pub created_at: DateTime<Utc>,
    pub image: Option<String>,
    pub limits: Limits,
    pub api_key_enc: Option<Vec<u8>>,
    pub seats_ready: u32,
    pub seats_joined: u32,
}

impl std::fmt::Debug for WorkshopRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkshopRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("code", &self.code)
            .field("seats", &self.seats)
            .field("status", &self.status)
            .field(
                "api_key_enc",
                &self.api_key_enc.as_ref().map(|_| "<encrypted>"),
            )
            .finish_non_exhaustive()
    }
}

/// One seat row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatRecord {
    pub workshop_id: String,
    pub seat: u32,
    pub state: SeatState,
    pub agent_id: Option<String>,
    pub odehash: Option<String>,
    pub name: Option<String>,
    pub joined_at: Option<DateTime<Utc>>,
    pub last_activity_at: Option<DateTime<Utc>>,
    /// Bumped by every reset; learner tokens of an older generation are refused.
    pub generation: u32,
}
