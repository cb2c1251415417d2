//! The join limiter's counters. Written only on a failed join below its budget (a blocked
//! client is refused before anything is written), so a flood costs at most one write per
//! budget unit and bucket.

use async_trait::async_trait;
use sqlx::Row;

use super::Store;
use crate::sqlite::to_u32;
use crate::{Result, ThrottleStore};

#[async_trait]
impl ThrottleStore for Store {
    async fn load_throttle(&self, since: i64) -> Result<Vec<(String, i64, u32)>> {
        sqlx::query("DELETE FROM join_throttle WHERE window_start < $1")
            .bind(since)
            .execute(self.writer())
            .await?;
        let rows = sqlx::query("SELECT bucket, window_start, failures FROM join_throttle")
            .fetch_all(self.reader())
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
        .execute(self.writer())
        .await?;
        Ok(())
    }
}
