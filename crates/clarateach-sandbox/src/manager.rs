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
//! their volume and made afresh by `start`. `clean` of a `--persist` sandbox keeps its file
//! system too (unmounted, in the state dir's `persist/`) for `create --persist --name ID`, until
//! `clean --purge`.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use clarateach_core::agent_proto::SeatKey;
use clarateach_core::{NetworkPolicy, RunEvent, RunRequest};
use clarateach_isolation::factory::{self, BackendConfig};
use clarateach_isolation::sandbox::store::SeatDirs;
use clarateach_isolation::sandbox::{seatfs, SandboxConfig, StoreSize, UidRange};
use clarateach_isolation::{Backend, WorkspaceSpec};
use rand::RngCore;
use serde::Serialize;

use crate::daemon::{Daemon, DaemonError};
use crate::db::Db;
use crate::lock::StateLock;
use crate::net::{self, NetRecord};
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

/// The names a state dir's sandboxes use on the host that other state dirs' sandboxes must not
/// share: the cgroup group (a create empties its seat's group first, so a shared name would kill
/// another state dir's sandbox of the same id) and the uid slice.
pub fn host_names(dir: &StateDir) -> (String, UidRange) {
    let h = clarateach_isolation::sandbox::dir_hash(dir.root());
    let start = UID_BASE + (h % UID_SLICES) as u32 * UID_SLICE;
    (
        format!("{CGROUP_PARENT}/{:08x}", h as u32),
        UidRange {
            start,
            end: start + UID_SLICE - 1,
        },
    )
}

/// `--network` as the user wrote it.
fn network_text(p: &NetworkPolicy) -> String {
    match p {
        NetworkPolicy::None => "none".into(),
        NetworkPolicy::Open => "open".into(),
        NetworkPolicy::Allow { allow } => format!("allow:{}", allow.join(",")),
    }
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
    /// Seat image store of new sandboxes: `$CLARATEACH_IMAGES_DIR`, else `STATE_DIR/images`.
    images: PathBuf,
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
        let images = std::env::var_os("CLARATEACH_IMAGES_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.root().join("images"));
        Ok(Self {
            dir,
            db,
            backends: Mutex::new(BTreeMap::new()),
            images,
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
        let name = match (&rec.image_dir, &rec.net) {
            (Some(dir), _) if choice == BackendChoice::Microvm => {
                format!("microvm:{}", dir.display())
            }
            // A networked sandbox has a backend of its own: its own nft table (see `net`).
            (_, Some(net)) => format!("sandbox-net:{}", net.nft_table),
            _ => match &rec.images_dir {
                Some(images) => format!("{}:{}", choice.kind().as_str(), images.display()),
                None => choice.kind().as_str().to_string(),
            },
        };
        if let Some(b) = self.cached_backend(&name) {
            return Ok(b);
        }
        let data = self.dir.backend();
        let exe = std::env::current_exe().map_err(|source| SandboxError::StateDir {
            path: "the clarateach binary".into(),
            source,
        })?;
        let daemon = clarateach_isolation::factory::seat_daemon_binary(&exe);
        let mut sandbox = SandboxConfig::new(&data, daemon);
        let (cgroup, uids) = host_names(&self.dir);
        sandbox.uid_range = uids;
        sandbox.cgroup_parent = cgroup;
        sandbox.net.nft_table = "clarateach_sandbox".into();
        // No spare namespaces: a networked sandbox is the only seat of its backend (`net`). No
        // spare seat file systems either: a CLI process ends right after its command (before a
        // spare is ready), and every backend built on this state dir (each CLI call, the
        // control plane's) drops the spares it finds, so they would only be made to be dropped.
        sandbox.net.spare_namespaces = 0;
        if let Some(net) = &rec.net {
            sandbox.net = net.config()?;
        }
        if let Some(images) = &rec.images_dir {
            sandbox.images_dir = images.clone();
        }
        sandbox.spare_seat_fs = false;
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
        let began = std::time::Instant::now();
        let backend = factory::build(choice.kind(), &cfg)?;
        tracing::debug!(
            backend = %name,
            build_ms = began.elapsed().as_secs_f64() * 1e3,
            "sandbox backend built"
        );
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
        if req.limits.network != NetworkPolicy::None && req.backend == BackendChoice::Microvm {
            return Err(SandboxError::NetworkNeedsServer(network_text(
                &req.limits.network,
            )));
        }
        let limits = spec::limits(&req.limits)?;
        let runtime = spec::runtime_for(&req.language, &self.dir.backend(), &self.images)?;
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
        let net = match &limits.network {
            NetworkPolicy::None => None,
            _ => Some(NetRecord::for_sandbox(&self.dir, &id)?),
        };
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
                note: runtime.note,
                owner: req.owner,
            },
            daemon_token: token.iter().map(|b| format!("{b:02x}")).collect(),
            daemon: None,
            image_dir: (req.backend == BackendChoice::Microvm).then(|| {
                std::env::var_os("CLARATEACH_IMAGE_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| self.dir.backend().join("images/default"))
            }),
            images_dir: (req.backend == BackendChoice::Sandbox).then(|| self.images.clone()),
            net,
            keeper: None,
        };
        // A cleaned `--persist` sandbox of this name left its file system: only its owner gets
        // it back, and only by asking for a persistent sandbox again.
        let kept = self.kept_owner(&id)?;
        if let Some(owner) = &kept {
            if *owner != rec.info.owner {
                return Err(SandboxError::NameTaken(id));
            }
        }
        if !self.db.insert(&rec).await? {
            return Err(SandboxError::NameTaken(id));
        }
        let restored = kept.is_some() && req.persist && req.backend == BackendChoice::Sandbox;
        if restored {
            if let Err(e) = self.restore_fs(&id) {
                self.db.delete(&id).await?;
                return Err(e);
            }
        }
        if let Err(e) = self.launch(&mut rec).await {
            // Nothing of a failed create stays behind, except a file system it took back.
            if let Ok(b) = self.backend(&rec).await {
                let _ = b.destroy(&key(&id), !restored).await;
                let _ = self.drop_network(&mut rec).await;
                if restored {
                    let _ = self.keep_fs(&rec);
                }
            }
            self.db.delete(&id).await?;
            return Err(e);
        }
        self.db.update(&rec).await?;
        Ok(rec.info)
    }

    /// Creates (idempotent) and starts the seat of `rec`, recording where its daemon listens. A
    /// networked sandbox is started by its keeper process, which stays to serve its proxy or
    /// DNS forwarder (`net`).
    async fn launch(&self, rec: &mut SandboxRecord) -> Result<(), SandboxError> {
        if rec.net.is_none() {
            return self.launch_here(rec).await;
        }
        let (keeper, daemon) = net::spawn_keeper(&self.dir, &rec.info.id).await?;
        rec.keeper = Some(keeper);
        rec.daemon = Some(daemon);
        rec.info.status = SandboxState::Running;
        Ok(())
    }

    /// The keeper's part (`clarateach sandbox keep ID`): starts the networked sandbox `id` in
    /// this process, whose runtime then holds its proxy or DNS forwarder. Takes no lock: the
    /// `create` or `start` that spawned it holds the lock until this reports.
    pub async fn keep(&self, id: &str) -> Result<StoredAddr, SandboxError> {
        let mut rec = self.record(id).await?;
        if rec.net.is_none() {
            return Err(SandboxError::Keeper(format!("{id} has no network to keep")));
        }
        self.launch_here(&mut rec).await?;
        rec.daemon
            .ok_or_else(|| SandboxError::Keeper("the started sandbox has no address".into()))
    }

    /// Ends the keeper of a networked sandbox and drops its nft table: called after the
    /// backend stopped or removed its seat, so no seat process outlives its rules.
    async fn drop_network(&self, rec: &mut SandboxRecord) -> Result<(), SandboxError> {
        if let Some(k) = rec.keeper.take() {
            net::stop_keeper(&k).await;
        }
        if let Some(n) = &rec.net {
            net::delete_table(&n.nft_table).await?;
        }
        Ok(())
    }

    async fn launch_here(&self, rec: &mut SandboxRecord) -> Result<(), SandboxError> {
        let backend = self.backend(rec).await?;
        let spec = WorkspaceSpec {
            key: key(&rec.info.id),
            limits: rec.info.limits.clone(),
            image: rec.info.image.clone(),
            env: BTreeMap::new(),
            daemon_token: rec.daemon_token.clone(),
        };
        let began = std::time::Instant::now();
        backend.create(&spec).await?;
        let created = began.elapsed();
        let ep = backend.start(&spec.key).await?;
        tracing::debug!(
            sandbox.id = %rec.info.id,
            create_ms = created.as_secs_f64() * 1e3,
            start_ms = (began.elapsed() - created).as_secs_f64() * 1e3,
            "sandbox launched"
        );
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

    /// Whether the daemon of a record that says running answers (and a networked sandbox's
    /// keeper runs: without it, it has lost its proxy or DNS forwarder).
    async fn alive(rec: &SandboxRecord) -> bool {
        if rec.net.is_some() && !rec.keeper.is_some_and(|k| k.alive()) {
            return false;
        }
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
        if rec.net.is_some() && rec.info.status == SandboxState::Running {
            // Its keeper died (the proxy with it): what is left stops before a fresh start.
            let backend = self.backend(&rec).await?;
            net::stop_keeper_of(&rec).await;
            backend.stop(&key(id)).await?;
            self.drop_network(&mut rec).await?;
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
        // The keeper first: its proxy goes before the seat, the seat before its rules.
        net::stop_keeper_of(&rec).await;
        if rec.info.persist {
            backend.stop(&key(id)).await?;
        } else {
            backend.destroy(&key(id), true).await?;
        }
        self.drop_network(&mut rec).await?;
        rec.info.status = SandboxState::Stopped;
        rec.daemon = None;
        self.db.update(&rec).await?;
        Ok(rec.info)
    }

    /// Removes a sandbox and everything of it: processes, mounts, cgroup, output, record, and
    /// its file system, except that of a `--persist` sandbox (sandbox backend), which is
    /// unmounted and kept in the state dir for a later `create --persist --name ID` unless
    /// `purge`. Returns where it was kept. `purge` of an id with no sandbox but a kept file
    /// system drops that.
    pub async fn clean(&self, id: &str, purge: bool) -> Result<Option<PathBuf>, SandboxError> {
        let _lock = self.lock().await?;
        match self.db.get(id).await? {
            Some(rec) => self.clean_locked(&rec, purge).await,
            None if purge && self.kept_owner(id)?.is_some() => {
                self.drop_kept(id)?;
                Ok(None)
            }
            None => Err(SandboxError::Unknown(id.to_string())),
        }
    }

    /// Removes every sandbox, then what the backend shares between them (mounts, spare file
    /// systems, the parent cgroup): the state dir keeps only the store, the lock and (unless
    /// `purge`) the kept file systems of `--persist` sandboxes. Returns the ids removed.
    pub async fn clean_all(&self, purge: bool) -> Result<Vec<String>, SandboxError> {
        let _lock = self.lock().await?;
        let mut done = Vec::new();
        for rec in self.db.list().await? {
            self.clean_locked(&rec, purge).await?;
            done.push(rec.info.id);
        }
        if purge {
            let dir = self.dir.persist_dir();
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(SandboxError::Output {
                        path: dir.display().to_string(),
                        source: e,
                    })
                }
                _ => {}
            }
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

    async fn clean_locked(
        &self,
        rec: &SandboxRecord,
        purge: bool,
    ) -> Result<Option<PathBuf>, SandboxError> {
        let id = &rec.info.id;
        let backend = self.backend(rec).await?;
        let image = self.seat_dirs(id).image;
        let keep = rec.info.persist
            && !purge
            && rec.info.backend == BackendChoice::Sandbox
            && image.exists();
        net::stop_keeper_of(rec).await;
        backend.destroy(&key(id), !keep).await?;
        self.drop_network(&mut rec.clone()).await?;
        let kept = if keep { Some(self.keep_fs(rec)?) } else { None };
        if purge {
            self.drop_kept(id)?;
        }
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
        Ok(kept)
    }

    fn seat_dirs(&self, id: &str) -> SeatDirs {
        SeatDirs::new(&self.dir.backend(), &key(id))
    }

    /// Unmounts the file system of a destroyed (volume kept) sandbox and moves its image to
    /// `persist/`, with the owner beside it.
    fn keep_fs(&self, rec: &SandboxRecord) -> Result<PathBuf, SandboxError> {
        let id = &rec.info.id;
        let dirs = self.seat_dirs(id);
        let out_err = |path: &std::path::Path| {
            let path = path.display().to_string();
            move |source| SandboxError::Output { path, source }
        };
        seatfs::unmount(&dirs.root).map_err(out_err(&dirs.root))?;
        match std::fs::remove_dir(&dirs.root) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(out_err(&dirs.root)(e))
            }
            _ => {}
        }
        let dir = self.dir.persist_dir();
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(out_err(&dir))?;
        let kept = self.dir.persisted(id);
        let owner = kept.with_extension("json");
        let meta = serde_json::json!({ "owner": rec.info.owner }).to_string();
        std::fs::write(&owner, meta).map_err(out_err(&owner))?;
        std::fs::rename(&dirs.image, &kept).map_err(out_err(&kept))?;
        for parent in [dirs.root.parent(), dirs.image.parent()]
            .into_iter()
            .flatten()
        {
            let _ = std::fs::remove_dir(parent);
        }
        Ok(kept)
    }

    /// The owner of a kept file system of `id` (`Some(None)`: kept by the CLI), if one is kept.
    fn kept_owner(&self, id: &str) -> Result<Option<Option<String>>, SandboxError> {
        let kept = self.dir.persisted(id);
        if !kept.exists() {
            return Ok(None);
        }
        let meta = kept.with_extension("json");
        let owner = std::fs::read(&meta)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("owner").and_then(|o| o.as_str()).map(str::to_string));
        Ok(Some(owner))
    }

    /// Moves the kept file system of `id` back where the backend mounts it. The backends are
    /// built again: a fresh build mounts it and gives the sandbox the uid owning its files.
    fn restore_fs(&self, id: &str) -> Result<(), SandboxError> {
        let kept = self.dir.persisted(id);
        let dirs = self.seat_dirs(id);
        let out_err = |path: &std::path::Path| {
            let path = path.display().to_string();
            move |source| SandboxError::Output { path, source }
        };
        if let Some(parent) = dirs.image.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(out_err(parent))?;
        }
        std::fs::rename(&kept, &dirs.image).map_err(out_err(&dirs.image))?;
        let _ = std::fs::remove_file(kept.with_extension("json"));
        self.backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
    }

    /// Deletes the kept file system of `id`, if any.
    fn drop_kept(&self, id: &str) -> Result<(), SandboxError> {
        let kept = self.dir.persisted(id);
        for f in [kept.with_extension("json"), kept] {
            match std::fs::remove_file(&f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(SandboxError::Output {
                        path: f.display().to_string(),
                        source: e,
                    })
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Every sandbox, with `status` as its daemon answers now.
    pub async fn list(&self) -> Result<Vec<SandboxInfo>, SandboxError> {
        let mut out = Vec::new();
        for rec in self.db.list().await? {
            out.push(self.live_info(rec).await);
        }
        Ok(out)
    }

    /// One sandbox, with `status` as its daemon answers now.
    pub async fn status(&self, id: &str) -> Result<SandboxInfo, SandboxError> {
        Ok(self.live_info(self.record(id).await?).await)
    }

    async fn live_info(&self, rec: SandboxRecord) -> SandboxInfo {
        let alive = Self::alive(&rec).await;
        let mut info = rec.info;
        if !alive {
            info.status = SandboxState::Stopped;
        }
        if let Ok(at) =
            std::fs::metadata(self.dir.out(&info.id).join("stdout.log")).and_then(|m| m.modified())
        {
            info.last_run_at = Some(at.into());
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
        self.run_live(id, opts, |_| {}).await
    }

    /// [`Sandboxes::run`], with each stdout and stderr chunk given to `live` as the command
    /// writes it (and written to `out/` as it comes, so a killed CLI leaves what was printed).
    pub async fn run_live(
        &self,
        id: &str,
        opts: RunOptions,
        mut live: impl FnMut(&RunEvent),
    ) -> Result<RunOutcome, SandboxError> {
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
        let out = self.dir.out(id);
        let (stdout_path, stderr_path) = (out.join("stdout.log"), out.join("stderr.log"));
        let output_err = |path: &PathBuf| {
            let path = path.display().to_string();
            move |source| SandboxError::Output { path, source }
        };
        std::fs::create_dir_all(&out).map_err(output_err(&out))?;
        let mut logs = [
            fresh_file(&stdout_path).map_err(output_err(&stdout_path))?,
            fresh_file(&stderr_path).map_err(output_err(&stderr_path))?,
        ];
        let (mut stdout, mut stderr) = (String::new(), String::new());
        let mut write_failed: Option<(usize, std::io::Error)> = None;
        let exit = daemon
            .run_stream(&req, |ev| {
                let (i, data, keep) = match ev {
                    RunEvent::Stdout { data } => (0, data, &mut stdout),
                    RunEvent::Stderr { data } => (1, data, &mut stderr),
                    RunEvent::Exit { .. } => return,
                };
                if write_failed.is_none() {
                    if let Err(e) = logs[i].write_all(data.as_bytes()) {
                        write_failed = Some((i, e));
                    }
                }
                keep.push_str(data);
                live(ev);
            })
            .await
            .map_err(|e| SandboxError::from_daemon(id, e))?;
        if let Some((i, source)) = write_failed {
            let path = if i == 0 { &stdout_path } else { &stderr_path };
            return Err(output_err(path)(source));
        }
        let RunEvent::Exit {
            exit_code,
            timed_out,
            duration_ms,
            truncated,
        } = exit
        else {
            return Err(SandboxError::Daemon(DaemonError::StreamEnded));
        };
        // The time of the last run is its output's mtime (`live_info`): a run writes nothing to
        // the store, so it needs no lock, no transaction and no checkpoint.
        Ok(RunOutcome {
            id: id.to_string(),
            exit_code,
            timed_out,
            duration_ms,
            truncated,
            stdout,
            stderr,
            stdout_path,
            stderr_path,
        })
    }

    /// Closes the store.
    pub async fn close(&self) {
        self.db.close().await;
    }
}

/// A new, empty file at `path` in place of the last run's. Not `File::create`: truncating a file
/// that holds data makes ext4 (`auto_da_alloc`) start its writeback at close, and that close
/// then waits for a journal commit now and then: 40-430 ms on 1-2.5% of runs that printed
/// something (BENCHMARKS, issue 14). Unlinking first replaces nothing, so nothing is forced.
fn fresh_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // A run beside this one on the same sandbox may have made it since: then it is truncated,
    // as before.
    std::fs::File::create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_output_file_is_a_new_empty_file_not_the_old_one_truncated() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stdout.log");
        std::fs::write(&path, "last run's output\n").expect("write");
        let old = std::fs::metadata(&path).expect("stat").ino();
        let kept_open = std::fs::File::open(&path).expect("open");
        let mut f = fresh_file(&path).expect("fresh");
        std::io::Write::write_all(&mut f, b"1\n").expect("write");
        let new = std::fs::metadata(&path).expect("stat");
        assert_ne!(new.ino(), old, "a new inode: nothing was truncated");
        assert_eq!(std::fs::read(&path).expect("read"), b"1\n");
        assert_eq!(
            kept_open.metadata().expect("stat").len(),
            18,
            "the old file is untouched"
        );
        fresh_file(&dir.path().join("absent.log")).expect("no file before is fine");
    }

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
