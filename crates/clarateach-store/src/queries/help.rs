//! [`HelpStore`] on both back ends. Plain portable SQL (no RETURNING, no SQLite-only functions): each
//! update is followed by a read of the row, so the PostgreSQL store can use the same queries.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clarateach_core::classroom::{HelpRequest, HelpStatus};
use sqlx::Row;

use super::{DbRow, Store};
use crate::sqlite::to_u32;
use crate::{HelpStore, Result, StoreError};

const SELECT: &str =
    "SELECT id, workshop_id, seat, name, message, cwd, commands, open_file, status, \
     created_at, claimed_by, claimed_at, resolved_at FROM help_requests";

fn help_from(r: &DbRow) -> Result<HelpRequest> {
    let status: String = r.try_get("status")?;
    let commands: String = r.try_get("commands")?;
    Ok(HelpRequest {
        id: r.try_get("id")?,
        workshop_id: r.try_get("workshop_id")?,
        seat: to_u32(r.try_get("seat")?, "seat")?,
        name: r.try_get("name")?,
        message: r.try_get("message")?,
        cwd: r.try_get("cwd")?,
        commands: serde_json::from_str(&commands)
            .map_err(|_| StoreError::Corrupt("help request commands".into()))?,
        open_file: r.try_get("open_file")?,
        status: HelpStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("help status {status:?}")))?,
        created_at: r.try_get::<DateTime<Utc>, _>("created_at")?,
        claimed_by: r.try_get("claimed_by")?,
        claimed_at: r.try_get::<Option<DateTime<Utc>>, _>("claimed_at")?,
        resolved_at: r.try_get::<Option<DateTime<Utc>>, _>("resolved_at")?,
    })
}

impl Store {
    async fn help_by_id(&self, workshop_id: &str, id: &str) -> Result<Option<HelpRequest>> {
        // From the writer: the caller just changed the row.
        let row = sqlx::query(&format!("{SELECT} WHERE workshop_id = $1 AND id = $2"))
            .bind(workshop_id)
            .bind(id)
            .fetch_optional(self.writer())
            .await?;
        row.as_ref().map(help_from).transpose()
    }
}

#[async_trait]
impl HelpStore for Store {
    async fn insert_help(&self, req: &HelpRequest) -> Result<()> {
        let commands = serde_json::to_string(&req.commands)
            .map_err(|_| StoreError::Corrupt("help request commands".into()))?;
        sqlx::query(
            "INSERT INTO help_requests (id, workshop_id, seat, name, message, cwd, commands, \
             open_file, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&req.id)
        .bind(&req.workshop_id)
        .bind(i64::from(req.seat))
        .bind(&req.name)
        .bind(&req.message)
        .bind(&req.cwd)
        .bind(commands)
        .bind(&req.open_file)
        .bind(req.status.as_str())
        .bind(req.created_at)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn active_help_for_seat(
        &self,
        workshop_id: &str,
        seat: u32,
    ) -> Result<Option<HelpRequest>> {
        let row = sqlx::query(&format!(
            "{SELECT} WHERE workshop_id = $1 AND seat = $2 AND status IN ('open', 'claimed') \
             ORDER BY created_at LIMIT 1"
        ))
        .bind(workshop_id)
        .bind(i64::from(seat))
        .fetch_optional(self.writer())
        .await?;
        row.as_ref().map(help_from).transpose()
    }

    async fn list_active_help(&self, workshop_id: &str) -> Result<Vec<HelpRequest>> {
        let rows = sqlx::query(&format!(
            "{SELECT} WHERE workshop_id = $1 AND status IN ('open', 'claimed') \
             ORDER BY created_at, id"
        ))
        .bind(workshop_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(help_from).collect()
    }

    async fn claim_help(
        &self,
        workshop_id: &str,
        id: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<HelpRequest>> {
        let done = sqlx::query(
            "UPDATE help_requests SET status = 'claimed', claimed_by = $1, claimed_at = $2 \
             WHERE workshop_id = $3 AND id = $4 AND status IN ('open', 'claimed')",
        )
        .bind(by)
        .bind(at)
        .bind(workshop_id)
        .bind(id)
        .execute(self.writer())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.help_by_id(workshop_id, id).await
    }

    async fn resolve_help(
        &self,
        workshop_id: &str,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<HelpRequest>> {
        let done = sqlx::query(
            "UPDATE help_requests SET status = 'resolved', resolved_at = $1 \
             WHERE workshop_id = $2 AND id = $3 AND status IN ('open', 'claimed')",
        )
        .bind(at)
        .bind(workshop_id)
        .bind(id)
        .execute(self.writer())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.help_by_id(workshop_id, id).await
    }
}
