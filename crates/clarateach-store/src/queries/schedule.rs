//! SQLite side of [`crate::ScheduleStore`]: the `paused_by`, `idle_pause_minutes` and
//! `start_at` columns of migration 0030.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clarateach_core::PauseReason;
use sqlx::Row;

use super::Store;
use crate::sqlite::to_u32;
use crate::{Result, ScheduleStore, StoreError, WorkshopSchedule};

#[async_trait]
impl ScheduleStore for Store {
    async fn set_paused_by(
        &self,
        workshop_id: &str,
        seats: &[u32],
        by: Option<PauseReason>,
    ) -> Result<()> {
        let mut tx = self.writer().begin().await?;
        for seat in seats {
            sqlx::query("UPDATE seats SET paused_by = $1 WHERE workshop_id = $2 AND seat = $3")
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
        let row = sqlx::query("SELECT paused_by FROM seats WHERE workshop_id = $1 AND seat = $2")
            .bind(workshop_id)
            .bind(i64::from(seat))
            .fetch_optional(self.reader())
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
        sqlx::query("UPDATE workshops SET idle_pause_minutes = $1 WHERE id = $2")
            .bind(minutes.map(i64::from))
            .bind(workshop_id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn set_start_at(&self, workshop_id: &str, at: Option<DateTime<Utc>>) -> Result<()> {
        sqlx::query("UPDATE workshops SET start_at = $1 WHERE id = $2")
            .bind(at)
            .bind(workshop_id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn take_start_at(&self, workshop_id: &str, at: DateTime<Utc>) -> Result<bool> {
        let done =
            sqlx::query("UPDATE workshops SET start_at = NULL WHERE id = $1 AND start_at = $2")
                .bind(workshop_id)
                .bind(at)
                .execute(self.writer())
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn schedule(&self, workshop_id: &str) -> Result<WorkshopSchedule> {
        let row = sqlx::query("SELECT idle_pause_minutes, start_at FROM workshops WHERE id = $1")
            .bind(workshop_id)
            .fetch_optional(self.reader())
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
            .fetch_all(self.reader())
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
        .fetch_all(self.reader())
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
