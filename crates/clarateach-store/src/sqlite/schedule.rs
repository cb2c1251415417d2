//! SQLite side of [`crate::ScheduleStore`]: the `paused_by`, `idle_pause_minutes` and
//! `start_at` columns of migration 0030.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clarateach_core::PauseReason;
use sqlx::Row;

use super::{to_u32, SqliteStore};
use crate::{Result, ScheduleStore, StoreError, WorkshopSchedule};

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn set_paused_by(
        &self,
        workshop_id: &str,
        seats: &[u32],
        by: Option<PauseReason>,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        for seat in seats {
            sqlx::query("UPDATE seats SET paused_by = ? WHERE workshop_id = ? AND seat = ?")
                .bind(by.map(PauseReason::as_str))
                .bind(workshop_id)
                .bind(i64::from(*seat))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn paused_by(&self, workshop_id: &str, seat: u32) -> Result<Option<PauseReason>> {
        let row = sqlx::query("SELECT paused_by FROM seats WHERE workshop_id = ? AND seat = ?")
            .bind(workshop_id)
            .bind(i64::from(seat))
            .fetch_optional(&self.reader)
            .await?;
        let Some(row) = row else { return Ok(None) };
        match row.try_get::<Option<String>, _>("paused_by")? {
            None => Ok(None),
            Some(s) => PauseReason::parse(&s)
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt(format!("paused_by {s:?}"))),
        }
    }

    async fn set_idle_pause(&self, workshop_id: &str, minutes: Option<u32>) -> Result<()> {
        sqlx::query("UPDATE workshops SET idle_pause_minutes = ? WHERE id = ?")
            .bind(minutes.map(i64::from))
            .bind(workshop_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn set_start_at(&self, workshop_id: &str, at: Option<DateTime<Utc>>) -> Result<()> {
        sqlx::query("UPDATE workshops SET start_at = ? WHERE id = ?")
            .bind(at)
            .bind(workshop_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn take_start_at(&self, workshop_id: &str, at: DateTime<Utc>) -> Result<bool> {
        let done =
            sqlx::query("UPDATE workshops SET start_at = NULL WHERE id = ? AND start_at = ?")
                .bind(workshop_id)
                .bind(at)
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn schedule(&self, workshop_id: &str) -> Result<WorkshopSchedule> {
        let row = sqlx::query("SELECT idle_pause_minutes, start_at FROM workshops WHERE id = ?")
            .bind(workshop_id)
            .fetch_optional(&self.reader)
            .await?;
        let Some(row) = row else {
            return Ok(WorkshopSchedule::default());
        };
        Ok(WorkshopSchedule {
            idle_pause_minutes: row
                .try_get::<Option<i64>, _>("idle_pause_minutes")?
                .map(|m| to_u32(m, "idle_pause_minutes"))
                .transpose()?,
            start_at: row.try_get::<Option<DateTime<Utc>>, _>("start_at")?,
        })
    }

    async fn scheduled_starts(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        let rows = sqlx::query("SELECT id, start_at FROM workshops WHERE start_at IS NOT NULL")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("start_at")?)))
            .collect()
    }

    async fn idle_policies(&self) -> Result<Vec<(String, u32)>> {
        let rows = sqlx::query(
            "SELECT id, idle_pause_minutes FROM workshops \
             WHERE idle_pause_minutes IS NOT NULL AND status = 'running'",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    to_u32(r.try_get("idle_pause_minutes")?, "idle_pause_minutes")?,
                ))
            })
            .collect()
    }
}

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
