//! What the scheduler knows of a connected agent: [`AgentConn`] (what it said in `register`,
//! plus the channel to its session) and [`AgentInfo`] (what callers are told). Both the local
//! registry task ([`super::registry`]) and the shared-store view of the other replicas
//! ([`super::remote`]) speak of agents in these terms, so they live below both.

use clarateach_core::agent_proto::ControlMessage;
use clarateach_core::SeatImageSummary;
use tokio::sync::mpsc;

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
    /// Memory (MiB) seats may reserve on it (reported x overcommit); `None`: slots only.
    pub memory_mb: Option<u64>,
    /// CPU (thousandths) seats may reserve on it.
    pub cpu_millis: Option<u64>,
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
    /// Memory (MiB) seats may reserve on it, and how much its placed seats reserve.
    pub memory_mb: Option<u64>,
    pub reserved_memory_mb: u64,
    /// CPU (thousandths) seats may reserve on it, and how much its placed seats reserve.
    pub cpu_millis: Option<u64>,
    pub reserved_cpu_millis: u64,
    /// The replica holding its session, when it is not this one.
    pub held_by: Option<String>,
}
