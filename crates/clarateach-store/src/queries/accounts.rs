//! Instructor accounts and agent tokens (hashes only), on both back ends; what differs per back
//! end is `lock_agent_id` (`sqlite/accounts.rs`, `postgres/accounts.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::Store;
use crate::{AccountStore, AgentTokenRecord, InstructorRecord, Result};

#[async_trait]
impl AccountStore for Store {
    async fn create_instructor(&self, id: &str, name: &str, token_hash: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO instructors (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(name)
        .bind(token_hash)
        .bind(Utc::now())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn instructor_by_token_hash(&self, token_hash: &str) -> Result<Option<InstructorRecord>> {
        let row = sqlx::query("SELECT id, name, created_at FROM instructors WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(self.reader())
            .await?;
        Ok(match row {
            Some(r) => Some(InstructorRecord {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                created_at: r.try_get::<DateTime<Utc>, _>("created_at")?,
            }),
            None => None,
        })
    }

    async fn count_instructors(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM instructors")
            .fetch_one(self.reader())
            .await?)
    }

    async fn create_agent_token(&self, id: &str, token_hash: &str) -> Result<()> {
        sqlx::query("INSERT INTO agent_tokens (id, token_hash, created_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(token_hash)
            .bind(Utc::now())
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn agent_token_exists(&self, token_hash: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM agent_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_one(self.reader())
        .await?;
        Ok(n > 0)
    }

    async fn create_bound_agent_token(
        &self,
        id: &str,
        token_hash: &str,
        agent_id: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO agent_tokens (id, token_hash, created_at, bound_agent_id) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(token_hash)
        .bind(Utc::now())
        .bind(agent_id)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn agent_token_by_hash(&self, token_hash: &str) -> Result<Option<AgentTokenRecord>> {
        let row = sqlx::query(
            "SELECT id, bound_agent_id, revoked_at IS NOT NULL AS revoked FROM agent_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.reader())
        .await?;
        Ok(match row {
            Some(r) => Some(AgentTokenRecord {
                id: r.try_get("id")?,
                agent_id: r.try_get("bound_agent_id")?,
                revoked: r.try_get("revoked")?,
            }),
            None => None,
        })
    }

    async fn bind_agent_token(&self, token_id: &str, agent_id: &str) -> Result<bool> {
        // Two legacy tokens racing for one id must not both win: SQLite's single writer runs
        // one transaction at a time; on PostgreSQL `lock_agent_id` serializes the bind per agent
        // id across replicas before the NOT EXISTS check.
        let mut tx = self.writer().begin().await?;
        Store::lock_agent_id(&mut tx, agent_id).await?;
        let done = sqlx::query(
            "UPDATE agent_tokens SET bound_agent_id = $1 \
             WHERE id = $2 AND bound_agent_id IS NULL AND revoked_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM agent_tokens WHERE bound_agent_id = $1 AND revoked_at IS NULL)",
        )
        .bind(agent_id)
        .bind(token_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_agent_tokens(&self, agent_id: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE agent_tokens SET revoked_at = $1 WHERE bound_agent_id = $2 AND revoked_at IS NULL",
        )
        .bind(Utc::now())
        .bind(agent_id)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected())
    }

    async fn agent_token_active(&self, token_id: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM agent_tokens WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(token_id)
        .fetch_one(self.reader())
        .await?;
        Ok(n > 0)
    }

    async fn create_instructor_session(
        &self,
        token_hash: &str,
        instructor_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let now = Utc::now();
        let mut tx = self.writer().begin().await?;
        sqlx::query("DELETE FROM instructor_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO instructor_sessions (token_hash, instructor_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(instructor_id)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn instructor_by_session_hash(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<InstructorRecord>> {
        let row = sqlx::query(
            "SELECT i.id, i.name, i.created_at FROM instructor_sessions s \
             JOIN instructors i ON i.id = s.instructor_id WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(self.reader())
        .await?;
        Ok(match row {
            Some(r) => Some(InstructorRecord {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                created_at: r.try_get::<DateTime<Utc>, _>("created_at")?,
            }),
            None => None,
        })
    }

    async fn delete_instructor_session(&self, token_hash: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM instructor_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
