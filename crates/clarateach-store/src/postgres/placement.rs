//! [`PlacementStore`] on PostgreSQL: a session-level advisory lock every replica takes on the
//! same key, on a connection the returned lock owns (see `crate::placement`).

use async_trait::async_trait;

use super::PgStore;
use crate::placement::{PlacementLock, PG_PLACEMENT_KEY};
use crate::{PlacementStore, Result};

#[async_trait]
impl PlacementStore for PgStore {
    async fn lock_placement(&self) -> Result<PlacementLock> {
        // The guard owns the connection before the wait: a caller cancelled while waiting drops
        // it, which closes the session, so the server never grants the lock to a pooled one.
        let mut lock = PlacementLock::pg(self.pool.acquire().await?);
        if let Some(conn) = lock.pg_conn() {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(PG_PLACEMENT_KEY)
                .execute(&mut **conn)
                .await?;
        }
        Ok(lock)
    }
}
