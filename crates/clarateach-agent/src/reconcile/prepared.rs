//! Workshops whose seats are prepared ahead of their Start (`ControlMessage::PrepareSeats`, issue
//! 12): the state task asks the backend to make what the seats need that holds nothing of a
//! learner or of the workshop's secret, and gives it back when the control plane says the
//! workshop is deleted or will not start (`ReleasePrepared`), or when [`PREPARED_TTL`] passes
//! without a Start. The first `create_seat` of the workshop ends the reservation: its seats take
//! what was made.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clarateach_core::Limits;

use super::{error_chain, Reconciler};
use crate::state::Command;

/// How long seats prepared ahead wait for their workshop's Start before they are given back.
pub const PREPARED_TTL: Duration = Duration::from_secs(12 * 3600);

/// How long after its start a workshop's seats have to take what was prepared for them.
const LEFTOVERS_AFTER: Duration = Duration::from_secs(60);

pub use crate::state::Prepared;

pub(crate) struct Entry {
    generation: u64,
    began: Instant,
    pub(crate) state: Prepared,
}

impl Reconciler {
    pub(super) fn prepare_seats(
        &mut self,
        workshop_id: String,
        seats: u32,
        limits: Limits,
        image: Option<String>,
    ) {
        if self.seats.keys().any(|k| k.workshop_id == workshop_id) {
            // Its seats exist already: nothing to make ahead.
            return;
        }
        self.prepare_generation += 1;
        let generation = self.prepare_generation;
        self.prepared.insert(
            workshop_id.clone(),
            Entry {
                generation,
                began: Instant::now(),
                state: Prepared::Making { seats },
            },
        );
        tracing::info!(workshop.id = %workshop_id, seats, disk_mb = limits.disk_mb, "preparing seats ahead of the start");
        let (backend, tx) = (Arc::clone(&self.backend), self.tx.clone());
        // Before any create of the workshop can run: those wait for what is made ahead.
        backend.preparing(&workshop_id);
        let ttl = self.prepared_ttl;
        tokio::spawn(async move {
            let result = backend
                .prepare_ahead(&workshop_id, &limits, image.as_deref(), seats)
                .await
                .map_err(|e| error_chain(&e));
            let _ = tx
                .send(Command::PreparedDone {
                    workshop_id: workshop_id.clone(),
                    generation,
                    result,
                })
                .await;
            tokio::time::sleep(ttl).await;
            let _ = tx
                .send(Command::PreparedExpired {
                    workshop_id,
                    generation,
                })
                .await;
        });
    }

    pub(super) fn prepared_done(
        &mut self,
        workshop_id: &str,
        generation: u64,
        result: Result<u32, String>,
    ) {
        let Some(entry) = self
            .prepared
            .get_mut(workshop_id)
            .filter(|e| e.generation == generation)
        else {
            return;
        };
        entry.state = match result {
            Ok(ready) => {
                let took = entry.began.elapsed();
                tracing::info!(
                    workshop.id = workshop_id,
                    ready,
                    ms = took.as_secs_f64() * 1e3,
                    "seats prepared ahead"
                );
                Prepared::Ready { ready, took }
            }
            Err(error) => {
                tracing::warn!(workshop.id = workshop_id, %error, "preparing seats ahead failed; the start makes them");
                Prepared::Failed(error)
            }
        };
    }

    /// The workshop's preparation is over: it started (`give_back` false: its seats take what
    /// was made), or it is deleted, will not start or waited too long (`give_back`).
    pub(super) fn end_prepared(
        &mut self,
        workshop_id: &str,
        generation: Option<u64>,
        give_back: bool,
    ) {
        let matches = self
            .prepared
            .get(workshop_id)
            .is_some_and(|e| generation.is_none_or(|g| g == e.generation));
        if !matches {
            if give_back && generation.is_none() {
                // Released by the control plane after an agent restart (nothing counted here):
                // the backend still drops a reservation it may hold.
                self.release_in_backend(workshop_id.to_string());
            }
            return;
        }
        self.prepared.remove(workshop_id);
        if give_back {
            self.release_in_backend(workshop_id.to_string());
        } else {
            self.trim_in_backend(workshop_id.to_string());
        }
    }

    /// What the started workshop's seats did not take (fewer placed here than prepared) goes
    /// once they had [`LEFTOVERS_AFTER`] to take it.
    fn trim_in_backend(&self, workshop_id: String) {
        let backend = Arc::clone(&self.backend);
        tokio::spawn(async move {
            tokio::time::sleep(LEFTOVERS_AFTER).await;
            if let Err(e) = backend.trim_ahead(&workshop_id).await {
                tracing::warn!(workshop.id = %workshop_id, error = %error_chain(&e), "trimming what a start left of its prepared seats failed");
            }
        });
    }

    fn release_in_backend(&self, workshop_id: String) {
        let backend = Arc::clone(&self.backend);
        tokio::spawn(async move {
            if let Err(e) = backend.release_ahead(&workshop_id).await {
                tracing::warn!(workshop.id = %workshop_id, error = %error_chain(&e), "giving back seats prepared ahead failed");
            }
        });
    }
}
