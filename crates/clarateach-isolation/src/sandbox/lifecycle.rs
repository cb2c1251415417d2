//! The `Backend` implementation of the sandbox: create, start, stop, destroy, status and the
//! re-adoption of sandboxes that outlived an agent.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clarateach_core::agent_proto::SeatKey;

use super::paths::{self, SeatPaths};
use super::record::{self, SeatRecord};
use super::spawn::{self, Launch, NotReady};
use super::{args, seat_name, SandboxBackend, Seat};
use crate::cgroups::{self, CgroupManager};
use crate::{
    Backend, BackendError, BackendKind, DaemonAddr, DaemonEndpoint, WorkspaceSpec, WorkspaceStatus,
};

/// How long a stop may take to empty a seat's cgroup.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

fn io(action: &'static str) -> impl Fn(std::io::Error) -> BackendError {
    move |source| BackendError::Io { action, source }
}

impl SandboxBackend {
    fn record_of(&self, key: &SeatKey) -> Option<SeatRecord> {
        if let Some(seat) = self.lock().get(key) {
            return Some(seat.record.clone());
        }
        SeatRecord::load(&self.paths(key).state).ok()
    }

    /// The environment of the sandbox: sane defaults, the workshop's variables, the daemon token.
    fn sandbox_env(rec: &SeatRecord) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = [
            ("HOME", "/home/learner"),
            ("USER", "learner"),
            ("LOGNAME", "learner"),
            ("SHELL", "/bin/bash"),
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
            ("TERM", "xterm-256color"),
            ("LANG", "C.UTF-8"),
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

    fn root_entries_for(&self, rec: &SeatRecord) -> Vec<args::RootEntry> {
        // An image named in the spec wins when its rootfs directory exists in the data dir.
        let image_root = rec
            .image
            .as_ref()
            .map(|i| self.cfg.data_dir.join("images").join(i).join("rootfs"));
        match image_root.filter(|p| p.is_dir()) {
            Some(dir) => args::root_entries(&dir).unwrap_or_else(|_| self.root.clone()),
            None => self.root.clone(),
        }
    }

    async fn launch(
        &self,
        rec: &mut SeatRecord,
        p: &SeatPaths,
    ) -> Result<tokio::process::Child, BackendError> {
        let key = rec.key.clone();
        let start_err = |msg: String| BackendError::Start(key.clone(), msg);
        paths::owned_dir(&p.run, self.cfg.host_uid, self.cfg.host_gid)
            .map_err(io("create the run dir"))?;
        let _ = std::fs::remove_file(&p.socket);
        // Leftovers of an earlier run would escape the new limits: clear them first.
        self.empty_cgroup(rec.cgroup.clone())
            .await
            .map_err(|e| start_err(e.to_string()))?;
        self.cg
            .create(&rec.cgroup, &rec.limits)
            .map_err(|e| start_err(e.to_string()))?;
        let root = self.root_entries_for(rec);
        let hostname = seat_name(key.seat);
        let input = args::ArgsInput {
            hostname: &hostname,
            root: &root,
            etc_dir: &self.etc_dir,
            daemon_binary: &self.cfg.daemon_binary,
            volume: &p.volume,
            home: &p.home,
            run: &p.run,
            egress: rec.limits.egress,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log)
            .map_err(io("open the seat log"))?;
        let env = Self::sandbox_env(rec);
        let launch = Launch {
            bwrap: &self.cfg.bwrap,
            args: args::build(&input),
            env: &env,
            cgroup_procs: self
                .cg
                .procs_files(&rec.cgroup)
                .map_err(|e| start_err(e.to_string()))?,
            uid: self.cfg.host_uid,
            gid: self.cfg.host_gid,
            log,
        };
        let child = spawn::spawn(launch).map_err(|e| start_err(format!("spawning bwrap: {e}")))?;
        rec.pid = child.id().map(|p| p as i32);
        rec.start_time = rec.pid.and_then(record::start_time);
        rec.save(&p.state).map_err(io("save the seat state"))?;
        Ok(child)
    }

    fn log_tail(p: &SeatPaths) -> String {
        let text = std::fs::read_to_string(&p.log).unwrap_or_default();
        let start = text.len().saturating_sub(400);
        text.get(start..).unwrap_or("").trim().to_string()
    }

    pub(super) fn endpoint_of(rec: &SeatRecord) -> DaemonEndpoint {
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
        paths::validate(key).map_err(io("validate the seat key"))?;
        let p = self.paths(key);
        if p.socket.as_os_str().len() >= 108 {
            return Err(BackendError::Unavailable(format!(
                "socket path too long: {}",
                p.socket.display()
            )));
        }
        let (uid, gid) = (self.cfg.host_uid, self.cfg.host_gid);
        let vol_err = |e| BackendError::CreateVolume(key.clone(), e);
        paths::owned_dir(&p.volume, uid, gid).map_err(vol_err)?;
        paths::owned_dir(&p.home, uid, gid).map_err(vol_err)?;
        if let Some(dir) = p.state.parent() {
            paths::private_dir(dir).map_err(io("create the state dir"))?;
        }
        let mut rec = SeatRecord::from_spec(spec, p.socket.clone(), self.cgroup_name(key));
        let mut seats = self.lock();
        if let Some(seat) = seats.get_mut(key) {
            // Keep the running process; the new spec applies from the next start.
            rec.pid = seat.record.pid;
            rec.start_time = seat.record.start_time;
            seat.record = rec.clone();
        } else {
            seats.insert(
                key.clone(),
                Seat {
                    record: rec.clone(),
                    child: None,
                    running: false,
                },
            );
        }
        drop(seats);
        rec.save(&p.state).map_err(io("save the seat state"))
    }

    #[tracing::instrument(skip_all, fields(workshop.id = %key.workshop_id, seat = key.seat), err)]
    async fn start(&self, key: &SeatKey) -> Result<DaemonEndpoint, BackendError> {
        if let Some(ep) = self.endpoint(key) {
            if matches!(self.status(key).await?, WorkspaceStatus::Running) {
                return Ok(ep);
            }
        }
        let mut rec = self
            .record_of(key)
            .ok_or_else(|| BackendError::Unknown(key.clone()))?;
        let p = self.paths(key);
        let began = Instant::now();
        let mut child = self.launch(&mut rec, &p).await?;
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
            return Err(match why {
                NotReady::Timeout => BackendError::DaemonTimeout(key.clone()),
                NotReady::Exited(status) => BackendError::Start(
                    key.clone(),
                    format!("sandbox exited ({status}): {}", Self::log_tail(&p)),
                ),
            });
        }
        tracing::info!(
            pid = rec.pid,
            ready_ms = began.elapsed().as_secs_f64() * 1e3,
            "seat ready"
        );
        let ep = Self::endpoint_of(&rec);
        self.lock().insert(
            key.clone(),
            Seat {
                record: rec,
                child: Some(child),
                running: true,
            },
        );
        Ok(ep)
    }

    #[tracing::instrument(skip_all, fields(workshop.id = %key.workshop_id, seat = key.seat), err)]
    async fn stop(&self, key: &SeatKey) -> Result<(), BackendError> {
        let (rec, child) = {
            let mut seats = self.lock();
            match seats.get_mut(key) {
                Some(seat) => {
                    seat.running = false;
                    (Some(seat.record.clone()), seat.child.take())
                }
                None => (SeatRecord::load(&self.paths(key).state).ok(), None),
            }
        };
        let name = rec
            .as_ref()
            .map(|r| r.cgroup.clone())
            .unwrap_or_else(|| self.cgroup_name(key));
        self.empty_cgroup(name)
            .await
            .map_err(|e| BackendError::Stop(key.clone(), e.to_string()))?;
        if let Some(mut child) = child {
            // Reap bwrap; it is already dead, so this returns at once.
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
        let p = self.paths(key);
        let _ = std::fs::remove_file(&p.socket);
        if let Some(mut rec) = rec {
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
        self.lock().remove(key);
        let p = self.paths(key);
        let destroy_err = |e: std::io::Error| BackendError::Destroy(key.clone(), e.to_string());
        for file in [&p.state, &p.log] {
            if let Err(e) = std::fs::remove_file(file) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(destroy_err(e));
                }
            }
        }
        paths::remove_tree(&p.run).map_err(destroy_err)?;
        let mut dirs = vec![&p.state, &p.run];
        if delete_volume {
            paths::remove_tree(&p.volume).map_err(destroy_err)?;
            paths::remove_tree(&p.home).map_err(destroy_err)?;
            dirs.extend([&p.volume, &p.home]);
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
            .filter(|s| s.running)
            .map(|s| Self::endpoint_of(&s.record))
    }

    async fn adopt(&self) -> Result<Vec<(SeatKey, WorkspaceStatus)>, BackendError> {
        super::adopt::adopt(self).await
    }

    fn volume_dir(&self, key: &SeatKey) -> PathBuf {
        self.paths(key).volume
    }

    /// The seat's files belong to the host uid its user namespace maps root to.
    fn volume_owner(&self, _key: &SeatKey) -> Option<(u32, u32)> {
        Some((self.cfg.host_uid, self.cfg.host_gid))
    }
}
