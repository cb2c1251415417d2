//! [`PlacementStore`] on PostgreSQL: a session-level advisory lock every replica takes on the
//! same key, on a connection the returned lock owns (see `crate::placement`).

use std::time::Duration;

use async_trait::async_trait;

use super::PgStore;
use crate::placement::{PlacementLock, PG_PLACEMENT_KEY};
use crate::{PlacementStore, Result};

/// How long a placement waits for another replica's before it fails.
const LOCK_WAIT: Duration = Duration::from_secs(30);

#[async_trait]
impl PlacementStore for PgStore {
    async fn lock_placement(&self) -> Result<PlacementLock> {
        // The guard owns the connection before the wait: a caller cancelled while waiting drops
        // it, which closes the session, so the server never grants the lock to a pooled one.
        let mut lock = PlacementLock::pg(self.pool.acquire().await?);
        if let Some(conn) = lock.pg_conn() {
            // A holder that hangs (a replica cut off from the database keeps its session until
            // the server notices) fails the waiting starts after a while instead of blocking
            // them for good. On error the guard drops the connection with its setting.
            sqlx::query(&format!("SET lock_timeout = '{}s'", LOCK_WAIT.as_secs()))
                .execute(&mut **conn)
                .await?;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(PG_PLACEMENT_KEY)
                .execute(&mut **conn)
                .await?;
            sqlx::query("RESET lock_timeout")
                .execute(&mut **conn)
                .await?;
        }
        Ok(lock)
    }
}
