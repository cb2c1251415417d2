//! What the replica tables do differently on SQLite (the queries are `queries/replicas.rs`):
//! one process holds every agent, so nothing is ever woken ([`ReplicaStore::watch_agent_commands`]
//! is `None`), and the queue is read and emptied in one transaction on the single writer.
//!
//! [`ReplicaStore::watch_agent_commands`]: crate::ReplicaStore::watch_agent_commands

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::SqliteStore;
use crate::replicas::QueuedCommand;
use crate::Result;

impl SqliteStore {
    /// Nothing to wake: see the header.
    pub(crate) async fn wake_replica(
        _tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        _replica_id: &str,
    ) -> Result<()> {
        Ok(())
    }

    /// Drops stale commands and takes (deletes and returns) those queued for `replica_id`,
    /// oldest first, in one transaction on the writer.
    pub(crate) async fn take_queued(
        &self,
        replica_id: &str,
        stale_before: DateTime<Utc>,
    ) -> Result<Vec<QueuedCommand>> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM agent_commands WHERE created_at < ?")
            .bind(stale_before)
            .execute(&mut *tx)
            .await?;
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT agent_id, payload_enc FROM agent_commands WHERE replica_id = ? ORDER BY id",
        )
        .bind(replica_id)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM agent_commands WHERE replica_id = ?")
            .bind(replica_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|(agent_id, payload_sealed)| QueuedCommand {
                agent_id,
                payload_sealed,
            })
            .collect())
    }

    /// No wake-ups on SQLite: see the header.
    pub(crate) async fn watch_queue(
        &self,
        _replica_id: &str,
    ) -> Result<Option<mpsc::Receiver<()>>> {
        Ok(None)
    }
}
