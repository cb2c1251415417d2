//! What is known of one standalone sandbox: its spec (to recreate it on `start`), its state and
//! where its daemon listens. `SandboxInfo` is the part shown to users (no daemon token).

use chrono::{DateTime, Utc};
use clarateach_core::Limits;
use clarateach_isolation::{DaemonAddr, DaemonEndpoint};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Running or stopped; a cleaned sandbox has no record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    Running,
    Stopped,
}

impl SandboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopped => "stopped",
        }
    }
}

/// Which backend runs the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackendChoice {
    Sandbox,
    Microvm,
}

impl BackendChoice {
    pub fn kind(self) -> clarateach_isolation::BackendKind {
        match self {
            Self::Sandbox => clarateach_isolation::BackendKind::Sandbox,
            Self::Microvm => clarateach_isolation::BackendKind::Microvm,
        }
    }
}

/// The stored record (JSON in the store).
#[derive(Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub info: SandboxInfo,
    /// Bearer token of the sandbox's daemon; lives in the root-only state dir only.
    pub daemon_token: String,
    /// Where the daemon listens while running.
    pub daemon: Option<StoredAddr>,
    /// The guest image dir of a microVM sandbox, fixed at create (`CLARATEACH_IMAGE_DIR`).
    #[serde(default)]
    pub image_dir: Option<std::path::PathBuf>,
    /// The seat image store its image comes from, fixed at create.
    #[serde(default)]
    pub images_dir: Option<std::path::PathBuf>,
    /// The network objects of an `open` or `allow` sandbox, fixed at create (`net`).
    #[serde(default)]
    pub net: Option<NetRecord>,
    /// The process holding its proxy or DNS forwarder while it runs.
    #[serde(default)]
    pub keeper: Option<KeeperRecord>,
}

impl std::fmt::Debug for SandboxRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxRecord")
            .field("info", &self.info)
            .field("daemon_token", &"<redacted>")
            .field("daemon", &self.daemon)
            .field("image_dir", &self.image_dir)
            .field("images_dir", &self.images_dir)
            .field("net", &self.net)
            .field("keeper", &self.keeper)
            .finish()
    }
}

impl SandboxRecord {
    /// The daemon endpoint while the record says running.
    pub fn endpoint(&self) -> Option<DaemonEndpoint> {
        let addr = match self.daemon.as_ref()? {
            StoredAddr::Unix { path } => DaemonAddr::Unix(path.into()),
            StoredAddr::Tcp { addr } => DaemonAddr::Tcp(*addr),
        };
        Some(DaemonEndpoint {
            addr,
            token: self.daemon_token.clone(),
        })
    }
}

/// The network of an `open` or `allow` sandbox as fixed at create (made by
/// [`crate::net`], which owns the objects it names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetRecord {
    /// The sandbox's own nft table (`inet <name>`).
    pub nft_table: String,
    pub seat_subnet: String,
    pub egress_iface: Option<String>,
    pub egress_hosts: Option<PathBuf>,
    pub dns_upstream: Option<SocketAddr>,
}

/// The keeper process of a running networked sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeeperRecord {
    pub pid: i32,
    /// From `/proc/PID/stat`: a pid reused by another process never matches.
    pub start_time: u64,
}

impl KeeperRecord {
    /// True while this very process runs (a zombie does not count).
    pub fn alive(&self) -> bool {
        clarateach_isolation::sandbox::process_start_time(self.pid) == Some(self.start_time)
    }
}

/// A daemon address in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoredAddr {
    Unix { path: String },
    Tcp { addr: std::net::SocketAddr },
}

impl From<&DaemonAddr> for StoredAddr {
    fn from(a: &DaemonAddr) -> Self {
        match a {
            DaemonAddr::Unix(p) => Self::Unix {
                path: p.to_string_lossy().into_owned(),
            },
            DaemonAddr::Tcp(s) => Self::Tcp { addr: *s },
        }
    }
}

/// A sandbox as `create`, `status` and `list` print it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SandboxInfo {
    pub id: String,
    /// `python`, `node`, `claude`, `base` or an image name.
    pub language: String,
    /// The image whose rootfs is `/`; `None`: the host's system directories.
    pub image: Option<String>,
    pub backend: BackendChoice,
    pub status: SandboxState,
    pub persist: bool,
    pub limits: Limits,
    pub created_at: DateTime<Utc>,
    pub last_run_at: Option<DateTime<Utc>>,
    /// Why a built-in language runs on the host root (no seat image of it is built).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Instructor that created it through the HTTP API; `None` for the CLI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}
