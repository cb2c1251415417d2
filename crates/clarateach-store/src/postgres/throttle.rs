//! The join limiter's counters; mirrors `sqlite/throttle.rs`. Every replica writes here, so a
//! restart or a second replica sees the budgets already spent.

use async_trait::async_trait;
use sqlx::Row;

use super::PgStore;
use crate::sqlite::to_u32;
use crate::{Result, ThrottleStore};

#[async_trait]
impl ThrottleStore for PgStore {
    async fn load_throttle(&self, since: i64) -> Result<Vec<(String, i64, u32)>> {
        sqlx::query("DELETE FROM join_throttle WHERE window_start < $1")
            .bind(since)
            .execute(&self.pool)
            .await?;
        let rows = sqlx::query("SELECT bucket, window_start, failures FROM join_throttle")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("bucket")?,
                    r.try_get("window_start")?,
                    to_u32(r.try_get("failures")?, "failures")?,
                ))
            })
            .collect()
    }

    async fn save_throttle(&self, bucket: &str, window_start: i64, failures: u32) -> Result<()> {
        sqlx::query(
            "INSERT INTO join_throttle (bucket, window_start, failures) VALUES ($1, $2, $3) \
             ON CONFLICT (bucket) DO UPDATE SET window_start = excluded.window_start, \
             failures = excluded.failures",
        )
        .bind(bucket)
        .bind(window_start)
        .bind(i64::from(failures))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
