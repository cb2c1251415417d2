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

#[cfg(test)]
mod tests {
    //! Run on SQLite always and on PostgreSQL when a test server is configured, as
    //! `conformance.rs` does.
    #![allow(unused_imports)]
    use std::sync::Arc;

    use crate::conformance::{postgres, sqlite};
    use crate::Store;
    use crate::{Result, StoreError, WorkshopSchedule};
    use chrono::Duration;
    use chrono::{DateTime, Utc};
    use clarateach_core::{Limits, PauseReason};

    use crate::{AccountStore, NewWorkshop, ScheduleStore, WorkshopStore};

    async fn pauses_idle_policy_and_scheduled_start_round_trip(s: Arc<dyn Store>) {
        s.create_instructor("i1", "I", "h")
            .await
            .expect("instructor");
        s.insert_workshop(&NewWorkshop {
            id: "ws-a".into(),
            instructor_id: "i1".into(),
            name: "A".into(),
            code: "CLAUDE-AAAA".into(),
            seats: 3,
            created_at: chrono::Utc::now(),
            image: None,
            limits: Limits::default(),
            api_key_enc: None,
        })
        .await
        .expect("insert");
        assert_eq!(s.paused_by("ws-a", 1).await.expect("q"), None);
        s.set_paused_by("ws-a", &[1, 2], Some(PauseReason::Idle))
            .await
            .expect("set");
        assert_eq!(
            s.paused_by("ws-a", 2).await.expect("q"),
            Some(PauseReason::Idle)
        );
        s.set_paused_by("ws-a", &[2], None).await.expect("clear");
        assert_eq!(s.paused_by("ws-a", 2).await.expect("q"), None);
        assert_eq!(
            s.paused_by("ws-a", 1).await.expect("q"),
            Some(PauseReason::Idle)
        );

        s.set_idle_pause("ws-a", Some(15)).await.expect("idle");
        assert!(
            s.idle_policies().await.expect("q").is_empty(),
            "only running workshops"
        );
        // Whole milliseconds: what both back ends keep (PostgreSQL stores microseconds).
        let at = chrono::DateTime::from_timestamp_millis(
            (chrono::Utc::now() + Duration::minutes(5)).timestamp_millis(),
        )
        .expect("time");
        s.set_start_at("ws-a", Some(at)).await.expect("start_at");
        let sched = s.schedule("ws-a").await.expect("schedule");
        assert_eq!(sched.idle_pause_minutes, Some(15));
        assert_eq!(sched.start_at, Some(at));
        assert_eq!(
            s.scheduled_starts().await.expect("q"),
            vec![("ws-a".to_string(), at)]
        );
        assert!(!s
            .take_start_at("ws-a", at + Duration::seconds(1))
            .await
            .expect("take"));
        assert!(s.take_start_at("ws-a", at).await.expect("take"));
        assert!(!s.take_start_at("ws-a", at).await.expect("take twice"));
        assert!(s.scheduled_starts().await.expect("q").is_empty());
    }

    #[tokio::test]
    async fn pauses_idle_policy_and_scheduled_start_round_trip_sqlite() {
        let (_dir, s) = sqlite().await;
        pauses_idle_policy_and_scheduled_start_round_trip(s).await;
    }

    #[tokio::test]
    async fn pauses_idle_policy_and_scheduled_start_round_trip_postgres() {
        if let Some(s) =
            postgres("schedule::pauses_idle_policy_and_scheduled_start_round_trip_postgres").await
        {
            pauses_idle_policy_and_scheduled_start_round_trip(s).await;
        }
    }
}
