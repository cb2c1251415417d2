//! The one task that owns workspace state. For every seat it keeps what the control plane wants
//! (`Desired`) and what exists (`Phase`); whenever either changes it starts at most one backend
//! operation per seat in its own task and learns the outcome as a message, so slow starts never
//! block other seats and no lock is ever held across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use clarateach_core::agent_proto::{AgentMessage, ControlMessage, SeatKey, SeatReport, SeatSpec};
use clarateach_core::{Limits, SeatState};
use clarateach_isolation::{Backend, DaemonEndpoint, WorkspaceStatus};
use tokio::sync::{mpsc, oneshot, watch};

use crate::identity::DaemonTokens;
use crate::state::{Command, OpError, RouteTable, SeatView, StateError, StateHandle};

mod ops;
pub mod prepared;
#[cfg(test)]
mod tests;

enum Desired {
    /// No word from the control plane yet: leave the workspace as found.
    Undecided,
    Present(Box<SeatSpec>),
    Absent {
        delete_volume: bool,
    },
}

enum Phase {
    Missing,
    Stopped,
    Creating,
    Ready(DaemonEndpoint),
    Failed(Arc<OpError>),
    Destroying,
    /// Frozen; the endpoint comes back into the route table on resume.
    Paused(DaemonEndpoint),
    /// A freeze (true) or thaw (false) is under way.
    Freezing(DaemonEndpoint, bool),
}

struct Seat {
    desired: Desired,
    /// Whether the control plane wants the workspace frozen. Survives reconnects (the agent
    /// reports `paused` on registration); an agent restart thaws adopted workspaces.
    paused: bool,
    phase: Phase,
    /// The create under way is preparing the seat's image (`Command::Preparing`).
    preparing: bool,
    /// Set when an operation failed; cleared by the next command about this seat, so a broken
    /// workspace is not retried in a tight loop.
    blocked: bool,
    ready_waiters: Vec<oneshot::Sender<Result<SeatView, StateError>>>,
    gone_waiters: Vec<oneshot::Sender<()>>,
    /// The destroy under way deletes the volume too: only its end satisfies a wish for that
    /// (a `destroy_seat` with the volume arriving during a plain destroy still gets it).
    destroying_volume: bool,
}

impl Seat {
    fn new(phase: Phase) -> Self {
        Self {
            desired: Desired::Undecided,
            paused: false,
            phase,
            preparing: false,
            blocked: false,
            ready_waiters: vec![],
            gone_waiters: vec![],
            destroying_volume: false,
        }
    }

    fn busy(&self) -> bool {
        matches!(
            self.phase,
            Phase::Creating | Phase::Destroying | Phase::Freezing(..)
        )
    }

    fn view(&self, key: &SeatKey) -> SeatView {
        let (state, error) = match &self.phase {
            Phase::Missing => ("missing", None),
            Phase::Stopped => ("stopped", None),
            Phase::Creating if self.preparing => ("preparing", None),
            Phase::Creating => ("creating", None),
            Phase::Ready(_) => ("ready", None),
            Phase::Failed(e) => ("failed", Some(error_chain(e.as_ref()))),
            Phase::Destroying => ("destroying", None),
            Phase::Paused(_) => ("paused", None),
            Phase::Freezing(_, true) => ("pausing", None),
            Phase::Freezing(_, false) => ("resuming", None),
        };
        SeatView {
            workshop_id: key.workshop_id.clone(),
            seat_id: key.seat,
            state: state.into(),
            error,
        }
    }

    /// What the control plane is told about this seat on (re)registration.
    fn report(&self, key: &SeatKey) -> Option<SeatReport> {
        let (state, error) = match &self.phase {
            Phase::Missing | Phase::Destroying => return None,
            Phase::Stopped => (SeatState::Pending, None),
            Phase::Creating if self.preparing => (SeatState::Preparing, None),
            Phase::Creating => (SeatState::Creating, None),
            Phase::Ready(_) | Phase::Freezing(_, true) => (SeatState::Ready, None),
            Phase::Paused(_) | Phase::Freezing(_, false) => (SeatState::Paused, None),
            Phase::Failed(e) => (SeatState::Failed, Some(error_chain(e.as_ref()))),
        };
        Some(SeatReport {
            workshop_id: key.workshop_id.clone(),
            seat: key.seat,
            state,
            error,
        })
    }
}

/// Joins an error and its sources into one line, for status reports and logs.
pub(crate) use clarateach_core::error::error_chain;

/// Commands handled at most between two saves of the daemon tokens.
const BATCH: usize = 512;

pub(crate) struct Reconciler {
    backend: Arc<dyn Backend>,
    tokens: DaemonTokens,
    seats: BTreeMap<SeatKey, Seat>,
    conn: Option<mpsc::Sender<AgentMessage>>,
    routes: watch::Sender<RouteTable>,
    used: Arc<AtomicU32>,
    tx: mpsc::Sender<Command>,
    shutdown: Option<oneshot::Sender<()>>,
    /// Creates started while handling the current batch of commands: run once the tokens they
    /// minted are saved (one save per batch, see `flush`).
    deferred: Vec<(SeatKey, futures::future::BoxFuture<'static, ()>)>,
    /// The seats' sync to object storage, when the agent has one (`--object-store`).
    volumes: Option<Arc<crate::volume::VolumeSync>>,
    /// A phase changed since the route table and the used count were last published.
    stale: bool,
    /// Workshops whose seats are prepared ahead of their start (`prepared`).
    prepared: HashMap<String, prepared::Entry>,
    prepare_generation: u64,
    prepared_ttl: std::time::Duration,
}

/// Adopts the workspaces the backend finds on the host and starts the state task.
#[cfg(test)]
pub async fn spawn(
    backend: Arc<dyn Backend>,
    tokens: DaemonTokens,
) -> Result<StateHandle, clarateach_isolation::BackendError> {
    spawn_with(backend, tokens, None).await
}

/// Like `spawn`, syncing every running seat's files through `volumes` when given.
pub async fn spawn_with(
    backend: Arc<dyn Backend>,
    tokens: DaemonTokens,
    volumes: Option<Arc<crate::volume::VolumeSync>>,
) -> Result<StateHandle, clarateach_isolation::BackendError> {
    let mut seats = BTreeMap::new();
    let mut table = HashMap::new();
    for (key, status) in backend.adopt().await? {
        let phase = match (status, backend.endpoint(&key), tokens.get(&key)) {
            (WorkspaceStatus::Running, Some(ep), Some(token)) => {
                let ep = DaemonEndpoint {
                    addr: ep.addr,
                    token: token.to_string(),
                };
                table.insert(key.clone(), ep.clone());
                Phase::Ready(ep)
            }
            (WorkspaceStatus::Running, _, _) => {
                // Its daemon token is lost: unreachable, so stop it; the volume stays.
                tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, "adopted workspace has no token, stopping it");
                backend.stop(&key).await?;
                Phase::Stopped
            }
            (WorkspaceStatus::Stopped, _, _) => Phase::Stopped,
            (WorkspaceStatus::Missing, _, _) => continue,
        };
        tracing::info!(workshop.id = %key.workshop_id, seat = key.seat, "adopted workspace");
        seats.insert(key, Seat::new(phase));
    }
    let (tx, rx) = mpsc::channel(1024);
    let (routes, routes_rx) = watch::channel(Arc::new(table));
    let used = Arc::new(AtomicU32::new(0));
    let mut task = Reconciler {
        backend,
        tokens,
        seats,
        conn: None,
        routes,
        used: used.clone(),
        tx: tx.clone(),
        shutdown: None,
        deferred: Vec::new(),
        volumes,
        stale: false,
        prepared: HashMap::new(),
        prepare_generation: 0,
        prepared_ttl: prepared::PREPARED_TTL,
    };
    task.publish();
    tokio::spawn(task.run(rx));
    Ok(StateHandle {
        tx,
        routes: routes_rx,
        used,
    })
}

impl Reconciler {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(cmd) = rx.recv().await {
            self.handle(cmd);
            // A class start arrives as hundreds of `create_seat`s: take what is queued as one
            // batch, so their tokens are saved once before their workspaces start.
            for _ in 0..BATCH {
                match rx.try_recv() {
                    Ok(cmd) => self.handle(cmd),
                    Err(_) => break,
                }
            }
            self.flush();
            if self.stale {
                self.publish();
            }
            if self.shutdown.is_some() && !self.seats.values().any(Seat::busy) {
                self.stop_all().await;
                return;
            }
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Connected { tx, reply } => {
                self.conn = Some(tx);
                let _ = reply.send(self.seats.iter().filter_map(|(k, s)| s.report(k)).collect());
            }
            Command::Disconnected => self.conn = None,
            Command::Control(msg) => self.control(msg),
            Command::LocalCreate { key, reply } => {
                let spec = SeatSpec {
                    starter: None,
                    workshop_id: key.workshop_id.clone(),
                    seat: key.seat,
                    image: None,
                    limits: Limits::default(),
                    env: BTreeMap::new(),
                };
                let seat = self.want(spec);
                match &seat.phase {
                    Phase::Ready(_) => {
                        let _ = reply.send(Ok(seat.view(&key)));
                    }
                    _ => seat.ready_waiters.push(reply),
                }
                self.drive(&key);
            }
            Command::LocalDestroy { key, reply } => {
                let seat = self
                    .seats
                    .entry(key.clone())
                    .or_insert_with(|| Seat::new(Phase::Missing));
                seat.desired = Desired::Absent {
                    delete_volume: false,
                };
                seat.blocked = false;
                seat.gone_waiters.push(reply);
                self.drive(&key);
            }
            Command::List { reply } => {
                let _ = reply.send(self.seats.iter().map(|(k, s)| s.view(k)).collect());
            }
            Command::OpDone { key, outcome } => self.op_done(key, outcome),
            Command::Preparing { key } => {
                if let Some(seat) = self
                    .seats
                    .get_mut(&key)
                    .filter(|s| matches!(s.phase, Phase::Creating))
                {
                    seat.preparing = true;
                    self.report(&key, SeatState::Preparing, None);
                }
            }
            Command::Shutdown { reply } => self.shutdown = Some(reply),
            Command::PreparedDone {
                workshop_id,
                generation,
                result,
            } => self.prepared_done(&workshop_id, generation, result),
            Command::PreparedExpired {
                workshop_id,
                generation,
            } => self.end_prepared(&workshop_id, Some(generation), true),
            Command::PreparedState { workshop_id, reply } => {
                let _ = reply.send(self.prepared.get(&workshop_id).map(|e| e.state.clone()));
            }
        }
    }

    /// Records whether the seat should be frozen; a seat already as asked is reported again, so
    /// the control plane's view converges even after a lost report.
    fn set_paused(&mut self, key: SeatKey, paused: bool) {
        let Some(seat) = self.seats.get_mut(&key) else {
            tracing::info!(workshop.id = %key.workshop_id, seat = key.seat, paused, "pause for an unknown seat ignored");
            return;
        };
        seat.paused = paused;
        seat.blocked = false;
        let settled = match &seat.phase {
            Phase::Paused(_) if paused => Some(SeatState::Paused),
            Phase::Ready(_) if !paused => Some(SeatState::Ready),
            _ => None,
        };
        if let Some(state) = settled {
            self.report(&key, state, None);
        }
        self.drive(&key);
    }

    fn want(&mut self, spec: SeatSpec) -> &mut Seat {
        let seat = self
            .seats
            .entry(spec.key())
            .or_insert_with(|| Seat::new(Phase::Missing));
        seat.desired = Desired::Present(Box::new(spec));
        seat.blocked = false;
        seat
    }

    fn control(&mut self, msg: ControlMessage) {
        match msg {
            ControlMessage::Registered { desired, .. } => {
                let wanted: BTreeMap<SeatKey, SeatSpec> =
                    desired.into_iter().map(|s| (s.key(), s)).collect();
                for (key, seat) in self.seats.iter_mut() {
                    if !wanted.contains_key(key) {
                        seat.desired = Desired::Absent {
                            delete_volume: false,
                        };
                        seat.blocked = false;
                        // Not this agent's any more (it may have moved while this host was
                        // away): no last pass may overwrite its files from this stale copy.
                        if let Some(v) = &self.volumes {
                            v.abandon(key);
                        }
                    }
                }
                for spec in wanted.into_values() {
                    self.want(spec);
                }
                // Workspaces adopted running after an agent restart sync again once they are
                // known to be this agent's.
                if let Some(v) = &self.volumes {
                    for (key, seat) in &self.seats {
                        if matches!(seat.desired, Desired::Present(_))
                            && matches!(seat.phase, Phase::Ready(_) | Phase::Paused(_))
                            && ops::has_dir_volume(self.backend.as_ref(), key)
                        {
                            v.start(
                                key,
                                self.backend.volume_dir(key),
                                self.backend.volume_owner(key),
                            );
                        }
                    }
                }
                let keys: Vec<SeatKey> = self.seats.keys().cloned().collect();
                keys.iter().for_each(|k| self.drive(k));
            }
            ControlMessage::CreateSeat(spec) => {
                let key = spec.key();
                self.end_prepared(&key.workshop_id, None, false);
                let seat = self.want(spec);
                if let Some(report) = seat
                    .report(&key)
                    .filter(|r| matches!(r.state, SeatState::Ready | SeatState::Paused))
                {
                    self.send(AgentMessage::SeatStatus(report));
                }
                self.drive(&key);
            }
            ControlMessage::DestroySeat {
                workshop_id,
                seat,
                delete_volume,
            } => {
                let key = SeatKey { workshop_id, seat };
                let entry = self
                    .seats
                    .entry(key.clone())
                    .or_insert_with(|| Seat::new(Phase::Missing));
                entry.desired = Desired::Absent { delete_volume };
                entry.blocked = false;
                if matches!(entry.phase, Phase::Missing) && !delete_volume {
                    self.report(&key, SeatState::Destroyed, None);
                }
                self.drive(&key);
            }
            ControlMessage::PauseSeat { workshop_id, seat } => {
                self.set_paused(SeatKey { workshop_id, seat }, true)
            }
            ControlMessage::ResumeSeat { workshop_id, seat } => {
                self.set_paused(SeatKey { workshop_id, seat }, false)
            }
            ControlMessage::PrepareSeats {
                workshop_id,
                seats,
                limits,
                image,
            } => self.prepare_seats(workshop_id, seats, limits, image),
            ControlMessage::ReleasePrepared { workshop_id } => {
                self.end_prepared(&workshop_id, None, true)
            }
        }
    }
}
