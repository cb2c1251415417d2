//! Scheduling seats onto agents.
//!
//! [`Provisioner`] is what the workshop lifecycle talks to; [`AgentScheduler`] is the real one,
//! placing seats by free capacity on the agents connected over `GET /api/agents/connect`
//! (see [`session`]). The connected agents live in a [`registry`] owned by one task; a seat
//! reserves its workshop's memory and CPU limits on its agent ([`placement`]); several replicas
//! on one PostgreSQL reach each other's agents through [`remote`].

mod agents;
mod conn;
pub mod placement;
#[cfg(test)]
mod placement_race;
pub mod registry;
pub mod remote;
pub mod session;

use async_trait::async_trait;
use clarateach_core::agent_proto::{ControlMessage, SeatSpec};
use clarateach_store::StoreError;

pub use agents::AgentScheduler;
pub use placement::{Demand, Shortage};
pub use registry::{AgentInfo, RegistryHandle};
pub use remote::Remote;

/// Where the gateway sends a seat's traffic: the hosting agent's data path.
#[derive(Clone, PartialEq, Eq)]
pub struct SeatRoute {
    pub agent_id: String,
    /// Base URL of the agent's data path; requests go to `{data_url}/seats/{workshop_id}/{seat}/...`.
    pub data_url: String,
    /// Bearer secret the gateway presents to the agent.
    pub data_token: String,
}

impl std::fmt::Debug for SeatRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeatRoute")
            .field("agent_id", &self.agent_id)
            .field("data_url", &self.data_url)
            .field("data_token", &"<redacted>")
            .finish()
    }
}

/// Why seats could not be placed or released.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(
        "not enough agent capacity: {needed} seats needed, room for {free} on {agents} connected \
         agents (short of {short_of})"
    )]
    NoCapacity {
        needed: u32,
        free: u32,
        agents: usize,
        short_of: Shortage,
    },
    #[error(
        "no room on the agents that have the image {image:?}: {needed} seats needed, {free} free \
         on {with_image} of {agents} connected agents"
    )]
    NoImage {
        image: String,
        needed: u32,
        free: u32,
        with_image: usize,
        agents: usize,
    },
    #[error("the scheduler is shut down")]
    Closed,
    #[error("cannot record the placement")]
    Store(#[from] StoreError),
}

/// Outcome of a release: which seats an agent was asked to destroy (their reports are awaited)
/// and which had no connected agent (nothing to wait for).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    pub sent: Vec<u32>,
    pub unreachable: Vec<u32>,
}

/// Places workshops' seats on workspace hosts.
#[async_trait]
pub trait Provisioner: Send + Sync + 'static {
    /// Places every seat in `specs` (all of one workshop) and asks the hosts to create them;
    /// all or nothing. Seats are recorded as `creating` on their agent.
    async fn place(&self, workshop_id: &str, specs: Vec<SeatSpec>) -> Result<(), ProvisionError>;
    /// Asks the hosts of the workshop's seats to destroy them (and their volumes when
    /// `delete_volumes`).
    async fn release(
        &self,
        workshop_id: &str,
        delete_volumes: bool,
    ) -> Result<Release, ProvisionError>;
    /// The data path of a seat, when its agent is connected.
    async fn seat_route(&self, workshop_id: &str, seat: u32) -> Option<SeatRoute>;
    /// The data path of an agent by id, when it is connected, whether or not seats are placed
    /// on it (the volumes of a stopped workshop stay on their agent until it is deleted).
    async fn agent_route(&self, agent_id: &str) -> Option<SeatRoute>;
    /// Connected agents.
    async fn agents(&self) -> Vec<AgentInfo>;
    /// Sends one message about a placed seat (pause, resume) to its agent; false when that
    /// agent is not connected.
    async fn send_to_agent(
        &self,
        agent_id: &str,
        msg: ControlMessage,
    ) -> Result<bool, ProvisionError>;
}
