//! [`ToolkitStore`] on both back ends: upserts with `ON CONFLICT` (as PostgreSQL spells them too).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clarateach_core::toolkit::{AuditAction, AuditEvent};
use sqlx::Row;

use super::Store;
use crate::sqlite::to_u32;
use crate::{BaseEntry, LatestKind, Result, StoreError, ToolkitStore};

#[async_trait]
impl ToolkitStore for Store {
    async fn put_broadcast_blob(
        &self,
        workshop_id: &str,
        hash: &str,
        content: &[u8],
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO broadcast_blobs (workshop_id, hash, content) VALUES ($1, $2, $3) \
             ON CONFLICT (workshop_id, hash) DO NOTHING",
        )
        .bind(workshop_id)
        .bind(hash)
        .bind(content)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn broadcast_bases(
        &self,
        workshop_id: &str,
        seat: u32,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let rows = sqlx::query(
            "SELECT b.path, o.content FROM broadcast_bases b JOIN broadcast_blobs o \
             ON o.workshop_id = b.workshop_id AND o.hash = b.hash \
             WHERE b.workshop_id = $1 AND b.seat = $2",
        )
        .bind(workshop_id)
        .bind(i64::from(seat))
        .fetch_all(self.writer())
        .await?;
        rows.iter()
            .map(|r| -> Result<(String, Vec<u8>)> {
                Ok((r.try_get("path")?, r.try_get("content")?))
            })
            .collect()
    }

    async fn set_broadcast_bases(&self, workshop_id: &str, entries: &[BaseEntry]) -> Result<()> {
        let mut tx = self.writer().begin().await?;
        for e in entries {
            sqlx::query(
                "INSERT INTO broadcast_bases (workshop_id, seat, path, hash) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (workshop_id, seat, path) DO UPDATE SET hash = excluded.hash",
            )
            .bind(workshop_id)
            .bind(i64::from(e.seat))
            .bind(&e.path)
            .bind(&e.hash)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn put_latest(&self, workshop_id: &str, kind: LatestKind, body: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO toolkit_latest (workshop_id, kind, body, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (workshop_id, kind) DO UPDATE SET body = excluded.body, \
             updated_at = excluded.updated_at",
        )
        .bind(workshop_id)
        .bind(kind.as_str())
        .bind(body)
        .bind(Utc::now())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn latest(&self, workshop_id: &str, kind: LatestKind) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT body FROM toolkit_latest WHERE workshop_id = $1 AND kind = $2",
        )
        .bind(workshop_id)
        .bind(kind.as_str())
        .fetch_optional(self.writer())
        .await?)
    }

    async fn append_audit(&self, workshop_id: &str, event: &AuditEvent) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_events (workshop_id, at, actor, action, seat, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(workshop_id)
        .bind(event.at)
        .bind(&event.actor)
        .bind(event.action.as_str())
        .bind(event.seat.map(i64::from))
        .bind(&event.detail)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn list_audit(&self, workshop_id: &str, limit: u32) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT a.at, a.actor, i.name, a.action, a.seat, a.detail FROM audit_events a \
             LEFT JOIN instructors i ON i.id = a.actor \
             WHERE a.workshop_id = $1 ORDER BY a.id DESC LIMIT $2",
        )
        .bind(workshop_id)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| -> Result<AuditEvent> {
                let action: String = r.try_get("action")?;
                Ok(AuditEvent {
                    at: r.try_get::<DateTime<Utc>, _>("at")?,
                    actor: r.try_get("actor")?,
                    actor_name: r.try_get("name")?,
                    action: AuditAction::parse(&action)
                        .ok_or_else(|| StoreError::Corrupt(format!("audit action {action:?}")))?,
                    seat: r
                        .try_get::<Option<i64>, _>("seat")?
                        .map(|s| to_u32(s, "seat"))
                        .transpose()?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }
}
