//! What the replica tables do differently on PostgreSQL (the queries are `queries/replicas.rs`):
//! queuing a command NOTIFYs its replica in the same transaction, the replica LISTENs, and the
//! queue is taken with `DELETE ... RETURNING`.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use super::PgStore;
use crate::replicas::{QueuedCommand, COMMANDS_CHANNEL};
use crate::Result;

impl PgStore {
    /// Wakes `replica_id` when `tx` commits (NOTIFY is delivered at commit).
    pub(crate) async fn wake_replica(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        replica_id: &str,
    ) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(COMMANDS_CHANNEL)
            .bind(replica_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Drops stale commands and takes (deletes and returns) those queued for `replica_id`,
    /// oldest first: one `DELETE ... RETURNING`, so two takers never get the same command.
    pub(crate) async fn take_queued(
        &self,
        replica_id: &str,
        stale_before: DateTime<Utc>,
    ) -> Result<Vec<QueuedCommand>> {
        sqlx::query("DELETE FROM agent_commands WHERE created_at < $1")
            .bind(stale_before)
            .execute(&self.pool)
            .await?;
        let mut rows: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(
            "DELETE FROM agent_commands WHERE replica_id = $1 RETURNING id, agent_id, payload_enc",
        )
        .bind(replica_id)
        .fetch_all(&self.pool)
        .await?;
        rows.sort_by_key(|r| r.0);
        Ok(rows
            .into_iter()
            .map(|(_, agent_id, payload_sealed)| QueuedCommand {
                agent_id,
                payload_sealed,
            })
            .collect())
    }

    /// Wakes on every NOTIFY for `replica_id` on [`COMMANDS_CHANNEL`].
    pub(crate) async fn watch_queue(&self, replica_id: &str) -> Result<Option<mpsc::Receiver<()>>> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(COMMANDS_CHANNEL).await?;
        let (tx, rx) = mpsc::channel(1);
        let me = replica_id.to_string();
        tokio::spawn(async move {
            loop {
                // `recv` re-connects by itself after a lost connection (notifications sent
                // meanwhile are missed: the holder's poll covers them).
                let got = tokio::select! {
                    _ = tx.closed() => return,
                    got = listener.recv() => got,
                };
                match got {
                    Ok(n) if n.payload() == me => {
                        // A wake-up already pending covers this one too.
                        if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "agent command LISTEN failed; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(Some(rx))
    }
}
