//! Workshops: insert with their seats, lookups with seat counts, status transitions, on both
//! back ends; the seat rows of a new workshop are inserted per back end (`insert_seat_rows`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clarateach_core::{Limits, WorkshopStatus};
use sqlx::Row;

use super::{DbRow, Store};
use crate::sqlite::{to_u32, workshop_status};
use crate::{NewWorkshop, Result, StoreError, WorkshopRecord, WorkshopStore};

const SELECT: &str = "SELECT w.id, w.instructor_id, w.name, w.code, w.seats, w.status, w.created_at, w.image, \
     w.limits_json, w.api_key_enc, \
     (SELECT COUNT(*) FROM seats s WHERE s.workshop_id = w.id AND s.state = 'ready') AS seats_ready, \
     (SELECT COUNT(*) FROM seats s WHERE s.workshop_id = w.id AND s.odehash IS NOT NULL) AS seats_joined \
     FROM workshops w";

fn record(r: &DbRow) -> Result<WorkshopRecord> {
    let limits_json: String = r.try_get("limits_json")?;
    let limits: Limits = serde_json::from_str(&limits_json)
        .map_err(|e| StoreError::Corrupt(format!("limits_json: {e}")))?;
    Ok(WorkshopRecord {
        id: r.try_get("id")?,
        instructor_id: r.try_get("instructor_id")?,
        name: r.try_get("name")?,
        code: r.try_get("code")?,
        seats: to_u32(r.try_get("seats")?, "seats")?,
        status: workshop_status(&r.try_get::<String, _>("status")?)?,
        created_at: r.try_get::<DateTime<Utc>, _>("created_at")?,
        image: r.try_get("image")?,
        limits,
        api_key_enc: r.try_get("api_key_enc")?,
        seats_ready: to_u32(r.try_get("seats_ready")?, "seats_ready")?,
        seats_joined: to_u32(r.try_get("seats_joined")?, "seats_joined")?,
    })
}

#[async_trait]
impl WorkshopStore for Store {
    async fn insert_workshop(&self, new: &NewWorkshop) -> Result<()> {
        let limits = serde_json::to_string(&new.limits)
            .map_err(|e| StoreError::Corrupt(format!("limits: {e}")))?;
        let mut tx = self.writer().begin().await?;
        sqlx::query(
            "INSERT INTO workshops (id, instructor_id, name, code, seats, status, created_at, image, limits_json, \
             api_key_enc) VALUES ($1, $2, $3, $4, $5, 'created', $6, $7, $8, $9)",
        )
        .bind(&new.id)
        .bind(&new.instructor_id)
        .bind(&new.name)
        .bind(&new.code)
        .bind(i64::from(new.seats))
        .bind(new.created_at)
        .bind(&new.image)
        .bind(limits)
        .bind(&new.api_key_enc)
        .execute(&mut *tx)
        .await?;
        Store::insert_seat_rows(&mut tx, &new.id, new.seats).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_workshop(&self, id: &str) -> Result<Option<WorkshopRecord>> {
        let row = sqlx::query(&format!("{SELECT} WHERE w.id = $1"))
            .bind(id)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(record).transpose()
    }

    async fn list_workshops(&self, instructor_id: &str) -> Result<Vec<WorkshopRecord>> {
        let rows = sqlx::query(&format!(
            "{SELECT} WHERE w.instructor_id = $1 ORDER BY w.created_at, w.id"
        ))
        .bind(instructor_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(record).collect()
    }

    async fn workshop_by_code(&self, code: &str) -> Result<Option<WorkshopRecord>> {
        let row = sqlx::query(&format!("{SELECT} WHERE w.code = $1"))
            .bind(code)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(record).transpose()
    }

    async fn transition(
        &self,
        id: &str,
        from: &[WorkshopStatus],
        to: WorkshopStatus,
    ) -> Result<bool> {
        if from.is_empty() {
            return Ok(false);
        }
        let marks: Vec<String> = (3..3 + from.len()).map(|n| format!("${n}")).collect();
        let marks = marks.join(", ");
        let sql = format!("UPDATE workshops SET status = $1 WHERE id = $2 AND status IN ({marks})");
        let mut q = sqlx::query(&sql).bind(to.as_str()).bind(id);
        for s in from {
            q = q.bind(s.as_str());
        }
        Ok(q.execute(self.writer()).await?.rows_affected() == 1)
    }

    async fn promote_if_all_ready(&self, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE workshops SET status = 'running' WHERE id = $1 AND status = 'provisioning' \
             AND NOT EXISTS (SELECT 1 FROM seats WHERE workshop_id = $2 AND state <> 'ready')",
        )
        .bind(id)
        .bind(id)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn clear_api_key(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE workshops SET api_key_enc = NULL WHERE id = $1")
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn delete_workshop(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM workshops WHERE id = $1")
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_workshops_by_status(&self) -> Result<Vec<(WorkshopStatus, i64)>> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM workshops GROUP BY status")
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    workshop_status(&r.try_get::<String, _>("status")?)?,
                    r.try_get("n")?,
                ))
            })
            .collect()
    }
}
