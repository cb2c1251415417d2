//! Instructor accounts and agent tokens (hashes only).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::SqliteStore;
use crate::{AccountStore, InstructorRecord, Result};

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_instructor(&self, id: &str, name: &str, token_hash: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO instructors (id, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(id)
        .bind(name)
        .bind(token_hash)
        .bind(Utc::now())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn instructor_by_token_hash(&self, token_hash: &str) -> Result<Option<InstructorRecord>> {
        let row = sqlx::query("SELECT id, name, created_at FROM instructors WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.reader)
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
            .fetch_one(&self.reader)
            .await?)
    }

    async fn create_agent_token(&self, id: &str, token_hash: &str) -> Result<()> {
        sqlx::query("INSERT INTO agent_tokens (id, token_hash, created_at) VALUES (?, ?, ?)")
            .bind(id)
            .bind(token_hash)
            .bind(Utc::now())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn agent_token_exists(&self, token_hash: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agent_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_one(&self.reader)
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
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM instructor_sessions WHERE expires_at <= ?")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO instructor_sessions (token_hash, instructor_id, created_at, expires_at) \
             VALUES (?, ?, ?, ?)",
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
             JOIN instructors i ON i.id = s.instructor_id WHERE s.token_hash = ? AND s.expires_at > ?",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.reader)
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
        let done = sqlx::query("DELETE FROM instructor_sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::temp_store;
    use super::*;
    use crate::StoreError;

    #[tokio::test]
    async fn instructors_by_hash_and_unique() {
        let (_d, s) = temp_store().await;
        s.create_instructor("i1", "ada", "h1")
            .await
            .expect("create");
        assert!(matches!(
            s.create_instructor("i2", "bob", "h1").await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(
            s.instructor_by_token_hash("h1")
                .await
                .expect("q")
                .map(|i| i.name),
            Some("ada".into())
        );
        assert!(s
            .instructor_by_token_hash("nope")
            .await
            .expect("q")
            .is_none());
        assert_eq!(s.count_instructors().await.expect("count"), 1);
        s.create_agent_token("a1", "ah").await.expect("agent token");
        assert!(s.agent_token_exists("ah").await.expect("q"));
        assert!(!s.agent_token_exists("x").await.expect("q"));
    }

    #[tokio::test]
    async fn sessions_expire_and_revoke() {
        let (_d, s) = temp_store().await;
        s.create_instructor("i1", "ada", "h1")
            .await
            .expect("create");
        let now = Utc::now();
        let later = now + chrono::Duration::hours(12);
        s.create_instructor_session("sh", "i1", later)
            .await
            .expect("session");
        let found = s.instructor_by_session_hash("sh", now).await.expect("q");
        assert_eq!(found.map(|i| i.id), Some("i1".into()));
        assert!(
            s.instructor_by_session_hash("sh", later)
                .await
                .expect("q")
                .is_none(),
            "expired at its expiry"
        );
        assert!(
            s.instructor_by_session_hash("h1", now)
                .await
                .expect("q")
                .is_none(),
            "the instructor's own token hash is not a session"
        );
        assert!(s.delete_instructor_session("sh").await.expect("delete"));
        assert!(!s.delete_instructor_session("sh").await.expect("again"));
        assert!(s
            .instructor_by_session_hash("sh", now)
            .await
            .expect("q")
            .is_none());
    }
}
