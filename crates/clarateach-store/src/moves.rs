//! Seats that move between agents (issue 13): a seat of a host lost longer than the grace
//! period, or one an instructor moves, is given to another agent and recreated there from its
//! synced files. The move is a compare-and-set on the seat's agent, so with several replicas
//! each seat moves exactly once; the time of the last move is kept for the learner's "moved to
//! another machine" and the grid.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;

/// A seat whose agent went away while its workshop is live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostSeat {
    pub workshop_id: String,
    pub seat: u32,
    pub agent_id: String,
}

/// When a seat last moved, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatMove {
    pub seat: u32,
    pub from_agent: String,
    pub moved_at: DateTime<Utc>,
}

/// Seat moves.
#[async_trait]
pub trait MoveStore: Send + Sync {
    /// `lost` seats of provisioning or running workshops, by workshop and seat.
    async fn lost_seats(&self) -> Result<Vec<LostSeat>>;
    /// Gives the seat to `to` (state `creating`) only if it is still on `from` (and still
    /// `lost` when `only_lost`), and records the move; true when this call moved it.
    async fn move_seat(
        &self,
        workshop_id: &str,
        seat: u32,
        from: &str,
        to: &str,
        only_lost: bool,
        at: DateTime<Utc>,
    ) -> Result<bool>;
    /// The last move of each moved seat of a workshop, by seat.
    async fn seat_moves(&self, workshop_id: &str) -> Result<Vec<SeatMove>>;
    /// Seats whose last move took them off `agent_id` and that are elsewhere now: the agent's
    /// copies of them are stale.
    async fn seats_moved_from(&self, agent_id: &str) -> Result<Vec<(String, u32)>>;
}
