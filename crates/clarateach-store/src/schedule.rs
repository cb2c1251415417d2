//! When seats run, as opposed to what they are: who paused a seat, the idle policy that pauses
//! seats nobody uses, and a workshop's scheduled start. Its own trait so the other stores stay
//! as they were and an implementation adds it on its own.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clarateach_core::PauseReason;

use crate::Result;

/// A workshop's schedule fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkshopSchedule {
    /// Pause a ready seat after this many minutes without learner activity.
    pub idle_pause_minutes: Option<u32>,
    /// When the control plane starts the workshop by itself.
    pub start_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Marks `seats` of a workshop as paused by `by`, or (`None`) as no longer paused.
    async fn set_paused_by(
        &self,
        workshop_id: &str,
        seats: &[u32],
        by: Option<PauseReason>,
    ) -> Result<()>;

    /// Who paused the seat, if it is paused.
    async fn paused_by(&self, workshop_id: &str, seat: u32) -> Result<Option<PauseReason>>;

    async fn set_idle_pause(&self, workshop_id: &str, minutes: Option<u32>) -> Result<()>;

    async fn set_start_at(&self, workshop_id: &str, at: Option<DateTime<Utc>>) -> Result<()>;

    /// Clears `start_at` only if it is still `at`; true when this call cleared it (so of two
    /// replicas racing for one scheduled start, one wins).
    async fn take_start_at(&self, workshop_id: &str, at: DateTime<Utc>) -> Result<bool>;

    async fn schedule(&self, workshop_id: &str) -> Result<WorkshopSchedule>;

    /// Workshops with a scheduled start, with when.
    async fn scheduled_starts(&self) -> Result<Vec<(String, DateTime<Utc>)>>;

    /// Running workshops with an idle policy, with its minutes.
    async fn idle_policies(&self) -> Result<Vec<(String, u32)>>;
}
