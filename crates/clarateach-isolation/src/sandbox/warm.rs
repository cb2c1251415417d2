//! Seats run ahead of their workshop's Start, frozen (issue 12: a class of 200 ready within a
//! second of Start). What a seat start costs, on this 2-core host ~12 ms of CPU per seat, is
//! mostly the seat's own processes (bwrap's namespaces and mounts, the daemon's start) and the
//! agent's steps around them (uid, cgroups, socket, seccomp, the clone): for 200 seats more CPU
//! than two cores have in a second. None of it depends on the learner or on the workshop's
//! secret, so when a workshop is prepared (`prepare_ahead`: created, or its `start_at` is near)
//! seats 1..=N are made and run as they would be at Start, with two differences: the daemon is
//! started with `--await-activation` and a start-up token of its own, and nothing of the
//! workshop's environment (the API key) is anywhere: not in bwrap's environment, not on disk.
//! Once its daemon answers, the seat's cgroup is frozen: it uses no CPU, only its memory.
//!
//! Start then only thaws the seat and activates its daemon (`POST /activate`: the token the
//! agent uses from then on and the workshop's environment); until that the daemon serves
//! nothing (no shell, no command, no file), so no process of the learner can ever run without
//! the workshop's environment or before the Start. A seat run ahead whose spec no longer
//! matches (limits or image changed) is stopped and started the usual way; so is one whose
//! activation fails. What the Start does not take is given back a minute later
//! (`trim_ahead`), what a deleted or never-started workshop made at once (`release_ahead`),
//! and an agent that finds such a seat after a restart destroys it (`adopt`): they hold
//! nothing of anyone.
//!
//! `CLARATEACH_PREPARE=fs` keeps the preparation to the seat file systems (the A/B of the
//! benchmark); `CLARATEACH_PREPARE=off` turns preparing off on the control plane.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clarateach_core::agent_proto::SeatKey;
use clarateach_core::Limits;
use futures::StreamExt;

use super::{spawn, SandboxBackend};
use crate::{Backend, BackendError, DaemonEndpoint, WorkspaceSpec};

/// Seats made ahead side by side: the work is mostly CPU (bwrap, the daemon's start), and the
/// host has few cores; a few in flight hide the waits (mount, the daemon's first answer).
const IN_FLIGHT: usize = 4;

/// How long an activation may take (a thaw and one request over the seat's socket).
const ACTIVATION_TIMEOUT: Duration = Duration::from_secs(5);

/// A seat run ahead, frozen, waiting for its Start.
#[derive(Debug, Clone)]
pub(super) struct Warm {
    /// The daemon's start-up token until its activation.
    startup_token: String,
    state: WarmState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WarmState {
    /// Waiting for its workshop's Start.
    Ready,
    /// The Start's create took it: only its start activates it.
    Claimed,
    /// Being given back: a create must not take it.
    Leaving,
}

/// Whether prepared seats are run ahead (default) or only their file systems are made.
pub(super) fn enabled() -> bool {
    std::env::var("CLARATEACH_PREPARE").map_or(true, |v| v != "fs")
}

impl SandboxBackend {
    /// Runs seats 1..=`seats` of `workshop_id` ahead, frozen; how many run. A seat that exists
    /// already (started, or made ahead before) is left alone; one that fails is given back and
    /// the Start makes it the usual way.
    pub(super) async fn run_ahead(
        &self,
        workshop_id: &str,
        limits: &Limits,
        image: Option<&str>,
        seats: u32,
        stop: &AtomicBool,
    ) -> u32 {
        let began = Instant::now();
        let made: Vec<bool> = futures::stream::iter(1..=seats)
            .take_while(|_| std::future::ready(!stop.load(Ordering::Relaxed)))
            .map(|seat| {
                let key = SeatKey {
                    workshop_id: workshop_id.to_string(),
                    seat,
                };
                async move {
                    match self.run_one_ahead(&key, limits, image).await {
                        Ok(made) => made,
                        Err(e) => {
                            tracing::warn!(workshop.id = %key.workshop_id, seat, error = %clarateach_core::error::error_chain(&e), "a seat could not be run ahead; its Start makes it");
                            let _ = self.destroy(&key, true).await;
                            false
                        }
                    }
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let warm = made.iter().filter(|m| **m).count();
        tracing::info!(
            workshop.id = workshop_id,
            seats,
            warm,
            cut_short = stop.load(Ordering::Relaxed),
            ms = began.elapsed().as_secs_f64() * 1e3,
            "seats run ahead of the start, frozen"
        );
        u32::try_from(warm).unwrap_or(u32::MAX)
    }

    /// Makes and runs one seat ahead, then freezes it; false when the seat existed already.
    async fn run_one_ahead(
        &self,
        key: &SeatKey,
        limits: &Limits,
        image: Option<&str>,
    ) -> Result<bool, BackendError> {
        if self.lock().contains_key(key) || self.paths(key).state.exists() {
            return Ok(false);
        }
        let startup_token = clarateach_core::secret::random_token("ahead_");
        let spec = WorkspaceSpec {
            key: key.clone(),
            limits: limits.clone(),
            image: image.map(str::to_string),
            env: BTreeMap::new(),
            daemon_token: startup_token.clone(),
        };
        self.create_seat(&spec, true).await?;
        if let Some(seat) = self.lock().get_mut(key) {
            seat.warm = Some(Warm {
                startup_token,
                state: WarmState::Ready,
            });
        }
        self.launch_and_wait(key).await?;
        self.freeze(key, true).await?;
        Ok(true)
    }

    /// A create of the seat's workshop: a seat run ahead for the same spec is the create's to
    /// start (claimed); one run for another spec is stopped (the create then makes the seat
    /// the usual way). Refused while the seat is being given back.
    pub(super) async fn claim_ahead(&self, spec: &WorkspaceSpec) -> Result<(), BackendError> {
        let matches = {
            let mut seats = self.lock();
            let Some(seat) = seats.get_mut(&spec.key) else {
                return Ok(());
            };
            // Until this claim the record holds the spec the seat was run ahead for.
            let ran_for = (&seat.record.limits, &seat.record.image);
            let Some(warm) = seat.warm.as_mut() else {
                return Ok(());
            };
            if warm.state == WarmState::Leaving {
                return Err(BackendError::Unavailable(format!(
                    "seat {} of {} is being given back; try again",
                    spec.key.seat, spec.key.workshop_id
                )));
            }
            let matches = ran_for == (&spec.limits, &spec.image);
            if matches {
                warm.state = WarmState::Claimed;
            }
            matches
        };
        if !matches {
            tracing::info!(workshop.id = %spec.key.workshop_id, seat = spec.key.seat, "the seat run ahead has other limits or image: started the usual way");
            self.stop(&spec.key).await?;
        }
        Ok(())
    }

    /// The seat's start-up token when it runs ahead, waiting for its Start.
    pub(super) fn startup_token(&self, key: &SeatKey) -> Option<String> {
        self.lock()
            .get(key)
            .and_then(|s| s.warm.as_ref())
            .filter(|w| w.state != WarmState::Leaving)
            .map(|w| w.startup_token.clone())
    }

    /// Starts a seat run ahead: thaws it and activates its daemon with the record's token and
    /// the workshop's environment (from the create).
    pub(super) async fn activate(
        &self,
        key: &SeatKey,
        startup_token: &str,
    ) -> Result<DaemonEndpoint, BackendError> {
        let began = Instant::now();
        let rec = self
            .lock()
            .get(key)
            .map(|s| s.record.clone())
            .ok_or_else(|| BackendError::Unknown(key.clone()))?;
        self.freeze(key, false).await?;
        let body = clarateach_core::ActivateRequest {
            token: rec.daemon_token.clone(),
            env: rec.env.clone(),
        };
        spawn::activate(&rec.socket, startup_token, &body, ACTIVATION_TIMEOUT)
            .await
            .map_err(|source| BackendError::Io {
                action: "activate the seat run ahead",
                source,
            })?;
        let rec = {
            let mut seats = self.lock();
            let seat = seats
                .get_mut(key)
                .ok_or_else(|| BackendError::Unknown(key.clone()))?;
            seat.warm = None;
            seat.record.warm = false;
            seat.record.clone()
        };
        rec.update(&self.paths(key).state)
            .map_err(|source| BackendError::Io {
                action: "save the seat state",
                source,
            })?;
        tracing::info!(
            workshop.id = %key.workshop_id,
            seat = key.seat,
            ms = began.elapsed().as_secs_f64() * 1e3,
            "seat run ahead started"
        );
        Ok(Self::endpoint_of(&rec))
    }

    /// Destroys the seats of `workshop_id` run ahead that no create took, with their (empty)
    /// file systems; how many went.
    pub(super) async fn give_back_ahead(&self, workshop_id: &str) -> usize {
        let leaving: Vec<SeatKey> = {
            let mut seats = self.lock();
            seats
                .iter_mut()
                .filter(|(k, _)| k.workshop_id == workshop_id)
                .filter_map(|(k, s)| {
                    let warm = s.warm.as_mut()?;
                    (warm.state == WarmState::Ready).then(|| {
                        warm.state = WarmState::Leaving;
                        k.clone()
                    })
                })
                .collect()
        };
        for key in &leaving {
            if let Err(e) = self.destroy(key, true).await {
                tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, error = %e, "a seat run ahead could not be given back");
            }
        }
        leaving.len()
    }
}

/// A run ahead of one workshop's seats: its lock (written by the run, read by the workshop's
/// creates) and, from `preparing` until the run begins, the run's write guard.
pub(super) struct AheadRun {
    lock: Arc<tokio::sync::RwLock<()>>,
    pending: Option<tokio::sync::OwnedRwLockWriteGuard<()>>,
    /// Set by the workshop's first create: the Start came while the run was still going, and
    /// it makes no more seats (those in flight finish, the rest start the usual way).
    stop: Arc<AtomicBool>,
}

impl AheadRun {
    fn new() -> Self {
        let lock = Arc::new(tokio::sync::RwLock::new(()));
        let pending = Arc::clone(&lock).try_write_owned().ok();
        Self {
            lock,
            pending,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Ends a run ahead: its lock goes from the table (if no later run replaced it), then the
/// guard is dropped and the creates waiting for it go on.
pub(super) struct AheadRunGuard<'a> {
    backend: &'a SandboxBackend,
    workshop_id: String,
    lock: Arc<tokio::sync::RwLock<()>>,
    pub(super) stop: Arc<AtomicBool>,
    _guard: tokio::sync::OwnedRwLockWriteGuard<()>,
}

impl Drop for AheadRunGuard<'_> {
    fn drop(&mut self) {
        let mut runs = self
            .backend
            .ahead_runs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if runs
            .get(&self.workshop_id)
            .is_some_and(|r| Arc::ptr_eq(&r.lock, &self.lock))
        {
            runs.remove(&self.workshop_id);
        }
    }
}

impl SandboxBackend {
    fn runs(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, AheadRun>> {
        self.ahead_runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a run ahead of `workshop_id`, its write lock taken at once.
    pub(super) fn begin_ahead_run(&self, workshop_id: &str) {
        self.runs().insert(workshop_id.to_string(), AheadRun::new());
    }

    /// The run's guard: the one `preparing` took, else the lock's (a run not announced, or
    /// one after another of the same workshop).
    pub(super) async fn ahead_run_guard(&self, workshop_id: &str) -> AheadRunGuard<'_> {
        let (lock, pending, stop) = {
            let mut runs = self.runs();
            let run = runs
                .entry(workshop_id.to_string())
                .or_insert_with(AheadRun::new);
            (
                Arc::clone(&run.lock),
                run.pending.take(),
                Arc::clone(&run.stop),
            )
        };
        let guard = match pending {
            Some(g) => g,
            None => Arc::clone(&lock).write_owned().await,
        };
        AheadRunGuard {
            backend: self,
            workshop_id: workshop_id.to_string(),
            lock,
            stop,
            _guard: guard,
        }
    }

    /// The lock of a run ahead of `workshop_id` that is decided or going on.
    pub(super) fn ahead_run(&self, workshop_id: &str) -> Option<Arc<tokio::sync::RwLock<()>>> {
        self.runs().get(workshop_id).map(|r| Arc::clone(&r.lock))
    }

    /// The workshop's Start came: a run ahead of it still going makes no more seats; the
    /// lock to wait on for those in flight.
    pub(super) fn stop_ahead_run(&self, workshop_id: &str) -> Option<Arc<tokio::sync::RwLock<()>>> {
        self.runs().get(workshop_id).map(|r| {
            r.stop.store(true, Ordering::Relaxed);
            Arc::clone(&r.lock)
        })
    }
}
