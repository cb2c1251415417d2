//! Unit tests of `queries/schedule.rs` on SQLite (the conformance suite runs on both back ends).

#![cfg(test)]
#![allow(unused_imports)]

use super::SqliteStore;
use crate::{Result, ScheduleStore, StoreError, WorkshopSchedule};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clarateach_core::PauseReason;
use sqlx::Row;
#[cfg(test)]
mod tests {
    use chrono::Duration;
    use clarateach_core::{Limits, PauseReason};

    use crate::sqlite::temp_store;
    use crate::{AccountStore, NewWorkshop, ScheduleStore, WorkshopStore};

    #[tokio::test]
    async fn pauses_idle_policy_and_scheduled_start_round_trip() {
        let (_dir, s) = temp_store().await;
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
        let at = chrono::Utc::now() + Duration::minutes(5);
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
}
