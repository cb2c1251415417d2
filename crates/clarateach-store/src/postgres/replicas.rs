//! [`ReplicaStore`] on PostgreSQL. A queued command and its NOTIFY commit together, so the
//! holder is woken only for a command it can read; the holder also polls (see the control
//! plane's `scheduler::remote`), because a notification sent while its LISTEN connection was
//! being re-established is lost.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use super::PgStore;
use crate::replicas::{
    info_json, presence_from, sum_loads, PresenceRow, QueuedCommand, COMMANDS_CHANNEL,
    PRESENCE_COLUMNS,
};
use crate::{AgentLoad, AgentPresence, ReplicaStore, Result};

#[async_trait]
impl ReplicaStore for PgStore {
    async fn upsert_agent_presence(&self, p: &AgentPresence) -> Result<()> {
        sqlx::query(
            "INSERT INTO agent_presence (agent_id, replica_id, info_json, data_token_enc, \
             heartbeat_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (agent_id) DO UPDATE SET \
             replica_id = EXCLUDED.replica_id, info_json = EXCLUDED.info_json, \
             data_token_enc = EXCLUDED.data_token_enc, heartbeat_at = EXCLUDED.heartbeat_at",
        )
        .bind(&p.agent_id)
        .bind(&p.replica_id)
        .bind(info_json(&p.info)?)
        .bind(&p.data_token_sealed)
        .bind(p.heartbeat_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn touch_agent_presence(&self, replica_id: &str, at: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query("UPDATE agent_presence SET heartbeat_at = $1 WHERE replica_id = $2")
            .bind(at)
            .bind(replica_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn delete_agent_presence(&self, agent_id: &str, replica_id: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM agent_presence WHERE agent_id = $1 AND replica_id = $2")
                .bind(agent_id)
                .bind(replica_id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn live_agent_presence(&self, since: DateTime<Utc>) -> Result<Vec<AgentPresence>> {
        let rows: Vec<PresenceRow> = sqlx::query_as(&format!(
            "SELECT {PRESENCE_COLUMNS} FROM agent_presence WHERE heartbeat_at >= $1 \
             ORDER BY agent_id"
        ))
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(presence_from).collect()
    }

    async fn push_agent_command(
        &self,
        replica_id: &str,
        agent_id: &str,
        payload_sealed: &[u8],
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO agent_commands (replica_id, agent_id, payload_enc, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(replica_id)
        .bind(agent_id)
        .bind(payload_sealed)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(COMMANDS_CHANNEL)
            .bind(replica_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_agent_commands(
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

    async fn watch_agent_commands(&self, replica_id: &str) -> Result<Option<mpsc::Receiver<()>>> {
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

    async fn agent_loads(&self, except_workshop: &str) -> Result<Vec<AgentLoad>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT s.agent_id, w.limits_json, COUNT(*) FROM seats s \
             JOIN workshops w ON w.id = s.workshop_id \
             WHERE s.agent_id IS NOT NULL AND w.status IN ('provisioning', 'running') \
             AND w.id <> $1 GROUP BY s.agent_id, w.id, w.limits_json ORDER BY s.agent_id",
        )
        .bind(except_workshop)
        .fetch_all(&self.pool)
        .await?;
        sum_loads(rows)
    }
}
