//! Several control-plane replicas on one PostgreSQL (issue 13): what a replica needs to reach
//! the agents another replica holds.
//!
//! Each replica has a random id. When an agent registers here, its presence row (the store's
//! `agent_presence`) names this replica, with the agent's data URL and its data-path token
//! sealed with the replicas' shared secret key (every replica serves from a copy of the same
//! data dir keys); this replica refreshes its rows every heartbeat interval, and a row three
//! intervals (at least [`MIN_LIVE`]) old is a dead replica's. Then:
//!
//! - **Commands** (create/destroy/pause/resume a seat) for an agent held elsewhere are queued in
//!   the store for its holder, sealed (a seat spec carries the workshop's api key), and the
//!   holder is woken by NOTIFY; it delivers them over the agent's socket. It also polls every
//!   [`POLL`], for a notification lost while its LISTEN connection was re-established. No API
//!   call waits for a reply on the socket: every caller waits for the agent's seat reports,
//!   which the holder writes to the store, where any replica sees them.
//! - **Routes** (the gateway's data path): the store says which agent hosts a seat; the agent's
//!   presence row gives its data URL and token, so any replica's gateway reaches the agent
//!   directly, whichever replica holds its session.
//! - **Placement** counts every replica's agents and what the store says is placed on each
//!   (seats of provisioning or running workshops and their limits). Starts are serialized by
//!   [`Remote::placing`] across every replica (the store's placement lock, a PostgreSQL
//!   advisory lock, held from reading the loads until the seats are recorded), so two replicas
//!   placing in the same instant never both count the same free room.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use clarateach_core::agent_proto::ControlMessage;
use clarateach_store::{AgentPresence, AgentPresenceInfo, Store};

use super::conn::{AgentConn, AgentInfo};
use super::{ProvisionError, SeatRoute};
use crate::secrets::{ApiKey, SecretBox};
use clarateach_core::SeatState;

/// How often a replica looks for commands queued for it without being woken.
const POLL: Duration = Duration::from_secs(1);
/// The shortest time a presence row stays live without a refresh.
const MIN_LIVE: Duration = Duration::from_secs(2);
/// Commands nobody took for this long were for a replica that died; they are dropped (the
/// agent gets its whole desired state again when it registers with a live replica).
const STALE_COMMAND: Duration = Duration::from_secs(60);

/// The local registry as the delivery loop sees it (implemented by [`super::registry`], which
/// this module does not name): whether it still runs, and handing a command to the session of
/// an agent held here.
pub(super) trait LocalSessions: Send + Sync + 'static {
    /// False once the registry task has ended; the loop ends with it.
    fn alive(&self) -> bool;
    /// Hands `msg` to `agent_id`'s session on this replica; false when no session took it.
    fn send(
        &self,
        agent_id: &str,
        msg: ControlMessage,
    ) -> impl std::future::Future<Output = bool> + Send;
}

/// This replica's view of the others, through the shared store.
pub struct Remote {
    store: Arc<dyn Store>,
    secrets: SecretBox,
    replica_id: String,
    heartbeat: Duration,
    placing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("replica_id", &self.replica_id)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// A replica with a fresh id; `heartbeat` is the agents' interval (presence rows are
    /// refreshed that often and are dead after three, or [`MIN_LIVE`]).
    pub fn new(store: Arc<dyn Store>, secrets: SecretBox, heartbeat: Duration) -> Self {
        let token = clarateach_core::secret::random_token("");
        Self {
            store,
            secrets,
            replica_id: format!("rp-{}", &token[..16]),
            heartbeat,
            placing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// Held from reading the agents' loads until the placement is recorded: this replica's
    /// mutex (its own starts queue here, not on the database), then the store's placement lock,
    /// which every replica takes (placement exactly once across replicas).
    pub async fn placing(
        &self,
    ) -> Result<
        (
            tokio::sync::MutexGuard<'_, ()>,
            clarateach_store::PlacementLock,
        ),
        ProvisionError,
    > {
        let local = self.placing.lock().await;
        let store = self.store.lock_placement().await?;
        Ok((local, store))
    }

    /// Presence rows refreshed since then are live: three heartbeat intervals, at least
    /// [`MIN_LIVE`] (a replica's refresh delayed on a loaded host is not its death).
    fn live_since(&self) -> chrono::DateTime<Utc> {
        let window = chrono::Duration::from_std((self.heartbeat * 3).max(MIN_LIVE))
            .unwrap_or_else(|_| chrono::Duration::seconds(6));
        Utc::now() - window
    }

    /// Starts refreshing this replica's presence rows and delivering the commands queued for
    /// it; ends when the registry task does.
    pub(super) fn start(self: &Arc<Self>, local: impl LocalSessions) {
        let me = Arc::clone(self);
        tokio::spawn(async move { me.run(local).await });
    }

    async fn run(self: Arc<Self>, local: impl LocalSessions) {
        let mut wake = match self.store.watch_agent_commands(&self.replica_id).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for agent commands; polling only");
                None
            }
        };
        let mut beat = tokio::time::interval(self.heartbeat);
        let mut poll = tokio::time::interval(POLL);
        loop {
            let woken = async {
                match wake.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = beat.tick() => {
                    if let Err(e) = self.store.touch_agent_presence(&self.replica_id, Utc::now()).await {
                        tracing::warn!(error = %e, "cannot refresh this replica's agent presence");
                    }
                    continue;
                }
                _ = poll.tick() => {}
                got = woken => {
                    if got.is_none() {
                        wake = None;
                    }
                }
            }
            if !local.alive() {
                return;
            }
            self.deliver(&local).await;
        }
    }

    /// Hands every command queued for this replica to its agent's session here.
    async fn deliver(&self, registry: &impl LocalSessions) {
        let stale = Utc::now()
            - chrono::Duration::from_std(STALE_COMMAND)
                .unwrap_or_else(|_| chrono::Duration::zero());
        let queued = match self
            .store
            .take_agent_commands(&self.replica_id, stale)
            .await
        {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the agent commands queued for this replica");
                return;
            }
        };
        for cmd in queued {
            let owner = command_owner(&self.replica_id, &cmd.agent_id);
            let msg = self
                .secrets
                .open(&owner, &cmd.payload_sealed)
                .ok()
                .and_then(|plain| serde_json::from_str::<ControlMessage>(plain.expose()).ok());
            let Some(msg) = msg else {
                tracing::warn!(agent.id = %cmd.agent_id, "dropping a queued agent command that does not open");
                continue;
            };
            if !registry.send(&cmd.agent_id, msg).await {
                tracing::warn!(agent.id = %cmd.agent_id, "agent left this replica before its queued command arrived");
            }
        }
    }

    /// Records that this replica holds `conn`'s agent now.
    pub(super) async fn announce(&self, conn: &AgentConn) {
        let sealed = match self.secrets.seal(
            &token_owner(&conn.agent_id, &conn.data_url),
            &ApiKey::new(conn.data_token.clone()),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(agent.id = %conn.agent_id, error = %e, "cannot seal the agent's data token");
                return;
            }
        };
        let presence = AgentPresence {
            agent_id: conn.agent_id.clone(),
            replica_id: self.replica_id.clone(),
            info: AgentPresenceInfo {
                hostname: conn.hostname.clone(),
                capacity: conn.capacity,
                memory_mb: conn.memory_mb,
                cpu_millis: conn.cpu_millis,
                data_url: conn.data_url.clone(),
                images: conn.images.clone(),
                image_details: conn.image_details.clone(),
                buildable: conn.buildable.clone(),
            },
            data_token_sealed: sealed,
            heartbeat_at: Utc::now(),
        };
        if let Err(e) = self.store.upsert_agent_presence(&presence).await {
            tracing::error!(agent.id = %conn.agent_id, error = %e,
                "cannot record the agent's presence: other replicas cannot reach it");
        }
    }

    /// Forgets that this replica holds the agent. True unless another replica holds it by now
    /// (its seats are not lost then).
    pub(super) async fn withdraw(&self, agent_id: &str) -> bool {
        match self
            .store
            .delete_agent_presence(agent_id, &self.replica_id)
            .await
        {
            Ok(true) => true,
            Ok(false) => self
                .presence(agent_id)
                .await
                .is_none_or(|p| p.replica_id == self.replica_id),
            Err(e) => {
                tracing::warn!(agent.id = %agent_id, error = %e, "cannot withdraw the agent's presence");
                true
            }
        }
    }

    /// The agent's live presence row, when some replica holds it.
    async fn presence(&self, agent_id: &str) -> Option<AgentPresence> {
        match self.store.live_agent_presence(self.live_since()).await {
            Ok(all) => all.into_iter().find(|p| p.agent_id == agent_id),
            Err(e) => {
                tracing::warn!(agent.id = %agent_id, error = %e, "cannot read agent presence");
                None
            }
        }
    }

    /// Queues `msg` for the replica holding `agent_id`; false when no other live replica does.
    pub(super) async fn send(
        &self,
        agent_id: &str,
        msg: &ControlMessage,
    ) -> Result<bool, ProvisionError> {
        let Some(holder) = self
            .presence(agent_id)
            .await
            .filter(|p| p.replica_id != self.replica_id)
        else {
            return Ok(false);
        };
        let owner = command_owner(&holder.replica_id, agent_id);
        let sealed = serde_json::to_string(msg)
            .ok()
            .and_then(|plain| self.secrets.seal(&owner, &ApiKey::new(plain)).ok());
        let Some(sealed) = sealed else {
            tracing::error!(agent.id = %agent_id, "cannot seal a command for another replica");
            return Ok(false);
        };
        self.store
            .push_agent_command(&holder.replica_id, agent_id, &sealed, Utc::now())
            .await?;
        Ok(true)
    }

    /// The data path of an agent another replica holds.
    pub(super) async fn agent_route(&self, agent_id: &str) -> Option<SeatRoute> {
        let p = self.presence(agent_id).await?;
        let token = self
            .secrets
            .open(
                &token_owner(agent_id, &p.info.data_url),
                &p.data_token_sealed,
            )
            .ok()?;
        Some(SeatRoute {
            agent_id: p.agent_id,
            data_url: p.info.data_url,
            data_token: token.expose().to_string(),
        })
    }

    /// The agent the store says hosts a live seat.
    pub(super) async fn seat_agent(&self, workshop_id: &str, seat: u32) -> Option<String> {
        let s = self.store.get_seat(workshop_id, seat).await.ok()??;
        let live = matches!(
            s.state,
            SeatState::Creating | SeatState::Ready | SeatState::Paused | SeatState::Preparing
        );
        if live {
            s.agent_id
        } else {
            None
        }
    }

    /// Agents other replicas hold, with what the store says is placed on them.
    pub(super) async fn list(&self) -> Vec<AgentInfo> {
        let presence = match self.store.live_agent_presence(self.live_since()).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read agent presence");
                return Vec::new();
            }
        };
        let loads = self.store.agent_loads("").await.unwrap_or_default();
        presence
            .into_iter()
            .filter(|p| p.replica_id != self.replica_id)
            .map(|p| {
                let load = loads.iter().find(|l| l.agent_id == p.agent_id);
                AgentInfo {
                    agent_id: p.agent_id,
                    hostname: p.info.hostname,
                    capacity: p.info.capacity,
                    placed: load.map_or(0, |l| l.seats),
                    used: 0,
                    images: p.info.images,
                    image_details: p.info.image_details,
                    buildable: p.info.buildable,
                    memory_mb: p.info.memory_mb,
                    reserved_memory_mb: load.map_or(0, |l| l.memory_mb),
                    cpu_millis: p.info.cpu_millis,
                    reserved_cpu_millis: load.map_or(0, |l| l.cpu_millis),
                    held_by: Some(p.replica_id),
                }
            })
            .collect()
    }

    /// Every replica's agents (`local`: this replica's) with what the store says is placed on
    /// each, `workshop_id`'s own earlier seats left out, and without `except` (the agent a seat
    /// moves off): what placement counts on a shared store.
    pub(super) async fn with_loads(
        &self,
        local: &[AgentInfo],
        workshop_id: &str,
        except: Option<&str>,
    ) -> Result<Vec<AgentInfo>, ProvisionError> {
        let loads = self.store.agent_loads(workshop_id).await?;
        let mut agents: Vec<AgentInfo> = local.to_vec();
        agents.extend(
            self.list()
                .await
                .into_iter()
                .filter(|o| !local.iter().any(|l| l.agent_id == o.agent_id)),
        );
        agents.retain(|a| Some(a.agent_id.as_str()) != except);
        for a in &mut agents {
            let load = loads.iter().find(|l| l.agent_id == a.agent_id);
            a.placed = load.map_or(0, |l| l.seats);
            a.reserved_memory_mb = load.map_or(0, |l| l.memory_mb);
            a.reserved_cpu_millis = load.map_or(0, |l| l.cpu_millis);
        }
        Ok(agents)
    }
}

/// What an agent's sealed data token is bound to (the sealing's associated data): its agent and
/// data URL, so a presence row whose URL was changed in the database does not open, and no
/// gateway sends the token (and a learner's traffic) to where the row now points.
fn token_owner(agent_id: &str, data_url: &str) -> String {
    format!("agent-data-token:{agent_id}:{data_url}")
}

/// What a queued command is bound to: its replica and agent (a row moved to another queue
/// does not open there).
fn command_owner(replica_id: &str, agent_id: &str) -> String {
    format!("agent-command:{replica_id}:{agent_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::RegistryHandle;
    use clarateach_store::SqliteStore;
    use tokio::sync::mpsc;

    fn conn(id: &str) -> (AgentConn, mpsc::UnboundedReceiver<ControlMessage>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let c = AgentConn {
            agent_id: id.into(),
            hostname: "h".into(),
            capacity: 4,
            data_url: "http://127.0.0.1:9090".into(),
            data_token: "data-secret".into(),
            token_id: "at-1".into(),
            tx,
            images: Vec::new(),
            image_details: Vec::new(),
            buildable: Vec::new(),
            memory_mb: Some(2048),
            cpu_millis: None,
        };
        (c, rx)
    }

    /// Two replicas on one store (SQLite here: the replicas are two registries in one
    /// process, and delivery is by polling instead of NOTIFY).
    #[tokio::test]
    async fn a_replica_reaches_the_agent_another_holds_and_a_tampered_row_gives_no_route() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.path().join("db"))
                .await
                .expect("store"),
        );
        let secrets = SecretBox::load_or_create(&dir.path().join("secret.key")).expect("key");
        let beat = Duration::from_millis(100);
        let a = RegistryHandle::spawn_shared(Remote::new(store.clone(), secrets.clone(), beat));
        let b = RegistryHandle::spawn_shared(Remote::new(store.clone(), secrets, beat));
        let (c, mut rx) = conn("ag-a");
        a.register(c, vec![]).await.expect("reg").expect("id");

        // B lists it as held elsewhere and routes to it with its (sealed, then opened) token.
        let listed = b.list().await;
        assert_eq!(listed.len(), 1);
        assert!(listed[0].held_by.is_some());
        assert_eq!(listed[0].memory_mb, Some(2048));
        let route = b.agent_route("ag-a").await.expect("route through B");
        assert_eq!(
            (route.data_url.as_str(), route.data_token.as_str()),
            ("http://127.0.0.1:9090", "data-secret")
        );
        // The store holds the token sealed only.
        let rows = store
            .live_agent_presence(Utc::now() - chrono::Duration::seconds(60))
            .await
            .expect("rows");
        assert!(!rows[0]
            .data_token_sealed
            .windows(11)
            .any(|w| w == b"data-secret"));

        // A command sent through B arrives on A's session.
        let msg = ControlMessage::PauseSeat {
            workshop_id: "ws-x".into(),
            seat: 3,
        };
        assert!(b.send("ag-a", msg.clone()).await.expect("send"));
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("delivered within a poll");
        assert_eq!(got, Some(msg));
        assert!(!b
            .send(
                "nobody",
                ControlMessage::PauseSeat {
                    workshop_id: "ws-x".into(),
                    seat: 1,
                }
            )
            .await
            .expect("send"));

        // Someone with write access to the database points the row at their own server: the
        // token no longer opens, so no gateway sends it (or a learner's traffic) there.
        let mut row = rows[0].clone();
        row.info.data_url = "http://203.0.113.9:9090".into();
        store.upsert_agent_presence(&row).await.expect("tamper");
        assert!(b.agent_route("ag-a").await.is_none());

        // A withdraws its agent when the session ends: B no longer lists it.
        let (c, _rx2) = conn("ag-a");
        let id = a.register(c, vec![]).await.expect("reg").expect("id");
        assert!(a.unregister("ag-a", id).await.expect("unregister"));
        assert!(b.list().await.is_empty());
    }
}
