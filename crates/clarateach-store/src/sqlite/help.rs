//! [`HelpStore`] on SQLite. Plain portable SQL (no RETURNING, no SQLite-only functions): each
//! update is followed by a read of the row, so the PostgreSQL store can use the same queries.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clarateach_core::classroom::{HelpRequest, HelpStatus};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{to_u32, SqliteStore};
use crate::{HelpStore, Result, StoreError};

const SELECT: &str =
    "SELECT id, workshop_id, seat, name, message, cwd, commands, open_file, status, \
     created_at, claimed_by, claimed_at, resolved_at FROM help_requests";

fn help_from(r: &SqliteRow) -> Result<HelpRequest> {
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

impl SqliteStore {
    async fn help_by_id(&self, workshop_id: &str, id: &str) -> Result<Option<HelpRequest>> {
        // From the writer: the caller just changed the row.
        let row = sqlx::query(&format!("{SELECT} WHERE workshop_id = ? AND id = ?"))
            .bind(workshop_id)
            .bind(id)
            .fetch_optional(&self.writer)
            .await?;
        row.as_ref().map(help_from).transpose()
    }
}

#[async_trait]
impl HelpStore for SqliteStore {
    async fn insert_help(&self, req: &HelpRequest) -> Result<()> {
        let commands = serde_json::to_string(&req.commands)
            .map_err(|_| StoreError::Corrupt("help request commands".into()))?;
        sqlx::query(
            "INSERT INTO help_requests (id, workshop_id, seat, name, message, cwd, commands, \
             open_file, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn active_help_for_seat(
        &self,
        workshop_id: &str,
        seat: u32,
    ) -> Result<Option<HelpRequest>> {
        let row = sqlx::query(&format!(
            "{SELECT} WHERE workshop_id = ? AND seat = ? AND status IN ('open', 'claimed') \
             ORDER BY created_at LIMIT 1"
        ))
        .bind(workshop_id)
        .bind(i64::from(seat))
        .fetch_optional(&self.writer)
        .await?;
        row.as_ref().map(help_from).transpose()
    }

    async fn list_active_help(&self, workshop_id: &str) -> Result<Vec<HelpRequest>> {
        let rows = sqlx::query(&format!(
            "{SELECT} WHERE workshop_id = ? AND status IN ('open', 'claimed') \
             ORDER BY created_at, id"
        ))
        .bind(workshop_id)
        .fetch_all(&self.reader)
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
            "UPDATE help_requests SET status = 'claimed', claimed_by = ?, claimed_at = ? \
             WHERE workshop_id = ? AND id = ? AND status IN ('open', 'claimed')",
        )
        .bind(by)
        .bind(at)
        .bind(workshop_id)
        .bind(id)
        .execute(&self.writer)
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
            "UPDATE help_requests SET status = 'resolved', resolved_at = ? \
             WHERE workshop_id = ? AND id = ? AND status IN ('open', 'claimed')",
        )
        .bind(at)
        .bind(workshop_id)
        .bind(id)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.help_by_id(workshop_id, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::temp_store;
    use super::*;
    use crate::{AccountStore, WorkshopStore};

    fn req(id: &str, seat: u32, at: DateTime<Utc>) -> HelpRequest {
        HelpRequest {
            id: id.into(),
            workshop_id: "ws-h".into(),
            seat,
            name: Some("Ada".into()),
            message: Some("stuck".into()),
            cwd: Some("/workspace".into()),
            commands: vec![clarateach_core::classroom::CommandRecord {
                command: "make".into(),
                exit_code: Some(2),
                finished_at: at,
            }],
            open_file: Some("main.c".into()),
            status: HelpStatus::Open,
            created_at: at,
            claimed_by: None,
            claimed_at: None,
            resolved_at: None,
        }
    }

    #[tokio::test]
    async fn the_queue_is_ordered_claimed_and_resolved() {
        let (_d, s) = temp_store().await;
        s.create_instructor("i1", "i", "h")
            .await
            .expect("instructor");
        s.insert_workshop(&super::super::workshops::tests::new_workshop(
            "ws-h",
            "CODE-HELP",
            3,
        ))
        .await
        .expect("workshop");
        let t0 = Utc::now();
        s.insert_help(&req("help-b", 2, t0 + chrono::Duration::seconds(5)))
            .await
            .expect("b");
        s.insert_help(&req("help-a", 1, t0)).await.expect("a");
        let q = s.list_active_help("ws-h").await.expect("list");
        assert_eq!(
            q.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["help-a", "help-b"],
            "longest waiting first"
        );
        assert_eq!(q[0].commands[0].exit_code, Some(2));
        let c = s
            .claim_help("ws-h", "help-a", "Grace", t0)
            .await
            .expect("claim")
            .expect("claimed");
        assert_eq!(c.status, HelpStatus::Claimed);
        assert_eq!(c.claimed_by.as_deref(), Some("Grace"));
        assert!(s
            .claim_help("ws-x", "help-b", "G", t0)
            .await
            .expect("other")
            .is_none());
        let r = s
            .resolve_help("ws-h", "help-a", t0)
            .await
            .expect("resolve")
            .expect("resolved");
        assert_eq!(r.status, HelpStatus::Resolved);
        assert!(s
            .resolve_help("ws-h", "help-a", t0)
            .await
            .expect("again")
            .is_none());
        assert!(s
            .active_help_for_seat("ws-h", 1)
            .await
            .expect("seat 1")
            .is_none());
        assert_eq!(
            s.active_help_for_seat("ws-h", 2)
                .await
                .expect("seat 2")
                .map(|r| r.id),
            Some("help-b".to_string())
        );
        assert_eq!(s.list_active_help("ws-h").await.expect("list").len(), 1);
    }
}
