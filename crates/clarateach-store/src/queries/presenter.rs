//! [`PresenterStore`] on both back ends. Portable SQL (`ON CONFLICT ... DO UPDATE ... WHERE`, no
//! RETURNING), the same as the PostgreSQL store's but for the placeholders.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{DbRow, Store};
use crate::sqlite::to_u32;
use crate::{AnnouncementRecord, PresenterStore, Result, SpotlightRecord};

fn announcement_from(r: &DbRow) -> Result<AnnouncementRecord> {
    Ok(AnnouncementRecord {
        id: r.try_get("id")?,
        message: r.try_get("message")?,
        created_at: r.try_get::<DateTime<Utc>, _>("created_at")?,
    })
}

#[async_trait]
impl PresenterStore for Store {
    async fn add_announcement(
        &self,
        workshop_id: &str,
        a: &AnnouncementRecord,
        keep: u32,
    ) -> Result<()> {
        let mut tx = self.writer().begin().await?;
        sqlx::query(
            "INSERT INTO announcements (id, workshop_id, message, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&a.id)
        .bind(workshop_id)
        .bind(&a.message)
        .bind(a.created_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM announcements WHERE workshop_id = $1 AND seq <= (SELECT seq FROM \
             announcements WHERE workshop_id = $2 ORDER BY seq DESC LIMIT 1 OFFSET $3)",
        )
        .bind(workshop_id)
        .bind(workshop_id)
        .bind(i64::from(keep))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_announcement(&self, workshop_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM announcements WHERE workshop_id = $1 AND id = $2")
            .bind(workshop_id)
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_announcements(&self, workshop_id: &str) -> Result<Vec<AnnouncementRecord>> {
        // From the writer: a learner's stream re-reads right after the change it was woken for.
        let rows = sqlx::query(
            "SELECT id, message, created_at FROM announcements WHERE workshop_id = $1 ORDER BY seq",
        )
        .bind(workshop_id)
        .fetch_all(self.writer())
        .await?;
        rows.iter().map(announcement_from).collect()
    }

    async fn set_spotlight(
        &self,
        workshop_id: &str,
        s: &SpotlightRecord,
    ) -> Result<SpotlightRecord> {
        sqlx::query(
            "INSERT INTO spotlights (workshop_id, seat, session, since) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (workshop_id) DO UPDATE SET seat = excluded.seat, \
             session = excluded.session, since = excluded.since \
             WHERE spotlights.seat <> excluded.seat OR spotlights.session <> excluded.session",
        )
        .bind(workshop_id)
        .bind(i64::from(s.seat))
        .bind(&s.session)
        .bind(s.since)
        .execute(self.writer())
        .await?;
        Ok(self
            .spotlight(workshop_id)
            .await?
            .unwrap_or_else(|| s.clone()))
    }

    async fn clear_spotlight(&self, workshop_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM spotlights WHERE workshop_id = $1")
            .bind(workshop_id)
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn spotlight(&self, workshop_id: &str) -> Result<Option<SpotlightRecord>> {
        let row = sqlx::query("SELECT seat, session, since FROM spotlights WHERE workshop_id = $1")
            .bind(workshop_id)
            .fetch_optional(self.writer())
            .await?;
        row.map(|r| -> Result<SpotlightRecord> {
            Ok(SpotlightRecord {
                seat: to_u32(r.try_get("seat")?, "seat")?,
                session: r.try_get("session")?,
                since: r.try_get::<DateTime<Utc>, _>("since")?,
            })
        })
        .transpose()
    }

    async fn clear_presenter(&self, workshop_id: &str) -> Result<()> {
        let mut tx = self.writer().begin().await?;
        for table in ["announcements", "spotlights"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE workshop_id = $1"))
                .bind(workshop_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
