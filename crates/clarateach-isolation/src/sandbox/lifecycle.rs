//! The `Backend` implementation of the sandbox: create, start, stop, destroy, status and the
//! re-adoption of sandboxes that outlived an agent.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clarateach_core::agent_proto::SeatKey;

use super::paths::{self, SeatPaths};
use super::record::{self, SandboxRecord};
use super::spawn::{self, Launch, NotReady};
use super::{args, seat_name, SandboxBackend, Seat};
use crate::cgroups::{self, CgroupManager};
use crate::{
    Backend, BackendError, BackendKind, DaemonAddr, DaemonEndpoint, DiskUsage, WorkspaceSpec,
    WorkspaceStatus,
};

/// How long a stop may take to empty a seat's cgroup.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// The uid every seat shared before per-seat uids; records without `host_uid` ran as it.
pub(super) const LEGACY_UID: u32 = 61000;

fn io(action: &'static str) -> impl Fn(std::io::Error) -> BackendError {
    move |source| BackendError::Io { action, source }
}

impl SandboxBackend {
    fn record_of(&self, key: &SeatKey) -> Option<SandboxRecord> {
        if let Some(seat) = self.lock().get(key) {
            return Some(seat.record.clone());
        }
        SandboxRecord::load(&self.paths(key).state).ok()
    }

    /// The environment of the sandbox: sane defaults, the workshop's variables, the daemon token.
    fn sandbox_env(rec: &SandboxRecord) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = [
            ("HOME", "/home/learner"),
            ("USER", "learner"),
            ("LOGNAME", "learner"),
            ("SHELL", "/bin/bash"),
            (
                "PATH",
                "/home/learner/.local/bin:/home/learner/.npm-global/bin:\
                 /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
            ("TERM", "xterm-256color"),
            ("LANG", "C.UTF-8"),
            // `npm i -g` and `pip install --user` write into the home, the only writable place
            // besides /workspace (Debian's pip refuses --user without this; the system
            // site-packages are read-only anyway).
            ("NPM_CONFIG_PREFIX", "/home/learner/.npm-global"),
            ("PIP_BREAK_SYSTEM_PACKAGES", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.extend(rec.env.clone());
        env.insert("CLARATEACH_DAEMON_TOKEN".into(), rec.daemon_token.clone());
        env
    }

    /// Kills everything in the seat's cgroup and removes it; blocking, so run off the runtime.
    pub(super) async fn empty_cgroup(&self, name: String) -> Result<(), cgroups::CgroupError> {
        let cg: Arc<dyn CgroupManager> = self.cg.clone();
        tokio::task::spawn_blocking(move || {
            cgroups::kill_all(cg.as_ref(), &name, KILL_TIMEOUT)?;
            cg.remove(&name)
        })
        .await
        .unwrap_or_else(|e| {
            Err(cgroups::CgroupError::Remove(
                PathBuf::from(e.to_string()),
                std::io::Error::other("task"),
            ))
        })
    }

    /// Freezes or thaws the seat's group, off the runtime (v1 polls until the kernel says
    /// `FROZEN`). A seat that does not run is refused rather than silently "paused".
    pub(super) async fn freeze(&self, key: &SeatKey, frozen: bool) -> Result<(), BackendError> {
        if !matches!(self.status(key).await?, WorkspaceStatus::Running) {
            return Err(BackendError::Unknown(key.clone()));
        }
        let name = self
            .record_of(key)
            .map(|r| r.cgroup)
            .unwrap_or_else(|| self.cgroup_name(key));
        let cg: Arc<dyn CgroupManager> = self.cg.clone();
        let began = Instant::now();
        let done = tokio::task::spawn_blocking(move || cg.freeze(&name, frozen))
            .await
            .unwrap_or_else(|e| {
                Err(cgroups::CgroupError::Write(
                    PathBuf::from(e.to_string()),
                    std::io::Error::other("task"),
                ))
            })
            .map_err(|e| BackendError::Freeze(key.clone(), e))?;
        if !done {
            return Err(BackendError::Unsupported(
                key.clone(),
                "the host has no cgroup freezer",
            ));
        }
        tracing::info!(
            workshop.id = %key.workshop_id,
            seat = key.seat,
            frozen,
            us = began.elapsed().as_secs_f64() * 1e6,
            "seat freezer changed"
        );
        Ok(())
    }

    /// Makes (first time) and mounts the seat's file system and its volume and home, owned by
    /// `uid`, migrating old-style dirs when `migrate`; blocking (a mount, maybe a copy), so off
    /// the runtime.
    async fn prepare_store(
        &self,
        key: &SeatKey,
        disk_mb: u32,
        uid: u32,
        migrate: bool,
    ) -> Result<(), BackendError> {
        let store = self.store.clone();
        let dirs = store.dirs(key);
        tokio::task::spawn_blocking(move || store.prepare_seat(&dirs, disk_mb, uid, uid, migrate))
            .await
            .map_err(|e| BackendError::Io {
                action: "prepare the seat dirs",
                source: std::io::Error::other(e),
            })?
            .map_err(BackendError::SeatStore)
    }

    /// The root of a seat and whether it is an image's (which brings its own `/etc`). A seat
    /// whose spec names an image runs on that image's current digest (resolved now, so a later
    /// rebuild leaves this run's root alone) or does not start: never silently on the host's.
    fn root_entries_for(
        &self,
        rec: &SandboxRecord,
    ) -> Result<(Vec<args::RootEntry>, bool), BackendError> {
        let Some(name) = rec.image.as_deref() else {
            return Ok((self.root.clone(), self.cfg.rootfs.is_some()));
        };
        let store = clarateach_image::ImageStore::new(&self.cfg.images_dir);
        let dir = store
            .rootfs(name)
            .ok_or_else(|| BackendError::ImageMissing(rec.key.clone(), name.to_string()))?;
        let entries = args::root_entries(&dir).map_err(io("read the image root"))?;
        Ok((entries, true))
    }

    /// The uid `key` runs as from now on, its volume and home owned by it. A seat of the old
    /// shared-uid layout (or whose uid another seat holds) gets a fresh uid and its files are
    /// re-owned; `running` seats keep what they run as until their next create.
    /// The seat's host uid (the running one, else its own or a new one from the range), with
    /// its file system mounted and its volume and home owned by that uid. Files of an earlier
    /// owner (the old shared uid, or migrated old-layout dirs) move to the seat's uid.
    async fn seat_uid_for_create(
        &self,
        key: &SeatKey,
        p: &SeatPaths,
        disk_mb: u32,
        running_uid: Option<u32>,
    ) -> Result<u32, BackendError> {
        let uid = match running_uid {
            Some(uid) => uid,
            None => self
                .uids()
                .get_or_allocate(key)
                .map_err(|e| BackendError::Uid(key.clone(), e))?,
        };
        let seat = self.store.dirs(key);
        // Who owned the files before: an old-layout dir about to be migrated, else the volume.
        let before: Vec<(PathBuf, Option<u32>)> =
            [(&seat.old_volume, &p.volume), (&seat.old_home, &p.home)]
                .into_iter()
                .map(|(old, new)| {
                    (
                        new.clone(),
                        super::uids::owner(old).or_else(|| super::uids::owner(new)),
                    )
                })
                .collect();
        self.prepare_store(key, disk_mb, uid, running_uid.is_none())
            .await?;
        if running_uid.is_some() {
            return Ok(uid);
        }
        let vol_err = |e| BackendError::CreateVolume(key.clone(), e);
        for (dir, old) in before {
            match old {
                Some(old) if old != uid && old != 0 => {
                    let n = paths::chown_tree(&dir, old, uid).map_err(vol_err)?;
                    tracing::info!(workshop.id = %key.workshop_id, seat = key.seat, old, uid, files = n, dir = %dir.display(), "seat files moved to the seat's own uid");
                }
                _ => {}
            }
            paths::owned_dir(&dir, uid, uid).map_err(vol_err)?;
        }
        Ok(uid)
    }

    async fn launch(
        &self,
        rec: &mut SandboxRecord,
        p: &SeatPaths,
    ) -> Result<(spawn::SeatChild, tokio::task::JoinHandle<()>), BackendError> {
        let key = rec.key.clone();
        let cgroup_err = |e| BackendError::Cgroup(key.clone(), e);
        let (root, image) = self.root_entries_for(rec)?;
        // Leftovers of an earlier run would escape the new limits: clear them first. Meanwhile
        // the seat's network is made: a seat that reaches out gets its own namespace or does not
        // start, never the host's.
        let (cleared, net) = tokio::join!(
            self.empty_cgroup(rec.cgroup.clone()),
            self.net.setup(&key, &rec.limits.network)
        );
        cleared.map_err(|e| BackendError::EmptyCgroup(key.clone(), e))?;
        let net = net.map_err(|e| BackendError::Network(key.clone(), e))?;
        // The seat's file system, mounted again after a host reboot.
        let store_began = Instant::now();
        let uid = rec.host_uid.unwrap_or(LEGACY_UID);
        self.prepare_store(&key, rec.limits.disk_mb, uid, true)
            .await?;
        tracing::debug!(
            store_us = store_began.elapsed().as_secs_f64() * 1e6,
            "seat file system ready"
        );
        // The old layout's learner-writable socket dir; nothing runs in the seat now.
        paths::remove_tree(&p.run).map_err(io("remove the old run dir"))?;
        let listener = paths::bind_socket(&p.socket).map_err(io("bind the daemon socket"))?;
        rec.socket = p.socket.clone();
        let seccomp = self
            .seccomp
            .pipes()
            .map_err(|e| BackendError::Seccomp(key.clone(), e))?;
        self.cg
            .create(&rec.cgroup, &rec.limits)
            .map_err(cgroup_err)?;
        let hostname = seat_name(key.seat);
        let etc = if image {
            args::Etc::Image { dir: &self.etc_dir }
        } else {
            args::Etc::Generated {
                dir: &self.etc_dir,
                host_binds: &self.etc_binds,
            }
        };
        let (tmp_bytes, shm_bytes) = args::tmpfs_sizes(rec.limits.disk_mb);
        let input = args::ArgsInput {
            hostname: &hostname,
            root: &root,
            etc,
            resolv_conf: net.as_ref().map(|n| n.resolv_conf.as_path()),
            daemon_binary: &self.cfg.daemon_binary,
            volume: &p.volume,
            home: &p.home,
            tmp_bytes,
            shm_bytes,
            egress: net.is_some(),
            await_activation: rec.warm,
        };
        let uid = rec.host_uid.unwrap_or(LEGACY_UID);
        let (log, drain) = super::log::for_start(&p.log).map_err(io("open the seat log pipe"))?;
        let mut env = Self::sandbox_env(rec);
        if let Some(n) = &net {
            env.extend(n.env.clone());
        }
        let launch = Launch {
            bwrap: self.cfg.bwrap.clone(),
            args: args::build(&input),
            env,
            cgroup_procs: self.cg.procs_files(&rec.cgroup).map_err(cgroup_err)?,
            listener: listener.into(),
            seccomp,
            uid,
            gid: uid,
            log,
            netns: net.map(|n| n.netns),
            launch_ns: self.launch_ns.clone(),
            seat_tree: self.seat_tree(&key)?,
        };
        let spawn_began = Instant::now();
        // clone + exec of bwrap takes milliseconds of a loaded host (the child enters its
        // namespaces and cgroups before exec, and the parent waits for the exec): off the
        // runtime, or a class start stalls every other task of the agent (heartbeats included).
        let child = tokio::task::spawn_blocking(move || spawn::spawn(launch))
            .await
            .map_err(|e| BackendError::Task(key.clone(), e))?
            .map_err(|e| BackendError::Spawn(key.clone(), e))?;
        tracing::debug!(
            spawn_us = spawn_began.elapsed().as_secs_f64() * 1e6,
            "bwrap spawned"
        );
        rec.pid = child.id().map(|p| p as i32);
        rec.start_time = rec.pid.and_then(record::start_time);
        rec.save(&p.state).map_err(io("save the seat state"))?;
        Ok((child, drain))
    }

    /// The seat's file system cloned for its launch namespace; None without one, or when the
    /// seat has no file system of its own (disk limits off: plain dirs, visible there anyway).
    fn seat_tree(&self, key: &SeatKey) -> Result<Option<super::launchns::SeatTree>, BackendError> {
        if self.launch_ns.is_none() || !self.store.enforced() {
            return Ok(None);
        }
        let root = self.store.dirs(key).root;
        if !super::seatfs::is_mount_point(&root).map_err(io("stat the seat file system"))? {
            return Ok(None);
        }
        super::launchns::SeatTree::clone_of(&root)
            .map(Some)
            .map_err(io("clone the seat file system for its launch"))
    }

    /// The create's work: the seat's uid, file system and record (`ahead`: run ahead of its
    /// workshop's Start, `warm`).
    pub(super) async fn create_seat(
        &self,
        spec: &WorkspaceSpec,
        ahead: bool,
    ) -> Result<(), BackendError> {
        let key = &spec.key;
        paths::validate(key).map_err(io("validate the seat key"))?;
        let p = self.paths(key);
        if p.socket.as_os_str().len() >= 108 {
            return Err(BackendError::Unavailable(format!(
                "socket path too long: {}",
                p.socket.display()
            )));
        }
        let running_uid = {
            let seats = self.lock();
            seats
                .get(key)
                .filter(|s| s.running)
                .map(|s| s.record.host_uid.unwrap_or(LEGACY_UID))
        };
        let uid = self
            .seat_uid_for_create(key, &p, spec.limits.disk_mb, running_uid)
            .await?;
        if let Some(dir) = p.state.parent() {
            paths::private_dir(dir).map_err(io("create the state dir"))?;
        }
        let mut rec = SandboxRecord::from_spec(spec, p.socket.clone(), self.cgroup_name(key), uid);
        rec.warm = ahead;
        let mut seats = self.lock();
        let mut save = true;
        if let Some(seat) = seats.get_mut(key) {
            // A seat run ahead: its activation saves the record (one write per seat at Start).
            save = seat.warm.is_none();
            // Keep the running process (and its socket and uid); the new spec applies from the
            // next start.
            rec.pid = seat.record.pid;
            rec.start_time = seat.record.start_time;
            rec.warm = seat.record.warm;
            if seat.running {
                rec.socket = seat.record.socket.clone();
                rec.host_uid = seat.record.host_uid;
            }
            seat.record = rec.clone();
        } else {
            seats.insert(
                key.clone(),
                Seat {
                    record: rec.clone(),
                    child: None,
                    running: false,
                    warm: None,
                },
            );
        }
        drop(seats);
        if !save {
            return Ok(());
        }
        rec.save(&p.state).map_err(io("save the seat state"))
    }

    /// Launches the seat from its record and waits for its daemon.
    pub(super) async fn launch_and_wait(
        &self,
        key: &SeatKey,
    ) -> Result<DaemonEndpoint, BackendError> {
        let mut rec = self
            .record_of(key)
            .ok_or_else(|| BackendError::Unknown(key.clone()))?;
        let p = self.paths(key);
        let began = Instant::now();
        let (mut child, drain) = match self.launch(&mut rec, &p).await {
            Ok(launched) => launched,
            Err(e) => {
                let _ = self.net.teardown(key).await;
                return Err(e);
            }
        };
        if let Err(why) = spawn::wait_ready(
            &p.socket,
            &rec.daemon_token,
            &mut child,
            self.cfg.start_timeout,
        )
        .await
        {
            let _ = self.empty_cgroup(rec.cgroup.clone()).await;
            let _ = child.wait().await;
            // Every writer is gone: the drain ends once the log holds bwrap's last words.
            let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
            let _ = self.net.teardown(key).await;
            return Err(match why {
                NotReady::Timeout => BackendError::DaemonTimeout(key.clone()),
                NotReady::Exited(status) => BackendError::Exited {
                    key: key.clone(),
                    status,
                    log: Self::log_tail(&p),
                },
            });
        }
        tracing::info!(
            pid = rec.pid,
            ready_ms = began.elapsed().as_secs_f64() * 1e3,
            "seat ready"
        );
        let ep = Self::endpoint_of(&rec);
        let mut seats = self.lock();
        let warm = seats.get_mut(key).and_then(|s| s.warm.take());
        seats.insert(
            key.clone(),
            Seat {
                record: rec,
                child: Some(child),
                running: true,
                warm,
            },
        );
        Ok(ep)
    }

    fn log_tail(p: &SeatPaths) -> String {
        let text = std::fs::read_to_string(&p.log).unwrap_or_default();
        let start = text.len().saturating_sub(400);
        text.get(start..).unwrap_or("").trim().to_string()
    }

    /// Whether the seat image `image` names must be built from its recipe first.
    fn image_needs_build(&self, image: Option<&str>) -> bool {
        let store = clarateach_image::ImageStore::new(&self.cfg.images_dir);
        image.is_some_and(|name| clarateach_image::prepare::needs_build(&store, name))
    }

    pub(super) fn endpoint_of(rec: &SandboxRecord) -> DaemonEndpoint {
        DaemonEndpoint {
            addr: DaemonAddr::Unix(rec.socket.clone()),
            token: rec.daemon_token.clone(),
        }
    }
}

#[async_trait]
impl Backend for SandboxBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Sandbox
    }

    #[tracing::instrument(skip_all, fields(workshop.id = %spec.key.workshop_id, seat = spec.key.seat), err)]
    async fn create(&self, spec: &WorkspaceSpec) -> Result<(), BackendError> {
        let key = &spec.key;
        // Its workshop's spares made ahead are this class's to take now (`store::ahead`), and
        // a seat run ahead for this spec is this create's to start (`warm`).
        self.store.started_ahead(&key.workshop_id);
        // A run ahead of this workshop still going: it makes no more seats, and those it made
        // are claimed once the ones in flight are done.
        let _run = match self.stop_ahead_run(&key.workshop_id) {
            Some(run) => Some(run.read_owned().await),
            None => None,
        };
        self.claim_ahead(spec).await?;
        self.create_seat(spec, false).await
    }

    #[tracing::instrument(skip_all, fields(workshop.id = %key.workshop_id, seat = key.seat), err)]
    async fn start(&self, key: &SeatKey) -> Result<DaemonEndpoint, BackendError> {
        if let Some(startup_token) = self.startup_token(key) {
            match self.activate(key, &startup_token).await {
                Ok(ep) => return Ok(ep),
                Err(e) => {
                    tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, error = %clarateach_core::error::error_chain(&e), "the seat run ahead did not start: started the usual way");
                    self.stop(key).await?;
                }
            }
        }
        if let Some(ep) = self.endpoint(key) {
            if matches!(self.status(key).await?, WorkspaceStatus::Running) {
                return Ok(ep);
            }
        }
        self.launch_and_wait(key).await
    }
    #[tracing::instrument(skip_all, fields(workshop.id = %key.workshop_id, seat = key.seat), err)]
    async fn stop(&self, key: &SeatKey) -> Result<(), BackendError> {
        let (rec, child) = {
            let mut seats = self.lock();
            match seats.get_mut(key) {
                Some(seat) => {
                    seat.running = false;
                    seat.warm = None;
                    seat.record.warm = false;
                    (Some(seat.record.clone()), seat.child.take())
                }
                None => (SandboxRecord::load(&self.paths(key).state).ok(), None),
            }
        };
        let name = rec
            .as_ref()
            .map(|r| r.cgroup.clone())
            .unwrap_or_else(|| self.cgroup_name(key));
        self.empty_cgroup(name)
            .await
            .map_err(|e| BackendError::EmptyCgroup(key.clone(), e))?;
        if let Some(mut child) = child {
            // Reap bwrap; it is already dead, so this returns at once.
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
        self.net
            .teardown(key)
            .await
            .map_err(|e| BackendError::Network(key.clone(), e))?;
        let p = self.paths(key);
        let _ = std::fs::remove_file(&p.socket);
        if let Some(mut rec) = rec {
            if rec.socket != p.socket {
                // An old-layout seat: its socket sat in the learner's run dir.
                let _ = std::fs::remove_file(&rec.socket);
            }
            // Every copy of the environment (the API key) goes; the next create brings it.
            rec.env.clear();
            rec.pid = None;
            rec.start_time = None;
            if p.state.exists() {
                rec.save(&p.state).map_err(io("save the seat state"))?;
            }
            if let Some(seat) = self.lock().get_mut(key) {
                seat.record = rec;
            }
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(workshop.id = %key.workshop_id, seat = key.seat), err)]
    async fn destroy(&self, key: &SeatKey, delete_volume: bool) -> Result<(), BackendError> {
        paths::validate(key).map_err(io("validate the seat key"))?;
        self.stop(key).await?;
        self.net
            .release(key)
            .await
            .map_err(|e| BackendError::Network(key.clone(), e))?;
        self.lock().remove(key);
        let p = self.paths(key);
        let destroy_err = |e: std::io::Error| BackendError::RemoveFiles(key.clone(), e);
        let fifo = super::log::fifo_path(&p.log);
        for file in [&p.state, &p.log, &fifo] {
            if let Err(e) = std::fs::remove_file(file) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(destroy_err(e));
                }
            }
        }
        paths::remove_tree(&p.run).map_err(destroy_err)?;
        let mut dirs = vec![&p.state, &p.run];
        let _ = std::fs::remove_file(&p.socket);
        dirs.push(&p.socket);
        let seat = self.store.dirs(key);
        if delete_volume {
            self.store
                .release_seat(&seat)
                .map_err(BackendError::SeatStore)?;
            for dir in [&seat.old_volume, &seat.old_home] {
                paths::remove_tree(dir).map_err(destroy_err)?;
            }
            dirs.extend([&seat.old_volume, &seat.old_home]);
            // Only now may another seat get this uid.
            self.uids().release(key);
        }
        dirs.into_iter().for_each(|d| paths::remove_empty_parent(d));
        Ok(())
    }

    async fn status(&self, key: &SeatKey) -> Result<WorkspaceStatus, BackendError> {
        let mut seats = self.lock();
        if let Some(seat) = seats.get_mut(key) {
            let alive = match seat.child.as_mut() {
                Some(child) => matches!(child.try_wait(), Ok(None)),
                None => seat.running && seat.record.process_alive(),
            };
            seat.running = alive;
            return Ok(if alive {
                WorkspaceStatus::Running
            } else {
                WorkspaceStatus::Stopped
            });
        }
        drop(seats);
        Ok(if self.paths(key).state.exists() {
            WorkspaceStatus::Stopped
        } else {
            WorkspaceStatus::Missing
        })
    }

    fn endpoint(&self, key: &SeatKey) -> Option<DaemonEndpoint> {
        self.lock()
            .get(key)
            .filter(|s| s.running && s.warm.is_none())
            .map(|s| Self::endpoint_of(&s.record))
    }

    async fn adopt(&self) -> Result<Vec<(SeatKey, WorkspaceStatus)>, BackendError> {
        let found = super::adopt::adopt(self).await?;
        // Namespaces and nft rules outlived the agent; its proxies and forwarders did not.
        for (key, status) in &found {
            let Some(rec) = self.record_of(key) else {
                continue;
            };
            let net = match status {
                WorkspaceStatus::Running => self.net.readopt(key, &rec.limits.network).await,
                _ => self.net.teardown(key).await,
            };
            if let Err(e) = net {
                tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, error = %e, "seat network not re-adopted");
            }
        }
        // Networks made for a start the agent did not finish, and rules of seats gone.
        if let Err(e) = self.net.resync().await {
            tracing::warn!(error = %e, "seat networks not resynchronised after adopt");
        }
        Ok(found)
    }

    fn volume_dir(&self, key: &SeatKey) -> PathBuf {
        self.paths(key).volume
    }

    /// Zeros when disk limits are off or the seat's file system is not mounted.
    fn disk_usage(&self, key: &SeatKey) -> Result<Option<DiskUsage>, BackendError> {
        paths::validate(key).map_err(io("validate the seat key"))?;
        self.store
            .usage(&self.store.dirs(key))
            .map(Some)
            .map_err(BackendError::SeatStore)
    }

    /// The seat's files belong to its own host uid (the one its user namespace maps the learner
    /// to); seats of the old shared uid until their next create.
    fn volume_owner(&self, key: &SeatKey) -> Option<(u32, u32)> {
        let uid = self.seat_uid(key)?;
        Some((uid, uid))
    }

    /// The seat's freezer group: every process, the daemon included, stops where it is.
    async fn pause(&self, key: &SeatKey) -> Result<(), BackendError> {
        self.freeze(key, true).await
    }

    async fn resume(&self, key: &SeatKey) -> Result<(), BackendError> {
        self.freeze(key, false).await
    }

    fn needs_prepare(&self, spec: &WorkspaceSpec) -> bool {
        self.image_needs_build(spec.image.as_deref())
    }

    /// One mounted seat file system per seat, made before Start (`store::ahead`).
    async fn prepare_ahead(
        &self,
        workshop_id: &str,
        limits: &clarateach_core::Limits,
        image: Option<&str>,
        seats: u32,
    ) -> Result<u32, BackendError> {
        let running = self.ahead_run_guard(workshop_id).await;
        let (store, owner, disk_mb) = (self.store.clone(), workshop_id.to_string(), limits.disk_mb);
        let n = usize::try_from(seats).unwrap_or(usize::MAX);
        let ready = store_off_runtime("make seat file systems ahead", move || {
            store.reserve_ahead(&owner, disk_mb, n)
        })
        .await?;
        let ready = u32::try_from(ready).unwrap_or(u32::MAX);
        // An image still to be built is built by the Start's `prepare` (reported `preparing`).
        if !super::warm::enabled() || self.image_needs_build(image) {
            return Ok(ready);
        }
        // The seats run ahead take the spares now: the reservation ends, or each would be
        // made again; what they did not take goes.
        self.store.hand_over_ahead(workshop_id);
        let warm = self
            .run_ahead(workshop_id, limits, image, seats, &running.stop)
            .await;
        // Cut short by the Start: its creates take what is left (and `trim_ahead` the rest).
        if !running.stop.load(std::sync::atomic::Ordering::Relaxed) {
            let store = self.store.clone();
            store_off_runtime("trim the spares seats run ahead left", move || {
                store.trim_leftovers()
            })
            .await?;
        }
        Ok(warm)
    }

    fn preparing(&self, workshop_id: &str) {
        self.begin_ahead_run(workshop_id);
    }

    async fn trim_ahead(&self, workshop_id: &str) -> Result<(), BackendError> {
        let gone = self.give_back_ahead(workshop_id).await;
        let store = self.store.clone();
        let spares = store_off_runtime("trim the spares a start left", move || {
            store.trim_leftovers()
        })
        .await?;
        if gone + spares > 0 {
            tracing::info!(
                workshop.id = workshop_id,
                seats = gone,
                spares,
                "what was prepared and the start did not take given back"
            );
        }
        Ok(())
    }

    async fn release_ahead(&self, workshop_id: &str) -> Result<(), BackendError> {
        // A run ahead still going finishes first, then everything it made goes.
        let _done = match self.ahead_run(workshop_id) {
            Some(run) => Some(run.write_owned().await),
            None => None,
        };
        self.give_back_ahead(workshop_id).await;
        let (store, owner) = (self.store.clone(), workshop_id.to_string());
        let gone = store_off_runtime("give back seat file systems made ahead", move || {
            store.release_ahead(&owner)
        })
        .await?;
        tracing::info!(
            workshop.id = workshop_id,
            spares = gone,
            "seat file systems made ahead given back"
        );
        Ok(())
    }

    /// Builds a missing image from its built-in recipe (an image neither built nor built-in is
    /// left for `start` to refuse, naming it).
    async fn prepare(&self, spec: &WorkspaceSpec) -> Result<(), BackendError> {
        let Some(name) = spec.image.clone() else {
            return Ok(());
        };
        crate::seat_image::prepare(&self.cfg.images_dir, &spec.key, &name).await
    }
}

/// Runs blocking seat-store work off the runtime; a task that did not finish is an I/O error
/// of `action`.
async fn store_off_runtime<T: Send + 'static>(
    action: &'static str,
    work: impl FnOnce() -> Result<T, super::SeatStoreError> + Send + 'static,
) -> Result<T, BackendError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BackendError::Io {
            action,
            source: std::io::Error::other(e),
        })?
        .map_err(BackendError::SeatStore)
}
