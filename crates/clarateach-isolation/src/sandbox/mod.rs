//! The `sandbox` backend, the default: each seat is a bubblewrap sandbox (user, pid, ipc, uts,
//! net and cgroup namespaces; a read-only root of the host's system directories or an image
//! rootfs; a private `/workspace`, home, `/tmp`, `/dev` and `/proc`) running as an unprivileged
//! uid of its own (`uids`) inside a cgroup with the workshop's memory, pids and cpu limits, under a
//! seccomp filter (`seccomp`) with nested user namespaces disabled, seeing a generated `/etc`
//! (`etc`) and size-bounded `/tmp` and `/dev/shm`. The workspace daemon serves on a Unix socket
//! the agent binds in a root-only directory and hands down as a descriptor, so no learner can
//! replace it.
//!
//! Sandboxes are not tied to the agent's life: a killed agent finds them again through the
//! state files written here (`adopt`).

mod adopt;
mod args;
mod etc;
pub mod launchns;
mod lifecycle;
mod log;
mod migrate;
mod paths;
mod record;
pub mod seatfs;
mod seccomp;
mod spawn;
pub mod store;
mod uids;
mod warm;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clarateach_core::agent_proto::SeatKey;

use crate::cgroups::{self, CgroupManager};
use crate::BackendError;
use record::SandboxRecord;

pub use args::{
    build as bwrap_args, root_entries, tmpfs_sizes, ArgsInput, Etc, RootEntry, DAEMON_PATH,
    LISTEN_FD, SECCOMP_FDS,
};
pub use paths::{seat_name, SeatPaths, LEARNER_ID};
/// Start time of a live process (standalone sandboxes check their keeper processes by it).
pub use record::start_time as process_start_time;
pub use seatfs::DiskUsage;
pub use seccomp::{SeccompError, SeccompPrograms};
pub use spawn::health;
pub use store::{SeatStore, SeatStoreError, StoreSize};
pub use uids::{Exhausted as UidsExhausted, UidRange, UidRangeError};

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
    /// Seat-image store (`clarateach image build NAME`): a seat whose spec names an image gets
    /// that image's current tree as `/`. Default `<data_dir>/images`.
    pub images_dir: PathBuf,
    /// Path of bwrap.
    pub bwrap: PathBuf,
    /// Host uids (gid = uid) given out one per seat, shown as 1000 `learner` inside.
    pub uid_range: UidRange,
    /// Cgroup under each hierarchy's root that holds `<workshop>/seat-NN` groups.
    pub cgroup_parent: String,
    /// How long `start` waits for the daemon's `/health`.
    pub start_timeout: Duration,
    /// Networks of `open` and `allow` seats (see `netpolicy`).
    pub net: crate::netpolicy::NetConfig,
    /// The seat store bounding each seat's volume and home (see `store`).
    pub seat_store: StoreSize,
    /// Whether a seat's create readies spare seat file systems for the next ones (a background
    /// thread). A one-shot process (`clarateach sandbox create`) turns this off: it would exit
    /// before they are ready, and the next one drops them anyway.
    pub spare_seat_fs: bool,
    /// Start bwrap from a small mount namespace (`launchns`); on by default,
    /// `CLARATEACH_LAUNCH_NS=off` turns it off (to compare, or on a host that cannot make one).
    pub launch_ns: bool,
}

impl SandboxConfig {
    /// Defaults: host bwrap, host system dirs, uids 200000-265535, cgroups under
    /// `clarateach/<hash of the data dir>` (`dir_hash`), 10 s.
    pub fn new(data_dir: impl Into<PathBuf>, daemon_binary: impl Into<PathBuf>) -> Self {
        let data_dir: PathBuf = data_dir.into();
        let scope = dir_hash(&std::path::absolute(&data_dir).unwrap_or_else(|_| data_dir.clone()));
        Self {
            images_dir: data_dir.join("images"),
            data_dir,
            daemon_binary: daemon_binary.into(),
            rootfs: None,
            bwrap: PathBuf::from(BWRAP),
            uid_range: UidRange::DEFAULT,
            cgroup_parent: format!("clarateach/{:08x}", scope as u32),
            start_timeout: Duration::from_secs(10),
            net: crate::netpolicy::NetConfig::default(),
            seat_store: StoreSize::Auto,
            spare_seat_fs: true,
            launch_ns: std::env::var("CLARATEACH_LAUNCH_NS").map_or(true, |v| v != "off"),
        }
    }
}

/// True when this host can run sandboxes: root, bwrap present, usable cgroups.
/// A hash of a data dir's path that stays the same across builds (FNV-1a; the std hasher does
/// not promise that). Cgroup names are the host's, not the data dir's: each backend of a host
/// (two agents, an agent and `clarateach sandbox`) names its groups below its data dir's hash,
/// or a seat's start, which empties its group first, would kill the other's seat of the same
/// key (a seat one agent runs ahead while the control plane placed that seat on the other).
pub fn dir_hash(dir: &std::path::Path) -> u64 {
    dir.as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
}

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
    record: SandboxRecord,
    /// Our child when we started it (None for adopted sandboxes, whose parent is init).
    child: Option<spawn::SeatChild>,
    running: bool,
    /// Run ahead of its workshop's Start and not activated yet (`warm`).
    warm: Option<warm::Warm>,
}

impl Seat {
    /// A seat found on disk by `adopt`: no child of this process, nothing run ahead.
    fn adopted(record: SandboxRecord, running: bool) -> Self {
        Self {
            record,
            child: None,
            running,
            warm: None,
        }
    }
}

/// The sandbox backend. Cheap to share behind an `Arc`.
pub struct SandboxBackend {
    cfg: SandboxConfig,
    cg: Arc<dyn CgroupManager>,
    root: Vec<RootEntry>,
    etc_dir: PathBuf,
    /// Host dirs bound read-only over the generated `/etc` (CA certificates, alternatives).
    etc_binds: Vec<PathBuf>,
    /// Compiled once: every seat runs the same filters.
    seccomp: SeccompPrograms,
    uids: Mutex<uids::UidAllocator>,
    store: Arc<SeatStore>,
    seats: Mutex<HashMap<SeatKey, Seat>>,
    net: crate::netpolicy::NetManager,
    /// Where bwrap starts from (see `launchns`); None where it could not be made.
    launch_ns: Option<Arc<launchns::LaunchNs>>,
    /// Per workshop whose seats are being run ahead: held by that run from the moment it is
    /// decided (`Backend::preparing`), waited for by the workshop's creates and give-back.
    ahead_runs: Mutex<HashMap<String, warm::AheadRun>>,
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
        if cfg.uid_range.start < 1000 {
            return Err(BackendError::Unavailable(
                "the seat uid range must not include system uids".into(),
            ));
        }
        let seccomp = SeccompPrograms::build().map_err(BackendError::SeccompUnavailable)?;
        let cg: Arc<dyn CgroupManager> =
            Arc::from(cgroups::host_manager().map_err(BackendError::CgroupsUnavailable)?);
        let io = |action| move |source| BackendError::Io { action, source };
        paths::prepare_data_dir(&cfg.data_dir).map_err(io("prepare the data dir"))?;
        let (etc_dir, etc_binds) =
            etc::prepare(&cfg.data_dir).map_err(io("generate the sandbox /etc"))?;
        let uids = Mutex::new(uids_on_disk(&cfg));
        let root_dir = cfg.rootfs.clone().unwrap_or_else(|| PathBuf::from("/"));
        let root = root_entries(&root_dir).map_err(io("read the sandbox root"))?;
        let net = crate::netpolicy::NetManager::new(cfg.net.clone(), &cfg.data_dir)
            .map_err(BackendError::NetworkUnavailable)?;
        let store = Arc::new(
            SeatStore::open_with(&cfg.data_dir, cfg.seat_store, cfg.spare_seat_fs)
                .map_err(BackendError::SeatStore)?,
        );
        let launch_ns = launch_ns_for(&cfg, &root, &etc_dir, &etc_binds).map(Arc::new);
        tracing::info!(data_dir = %cfg.data_dir.display(), cgroups = ?cg.version(), "sandbox backend ready");
        Ok(Self {
            launch_ns,
            cfg,
            cg,
            root,
            etc_dir,
            etc_binds,
            seccomp,
            uids,
            store,
            seats: Mutex::new(HashMap::new()),
            net,
            ahead_runs: Mutex::new(HashMap::new()),
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

    /// The seat networks (addresses of networked seats, for tests and status).
    pub fn net(&self) -> &crate::netpolicy::NetManager {
        &self.net
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

    fn uids(&self) -> std::sync::MutexGuard<'_, uids::UidAllocator> {
        self.uids.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The host uid of a seat, if it holds one.
    pub fn seat_uid(&self, key: &SeatKey) -> Option<u32> {
        self.uids().get(key)
    }
}

/// The launch namespace of this backend's seats: the host paths a seat's command line names
/// made visible (see `launchns`). None, with a warning, where the host cannot make one: bwrap
/// then starts from the agent's own namespace and pays for every host mount.
fn launch_ns_for(
    cfg: &SandboxConfig,
    root: &[RootEntry],
    etc_dir: &std::path::Path,
    etc_binds: &[PathBuf],
) -> Option<launchns::LaunchNs> {
    use launchns::Need;
    if !cfg.launch_ns {
        tracing::info!("seat launch namespace off: seats start from the agent's");
        return None;
    }
    let mut needs: Vec<(PathBuf, Need)> = root
        .iter()
        .filter_map(|e| match e {
            RootEntry::Dir { source, .. } => Some((source.clone(), Need::Tree)),
            RootEntry::Symlink { .. } | RootEntry::EmptyDir { .. } => None,
        })
        .collect();
    needs.extend(etc_binds.iter().map(|p| (p.clone(), Need::Tree)));
    needs.extend([
        (etc_dir.to_path_buf(), Need::Tree),
        (cfg.daemon_binary.clone(), Need::Tree),
        (cfg.bwrap.clone(), Need::Point),
        (cfg.images_dir.clone(), Need::Tree),
        (cfg.data_dir.clone(), Need::Point),
    ]);
    if let Some(rootfs) = &cfg.rootfs {
        needs.push((rootfs.clone(), Need::Tree));
    }
    let stage = cfg.data_dir.join(".launch-root");
    let made = paths::private_dir(&stage).and_then(|()| {
        launchns::LaunchNs::build(&stage, &needs, &cfg.data_dir.join(store::SEATS_DIR))
    });
    match made {
        Ok(ns) => {
            tracing::debug!(mounts = ns.mounts(), "seat launch namespace ready");
            Some(ns)
        }
        Err(e) => {
            tracing::warn!(error = %e, "no seat launch namespace: seats start from the agent's (slower with many mounts)");
            None
        }
    }
}

/// Which uid each seat holds, from the disk: the uid in its state record, else the owner of its
/// volume. A volume without a record still holds its uid (destroyed without deleting the volume).
fn uids_on_disk(cfg: &SandboxConfig) -> uids::UidAllocator {
    let mut alloc = uids::UidAllocator::new(cfg.uid_range);
    for ws in adopt::subdirs(&cfg.data_dir.join("sandboxes")) {
        for file in adopt::subdirs(&ws) {
            if file.extension().is_some_and(|e| e == "json") {
                if let Ok(rec) = record::SandboxRecord::load(&file) {
                    if let Some(uid) = rec.host_uid {
                        alloc.note(&rec.key, uid);
                    }
                }
            }
        }
    }
    for (key, dir) in adopt::volumes(&cfg.data_dir) {
        if let Some(uid) = uids::owner(&dir) {
            alloc.note(&key, uid);
        }
    }
    alloc
}
