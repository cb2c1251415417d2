//! How the state task turns the gap between desired and actual into backend operations, and
//! what it does with their outcomes: reports to the control plane, route-table updates, waiters.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use clarateach_core::agent_proto::{AgentMessage, SeatKey, SeatReport};
use clarateach_core::SeatState;
use clarateach_isolation::{DaemonEndpoint, WorkspaceSpec};

use super::{error_chain, Desired, Phase, Reconciler};
use crate::state::{Command, OpError, Outcome, StateError};

impl Reconciler {
    /// Starts the operation that brings `key` closer to its desired state, if any is needed.
    pub(super) fn drive(&mut self, key: &SeatKey) {
        if self.shutdown.is_some() {
            return;
        }
        let Some(seat) = self.seats.get_mut(key) else {
            return;
        };
        if seat.busy() || seat.blocked {
            return;
        }
        match (&seat.desired, &seat.phase) {
            (Desired::Present(_), Phase::Ready(ep)) if seat.paused => {
                let ep = ep.clone();
                self.launch_freeze(key.clone(), ep, true);
            }
            (Desired::Present(_), Phase::Paused(ep)) if !seat.paused => {
                let ep = ep.clone();
                self.launch_freeze(key.clone(), ep, false);
            }
            (Desired::Undecided, _)
            | (Desired::Present(_), Phase::Ready(_))
            | (Desired::Present(_), Phase::Paused(_)) => {}
            (Desired::Present(spec), _) => {
                let spec = (**spec).clone();
                self.launch_ensure(spec);
            }
            (
                Desired::Absent {
                    delete_volume: false,
                },
                Phase::Missing,
            ) => {
                if let Some(seat) = self.seats.remove(key) {
                    if !seat.gone_waiters.is_empty() {
                        // A local caller learns "gone" only once the route table says so.
                        self.publish();
                    }
                    seat.gone_waiters.into_iter().for_each(|w| {
                        let _ = w.send(());
                    });
                }
            }
            (Desired::Absent { delete_volume }, _) => {
                let delete_volume = *delete_volume;
                self.launch_destroy(key.clone(), delete_volume);
            }
        }
        // Published once per batch of commands (`run`): rebuilding the table here, once per
        // seat of a 200-seat start, made the start quadratic in the class.
        self.stale = true;
    }

    fn launch_ensure(&mut self, spec: clarateach_core::agent_proto::SeatSpec) {
        let key = spec.key();
        // Saved with the batch's other tokens before the create runs (`flush`).
        let token = self.tokens.mint(&key);
        if let Some(seat) = self.seats.get_mut(&key) {
            seat.phase = Phase::Creating;
        }
        self.report(&key, SeatState::Creating, None);
        tracing::info!(workshop.id = %key.workshop_id, seat = key.seat, "creating workspace");
        let (backend, tx, op_key) = (Arc::clone(&self.backend), self.tx.clone(), key.clone());
        let volumes = self.volumes.clone();
        let op = async move {
            let ws = WorkspaceSpec {
                key: key.clone(),
                limits: spec.limits,
                image: spec.image,
                env: spec.env,
                daemon_token: token.clone(),
            };
            if backend.needs_prepare(&ws) {
                tracing::info!(workshop.id = %key.workshop_id, seat = key.seat, image = ?ws.image, "preparing the seat's image");
                let _ = tx.send(Command::Preparing { key: key.clone() }).await;
            }
            // `prepare` is cheap when there is nothing to do; `create` would do it too, but
            // only after the seat was reported `preparing` does a build belong in it.
            let created = match backend.prepare(&ws).await {
                Ok(()) => backend.create(&ws).await,
                Err(e) => Err(e),
            };
            let restored = match created {
                Ok(()) => restore_files(backend.as_ref(), volumes.as_deref(), &ws, &spec.starter)
                    .await
                    .map_err(Outcome::Failed),
                Err(e) => Err(Outcome::Failed(OpError::Create(e))),
            };
            let outcome = match restored {
                Err(failed) => failed,
                Ok(()) => match copy_starter(backend.as_ref(), &key, spec.starter).await {
                    Err(e) => Outcome::Failed(e),
                    Ok(()) => match backend.start(&key).await {
                        Ok(ep) => Outcome::Ready(DaemonEndpoint {
                            addr: ep.addr,
                            token,
                        }),
                        Err(e) => Outcome::Failed(OpError::Start(e)),
                    },
                },
            };
            let _ = tx.send(Command::OpDone { key, outcome }).await;
        };
        self.deferred.push((op_key, Box::pin(op)));
    }

    /// Saves the tokens minted or forgotten while handling the last batch, then starts the
    /// creates that wait for it; if the save fails, those creates fail instead (a workspace
    /// whose token is not on disk would be stopped by the next agent process).
    pub(super) fn flush(&mut self) {
        if let Err(e) = self.tokens.flush() {
            tracing::error!(error = %error_chain(&e), "cannot save the daemon tokens");
            let e = std::sync::Arc::new(e);
            for (key, _) in std::mem::take(&mut self.deferred) {
                self.op_done(key, Outcome::Failed(OpError::DaemonToken(e.clone())));
            }
            return;
        }
        for (_, op) in self.deferred.drain(..) {
            tokio::spawn(op);
        }
    }

    /// Freezes (`frozen`) or thaws a ready or paused workspace in its own task.
    fn launch_freeze(&mut self, key: SeatKey, ep: DaemonEndpoint, frozen: bool) {
        if let Some(seat) = self.seats.get_mut(&key) {
            seat.phase = Phase::Freezing(ep.clone(), frozen);
        }
        let (backend, tx) = (Arc::clone(&self.backend), self.tx.clone());
        tokio::spawn(async move {
            let done = if frozen {
                backend.pause(&key).await
            } else {
                backend.resume(&key).await
            };
            let outcome = match (done, frozen) {
                (Ok(()), true) => Outcome::Paused,
                (Ok(()), false) => Outcome::Ready(ep),
                (Err(e), true) => Outcome::PauseFailed(OpError::Pause(e)),
                (Err(e), false) => Outcome::PauseFailed(OpError::Resume(e)),
            };
            let _ = tx.send(Command::OpDone { key, outcome }).await;
        });
    }

    fn launch_destroy(&mut self, key: SeatKey, delete_volume: bool) {
        if let Some(seat) = self.seats.get_mut(&key) {
            seat.phase = Phase::Destroying;
            seat.destroying_volume = delete_volume;
        }
        tracing::info!(workshop.id = %key.workshop_id, seat = key.seat, delete_volume, "destroying workspace");
        let (backend, tx) = (Arc::clone(&self.backend), self.tx.clone());
        let volumes = self.volumes.clone();
        tokio::spawn(async move {
            // The seat's last edits reach the object store before its workspace goes (an
            // abandoned seat has no sync left to finish). If they could not, the local volume
            // stays even when its deletion was asked for: it holds the only copy.
            let mut delete_volume = delete_volume;
            if let Some(v) = &volumes {
                if !v.finish(&key, FINAL_SYNC_TIMEOUT).await && delete_volume {
                    tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat,
                        "the last sync did not complete: keeping the seat's volume");
                    delete_volume = false;
                }
            }
            let outcome = match backend.destroy(&key, delete_volume).await {
                Ok(()) => Outcome::Destroyed,
                Err(e) => Outcome::Failed(OpError::Destroy(e)),
            };
            let _ = tx.send(Command::OpDone { key, outcome }).await;
        });
    }

    pub(super) fn op_done(&mut self, key: SeatKey, outcome: Outcome) {
        let Some(seat) = self.seats.get_mut(&key) else {
            return;
        };
        seat.preparing = false;
        match outcome {
            Outcome::Paused => {
                let Phase::Freezing(ep, _) = &seat.phase else {
                    return;
                };
                tracing::info!(workshop.id = %key.workshop_id, seat = key.seat, "workspace paused");
                seat.phase = Phase::Paused(ep.clone());
                self.report(&key, SeatState::Paused, None);
            }
            Outcome::PauseFailed(error) => {
                let error = error_chain(&error);
                tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, %error, "pausing or resuming failed");
                // Back to what it was; no retry until the next command about this seat.
                let (phase, state) = match &seat.phase {
                    Phase::Freezing(ep, true) => (Phase::Ready(ep.clone()), SeatState::Ready),
                    Phase::Freezing(ep, false) => (Phase::Paused(ep.clone()), SeatState::Paused),
                    _ => return,
                };
                seat.phase = phase;
                seat.paused = state == SeatState::Paused;
                seat.blocked = true;
                self.report(&key, state, Some(error));
            }
            Outcome::Ready(ep) => {
                tracing::info!(workshop.id = %key.workshop_id, seat = key.seat, "workspace ready");
                if let Some(v) = self
                    .volumes
                    .as_ref()
                    .filter(|_| has_dir_volume(self.backend.as_ref(), &key))
                {
                    v.start(
                        &key,
                        self.backend.volume_dir(&key),
                        self.backend.volume_owner(&key),
                    );
                }
                seat.phase = Phase::Ready(ep);
                let view = seat.view(&key);
                let waiters = std::mem::take(&mut seat.ready_waiters);
                if !waiters.is_empty() {
                    // A local caller may look its route up as soon as it is answered.
                    self.publish();
                }
                waiters.into_iter().for_each(|w| {
                    let _ = w.send(Ok(view.clone()));
                });
                self.report(&key, SeatState::Ready, None);
            }
            Outcome::Failed(error) => {
                let error = Arc::new(error);
                let chain = error_chain(error.as_ref());
                tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, error = %chain, "workspace operation failed");
                seat.phase = Phase::Failed(Arc::clone(&error));
                seat.blocked = true;
                seat.ready_waiters.drain(..).for_each(|w| {
                    let _ = w.send(Err(StateError::CreateFailed(Arc::clone(&error))));
                });
                self.report(&key, SeatState::Failed, Some(chain));
            }
            Outcome::Destroyed => {
                seat.phase = Phase::Missing;
                if let Desired::Absent { delete_volume } = &mut seat.desired {
                    if seat.destroying_volume {
                        *delete_volume = false;
                    }
                }
                seat.destroying_volume = false;
                // Saved with the batch (`flush`).
                self.tokens.forget(&key);
                self.report(&key, SeatState::Destroyed, None);
            }
        }
        self.drive(&key);
    }

    /// Publishes the route table and the used count from the current phases.
    pub(super) fn publish(&mut self) {
        self.stale = false;
        let table: std::collections::HashMap<SeatKey, DaemonEndpoint> = self
            .seats
            .iter()
            .filter_map(|(k, s)| match &s.phase {
                Phase::Ready(ep) => Some((k.clone(), ep.clone())),
                _ => None,
            })
            .collect();
        let used = self
            .seats
            .values()
            .filter(|s| {
                matches!(
                    s.phase,
                    Phase::Creating | Phase::Ready(_) | Phase::Paused(_) | Phase::Freezing(..)
                )
            })
            .count();
        self.used
            .store(u32::try_from(used).unwrap_or(u32::MAX), Ordering::Relaxed);
        self.routes.send_if_modified(|cur| {
            if **cur == table {
                false
            } else {
                *cur = Arc::new(table);
                true
            }
        });
    }

    pub(super) fn report(&mut self, key: &SeatKey, state: SeatState, error: Option<String>) {
        let report = SeatReport {
            workshop_id: key.workshop_id.clone(),
            seat: key.seat,
            state,
            error,
        };
        self.send(AgentMessage::SeatStatus(report));
    }

    pub(super) fn send(&mut self, msg: AgentMessage) {
        if let Some(conn) = &self.conn {
            // A full or closed channel means the connection is going away; the next
            // registration carries the whole state again.
            if conn.try_send(msg).is_err() {
                tracing::debug!("status report dropped, connection busy or closed");
            }
        }
    }

    /// On shutdown: stops every workspace (no process left, volumes and config kept).
    pub(super) async fn stop_all(&mut self) {
        let keys: Vec<SeatKey> = self
            .seats
            .iter()
            .filter(|(_, s)| !matches!(s.phase, Phase::Missing))
            .map(|(k, _)| k.clone())
            .collect();
        if let Some(v) = &self.volumes {
            v.finish_all(FINAL_SYNC_TIMEOUT).await;
        }
        let backend = Arc::clone(&self.backend);
        let stops = keys.iter().map(|k| {
            let backend = Arc::clone(&backend);
            async move {
                if let Err(e) = backend.stop(k).await {
                    tracing::warn!(workshop.id = %k.workshop_id, seat = k.seat, error = %error_chain(&e), "stop failed");
                }
            }
        });
        futures::future::join_all(stops).await;
        for seat in self.seats.values_mut() {
            if !matches!(seat.phase, Phase::Missing) {
                seat.phase = Phase::Stopped;
            }
        }
        self.publish();
        if let Some(reply) = self.shutdown.take() {
            let _ = reply.send(());
        }
        tracing::info!(stopped = keys.len(), "all workspaces stopped");
    }
}

/// How long a seat's last sync pass may hold up its stop or destroy.
const FINAL_SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether the seat's volume is a host directory the sync can walk (sandbox seats; a microVM's
/// ext4 image is written by its guest and not synced).
pub(super) fn has_dir_volume(backend: &dyn clarateach_isolation::Backend, key: &SeatKey) -> bool {
    matches!(
        backend.export_source(key),
        clarateach_isolation::export::ExportSource::Dir(_)
    )
}

/// Downloads the seat's synced files into its new, empty volume before the seat first runs
/// here; a template's starter is then marked applied, so it never brings back files the
/// learner had deleted. A volume left here by an earlier placement that the bucket has moved
/// past (the seat ran and was saved elsewhere since) is dropped and made anew first.
async fn restore_files(
    backend: &dyn clarateach_isolation::Backend,
    volumes: Option<&crate::volume::VolumeSync>,
    ws: &WorkspaceSpec,
    starter: &Option<clarateach_core::SeatStarter>,
) -> Result<(), OpError> {
    let key = &ws.key;
    let Some(v) = volumes.filter(|_| has_dir_volume(backend, key)) else {
        return Ok(());
    };
    let volume = backend.volume_dir(key);
    if v.local_is_stale(key, &volume).await {
        tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat,
            "the seat's files here are older than its synced files: replacing them");
        backend.destroy(key, true).await.map_err(OpError::Destroy)?;
        backend.create(ws).await.map_err(OpError::Create)?;
    }
    let restored = v
        .restore(key, &volume, backend.volume_owner(key))
        .await
        .map_err(OpError::Restore)?;
    if restored.files > 0 {
        if let Some(st) = starter {
            let mark = crate::starter::marker(&volume);
            if let Err(e) = std::fs::write(&mark, &st.sha256) {
                tracing::warn!(path = %mark.display(), error = %e, "cannot mark the starter applied");
            }
        }
    }
    Ok(())
}

/// Copies a template's starter files into a new sandbox volume (once: see `crate::starter`),
/// before the seat runs; backends whose volume is not a host directory get none yet.
async fn copy_starter(
    backend: &dyn clarateach_isolation::Backend,
    key: &SeatKey,
    starter: Option<clarateach_core::SeatStarter>,
) -> Result<(), OpError> {
    let Some(st) = starter else { return Ok(()) };
    if backend.kind() != clarateach_isolation::BackendKind::Sandbox {
        tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, "starter files are only copied into sandbox seats");
        return Ok(());
    }
    let (volume, owner) = (backend.volume_dir(key), backend.volume_owner(key));
    let k = key.clone();
    tokio::task::spawn_blocking(move || crate::starter::apply(&volume, owner, &st.sha256, &st.tar_gz))
        .await
        .map_err(OpError::StarterTask)?
        .map(|n| {
            if n > 0 {
                tracing::info!(workshop.id = %k.workshop_id, seat = k.seat, files = n, "starter files copied");
            }
        })
        .map_err(OpError::Starter)
}
