//! [`ReplicaStore`] on both back ends: agent presence rows, the command queue and the agents'
//! loads. What differs per back end (`sqlite/replicas.rs`, `postgres/replicas.rs`): waking the
//! replica a command is queued for (`wake_replica`: NOTIFY on PostgreSQL, nothing on SQLite,
//! whose one process holds every agent), taking the queue (`take_queued`) and watching it
//! (`watch_queue`: LISTEN, or `None`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::Store;
use crate::replicas::{
    info_json, presence_from, sum_loads, PresenceRow, QueuedCommand, PRESENCE_COLUMNS,
};
use crate::{AgentLoad, AgentPresence, ReplicaStore, Result};

#[async_trait]
impl ReplicaStore for Store {
    async fn upsert_agent_presence(&self, p: &AgentPresence) -> Result<()> {
        sqlx::query(
            "INSERT INTO agent_presence (agent_id, replica_id, info_json, data_token_enc, \
             heartbeat_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (agent_id) DO UPDATE SET \
             replica_id = excluded.replica_id, info_json = excluded.info_json, \
             data_token_enc = excluded.data_token_enc, heartbeat_at = excluded.heartbeat_at",
        )
        .bind(&p.agent_id)
        .bind(&p.replica_id)
        .bind(info_json(&p.info)?)
        .bind(&p.data_token_sealed)
        .bind(p.heartbeat_at)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn touch_agent_presence(&self, replica_id: &str, at: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query("UPDATE agent_presence SET heartbeat_at = $1 WHERE replica_id = $2")
            .bind(at)
            .bind(replica_id)
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected())
    }

    async fn delete_agent_presence(&self, agent_id: &str, replica_id: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM agent_presence WHERE agent_id = $1 AND replica_id = $2")
                .bind(agent_id)
                .bind(replica_id)
                .execute(self.writer())
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn live_agent_presence(&self, since: DateTime<Utc>) -> Result<Vec<AgentPresence>> {
        let rows: Vec<PresenceRow> = sqlx::query_as(&format!(
            "SELECT {PRESENCE_COLUMNS} FROM agent_presence WHERE heartbeat_at >= $1 ORDER BY agent_id"
        ))
        .bind(since)
        .fetch_all(self.writer())
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
        let mut tx = self.writer().begin().await?;
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
        Store::wake_replica(&mut tx, replica_id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_agent_commands(
        &self,
        replica_id: &str,
        stale_before: DateTime<Utc>,
    ) -> Result<Vec<QueuedCommand>> {
        self.take_queued(replica_id, stale_before).await
    }

    async fn watch_agent_commands(&self, replica_id: &str) -> Result<Option<mpsc::Receiver<()>>> {
        self.watch_queue(replica_id).await
    }

    async fn agent_loads(&self, except_workshop: &str) -> Result<Vec<AgentLoad>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT s.agent_id, w.limits_json, COUNT(*) FROM seats s \
             JOIN workshops w ON w.id = s.workshop_id \
             WHERE s.agent_id IS NOT NULL AND w.status IN ('provisioning', 'running') \
             AND w.id <> $1 GROUP BY s.agent_id, w.id, w.limits_json ORDER BY s.agent_id",
        )
        .bind(except_workshop)
        .fetch_all(self.writer())
        .await?;
        sum_loads(rows)
    }
}
