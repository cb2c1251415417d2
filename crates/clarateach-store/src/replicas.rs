//! What several control-plane replicas on one database share about agents (issue 13): which
//! replica holds each agent's session ([`AgentPresence`], kept fresh by heartbeats), commands
//! for an agent that another replica holds (a queue per replica, which PostgreSQL's
//! LISTEN/NOTIFY wakes), and what every agent has placed on it (so any replica places seats
//! knowing what the others placed). SQLite, one process, implements the same for the
//! conformance tests; the control plane only uses it on a shared (PostgreSQL) store.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clarateach_core::{Limits, SeatImageSummary};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{Result, StoreError};

/// What an agent said about itself at registration, as every replica needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AgentPresenceInfo {
    pub hostname: String,
    pub capacity: u32,
    /// Memory (MiB) the control plane may reserve on it; `None` when it did not report any.
    pub memory_mb: Option<u64>,
    /// CPU (thousandths) the control plane may reserve on it.
    pub cpu_millis: Option<u64>,
    pub data_url: String,
    #[serde(default)]
    pub images: Vec<String>,
    #[serde(default)]
    pub image_details: Vec<SeatImageSummary>,
    #[serde(default)]
    pub buildable: Vec<String>,
}

/// A connected agent and the replica holding its session.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentPresence {
    pub agent_id: String,
    pub replica_id: String,
    pub info: AgentPresenceInfo,
    /// The agent's data-path bearer token, sealed with the replicas' secret key.
    pub data_token_sealed: Vec<u8>,
    pub heartbeat_at: DateTime<Utc>,
}

impl std::fmt::Debug for AgentPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentPresence")
            .field("agent_id", &self.agent_id)
            .field("replica_id", &self.replica_id)
            .field("info", &self.info)
            .field("heartbeat_at", &self.heartbeat_at)
            .finish_non_exhaustive()
    }
}

/// What is placed on one agent: seats of provisioning or running workshops and the sum of
/// their limits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentLoad {
    pub agent_id: String,
    pub seats: u32,
    pub memory_mb: u64,
    pub cpu_millis: u64,
}

/// A command queued for an agent held by `replica_id`.
#[derive(Clone, PartialEq, Eq)]
pub struct QueuedCommand {
    pub agent_id: String,
    /// The command, sealed with the replicas' secret key.
    pub payload_sealed: Vec<u8>,
}

/// Agent presence, the command queues between replicas, and agents' loads.
#[async_trait]
pub trait ReplicaStore: Send + Sync {
    /// Records that `p.replica_id` now holds agent `p.agent_id` (replacing any older holder).
    async fn upsert_agent_presence(&self, p: &AgentPresence) -> Result<()>;
    /// Refreshes the heartbeat of every agent `replica_id` holds; returns how many.
    async fn touch_agent_presence(&self, replica_id: &str, at: DateTime<Utc>) -> Result<u64>;
    /// Forgets the agent if `replica_id` still holds it; true when removed.
    async fn delete_agent_presence(&self, agent_id: &str, replica_id: &str) -> Result<bool>;
    /// Agents whose holder heartbeat at or after `since`, by id.
    async fn live_agent_presence(&self, since: DateTime<Utc>) -> Result<Vec<AgentPresence>>;
    /// Queues a command for the replica holding the agent and wakes it (NOTIFY).
    async fn push_agent_command(
        &self,
        replica_id: &str,
        agent_id: &str,
        payload_sealed: &[u8],
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// Takes (deletes and returns, oldest first) every command queued for `replica_id`;
    /// commands queued before `stale_before` for any replica are dropped (their replica died).
    async fn take_agent_commands(
        &self,
        replica_id: &str,
        stale_before: DateTime<Utc>,
    ) -> Result<Vec<QueuedCommand>>;
    /// A channel that gets a message whenever a command is queued for `replica_id` (PostgreSQL
    /// LISTEN); `None` where one process is all there is (SQLite): callers poll instead.
    async fn watch_agent_commands(&self, replica_id: &str) -> Result<Option<mpsc::Receiver<()>>>;
    /// What each agent has placed on it, leaving out the seats of `except_workshop` (the one
    /// being placed again).
    async fn agent_loads(&self, except_workshop: &str) -> Result<Vec<AgentLoad>>;
}

/// The NOTIFY channel of the command queues; the payload is the replica id.
pub(crate) const COMMANDS_CHANNEL: &str = "clarateach_agent_commands";

pub(crate) fn info_json(info: &AgentPresenceInfo) -> Result<String> {
    serde_json::to_string(info).map_err(|e| StoreError::Corrupt(format!("agent presence: {e}")))
}

pub(crate) fn info_from_json(s: &str) -> Result<AgentPresenceInfo> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("agent presence: {e}")))
}

/// Sums `(agent_id, limits_json, seats)` rows (one per agent and workshop) into loads.
pub(crate) fn sum_loads(rows: Vec<(String, String, i64)>) -> Result<Vec<AgentLoad>> {
    let mut out: Vec<AgentLoad> = Vec::new();
    for (agent_id, limits_json, n) in rows {
        let limits: Limits = serde_json::from_str(&limits_json)
            .map_err(|e| StoreError::Corrupt(format!("limits_json: {e}")))?;
        let n = u32::try_from(n).map_err(|_| StoreError::Corrupt("seat count".into()))?;
        let i = match out.iter().position(|l| l.agent_id == agent_id) {
            Some(i) => i,
            None => {
                out.push(AgentLoad {
                    agent_id,
                    ..Default::default()
                });
                out.len() - 1
            }
        };
        let l = &mut out[i];
        l.seats += n;
        l.memory_mb += u64::from(limits.memory_mb) * u64::from(n);
        l.cpu_millis += u64::from(limits.cpu_millis) * u64::from(n);
    }
    Ok(out)
}

/// One `agent_presence` row as [`PRESENCE_COLUMNS`] selects it.
pub(crate) type PresenceRow = (String, String, String, Vec<u8>, DateTime<Utc>);

pub(crate) const PRESENCE_COLUMNS: &str =
    "agent_id, replica_id, info_json, data_token_enc, heartbeat_at";

pub(crate) fn presence_from(row: PresenceRow) -> Result<AgentPresence> {
    let (agent_id, replica_id, info, data_token_sealed, heartbeat_at) = row;
    Ok(AgentPresence {
        agent_id,
        replica_id,
        info: info_from_json(&info)?,
        data_token_sealed,
        heartbeat_at,
    })
}
