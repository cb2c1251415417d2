//! The commands the workspace-state task accepts and the handle every other part of the agent
//! (control-plane connection, local API, data path) uses to talk to it. The task itself is in
//! `reconcile.rs`; nothing else touches seat state, so no lock is ever held across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use clarateach_core::agent_proto::{AgentMessage, ControlMessage, SeatKey, SeatReport};
use clarateach_isolation::{BackendError, DaemonEndpoint};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

/// Routes of the seats whose daemon answers, published by the state task for the data path.
pub type RouteTable = Arc<HashMap<SeatKey, DaemonEndpoint>>;

/// One seat as the local API lists it (`GET /vms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeatView {
    pub workshop_id: String,
    pub seat_id: u32,
    /// `creating`, `ready`, `stopped`, `failed`, `destroying`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Errors answered to callers of the state task.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the agent is shutting down")]
    ShuttingDown,
    /// Shared because every caller waiting for the seat gets the same failure.
    #[error("creating the workspace failed")]
    CreateFailed(#[source] Arc<OpError>),
}

/// Why one backend operation on a seat failed; each variant is the step, the cause is attached.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("cannot keep the seat's daemon token")]
    DaemonToken(#[source] std::sync::Arc<crate::identity::IdentityError>),
    #[error("cannot create the workspace")]
    Create(#[source] BackendError),
    #[error("cannot copy the template's starter files")]
    Starter(#[source] crate::starter::StarterError),
    #[error("the starter copy task ended abnormally")]
    StarterTask(#[source] tokio::task::JoinError),
    #[error("cannot start the workspace")]
    Start(#[source] BackendError),
    #[error("cannot restore the seat's files from the object store")]
    Restore(#[source] crate::volume::RestoreError),
    #[error("cannot destroy the workspace")]
    Destroy(#[source] BackendError),
    #[error("cannot pause the workspace")]
    Pause(#[source] BackendError),
    #[error("cannot resume the workspace")]
    Resume(#[source] BackendError),
}

/// Result of one backend operation, sent back to the state task by the task that ran it.
pub(crate) enum Outcome {
    Ready(DaemonEndpoint),
    Failed(OpError),
    Destroyed,
    /// The workspace is frozen.
    Paused,
    /// Freezing or thawing failed; the workspace stays as it was.
    PauseFailed(OpError),
}

/// Where the preparation of one workshop stands (`StateHandle::prepared`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// Being made.
    Making {
        seats: u32,
    },
    /// `ready` of the backend's prepared seats are ready (the sandbox counts every spare of the
    /// size, those of other workshops too), made in `took`.
    Ready {
        ready: u32,
        took: std::time::Duration,
    },
    Failed(String),
}

/// Messages to the state task.
pub(crate) enum Command {
    /// A control-plane connection is up: the task answers with the seats to register and sends
    /// later status changes to `tx`.
    Connected {
        tx: mpsc::Sender<AgentMessage>,
        reply: oneshot::Sender<Vec<SeatReport>>,
    },
    Disconnected,
    Control(ControlMessage),
    /// Local API: create a seat with default limits and answer once it is ready or failed.
    LocalCreate {
        key: SeatKey,
        reply: oneshot::Sender<Result<SeatView, StateError>>,
    },
    /// Local API: destroy a seat, keeping its volume, and answer when done.
    LocalDestroy {
        key: SeatKey,
        reply: oneshot::Sender<()>,
    },
    List {
        reply: oneshot::Sender<Vec<SeatView>>,
    },
    /// A backend operation started by the task finished.
    OpDone {
        key: SeatKey,
        outcome: Outcome,
    },
    /// A create under way must first prepare the seat's image (build it, make its disk): the
    /// seat is reported `preparing` until the create's outcome.
    Preparing {
        key: SeatKey,
    },
    /// Stop every workspace (volumes stay) and end the task.
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    /// The backend finished preparing a workshop's seats ahead of its start.
    PreparedDone {
        workshop_id: String,
        generation: u64,
        result: Result<u32, String>,
    },
    /// Seats prepared ahead waited their time limit for a start.
    PreparedExpired {
        workshop_id: String,
        generation: u64,
    },
    PreparedState {
        workshop_id: String,
        reply: oneshot::Sender<Option<Prepared>>,
    },
}

/// Cheap, clonable access to the state task.
#[derive(Clone)]
pub struct StateHandle {
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) routes: watch::Receiver<RouteTable>,
    pub(crate) used: Arc<AtomicU32>,
}

impl StateHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, StateError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| StateError::ShuttingDown)?;
        rx.await.map_err(|_| StateError::ShuttingDown)
    }

    /// The daemon endpoint of a ready seat.
    pub fn route(&self, key: &SeatKey) -> Option<DaemonEndpoint> {
        self.routes.borrow().get(key).cloned()
    }

    /// A receiver that sees every change of the route table (tests and benches wait on it).
    pub fn routes(&self) -> watch::Receiver<RouteTable> {
        self.routes.clone()
    }

    /// Seats hosted right now (for heartbeats).
    pub fn used(&self) -> u32 {
        self.used.load(Ordering::Relaxed)
    }

    pub async fn list(&self) -> Result<Vec<SeatView>, StateError> {
        self.ask(|reply| Command::List { reply }).await
    }

    pub async fn create_local(&self, key: SeatKey) -> Result<SeatView, StateError> {
        self.ask(|reply| Command::LocalCreate { key, reply })
            .await?
    }

    pub async fn destroy_local(&self, key: SeatKey) -> Result<(), StateError> {
        self.ask(|reply| Command::LocalDestroy { key, reply }).await
    }

    /// Hands a control-plane message to the task.
    pub async fn control(&self, msg: ControlMessage) -> Result<(), StateError> {
        self.tx
            .send(Command::Control(msg))
            .await
            .map_err(|_| StateError::ShuttingDown)
    }

    pub(crate) async fn connected(
        &self,
        tx: mpsc::Sender<AgentMessage>,
    ) -> Result<Vec<SeatReport>, StateError> {
        self.ask(|reply| Command::Connected { tx, reply }).await
    }

    pub(crate) async fn disconnected(&self) {
        let _ = self.tx.send(Command::Disconnected).await;
    }

    /// Where the preparation ahead of a start of `workshop_id` stands (None: nothing prepared,
    /// or its seats started).
    pub async fn prepared(&self, workshop_id: &str) -> Result<Option<Prepared>, StateError> {
        let workshop_id = workshop_id.to_string();
        self.ask(|reply| Command::PreparedState { workshop_id, reply })
            .await
    }

    /// Stops every workspace (volumes stay) and ends the task; later calls fail.
    pub async fn shutdown(&self) {
        let _ = self.ask(|reply| Command::Shutdown { reply }).await;
    }
}
