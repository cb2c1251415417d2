//! The registry of connected agents, owned by one task. Handlers and agent sessions send it
//! commands over a channel and await the reply; nothing holds a lock across `.await`.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use clarateach_core::agent_proto::{ControlMessage, SeatKey};
use clarateach_core::SeatImageSummary;
use tokio::sync::{mpsc, oneshot};

use super::{ProvisionError, SeatRoute};

/// What an agent said about itself in `register`, plus the channel to its session.
#[derive(Debug, Clone)]
pub struct AgentConn {
    pub agent_id: String,
    pub hostname: String,
    pub capacity: u32,
    pub data_url: String,
    pub data_token: String,
    /// Store id of the agent token this session proved; a reconnect must prove the same one.
    pub token_id: String,
    pub tx: mpsc::UnboundedSender<ControlMessage>,
    /// Seat images built on the agent's host (from `register`).
    pub images: Vec<String>,
    /// What each of them holds (from `register`; empty from agents that predate it).
    pub image_details: Vec<SeatImageSummary>,
    /// Built-in recipes it can build on demand (from `register`).
    pub buildable: Vec<String>,
}

/// A connected agent as reported to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    pub agent_id: String,
    pub hostname: String,
    pub capacity: u32,
    /// Seats placed on it by the control plane.
    pub placed: u32,
    /// Seats it reported hosting in its last heartbeat.
    pub used: u32,
    /// Seat images built on its host.
    pub images: Vec<String>,
    /// What each of them holds.
    pub image_details: Vec<SeatImageSummary>,
    /// Built-in recipes it can build on demand.
    pub buildable: Vec<String>,
}

struct Entry {
    conn: AgentConn,
    conn_id: u64,
    used: u32,
    last_seen: Instant,
    placed: BTreeSet<SeatKey>,
}

enum Command {
    Register {
        conn: AgentConn,
        seats: Vec<SeatKey>,
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
        reply: oneshot::Sender<Result<Vec<(u32, String)>, ProvisionError>>,
    },
    Send {
        agent_id: String,
        msg: ControlMessage,
        reply: oneshot::Sender<bool>,
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

/// Cheap, cloneable handle to the registry task.
#[derive(Clone, Debug)]
pub struct RegistryHandle {
    tx: mpsc::Sender<Command>,
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
        Self { tx }
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
        seats: Vec<SeatKey>,
    ) -> Result<Option<u64>, ProvisionError> {
        self.ask(|reply| Command::Register { conn, seats, reply })
            .await
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

    /// Removes the agent if `conn_id` is still its current connection; true when removed.
    pub async fn unregister(&self, agent_id: &str, conn_id: u64) -> Result<bool, ProvisionError> {
        self.ask(|reply| Command::Unregister {
            agent_id: agent_id.to_string(),
            conn_id,
            reply,
        })
        .await
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

    /// Picks an agent for every seat (most free capacity first), all or nothing.
    pub async fn reserve(
        &self,
        workshop_id: &str,
        seats: Vec<u32>,
    ) -> Result<Vec<(u32, String)>, ProvisionError> {
        self.reserve_for_image(workshop_id, seats, None).await
    }

    /// Like [`Self::reserve`], on agents that have `image` built (any agent when `None`, the
    /// host-root seat every agent can run), then on agents that can build it (its seats are
    /// `preparing` there meanwhile); never elsewhere, where a seat could only fail.
    pub async fn reserve_for_image(
        &self,
        workshop_id: &str,
        seats: Vec<u32>,
        image: Option<String>,
    ) -> Result<Vec<(u32, String)>, ProvisionError> {
        self.ask(|reply| Command::Reserve {
            workshop_id: workshop_id.to_string(),
            seats,
            image,
            reply,
        })
        .await?
    }

    /// Sends a message to a connected agent; false when it is not connected.
    pub async fn send(&self, agent_id: &str, msg: ControlMessage) -> Result<bool, ProvisionError> {
        self.ask(|reply| Command::Send {
            agent_id: agent_id.to_string(),
            msg,
            reply,
        })
        .await
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
        let agent_id = agent_id.to_string();
        self.ask(|reply| Command::AgentRoute { agent_id, reply })
            .await
            .ok()
            .flatten()
    }

    pub async fn list(&self) -> Vec<AgentInfo> {
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
                reply,
            } => {
                let _ = reply.send(reserve(&mut agents, &workshop_id, &seats, image.as_deref()));
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
            Command::Forget { workshop_id } => {
                for e in agents.values_mut() {
                    e.placed.retain(|k| k.workshop_id != workshop_id);
                }
            }
            Command::Route { key, reply } => {
                let route = agents
                    .values()
                    .find(|e| e.placed.contains(&key))
                    .map(route_of);
                let _ = reply.send(route);
            }
            Command::AgentRoute { agent_id, reply } => {
                let _ = reply.send(agents.get(&agent_id).map(route_of));
            }
            Command::List { reply } => {
                let mut list: Vec<AgentInfo> = agents
                    .values()
                    .map(|e| AgentInfo {
                        agent_id: e.conn.agent_id.clone(),
                        hostname: e.conn.hostname.clone(),
                        capacity: e.conn.capacity,
                        placed: e.placed.len() as u32,
                        used: e.used,
                        images: e.conn.images.clone(),
                        image_details: e.conn.image_details.clone(),
                        buildable: e.conn.buildable.clone(),
                    })
                    .collect();
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
) -> Result<Vec<(u32, String)>, ProvisionError> {
    // Earlier placements of these seats (a restart after failure) are replaced.
    for e in agents.values_mut() {
        e.placed
            .retain(|k| !(k.workshop_id == workshop_id && seats.contains(&k.seat)));
    }
    // Agents that have the image (or, for the host root, every agent) first; then those that
    // can build it on demand, only when the first are full.
    let has = |e: &Entry| image.is_none_or(|i| e.conn.images.iter().any(|h| h == i));
    let can_build = |e: &Entry| image.is_some_and(|i| e.conn.buildable.iter().any(|h| h == i));
    let mut free: Vec<(String, u32, bool)> = agents
        .values()
        .filter(|e| has(e) || can_build(e))
        .map(|e| {
            (
                e.conn.agent_id.clone(),
                e.conn.capacity.saturating_sub(e.placed.len() as u32),
                has(e),
            )
        })
        .collect();
    let total: u32 = free.iter().map(|(_, f, _)| *f).sum();
    let needed = seats.len() as u32;
    if total < needed {
        if let Some(image) = image {
            return Err(ProvisionError::NoImage {
                image: image.to_string(),
                needed,
                free: total,
                with_image: free.len(),
                agents: agents.len(),
            });
        }
        return Err(ProvisionError::NoCapacity {
            needed,
            free: total,
            agents: agents.len(),
        });
    }
    let mut out = Vec::with_capacity(seats.len());
    for &seat in seats {
        // Spread: a free agent with the image, the one with the most free slots (ties by id,
        // for determinism); one that must build it only when none is left.
        free.sort_by(|a, b| {
            (b.2 && b.1 > 0)
                .cmp(&(a.2 && a.1 > 0))
                .then_with(|| b.1.cmp(&a.1))
                .then_with(|| a.0.cmp(&b.0))
        });
        let Some(best) = free.first_mut() else { break };
        best.1 -= 1;
        out.push((seat, best.0.clone()));
        if let Some(e) = agents.get_mut(&best.0) {
            e.placed.insert(SeatKey {
                workshop_id: workshop_id.to_string(),
                seat,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            .reserve_for_image("ws-c", vec![1, 2, 3], Some("claude".into()))
            .await
            .expect("fits on a");
        assert!(placed.iter().all(|(_, ag)| ag == "a"), "{placed:?}");
        // Two more than a's room left: refused, naming the image, though b is empty.
        let err = r
            .reserve_for_image("ws-d", vec![1, 2], Some("claude".into()))
            .await
            .expect_err("a is full");
        assert!(
            matches!(&err, ProvisionError::NoImage { image, free: 1, with_image: 1, agents: 2, .. } if image == "claude"),
            "{err:?}"
        );
        assert!(err.to_string().contains("\"claude\""), "{err}");
        // An image nobody has: no agent qualifies.
        assert!(matches!(
            r.reserve_for_image("ws-e", vec![1], Some("python".into()))
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
            .reserve_for_image("ws-c", vec![1, 2, 3, 4], Some("claude".into()))
            .await
            .expect("a then b");
        let on = |id: &str| placed.iter().filter(|(_, ag)| ag == id).count();
        assert_eq!((on("a"), on("b"), on("c")), (2, 2, 0), "{placed:?}");
        // Only b can build python: all there, c stays empty although it has room.
        let placed = r
            .reserve_for_image("ws-p", vec![1, 2], Some("python".into()))
            .await
            .expect("b builds it");
        assert!(placed.iter().all(|(_, ag)| ag == "b"), "{placed:?}");
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
