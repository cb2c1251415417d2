//! The sandbox operations: create, start, stop, clean, list, status, run. Each state change
//! holds the state lock from before the backend is built until the store records the outcome,
//! so concurrent CLIs take turns (see `lock`); a run only reads the store and talks to the
//! sandbox's daemon.
//!
//! A sandbox is one seat (`SeatKey { workshop_id: <id>, seat: 1 }`) of a backend whose data dir
//! is the state dir's `sandbox-backend/`, with uids, cgroups and nft names of its own so it never
//! meets an agent's seats on the same host. The sandbox outlives the CLI process that started it
//! (the backend spawns it in its own session); the next CLI finds it through the store.
//! `stop` keeps `/workspace` only for `--persist` sandboxes: the others are destroyed with
//! their volume and made afresh by `start`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use clarateach_core::agent_proto::SeatKey;
use clarateach_core::{NetworkPolicy, RunRequest};
use clarateach_isolation::factory::{self, BackendConfig};
use clarateach_isolation::sandbox::{SandboxConfig, StoreSize, UidRange};
use clarateach_isolation::{Backend, WorkspaceSpec};
use rand::RngCore;
use serde::Serialize;

use crate::daemon::Daemon;
use crate::db::Db;
use crate::lock::StateLock;
use crate::record::{BackendChoice, SandboxInfo, SandboxRecord, SandboxState, StoredAddr};
use crate::spec::{self, LimitArgs};
use crate::{SandboxError, StateDir};

/// Host uids of standalone sandboxes start here, apart from the agent's default range
/// (200000-265535); each state dir takes one of [`UID_SLICES`] slices of [`UID_SLICE`] uids.
pub const UID_BASE: u32 = 300_000;
pub const UID_SLICE: u32 = 1024;
pub const UID_SLICES: u64 = 64;
/// Cgroup parent of standalone sandboxes; each state dir has its own group below it.
pub const CGROUP_PARENT: &str = "clarateach-sandbox";

/// FNV-1a: a hash that stays the same across builds (the std hasher does not promise that).
fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The names a state dir's sandboxes use on the host that other state dirs' sandboxes must not
/// share: the cgroup group (a create empties its seat's group first, so a shared name would kill
/// another state dir's sandbox of the same id) and the uid slice.
pub fn host_names(dir: &StateDir) -> (String, UidRange) {
    let h = stable_hash(dir.root().as_os_str().as_encoded_bytes());
    let start = UID_BASE + (h % UID_SLICES) as u32 * UID_SLICE;
    (
        format!("{CGROUP_PARENT}/{:08x}", h as u32),
        UidRange {
            start,
            end: start + UID_SLICE - 1,
        },
    )
}

/// What `create` asks for.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub name: Option<String>,
    pub language: String,
    pub limits: LimitArgs,
    pub persist: bool,
    pub backend: BackendChoice,
    /// Instructor id for sandboxes made through the HTTP API.
    pub owner: Option<String>,
    /// At most this many sandboxes of `owner` (checked under the lock, so concurrent creates
    /// cannot both take the last one).
    pub quota: Option<usize>,
}

/// What `run` asks for.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub command: String,
    /// Staged into the run directory: name -> content.
    pub files: BTreeMap<String, Vec<u8>>,
    pub env: BTreeMap<String, String>,
    pub timeout_s: Option<u64>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub id: String,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    pub truncated: bool,
    pub stdout: String,
    pub stderr: String,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

/// The sandboxes of one state dir.
pub struct Sandboxes {
    dir: StateDir,
    db: Db,
    /// Built backends by kind (and image dir for microVMs).
    backends: Mutex<BTreeMap<String, Arc<dyn Backend>>>,
}

fn key(id: &str) -> SeatKey {
    SeatKey {
        workshop_id: id.to_string(),
        seat: 1,
    }
}

impl Sandboxes {
    /// Opens the state dir (made if missing) and its store.
    pub async fn open(dir: StateDir) -> Result<Self, SandboxError> {
        dir.prepare().map_err(|source| SandboxError::StateDir {
            path: dir.root().display().to_string(),
            source,
        })?;
        let db = Db::open(&dir.db()).await?;
        Ok(Self {
            dir,
            db,
            backends: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn state_dir(&self) -> &StateDir {
        &self.dir
    }

    async fn lock(&self) -> Result<StateLock, SandboxError> {
        let path = self.dir.lock();
        let state_err = |source| SandboxError::StateDir {
            path: path.display().to_string(),
            source,
        };
        let p = path.clone();
        tokio::task::spawn_blocking(move || StateLock::acquire(&p))
            .await
            .map_err(|e| state_err(std::io::Error::other(e)))?
            .map_err(state_err)
    }

    /// The backend for `choice`, built on first use (building probes the host and reads the
    /// uids on disk, so only under the lock).
    async fn backend(&self, rec: &SandboxRecord) -> Result<Arc<dyn Backend>, SandboxError> {
        let choice = rec.info.backend;
        let name = match &rec.image_dir {
            Some(dir) if choice == BackendChoice::Microvm => {
                format!("microvm:{}", dir.display())
            }
            _ => choice.kind().as_str().to_string(),
        };
        if let Some(b) = self.cached_backend(&name) {
            return Ok(b);
        }
        let data = self.dir.backend();
        let exe = std::env::current_exe().map_err(|source| SandboxError::StateDir {
            path: "the clarateach binary".into(),
            source,
        })?;
        let mut sandbox = SandboxConfig::new(&data, &exe);
        let (cgroup, uids) = host_names(&self.dir);
        sandbox.uid_range = uids;
        sandbox.cgroup_parent = cgroup;
        sandbox.net.nft_table = "clarateach_sandbox".into();
        if let Some(size) = std::env::var("CLARATEACH_SEAT_STORE_SIZE")
            .ok()
            .and_then(|s| s.parse::<StoreSize>().ok())
        {
            sandbox.seat_store = size;
        }
        let mut cfg = BackendConfig::new(&data, &exe);
        cfg.sandbox = Some(sandbox);
        if let Some(dir) = &rec.image_dir {
            cfg.microvm = Some(clarateach_isolation::microvm::MicrovmConfig::new(
                &data, dir,
            ));
        }
        let backend = factory::build(choice.kind(), &cfg)?;
        if choice == BackendChoice::Microvm {
            // A microVM backend knows its running guests (QEMU pids, forwarded ports) only
            // after adopting them; the sandbox backend reads each seat's record on demand.
            backend.adopt().await?;
        }
        self.backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, backend.clone());
        Ok(backend)
    }

    fn cached_backend(&self, name: &str) -> Option<Arc<dyn Backend>> {
        self.backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Creates and starts a sandbox.
    pub async fn create(&self, req: CreateRequest) -> Result<SandboxInfo, SandboxError> {
        if let Some(name) = &req.name {
            if !spec::valid_name(name) {
                return Err(SandboxError::BadName(name.clone()));
            }
        }
        if req.limits.network != NetworkPolicy::None {
            return Err(SandboxError::NetworkNeedsServer);
        }
        let limits = spec::limits(&req.limits)?;
        let runtime = spec::runtime_for(&req.language, &self.dir.backend())?;
        let _lock = self.lock().await?;
        if let Some(quota) = req.quota {
            let owned = self
                .db
                .list()
                .await?
                .iter()
                .filter(|r| r.info.owner == req.owner)
                .count();
            if owned >= quota {
                return Err(SandboxError::QuotaExceeded(quota));
            }
        }
        let id = req
            .name
            .clone()
            .unwrap_or_else(|| spec::new_id(&runtime.language));
        let mut token = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut token);
        let mut rec = SandboxRecord {
            info: SandboxInfo {
                id: id.clone(),
                language: runtime.language,
                image: runtime.image,
                backend: req.backend,
                status: SandboxState::Stopped,
                persist: req.persist,
                limits,
                created_at: Utc::now(),
                last_run_at: None,
                owner: req.owner,
            },
            daemon_token: token.iter().map(|b| format!("{b:02x}")).collect(),
            daemon: None,
            image_dir: (req.backend == BackendChoice::Microvm).then(|| {
                std::env::var_os("CLARATEACH_IMAGE_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| self.dir.backend().join("images/default"))
            }),
        };
        if !self.db.insert(&rec).await? {
            return Err(SandboxError::NameTaken(id));
        }
        if let Err(e) = self.launch(&mut rec).await {
            // Nothing of a failed create stays behind.
            if let Ok(b) = self.backend(&rec).await {
                let _ = b.destroy(&key(&id), true).await;
            }
            self.db.delete(&id).await?;
            return Err(e);
        }
        self.db.update(&rec).await?;
        Ok(rec.info)
    }

    /// Creates (idempotent) and starts the seat of `rec`, recording where its daemon listens.
    async fn launch(&self, rec: &mut SandboxRecord) -> Result<(), SandboxError> {
        let backend = self.backend(rec).await?;
        let spec = WorkspaceSpec {
            key: key(&rec.info.id),
            limits: rec.info.limits.clone(),
            image: rec.info.image.clone(),
            env: BTreeMap::new(),
            daemon_token: rec.daemon_token.clone(),
        };
        backend.create(&spec).await?;
        let ep = backend.start(&spec.key).await?;
        rec.daemon = Some(StoredAddr::from(&ep.addr));
        rec.info.status = SandboxState::Running;
        Ok(())
    }

    async fn record(&self, id: &str) -> Result<SandboxRecord, SandboxError> {
        self.db
            .get(id)
            .await?
            .ok_or_else(|| SandboxError::Unknown(id.to_string()))
    }

    /// Whether the daemon of a record that says running answers.
    async fn alive(rec: &SandboxRecord) -> bool {
        match rec.endpoint() {
            Some(ep) if rec.info.status == SandboxState::Running => Daemon::new(ep).healthy().await,
            _ => false,
        }
    }

    /// Starts a stopped sandbox (a running one is left alone).
    pub async fn start(&self, id: &str) -> Result<SandboxInfo, SandboxError> {
        let _lock = self.lock().await?;
        let mut rec = self.record(id).await?;
        if Self::alive(&rec).await {
            return Ok(rec.info);
        }
        self.launch(&mut rec).await?;
        self.db.update(&rec).await?;
        Ok(rec.info)
    }

    /// Stops a sandbox: every process ends; `/workspace` stays only when it persists.
    pub async fn stop(&self, id: &str) -> Result<SandboxInfo, SandboxError> {
        let _lock = self.lock().await?;
        let mut rec = self.record(id).await?;
        let backend = self.backend(&rec).await?;
        if rec.info.persist {
            backend.stop(&key(id)).await?;
        } else {
            backend.destroy(&key(id), true).await?;
        }
        rec.info.status = SandboxState::Stopped;
        rec.daemon = None;
        self.db.update(&rec).await?;
        Ok(rec.info)
    }

    /// Removes a sandbox and everything of it: processes, mounts, cgroup, volume, output, record.
    pub async fn clean(&self, id: &str) -> Result<(), SandboxError> {
        let _lock = self.lock().await?;
        let rec = self.record(id).await?;
        self.clean_locked(&rec).await
    }

    /// Removes every sandbox, then what the backend shares between them (mounts, spare file
    /// systems, the parent cgroup): the state dir keeps only the store and the lock. Returns
    /// the ids removed.
    pub async fn clean_all(&self) -> Result<Vec<String>, SandboxError> {
        let _lock = self.lock().await?;
        let mut done = Vec::new();
        for rec in self.db.list().await? {
            self.clean_locked(&rec).await?;
            done.push(rec.info.id);
        }
        // The backends go first: nothing of this process may hold the mounts below.
        self.backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let dir = self.dir.backend();
        let (cgroup, _) = host_names(&self.dir);
        tokio::task::spawn_blocking(move || crate::teardown::shared_parts(&dir, &cgroup))
            .await
            .map_err(|e| SandboxError::StateDir {
                path: self.dir.backend().display().to_string(),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| SandboxError::StateDir {
                path: self.dir.backend().display().to_string(),
                source,
            })?;
        Ok(done)
    }

    async fn clean_locked(&self, rec: &SandboxRecord) -> Result<(), SandboxError> {
        let id = &rec.info.id;
        self.backend(rec).await?.destroy(&key(id), true).await?;
        let dir = self.dir.sandbox(id);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(SandboxError::Output {
                    path: dir.display().to_string(),
                    source: e,
                })
            }
            _ => {}
        }
        self.db.delete(id).await?;
        Ok(())
    }

    /// Every sandbox, with `status` as its daemon answers now.
    pub async fn list(&self) -> Result<Vec<SandboxInfo>, SandboxError> {
        let mut out = Vec::new();
        for rec in self.db.list().await? {
            out.push(Self::live_info(rec).await);
        }
        Ok(out)
    }

    /// One sandbox, with `status` as its daemon answers now.
    pub async fn status(&self, id: &str) -> Result<SandboxInfo, SandboxError> {
        Ok(Self::live_info(self.record(id).await?).await)
    }

    async fn live_info(rec: SandboxRecord) -> SandboxInfo {
        let alive = Self::alive(&rec).await;
        let mut info = rec.info;
        if !alive {
            info.status = SandboxState::Stopped;
        }
        info
    }

    /// The daemon of a running sandbox (for runs, files and terminals).
    pub async fn daemon(&self, id: &str) -> Result<Daemon, SandboxError> {
        let rec = self.record(id).await?;
        match (rec.info.status, rec.endpoint()) {
            (SandboxState::Running, Some(ep)) => Ok(Daemon::new(ep)),
            _ => Err(SandboxError::NotRunning(id.to_string())),
        }
    }

    /// Runs a command in a fresh directory of the sandbox with the files staged there, keeps
    /// its output in the sandbox's `out/`.
    pub async fn run(&self, id: &str, opts: RunOptions) -> Result<RunOutcome, SandboxError> {
        let daemon = self.daemon(id).await?;
        let mut files = BTreeMap::new();
        for (name, data) in opts.files {
            let text =
                String::from_utf8(data).map_err(|_| SandboxError::FileNotText(name.clone()))?;
            files.insert(name, text);
        }
        let req = RunRequest {
            command: opts.command,
            files,
            env: opts.env,
            timeout_s: opts.timeout_s,
        };
        let resp = daemon
            .run(&req)
            .await
            .map_err(|e| SandboxError::from_daemon(id, e))?;
        let out = self.dir.out(id);
        let (stdout_path, stderr_path) = (out.join("stdout.log"), out.join("stderr.log"));
        let write = |path: &PathBuf, data: &str| {
            std::fs::create_dir_all(&out)
                .and_then(|()| std::fs::write(path, data))
                .map_err(|source| SandboxError::Output {
                    path: path.display().to_string(),
                    source,
                })
        };
        write(&stdout_path, &resp.stdout)?;
        write(&stderr_path, &resp.stderr)?;
        self.db.touch_run(id, Utc::now()).await?;
        Ok(RunOutcome {
            id: id.to_string(),
            exit_code: resp.exit_code,
            timed_out: resp.timed_out,
            duration_ms: resp.duration_ms,
            truncated: resp.truncated,
            stdout: resp.stdout,
            stderr: resp.stderr,
            stdout_path,
            stderr_path,
        })
    }

    /// Closes the store.
    pub async fn close(&self) {
        self.db.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_dir_gets_its_own_cgroup_and_a_uid_slice_apart_from_the_agents() {
        let (cg_a, uids_a) = host_names(&StateDir::at("/var/lib/clarateach"));
        let (cg_b, _) = host_names(&StateDir::at("/tmp/other"));
        assert_ne!(cg_a, cg_b);
        assert!(cg_a.starts_with("clarateach-sandbox/"));
        // Stable across runs and builds: a later CLI finds the same names.
        assert_eq!(host_names(&StateDir::at("/var/lib/clarateach")).0, cg_a);
        assert!(uids_a.start >= UID_BASE && uids_a.end < UID_BASE + UID_SLICE * 64);
        assert!(uids_a.start > UidRange::DEFAULT.end);
        assert_eq!(uids_a.end - uids_a.start + 1, UID_SLICE);
    }
}
