//! Messages between the control plane and an agent over the agent's outbound WebSocket
//! (`GET /api/agents/connect`, `Authorization: Bearer <agent token>`). Every frame is one JSON
//! text message tagged by `type`. See api/ws-protocol.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Limits, SeatState};

/// Identifies one seat's workspace on an agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeatKey {
    pub workshop_id: String,
    pub seat: u32,
}

/// What the control plane wants to exist on an agent.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatSpec {
    pub workshop_id: String,
    pub seat: u32,
    pub image: Option<String>,
    pub limits: Limits,
    /// Environment for the seat's shells (holds the decrypted api key, hence the Debug below).
    pub env: BTreeMap<String, String>,
    /// Starter files copied into the seat's volume once, when the volume is new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starter: Option<crate::templates::SeatStarter>,
}

impl std::fmt::Debug for SeatSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeatSpec")
            .field("workshop_id", &self.workshop_id)
            .field("seat", &self.seat)
            .field("image", &self.image)
            .field("limits", &self.limits)
            .field("starter", &self.starter)
            .field(
                "env",
                &self
                    .env
                    .keys()
                    .map(|k| (k, "<redacted>"))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SeatSpec {
    pub fn key(&self) -> SeatKey {
        SeatKey {
            workshop_id: self.workshop_id.clone(),
            seat: self.seat,
        }
    }
}

/// A seat as an agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatReport {
    pub workshop_id: String,
    pub seat: u32,
    pub state: SeatState,
    #[serde(default)]
    pub error: Option<String>,
}

/// Agent -> control plane.
// `Register` is sent once per connection: its size next to `Heartbeat` costs nothing worth
// boxing every match on it for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// First message after connecting.
    Register {
        agent_id: String,
        hostname: String,
        /// How many seats this agent can host.
        capacity: u32,
        /// Backends it can run, e.g. `["sandbox"]`.
        backends: Vec<String>,
        /// Base URL of the agent's data path (HTTP + WebSocket), reached by the gateway.
        data_url: String,
        /// Bearer secret the gateway presents on the data path; fresh per agent process.
        data_token: String,
        /// Workspaces that exist on the host right now.
        seats: Vec<SeatReport>,
        /// With an `https://` data URL: the agent's data-path public key (P-256
        /// SubjectPublicKeyInfo, PEM) for the control plane's CA to certify.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_tls_public_key: Option<String>,
        /// Seat images built on this host (`clarateach image build NAME`).
        #[serde(default)]
        images: Vec<String>,
        /// What each of `images` holds (digest, packages, size), for the instructor's picker.
        #[serde(default)]
        image_details: Vec<crate::templates::SeatImageSummary>,
        /// Built-in recipes this host can build on demand (root with debootstrap): a seat of one
        /// of them may be placed here though it is not built yet; it is `preparing` meanwhile.
        #[serde(default)]
        buildable: Vec<String>,
        /// Memory (MiB) this host gives seats (its physical memory unless configured); the
        /// control plane reserves each seat's `limits.memory_mb` from it. Absent from agents
        /// that predate it: only seat slots count for them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        memory_mb: Option<u64>,
        /// CPU (thousandths of a CPU) this host gives seats (its CPUs x 1000 unless
        /// configured); each seat reserves its `limits.cpu_millis`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpu_millis: Option<u64>,
    },
    Heartbeat {
        /// Seats currently hosted.
        used: u32,
    },
    /// A seat changed state.
    SeatStatus(SeatReport),
}

/// A data-path certificate the control plane's CA issued to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataTlsCert {
    /// The agent's certificate (PEM): SANs for the data URL's host and the agent id.
    pub cert_pem: String,
    /// The control plane's data-path CA certificate (PEM).
    pub ca_pem: String,
}

/// Control plane -> agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMessage {
    /// Answer to Register: the full desired state for this agent; the agent destroys workspaces
    /// not listed (keeping volumes) and creates missing ones.
    Registered {
        heartbeat_interval_ms: u64,
        desired: Vec<SeatSpec>,
        /// The certificate issued for `data_tls_public_key`, when the agent sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_tls: Option<DataTlsCert>,
    },
    CreateSeat(SeatSpec),
    /// Destroy the workspace; delete its volume only when `delete_volume` (workshop deleted).
    DestroySeat {
        workshop_id: String,
        seat: u32,
        delete_volume: bool,
    },
    /// Freeze the running workspace (processes, memory and terminal sessions kept); the agent
    /// answers with a `paused` seat status.
    PauseSeat {
        workshop_id: String,
        seat: u32,
    },
    /// Thaw a paused workspace; the agent answers with a `ready` seat status.
    ResumeSeat {
        workshop_id: String,
        seat: u32,
    },
    /// A workshop was created (or its `start_at` approaches): make ahead what `seats` of its
    /// seats need that holds nothing of a learner or of its secret (no env, no token: only the
    /// limits and image; a sandbox agent runs seats 1..=`seats` frozen), so its Start only
    /// activates them. The agent reports nothing; a workshop that is never
    /// started gets it back with `ReleasePrepared` (or when the agent's own time limit ends).
    PrepareSeats {
        workshop_id: String,
        seats: u32,
        limits: Limits,
        /// The workshop's seat image (seats 1..=`seats` may then be run ahead, frozen, on it);
        /// absent from older control planes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image: Option<String>,
    },
    /// The workshop was deleted or will not start: give back what `PrepareSeats` made.
    ReleasePrepared {
        workshop_id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seat_spec_debug_hides_env_values() {
        let spec = SeatSpec {
            starter: None,
            workshop_id: "ws-abc123".into(),
            seat: 1,
            image: None,
            limits: Limits::default(),
            env: [(
                "ANTHROPIC_API_KEY".to_string(),
                "sk-secret-value".to_string(),
            )]
            .into(),
        };
        let shown = format!("{spec:?}");
        assert!(!shown.contains("sk-secret-value"));
        assert!(shown.contains("ANTHROPIC_API_KEY"));
    }

    #[test]
    fn tagged_round_trip() {
        let m = ControlMessage::DestroySeat {
            workshop_id: "ws-a".into(),
            seat: 2,
            delete_volume: false,
        };
        let s = serde_json::to_string(&m).expect("serialize");
        assert!(s.contains("\"type\":\"destroy_seat\""));
        assert_eq!(
            serde_json::from_str::<ControlMessage>(&s).expect("parse"),
            m
        );
    }
}
