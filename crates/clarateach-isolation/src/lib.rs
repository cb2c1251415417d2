//! Isolation backends: one `Backend` trait that the agent drives, and a factory that probes the
//! host and says which backends it can run. `sandbox` (namespaces + cgroups, the default) and
//! `microvm` (QEMU microvm / Firecracker) implement it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use async_trait::async_trait;
use clarateach_core::agent_proto::SeatKey;
use clarateach_core::Limits;

pub mod cgroups;
pub mod export;
pub mod factory;
pub mod microvm;
pub mod netpolicy;
pub mod sandbox;
mod seat_image;

pub use sandbox::DiskUsage;

/// Which isolation a backend provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    Sandbox,
    Microvm,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::Microvm => "microvm",
        }
    }
}

/// Everything a backend needs to build one seat's workspace.
#[derive(Clone)]
pub struct WorkspaceSpec {
    pub key: SeatKey,
    pub limits: Limits,
    pub image: Option<String>,
    /// Environment for the seat's shells (may hold the workshop's api key).
    pub env: BTreeMap<String, String>,
    /// Bearer token the workspace daemon inside requires; held by the agent only.
    pub daemon_token: String,
}

impl std::fmt::Debug for WorkspaceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspaceSpec")
            .field("key", &self.key)
            .field("limits", &self.limits)
            .field("image", &self.image)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("daemon_token", &"<redacted>")
            .finish()
    }
}

/// Where the workspace daemon of a seat listens, as seen from the agent's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

/// Address plus the bearer token the daemon expects.
#[derive(Clone, PartialEq, Eq)]
pub struct DaemonEndpoint {
    pub addr: DaemonAddr,
    pub token: String,
}

impl std::fmt::Debug for DaemonEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonEndpoint")
            .field("addr", &self.addr)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// What a backend knows about one seat's workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceStatus {
    /// No workspace (its volume may still exist).
    Missing,
    /// Created but not running.
    Stopped,
    /// Running; the daemon may or may not answer yet.
    Running,
}

/// Errors from any backend; each variant names the action that failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("creating the volume for {0:?} failed")]
    CreateVolume(SeatKey, #[source] std::io::Error),
    #[error("the image {1:?} of {0:?} is not built on this host (clarateach image build {1})")]
    ImageMissing(SeatKey, String),
    #[error("no host uid is free for {0:?}")]
    Uid(SeatKey, #[source] sandbox::UidsExhausted),
    #[error("setting up the cgroup of {0:?} failed")]
    Cgroup(SeatKey, #[source] cgroups::CgroupError),
    #[error("emptying the cgroup of {0:?} failed")]
    EmptyCgroup(SeatKey, #[source] cgroups::CgroupError),
    #[error("preparing the seccomp filters of {0:?} failed")]
    Seccomp(SeatKey, #[source] sandbox::SeccompError),
    #[error("spawning the sandbox of {0:?} failed")]
    Spawn(SeatKey, #[source] std::io::Error),
    /// The sandbox died before its daemon answered; `log` is the tail of the seat's log.
    #[error("the sandbox of {key:?} exited ({status}): {log}")]
    Exited {
        key: SeatKey,
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("no bridge address is free for {0:?}")]
    BridgeAddress(SeatKey, #[source] microvm::SubnetFull),
    #[error("QMP `{1}` to the microVM {0:?} failed")]
    Qmp(SeatKey, &'static str, #[source] std::io::Error),
    #[error("stopping the microVM {0:?} failed")]
    StopVm(SeatKey, #[source] microvm::StopError),
    #[error("removing the files of {0:?} failed")]
    RemoveFiles(SeatKey, #[source] std::io::Error),
    #[error("workspace {0:?} is unknown")]
    Unknown(SeatKey),
    #[error("the daemon of {0:?} did not answer in time")]
    DaemonTimeout(SeatKey),
    #[error("setting up the network of {0:?} failed")]
    Network(SeatKey, #[source] netpolicy::NetError),
    /// A reason in words (a missing tool, root needed); failures with a cause have their own
    /// variants below.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    #[error("backend unavailable: the seccomp filters cannot be built")]
    SeccompUnavailable(#[source] sandbox::SeccompError),
    #[error("backend unavailable: no usable cgroup hierarchy")]
    CgroupsUnavailable(#[source] cgroups::CgroupError),
    #[error("backend unavailable: the seat network cannot be set up")]
    NetworkUnavailable(#[source] netpolicy::NetError),
    #[error("backend unavailable: the guest image cannot be read")]
    ImageUnavailable(#[source] Box<clarateach_image::ImageError>),
    #[error("workspace {0:?} cannot be made on this backend: {1}")]
    Unsupported(SeatKey, &'static str),
    #[error("the seat store failed")]
    SeatStore(#[source] sandbox::SeatStoreError),
    #[error("starting the microVM {0:?} failed")]
    Launch(SeatKey, #[source] microvm::LaunchError),
    #[error("the seat image {1:?} of {0:?} cannot be used")]
    Image(SeatKey, String, #[source] Box<clarateach_image::ImageError>),
    #[error("a background task for {0:?} panicked or was cancelled")]
    Task(SeatKey, #[source] tokio::task::JoinError),
    #[error("freezing or thawing the workspace {0:?} failed")]
    Freeze(SeatKey, #[source] cgroups::CgroupError),
    #[error("io error during {action}")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// One isolation technology. All methods are idempotent: creating an existing workspace or
/// destroying a missing one succeeds, so the agent's reconciler can retry freely.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    fn kind(&self) -> BackendKind;

    /// Prepares the seat (volume, config) without running anything.
    async fn create(&self, spec: &WorkspaceSpec) -> Result<(), BackendError>;

    /// Runs the workspace and waits until its daemon answers `/health`.
    async fn start(&self, key: &SeatKey) -> Result<DaemonEndpoint, BackendError>;

    /// Stops every process of the workspace, keeping it and its volume.
    async fn stop(&self, key: &SeatKey) -> Result<(), BackendError>;

    /// Stops and removes the workspace; removes the volume too when `delete_volume`.
    async fn destroy(&self, key: &SeatKey, delete_volume: bool) -> Result<(), BackendError>;

    async fn status(&self, key: &SeatKey) -> Result<WorkspaceStatus, BackendError>;

    /// The daemon endpoint of a running workspace.
    fn endpoint(&self, key: &SeatKey) -> Option<DaemonEndpoint>;

    /// Workspaces found on the host (after an agent restart), running or not, with their status.
    /// Running ones are re-adopted: `endpoint` answers for them afterwards.
    async fn adopt(&self) -> Result<Vec<(SeatKey, WorkspaceStatus)>, BackendError>;

    /// Directory holding the seat's `/workspace` files on the host (for backends whose volume
    /// is a directory; others name where their volume lives).
    fn volume_dir(&self, key: &SeatKey) -> PathBuf;

    /// What the seat uses of its disk limit (`/workspace` and home together), for the UI;
    /// `None` where the backend does not measure it.
    fn disk_usage(&self, key: &SeatKey) -> Result<Option<DiskUsage>, BackendError> {
        let _ = key;
        Ok(None)
    }

    /// What an export reads for this seat: the volume directory by default, an ext4 image for
    /// backends whose volume is a disk image. The host never copies or mounts a volume to
    /// export it.
    fn export_source(&self, key: &SeatKey) -> export::ExportSource {
        export::ExportSource::Dir(self.volume_dir(key))
    }

    /// The host `(uid, gid)` that owns the seat's files, so host-side reads of the volume can
    /// run with the seat's own rights instead of root's. `None` when the files are not owned by
    /// a dedicated seat uid (the reader then relies on walking by file descriptor alone).
    fn volume_owner(&self, _key: &SeatKey) -> Option<(u32, u32)> {
        None
    }

    /// Freezes every process of a running workspace (cgroup freezer, QMP `stop`): nothing runs,
    /// memory and open sessions are kept. Idempotent.
    async fn pause(&self, key: &SeatKey) -> Result<(), BackendError> {
        Err(BackendError::Unsupported(
            key.clone(),
            "this backend cannot pause",
        ))
    }

    /// Thaws a paused workspace. Idempotent; resuming a running one succeeds.
    async fn resume(&self, key: &SeatKey) -> Result<(), BackendError> {
        Err(BackendError::Unsupported(
            key.clone(),
            "this backend cannot pause",
        ))
    }

    /// Whether `create(spec)` has slow work to do on the seat's image first (build it from its
    /// built-in recipe, make its microVM disk), so the agent reports the seat `preparing`
    /// meanwhile. Cheap: looks at files only.
    fn needs_prepare(&self, _spec: &WorkspaceSpec) -> bool {
        false
    }

    /// Does that work (idempotent, nothing when there is none); the agent calls it before
    /// `create`.
    async fn prepare(&self, _spec: &WorkspaceSpec) -> Result<(), BackendError> {
        Ok(())
    }

    /// Makes, ahead of a workshop's start, what `seats` of its seats need that holds nothing of
    /// a learner or of the workshop's secret (sandbox: one mounted seat file system each, and
    /// seats 1..=`seats` run frozen without the workshop's environment), so Start only runs
    /// them; returns how many are ready. Nothing by default.
    async fn prepare_ahead(
        &self,
        _workshop_id: &str,
        _limits: &Limits,
        _image: Option<&str>,
        _seats: u32,
    ) -> Result<u32, BackendError> {
        Ok(0)
    }

    /// Called at once (before `prepare_ahead` runs) when seats of `workshop_id` are to be
    /// prepared: the workshop's creates from then on wait for that preparation.
    fn preparing(&self, _workshop_id: &str) {}

    /// Gives back what `prepare_ahead` made for a workshop that was deleted or will not start.
    async fn release_ahead(&self, _workshop_id: &str) -> Result<(), BackendError> {
        Ok(())
    }

    /// Gives back what `prepare_ahead` made that the started workshop's seats did not take.
    async fn trim_ahead(&self, _workshop_id: &str) -> Result<(), BackendError> {
        Ok(())
    }
}
