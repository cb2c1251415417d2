//! The registry of connected agents, owned by one task. Handlers and agent sessions send it
//! commands over a channel and await the reply; nothing holds a lock across `.await`.
//!
//! On a shared (PostgreSQL) store, several replicas each hold some agents: the handle then
//! also has a [`Remote`], and what the local task does not know it asks there (in the caller's
//! task, never in the registry's): a command for an agent another replica holds is queued for
//! that replica, a seat's route comes from the store and the holder's presence row, and
//! placement counts every replica's agents and seats (see `remote`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use clarateach_core::agent_proto::{ControlMessage, SeatKey};
use tokio::sync::{mpsc, oneshot};

pub use super::conn::{AgentConn, AgentInfo};
use super::placement::{self, Candidate, Demand};
use super::remote::{self, Remote};
use super::{ProvisionError, SeatRoute};

struct Entry {
    conn: AgentConn,
    conn_id: u64,
    used: u32,
    last_seen: Instant,
    placed: BTreeMap<SeatKey, Demand>,
}

impl Entry {
    fn reserved(&self) -> Demand {
        self.placed.values().fold(Demand::default(), |a, d| Demand {
            memory_mb: a.memory_mb + d.memory_mb,
            cpu_millis: a.cpu_millis + d.cpu_millis,
        })
    }

    fn info(&self) -> AgentInfo {
        let reserved = self.reserved();
        AgentInfo {
            agent_id: self.conn.agent_id.clone(),
            hostname: self.conn.hostname.clone(),
            capacity: self.conn.capacity,
            placed: self.placed.len() as u32,
            used: self.used,
            images: self.conn.images.clone(),
            image_details: self.conn.image_details.clone(),
            buildable: self.conn.buildable.clone(),
            memory_mb: self.conn.memory_mb,
            reserved_memory_mb: reserved.memory_mb,
            cpu_millis: self.conn.cpu_millis,
            reserved_cpu_millis: reserved.cpu_millis,
            held_by: None,
        }
    }
}

pub(super) enum Command {
    Register {
        conn: AgentConn,
        seats: Vec<(SeatKey, Demand)>,
        reply: oneshot::Sender<Option<u64>>,
    },
    MayTakeOver {
        agent_id: String,
        token_id: String,
        reply: oneshot::Sender<bool>,
    },
    Unregister {
        agent_id: String,
        conn_id: u64,
        reply: oneshot::Sender<bool>,
    },
    Heartbeat {
        agent_id: String,
        conn_id: u64,
        used: u32,
    },
    Reserve {
        workshop_id: String,
        seats: Vec<u32>,
        image: Option<String>,
        demand: Demand,
        reply: oneshot::Sender<Result<Vec<(u32, String)>, ProvisionError>>,
    },
    Send {
        agent_id: String,
        msg: ControlMessage,
        reply: oneshot::Sender<bool>,
    },
    /// `Reserve` of one seat on any agent but `except` (a seat moving off it).
    ReserveElsewhere {
        key: SeatKey,
        except: String,
        image: Option<String>,
        demand: Demand,
        reply: oneshot::Sender<Result<Vec<(u32, String)>, ProvisionError>>,
    },
    Forget {
        workshop_id: String,
    },
    Route {
        key: SeatKey,
        reply: oneshot::Sender<Option<SeatRoute>>,
    },
    AgentRoute {
        agent_id: String,
        reply: oneshot::Sender<Option<SeatRoute>>,
    },
    List {
        reply: oneshot::Sender<Vec<AgentInfo>>,
    },
}

/// Held while one placement reads the agents' loads and records its seats
/// ([`RegistryHandle::placing`]); [`Placing::done`] releases it (dropping it does too, less
/// cheaply: the store lock's connection is closed).
#[must_use = "placement is serialized only while this is held"]
pub struct Placing<'a> {
    _local: Option<tokio::sync::MutexGuard<'a, ()>>,
    store: Option<clarateach_store::PlacementLock>,
}

impl Placing<'_> {
    /// Releases the placement lock once the placement is recorded (or given up).
    pub async fn done(mut self) {
        if let Some(lock) = self.store.take() {
            if let Err(e) = lock.release().await {
                tracing::warn!(error = %e, "cannot release the placement lock; its connection is closed");
            }
        }
    }
}

/// Cheap, cloneable handle to the registry task.
#[derive(Clone, Debug)]
pub struct RegistryHandle {
    tx: mpsc::Sender<Command>,
    /// The other replicas' agents, on a shared store.
    remote: Option<Arc<Remote>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("registry::Command")
    }
}

impl RegistryHandle {
    /// Starts the owning task; it ends when every handle is dropped.
    pub fn spawn() -> Self {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(rx));
        Self { tx, remote: None }
    }

    /// Like [`Self::spawn`], for one of several replicas on a shared store: agents held here
    /// are announced in the store, commands queued here for them are delivered, and what this
    /// replica does not hold is looked up through `remote`.
    pub fn spawn_shared(remote: Remote) -> Self {
        let local = Self::spawn();
        let remote = Arc::new(remote);
        remote.start(local.tx.downgrade());
        Self {
            tx: local.tx,
            remote: Some(remote),
        }
    }

    /// On a shared store: held from reading the agents' loads until a placement is recorded,
    /// so two starts never count the same free room, on this replica or on any other (the
    /// store's placement lock, a PostgreSQL advisory lock). Alone, the registry task already
    /// places one workshop at a time.
    pub async fn placing(&self) -> Result<Placing<'_>, ProvisionError> {
        match &self.remote {
            Some(remote) => {
                let (local, store) = remote.placing().await?;
                Ok(Placing {
                    _local: Some(local),
                    store: Some(store),
                })
            }
            None => Ok(Placing {
                _local: None,
                store: None,
            }),
        }
    }

    /// A handle to the same task that never looks beyond this replica.
    fn from_weak(tx: &mpsc::WeakSender<Command>) -> Option<Self> {
        tx.upgrade().map(|tx| Self { tx, remote: None })
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ProvisionError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| ProvisionError::Closed)?;
        rx.await.map_err(|_| ProvisionError::Closed)
    }

    /// Adds an agent, with the seats the store says it hosts, or replaces its session when the
    /// new one proved the same credential; returns a connection id for `unregister`, or `None`
    /// (nothing changed) when a live session of that id holds another token.
    pub async fn register(
        &self,
        conn: AgentConn,
        seats: Vec<(SeatKey, Demand)>,
    ) -> Result<Option<u64>, ProvisionError> {
        let announce = self.remote.as_ref().map(|_| conn.clone());
        let id = self
            .ask(|reply| Command::Register { conn, seats, reply })
            .await?;
        if let (Some(remote), Some(conn), Some(_)) = (&self.remote, announce, id) {
            remote.announce(&conn).await;
        }
        Ok(id)
    }

    /// Whether a session proving `token_id` could register as `agent_id` now (no live session
    /// of that id, or one with the same token); `register` decides for good.
    pub async fn may_take_over(&self, agent_id: &str, token_id: &str) -> bool {
        let (agent_id, token_id) = (agent_id.to_string(), token_id.to_string());
        self.ask(|reply| Command::MayTakeOver {
            agent_id,
            token_id,
            reply,
        })
        .await
        .unwrap_or(false)
    }

    /// Removes the agent if `conn_id` is still its current connection; true when removed (and,
    /// on a shared store, when no other replica holds the agent by now: its seats are only
    /// lost when it is connected nowhere).
    pub async fn unregister(&self, agent_id: &str, conn_id: u64) -> Result<bool, ProvisionError> {
        let removed = self
            .ask(|reply| Command::Unregister {
                agent_id: agent_id.to_string(),
                conn_id,
                reply,
            })
            .await?;
        match &self.remote {
            Some(remote) if removed => Ok(remote.withdraw(agent_id).await),
            _ => Ok(removed),
        }
    }

    pub async fn heartbeat(&self, agent_id: &str, conn_id: u64, used: u32) {
        let _ = self
            .tx
            .send(Command::Heartbeat {
                agent_id: agent_id.to_string(),
                conn_id,
                used,
            })
            .await;
    }

    /// Picks an agent for every seat (most free capacity first), all or nothing; seats
    /// reserve nothing but a slot.
    pub async fn reserve(
        &self,
        workshop_id: &str,
        seats: Vec<u32>,
    ) -> Result<Vec<(u32, String)>, ProvisionError> {
        self.reserve_for_image(workshop_id, seats, None, Demand::default())
            .await
    }

    /// Like [`Self::reserve`], on agents that have `image` built (any agent when `None`, the
    /// host-root seat every agent can run), then on agents that can build it (its seats are
    /// `preparing` there meanwhile); never elsewhere, where a seat could only fail. Every seat
    /// reserves `demand` of its agent's memory and CPU.
    pub async fn reserve_for_image(
        &self,
        workshop_id: &str,
        seats: Vec<u32>,
        image: Option<String>,
        demand: Demand,
    ) -> Result<Vec<(u32, String)>, ProvisionError> {
        if let Some(remote) = &self.remote {
            let local = self.list_local().await;
            let agents = remote.with_loads(&local, workshop_id, None).await?;
            return assign(&agents, workshop_id, &seats, image.as_deref(), demand);
        }
        self.ask(|reply| Command::Reserve {
            workshop_id: workshop_id.to_string(),
            seats,
            image,
            demand,
            reply,
        })
        .await?
    }

    /// Sends a message to a connected agent; false when it is not connected (to any replica,
    /// on a shared store: one held elsewhere gets it through its replica's queue).
    pub async fn send(&self, agent_id: &str, msg: ControlMessage) -> Result<bool, ProvisionError> {
        let forward = self.remote.as_ref().map(|_| msg.clone());
        let sent = self
            .ask(|reply| Command::Send {
                agent_id: agent_id.to_string(),
                msg,
                reply,
            })
            .await?;
        match (&self.remote, forward) {
            (Some(remote), Some(msg)) if !sent => remote.send(agent_id, &msg).await,
            _ => Ok(sent),
        }
    }

    /// Picks an agent other than `except` for one seat moving off it (host loss or an
    /// instructor's move), by the same rules as [`Self::reserve_for_image`].
    pub async fn reserve_elsewhere(
        &self,
        key: SeatKey,
        except: &str,
        image: Option<String>,
        demand: Demand,
    ) -> Result<String, ProvisionError> {
        let placed = if let Some(remote) = &self.remote {
            let local = self.list_local().await;
            let agents = remote
                .with_loads(&local, &key.workshop_id, Some(except))
                .await?;
            assign(
                &agents,
                &key.workshop_id,
                &[key.seat],
                image.as_deref(),
                demand,
            )?
        } else {
            let except = except.to_string();
            self.ask(|reply| Command::ReserveElsewhere {
                key,
                except,
                image,
                demand,
                reply,
            })
            .await??
        };
        placed
            .into_iter()
            .next()
            .map(|(_, agent)| agent)
            .ok_or(ProvisionError::Closed)
    }

    /// Drops every placement of a workshop.
    pub async fn forget(&self, workshop_id: &str) {
        let _ = self
            .tx
            .send(Command::Forget {
                workshop_id: workshop_id.to_string(),
            })
            .await;
    }

    pub async fn route(&self, workshop_id: &str, seat: u32) -> Option<SeatRoute> {
        if let Some(remote) = &self.remote {
            // Another replica may have placed it: the store says where it is.
            let agent_id = remote.seat_agent(workshop_id, seat).await?;
            return self.agent_route(&agent_id).await;
        }
        let key = SeatKey {
            workshop_id: workshop_id.to_string(),
            seat,
        };
        self.ask(|reply| Command::Route { key, reply })
            .await
            .ok()
            .flatten()
    }

    /// The data path of a connected agent, whatever it hosts: the export of a stopped
    /// workshop reaches the volumes through the agent the store says hosted each seat.
    pub async fn agent_route(&self, agent_id: &str) -> Option<SeatRoute> {
        let id = agent_id.to_string();
        let local = self
            .ask(|reply| Command::AgentRoute {
                agent_id: id,
                reply,
            })
            .await
            .ok()
            .flatten();
        match &self.remote {
            Some(remote) if local.is_none() => remote.agent_route(agent_id).await,
            _ => local,
        }
    }

    /// Connected agents: this replica's, then (on a shared store) those other replicas hold.
    pub async fn list(&self) -> Vec<AgentInfo> {
        let mut list = self.list_local().await;
        if let Some(remote) = &self.remote {
            let others = remote.list().await;
            list.extend(
                others
                    .into_iter()
                    .filter(|o| !list.iter().any(|l| l.agent_id == o.agent_id))
                    .collect::<Vec<_>>(),
            );
            list.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        }
        list
    }

    /// The agents whose sessions this replica holds.
    pub async fn list_local(&self) -> Vec<AgentInfo> {
        self.ask(|reply| Command::List { reply })
            .await
            .unwrap_or_default()
    }
}

async fn run(mut rx: mpsc::Receiver<Command>) {
    let mut agents: HashMap<String, Entry> = HashMap::new();
    let mut next_conn: u64 = 1;
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Command::Register { conn, seats, reply } => {
                if agents
                    .get(&conn.agent_id)
                    .is_some_and(|e| e.conn.token_id != conn.token_id)
                {
                    let _ = reply.send(None);
                    continue;
                }
                let conn_id = next_conn;
                next_conn += 1;
                // A re-registering agent replaces its old session (whose channel then closes).
                let entry = Entry {
                    conn,
                    conn_id,
                    used: 0,
                    last_seen: Instant::now(),
                    placed: seats.into_iter().collect(),
                };
                agents.insert(entry.conn.agent_id.clone(), entry);
                let _ = reply.send(Some(conn_id));
            }
            Command::MayTakeOver {
                agent_id,
                token_id,
                reply,
            } => {
                let free = agents
                    .get(&agent_id)
                    .is_none_or(|e| e.conn.token_id == token_id);
                let _ = reply.send(free);
            }
            Command::Unregister {
                agent_id,
                conn_id,
                reply,
            } => {
                let current = agents.get(&agent_id).is_some_and(|e| e.conn_id == conn_id);
                if current {
                    agents.remove(&agent_id);
                }
                let _ = reply.send(current);
            }
            Command::Heartbeat {
                agent_id,
                conn_id,
                used,
            } => {
                if let Some(e) = agents.get_mut(&agent_id).filter(|e| e.conn_id == conn_id) {
                    e.used = used;
                    e.last_seen = Instant::now();
                }
            }
            Command::Reserve {
                workshop_id,
                seats,
                image,
                demand,
                reply,
            } => {
                let _ = reply.send(reserve(
                    &mut agents,
                    &workshop_id,
                    &seats,
                    image.as_deref(),
                    demand,
                ));
            }
            Command::Send {
                agent_id,
                msg,
                reply,
            } => {
                let sent = agents
                    .get(&agent_id)
                    .is_some_and(|e| e.conn.tx.send(msg).is_ok());
                let _ = reply.send(sent);
            }
            Command::ReserveElsewhere {
                key,
                except,
                image,
                demand,
                reply,
            } => {
                // The old agent takes no part, and no longer holds the seat if it placed it.
                let mut old = agents.remove(&except);
                let placed = reserve(
                    &mut agents,
                    &key.workshop_id,
                    &[key.seat],
                    image.as_deref(),
                    demand,
                );
                if let Some(mut e) = old.take() {
                    if placed.is_ok() {
                        e.placed.remove(&key);
                    }
                    agents.insert(except, e);
                }
                let _ = reply.send(placed);
            }
            Command::Forget { workshop_id } => {
                for e in agents.values_mut() {
                    e.placed.retain(|k, _| k.workshop_id != workshop_id);
                }
            }
            Command::Route { key, reply } => {
                let route = agents
                    .values()
                    .find(|e| e.placed.contains_key(&key))
                    .map(route_of);
                let _ = reply.send(route);
            }
            Command::AgentRoute { agent_id, reply } => {
                let _ = reply.send(agents.get(&agent_id).map(route_of));
            }
            Command::List { reply } => {
                let mut list: Vec<AgentInfo> = agents.values().map(Entry::info).collect();
                list.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
                let _ = reply.send(list);
            }
        }
    }
}

fn route_of(e: &Entry) -> SeatRoute {
    SeatRoute {
        agent_id: e.conn.agent_id.clone(),
        data_url: e.conn.data_url.clone(),
        data_token: e.conn.data_token.clone(),
    }
}

fn reserve(
    agents: &mut HashMap<String, Entry>,
    workshop_id: &str,
    seats: &[u32],
    image: Option<&str>,
    demand: Demand,
) -> Result<Vec<(u32, String)>, ProvisionError> {
    // Earlier placements of these seats (a restart after failure) are replaced.
    for e in agents.values_mut() {
        e.placed
            .retain(|k, _| !(k.workshop_id == workshop_id && seats.contains(&k.seat)));
    }
    let infos: Vec<AgentInfo> = agents.values().map(Entry::info).collect();
    let out = assign(&infos, workshop_id, seats, image, demand)?;
    for (seat, agent_id) in &out {
        if let Some(e) = agents.get_mut(agent_id) {
            let key = SeatKey {
                workshop_id: workshop_id.to_string(),
                seat: *seat,
            };
            e.placed.insert(key, demand);
        }
    }
    Ok(out)
}

/// Places `seats` on `agents` (this replica's, or every replica's on a shared store) with
/// [`placement::assign`]: agents that have `image` (any agent for the host root) and then those
/// that can build it; never elsewhere, where a seat could only fail.
pub(super) fn assign(
    agents: &[AgentInfo],
    workshop_id: &str,
    seats: &[u32],
    image: Option<&str>,
    demand: Demand,
) -> Result<Vec<(u32, String)>, ProvisionError> {
    let has = |a: &AgentInfo| image.is_none_or(|i| a.images.iter().any(|h| h == i));
    let can_build = |a: &AgentInfo| image.is_some_and(|i| a.buildable.iter().any(|h| h == i));
    let candidates: Vec<Candidate> = agents
        .iter()
        .filter(|a| has(a) || can_build(a))
        .map(|a| Candidate {
            agent_id: a.agent_id.clone(),
            free_slots: a.capacity.saturating_sub(a.placed),
            free_memory_mb: a.memory_mb.map(|m| m.saturating_sub(a.reserved_memory_mb)),
            free_cpu_millis: a
                .cpu_millis
                .map(|c| c.saturating_sub(a.reserved_cpu_millis)),
            has_image: has(a),
        })
        .collect();
    placement::assign(&candidates, seats, demand)
        .map_err(|e| match image {
            Some(image) => ProvisionError::NoImage {
                image: image.to_string(),
                needed: e.needed,
                free: e.fit,
                with_image: candidates.len(),
                agents: agents.len(),
            },
            None => ProvisionError::NoCapacity {
                needed: e.needed,
                free: e.fit,
                agents: agents.len(),
                short_of: e.short_of,
            },
        })
        .inspect(|out| {
            tracing::debug!(workshop.id = workshop_id, seats = out.len(), "seats placed");
        })
}

/// The registry task as [`Remote`]'s delivery loop reaches it: through a weak sender, so the
/// loop ends with the task and never keeps it alive.
impl remote::LocalSessions for mpsc::WeakSender<Command> {
    fn alive(&self) -> bool {
        self.strong_count() > 0
    }

    async fn send(&self, agent_id: &str, msg: ControlMessage) -> bool {
        match RegistryHandle::from_weak(self) {
            Some(registry) => matches!(registry.send(agent_id, msg).await, Ok(true)),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::Shortage;

    fn conn(id: &str, capacity: u32) -> (AgentConn, mpsc::UnboundedReceiver<ControlMessage>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let c = AgentConn {
            images: Vec::new(),
            image_details: Vec::new(),
            buildable: Vec::new(),
            agent_id: id.into(),
            hostname: "h".into(),
            capacity,
            data_url: format!("http://{id}"),
            data_token: "t".into(),
            token_id: format!("at-{id}"),
            tx,
            memory_mb: None,
            cpu_millis: None,
        };
        (c, rx)
    }

    #[tokio::test]
    async fn seats_of_an_image_go_only_to_agents_that_have_it() {
        let r = RegistryHandle::spawn();
        let (mut a, _ra) = conn("a", 4);
        a.images = vec!["claude".into()];
        let (b, _rb) = conn("b", 10);
        r.register(a, vec![]).await.expect("reg");
        r.register(b, vec![]).await.expect("reg");
        // b has more room but no `claude`: every seat lands on a.
        let placed = r
            .reserve_for_image(
                "ws-c",
                vec![1, 2, 3],
                Some("claude".into()),
                Demand::default(),
            )
            .await
            .expect("fits on a");
        assert!(placed.iter().all(|(_, ag)| ag == "a"), "{placed:?}");
        // Two more than a's room left: refused, naming the image, though b is empty.
        let err = r
            .reserve_for_image("ws-d", vec![1, 2], Some("claude".into()), Demand::default())
            .await
            .expect_err("a is full");
        assert!(
            matches!(&err, ProvisionError::NoImage { image, free: 1, with_image: 1, agents: 2, .. } if image == "claude"),
            "{err:?}"
        );
        assert!(err.to_string().contains("\"claude\""), "{err}");
        // An image nobody has: no agent qualifies.
        assert!(matches!(
            r.reserve_for_image("ws-e", vec![1], Some("python".into()), Demand::default())
                .await,
            Err(ProvisionError::NoImage { with_image: 0, .. })
        ));
        // The host root (no image) may go anywhere: the emptier b first.
        let placed = r.reserve("ws-f", vec![1]).await.expect("fits");
        assert_eq!(placed, vec![(1, "b".to_string())]);
    }

    #[tokio::test]
    async fn agents_that_can_build_the_image_take_seats_only_after_those_that_have_it() {
        let r = RegistryHandle::spawn();
        let (mut a, _ra) = conn("a", 2);
        a.images = vec!["claude".into()];
        let (mut b, _rb) = conn("b", 10);
        b.buildable = vec!["claude".into(), "python".into()];
        let (c, _rc) = conn("c", 10); // neither has nor can build
        for x in [a, b, c] {
            r.register(x, vec![]).await.expect("reg");
        }
        let placed = r
            .reserve_for_image(
                "ws-c",
                vec![1, 2, 3, 4],
                Some("claude".into()),
                Demand::default(),
            )
            .await
            .expect("a then b");
        let on = |id: &str| placed.iter().filter(|(_, ag)| ag == id).count();
        assert_eq!((on("a"), on("b"), on("c")), (2, 2, 0), "{placed:?}");
        // Only b can build python: all there, c stays empty although it has room.
        let placed = r
            .reserve_for_image("ws-p", vec![1, 2], Some("python".into()), Demand::default())
            .await
            .expect("b builds it");
        assert!(placed.iter().all(|(_, ag)| ag == "b"), "{placed:?}");
    }

    #[tokio::test]
    async fn seats_reserve_memory_including_those_an_agent_brings_back() {
        let r = RegistryHandle::spawn();
        let each = Demand {
            memory_mb: 512,
            cpu_millis: 1000,
        };
        let (mut a, _ra) = conn("a", 50);
        a.memory_mb = Some(2048);
        let (mut b, _rb) = conn("b", 50);
        b.memory_mb = Some(1024);
        // a comes back hosting 2 seats of an earlier workshop: half its memory is taken.
        let hosted = (1..=2)
            .map(|seat| {
                let key = SeatKey {
                    workshop_id: "ws-old".into(),
                    seat,
                };
                (key, each)
            })
            .collect();
        r.register(a, hosted).await.expect("reg");
        r.register(b, vec![]).await.expect("reg");
        let err = r
            .reserve_for_image("ws-n", vec![1, 2, 3, 4, 5], None, each)
            .await
            .expect_err("room for 4");
        assert!(
            matches!(
                err,
                ProvisionError::NoCapacity {
                    needed: 5,
                    free: 4,
                    short_of: Shortage::Memory { per_seat_mb: 512 },
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("memory (512 MiB"), "{err}");
        let placed = r
            .reserve_for_image("ws-n", vec![1, 2, 3, 4], None, each)
            .await
            .expect("4 fit");
        let on = |id: &str| placed.iter().filter(|(_, ag)| ag == id).count();
        assert_eq!((on("a"), on("b")), (2, 2));
        let info = r.list().await;
        assert_eq!(
            info.iter()
                .map(|i| (
                    i.agent_id.as_str(),
                    i.reserved_memory_mb,
                    i.reserved_cpu_millis
                ))
                .collect::<Vec<_>>(),
            vec![("a", 2048, 4000), ("b", 1024, 2000)]
        );
        // A seat of a workshop that reserves nothing still needs a slot, and gets one.
        assert!(r.reserve("ws-tiny", vec![1]).await.is_ok());
    }

    #[tokio::test]
    async fn reserves_by_free_capacity_all_or_nothing() {
        let r = RegistryHandle::spawn();
        assert!(matches!(
            r.reserve("ws-a", vec![1]).await,
            Err(ProvisionError::NoCapacity { agents: 0, .. })
        ));
        let (a, _ra) = conn("a", 3);
        let (b, mut rb) = conn("b", 1);
        let ida = r.register(a, vec![]).await.expect("reg").expect("new id");
        r.register(b, vec![]).await.expect("reg");
        assert!(matches!(
            r.reserve("ws-a", vec![1, 2, 3, 4, 5]).await,
            Err(ProvisionError::NoCapacity { free: 4, .. })
        ));
        let placed = r.reserve("ws-a", vec![1, 2, 3, 4]).await.expect("fits");
        let on_a = placed.iter().filter(|(_, ag)| ag == "a").count();
        assert_eq!((placed.len(), on_a), (4, 3));
        assert_eq!(
            r.route("ws-a", 1).await.map(|x| x.agent_id),
            Some("a".into())
        );
        assert!(matches!(
            r.reserve("ws-b", vec![1]).await,
            Err(ProvisionError::NoCapacity { .. })
        ));
        let msg = ControlMessage::DestroySeat {
            workshop_id: "ws-a".into(),
            seat: 2,
            delete_volume: false,
        };
        assert!(r.send("b", msg.clone()).await.expect("send"));
        assert_eq!(rb.recv().await, Some(msg));
        r.forget("ws-a").await;
        assert!(r.route("ws-a", 1).await.is_none());
        // Placements forgotten (a stopped workshop), the agent still answers by id.
        assert_eq!(
            r.agent_route("a").await.map(|x| x.data_url),
            Some("http://a".into())
        );
        assert!(r.agent_route("nobody").await.is_none());
        assert!(!r.unregister("a", ida + 100).await.expect("stale conn"));
        assert!(r.unregister("a", ida).await.expect("current conn"));
        assert_eq!(r.list().await.len(), 1);
    }

    #[tokio::test]
    async fn a_live_session_is_replaced_only_by_the_same_credential() {
        let r = RegistryHandle::spawn();
        let (a, mut ra) = conn("a", 2);
        let first = r.register(a, vec![]).await.expect("reg").expect("new");
        let (mut impostor, _ri) = conn("a", 9);
        impostor.token_id = "at-other".into();
        impostor.data_url = "http://impostor".into();
        assert!(!r.may_take_over("a", "at-other").await);
        assert_eq!(r.register(impostor, vec![]).await.expect("reg"), None);
        // The real session is untouched: same route, same channel.
        assert_eq!(
            r.agent_route("a").await.map(|x| x.data_url),
            Some("http://a".into())
        );
        let msg = ControlMessage::DestroySeat {
            workshop_id: "ws-a".into(),
            seat: 1,
            delete_volume: false,
        };
        assert!(r.send("a", msg).await.expect("send"));
        assert!(ra.recv().await.is_some());
        // The same credential reconnecting replaces it.
        assert!(r.may_take_over("a", "at-a").await);
        let (again, _r2) = conn("a", 2);
        let second = r
            .register(again, vec![])
            .await
            .expect("reg")
            .expect("replaced");
        assert_ne!(first, second);
        assert!(!r.unregister("a", first).await.expect("stale"));
    }
}
