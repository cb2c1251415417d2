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
}
