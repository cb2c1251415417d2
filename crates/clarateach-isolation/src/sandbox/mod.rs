//! The `sandbox` backend, the default: each seat is a bubblewrap sandbox (user, pid, ipc, uts,
//! net and cgroup namespaces; a read-only root of the host's system directories or an image
//! rootfs; a private `/workspace`, home, `/tmp`, `/dev` and `/proc`) running as an unprivileged
//! uid inside a cgroup with the workshop's memory, pids and cpu limits. The workspace daemon
//! listens on a Unix socket in a per-seat run dir bind-mounted from the host.
//!
//! Sandboxes are not tied to the agent's life: a killed agent finds them again through the
//! state files written here (`adopt`).

mod adopt;
mod args;
mod lifecycle;
mod migrate;
mod paths;
mod record;
pub mod seatfs;
mod spawn;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clarateach_core::agent_proto::SeatKey;
use tokio::process::Child;

use crate::cgroups::{self, CgroupManager};
use crate::BackendError;
use record::SeatRecord;

pub use args::{build as bwrap_args, root_entries, ArgsInput, RootEntry, DAEMON_PATH, RUN_DIR};
pub use paths::{seat_name, SeatPaths, LEARNER_ID};
pub use seatfs::DiskUsage;
pub use spawn::health;
pub use store::{SeatStore, SeatStoreError, StoreSize};

/// Default path of the bubblewrap binary (Debian package `bubblewrap`).
pub const BWRAP: &str = "/usr/bin/bwrap";

/// Configuration of the sandbox backend.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Holds volumes, homes, run dirs and state (see `paths`).
    pub data_dir: PathBuf,
    /// The `clarateach` binary; run inside as `clarateach workspace-server`.
    pub daemon_binary: PathBuf,
    /// Image rootfs directory used as `/` instead of the host's system directories.
    pub rootfs: Option<PathBuf>,
    /// Path of bwrap.
    pub bwrap: PathBuf,
    /// Host uid and gid the sandboxes run as (shown as 1000 `learner` inside). Must not be 0.
    pub host_uid: u32,
    pub host_gid: u32,
    /// Cgroup under each hierarchy's root that holds `<workshop>/seat-NN` groups.
    pub cgroup_parent: String,
    /// How long `start` waits for the daemon's `/health`.
    pub start_timeout: Duration,
    /// The seat store bounding each seat's volume and home (see `store`).
    pub seat_store: StoreSize,
}

impl SandboxConfig {
    /// Defaults: host bwrap, host system dirs, uid/gid 61000, cgroups under `clarateach`, 10 s.
    pub fn new(data_dir: impl Into<PathBuf>, daemon_binary: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            daemon_binary: daemon_binary.into(),
            rootfs: None,
            bwrap: PathBuf::from(BWRAP),
            host_uid: 61000,
            host_gid: 61000,
            cgroup_parent: "clarateach".into(),
            start_timeout: Duration::from_secs(10),
            seat_store: StoreSize::Auto,
        }
    }
}

/// True when this host can run sandboxes: root, bwrap present, usable cgroups.
pub fn available(bwrap: &std::path::Path) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the sandbox backend needs root (to set cgroup limits)".into());
    }
    if !bwrap.exists() {
        return Err(format!(
            "{} not found (install the bubblewrap package)",
            bwrap.display()
        ));
    }
    cgroups::detect_host()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A seat known to this process.
struct Seat {
    record: SeatRecord,
    /// Our child when we started it (None for adopted sandboxes, whose parent is init).
    child: Option<Child>,
    running: bool,
}

/// The sandbox backend. Cheap to share behind an `Arc`.
pub struct SandboxBackend {
    cfg: SandboxConfig,
    cg: Arc<dyn CgroupManager>,
    root: Vec<RootEntry>,
    etc_dir: PathBuf,
    store: Arc<SeatStore>,
    seats: Mutex<HashMap<SeatKey, Seat>>,
}

impl std::fmt::Debug for SandboxBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxBackend")
            .field("cfg", &self.cfg)
            .field("cgroups", &self.cg)
            .finish()
    }
}

impl SandboxBackend {
    /// Checks the host, prepares the data dir and detects the cgroup layout.
    pub fn new(cfg: SandboxConfig) -> Result<Self, BackendError> {
        available(&cfg.bwrap).map_err(BackendError::Unavailable)?;
        if cfg.host_uid == 0 || cfg.host_gid == 0 {
            return Err(BackendError::Unavailable(
                "sandboxes must not run as uid or gid 0".into(),
            ));
        }
        let cg: Arc<dyn CgroupManager> = Arc::from(
            cgroups::host_manager().map_err(|e| BackendError::Unavailable(e.to_string()))?,
        );
        let io = |action| move |source| BackendError::Io { action, source };
        let etc_dir = paths::prepare_data_dir(&cfg.data_dir).map_err(io("prepare the data dir"))?;
        let root_dir = cfg.rootfs.clone().unwrap_or_else(|| PathBuf::from("/"));
        let root = root_entries(&root_dir).map_err(io("read the sandbox root"))?;
        let store = Arc::new(
            SeatStore::open(&cfg.data_dir, cfg.seat_store).map_err(BackendError::SeatStore)?,
        );
        tracing::info!(data_dir = %cfg.data_dir.display(), cgroups = ?cg.version(), "sandbox backend ready");
        Ok(Self {
            cfg,
            cg,
            root,
            etc_dir,
            store,
            seats: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &SandboxConfig {
        &self.cfg
    }

    /// Relative cgroup name of a seat.
    pub fn cgroup_name(&self, key: &SeatKey) -> String {
        format!(
            "{}/{}/{}",
            self.cfg.cgroup_parent,
            key.workshop_id,
            seat_name(key.seat)
        )
    }

    /// Host pids of every process of a seat (empty when it does not run).
    pub fn pids(&self, key: &SeatKey) -> Vec<i32> {
        self.cg.pids(&self.cgroup_name(key)).unwrap_or_default()
    }

    /// How many processes of the seat the kernel killed for exceeding the memory limit.
    pub fn oom_kills(&self, key: &SeatKey) -> u64 {
        self.cg.oom_kills(&self.cgroup_name(key)).unwrap_or(0)
    }

    /// The seat store holding every seat's volume and home.
    pub fn seat_store(&self) -> &SeatStore {
        &self.store
    }

    fn paths(&self, key: &SeatKey) -> SeatPaths {
        SeatPaths::new(&self.cfg.data_dir, key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SeatKey, Seat>> {
        // A panic while holding the lock leaves the map consistent (single inserts/removes).
        self.seats.lock().unwrap_or_else(|p| p.into_inner())
    }
}
