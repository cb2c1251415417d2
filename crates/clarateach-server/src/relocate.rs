//! Seats that outlive their host (issue 13). With `--object-store`, every agent syncs its seats'
//! files to the bucket; here the control plane recreates a seat on another agent from those
//! files when its agent has been gone longer than `--host-loss-grace` ([`run`]), or when an
//! instructor moves it (`POST /api/workshops/{id}/seats/{seat}/move`, [`move_seat`]).
//!
//! A move picks the new agent with the ordinary placement (capacity and image respected, the
//! old agent left out), then gives the seat to it with a compare-and-set in the store
//! ([`clarateach_store::MoveStore::move_seat`]): of several replicas noticing the same lost host,
//! exactly one moves each seat, and only the winner sends `create_seat`. The new agent
//! restores the files into the seat's fresh volume before the seat starts. The seat id, the
//! learner's reconnect code and tokens stay, and the gateway routes by the store, so the
//! learner's URL keeps working; the move's time is what the learner UI shows as "moved to
//! another machine".
//!
//! An instructor's move first destroys the seat on its old agent (which runs a last sync pass
//! and drops its local volume, so a later move back restores fresh files), waits for that to be
//! reported, and only then recreates it. An agent that comes back after its seats moved is
//! told to host only what the store gives it, and abandons its stale copies without syncing
//! them (see the agent's `volume` module).

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use clarateach_core::agent_proto::{ControlMessage, SeatKey};
use clarateach_core::{SeatState, WorkshopStatus};
use clarateach_store::StoreError;
use tokio::time::Instant;

use crate::lifecycle::{self, LifecycleError};
use crate::scheduler::{Demand, ProvisionError};
use crate::state::AppState;

/// How long an instructor's move waits for the old agent's last sync and destroy.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a seat could not be moved.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("the workshop is not running")]
    NotRunning,
    #[error("no such seat")]
    NoSeat,
    #[error("the seat is on no agent")]
    Unplaced,
    #[error("no other agent has room for the seat")]
    NoOtherAgent(#[source] ProvisionError),
    #[error("the seat changed hands while it was being moved")]
    Raced,
    #[error("the old agent did not release the seat in time")]
    ReleaseTimeout,
    #[error("cannot build the seat's spec")]
    Spec(#[source] LifecycleError),
    #[error("cannot reach the new agent")]
    Send(#[source] ProvisionError),
    #[error("store")]
    Store(#[from] StoreError),
}

/// Where a seat went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub from: String,
    pub to: String,
}

/// Gives `seat` (on `from`) to another agent and asks it to create the seat from the synced
/// files. `only_lost`: move it only while it is still `lost` (host loss; an instructor's move
/// passes false after releasing it).
async fn relocate(
    state: &AppState,
    workshop_id: &str,
    seat: u32,
    from: &str,
    only_lost: bool,
) -> Result<Moved, MoveError> {
    let w = state
        .store()
        .get_workshop(workshop_id)
        .await?
        .ok_or(MoveError::NoSeat)?;
    let spec = lifecycle::seat_specs(state, &w, &[seat])
        .await
        .map_err(MoveError::Spec)?
        .pop()
        .ok_or(MoveError::NoSeat)?;
    let key = SeatKey {
        workshop_id: workshop_id.to_string(),
        seat,
    };
    let to = {
        // Held from reading the loads until the move is recorded, like a start's placement.
        let _placing = state.registry().placing().await;
        let to = state
            .registry()
            .reserve_elsewhere(
                key.clone(),
                from,
                spec.image.clone(),
                Demand::of(&spec.limits),
            )
            .await
            .map_err(MoveError::NoOtherAgent)?;
        if !state
            .store()
            .move_seat(workshop_id, seat, from, &to, only_lost, Utc::now())
            .await?
        {
            return Err(MoveError::Raced);
        }
        to
    };
    tracing::warn!(workshop.id = workshop_id, seat, from, to = %to, "seat moved to another agent");
    if !state
        .registry()
        .send(&to, ControlMessage::CreateSeat(spec))
        .await
        .map_err(MoveError::Send)?
    {
        // Its session marks the seat lost, and the next round moves it again.
        tracing::warn!(workshop.id = workshop_id, seat, agent.id = %to, "new agent gone before create_seat");
    }
    Ok(Moved {
        from: from.to_string(),
        to,
    })
}

/// An instructor's move of a seat of a live workshop to another agent: the old agent saves
/// and drops its copy first (when it is connected), then the seat is created elsewhere.
pub async fn move_seat(state: &AppState, workshop_id: &str, seat: u32) -> Result<Moved, MoveError> {
    let w = state
        .store()
        .get_workshop(workshop_id)
        .await?
        .ok_or(MoveError::NoSeat)?;
    if !matches!(
        w.status,
        WorkshopStatus::Running | WorkshopStatus::Provisioning
    ) {
        return Err(MoveError::NotRunning);
    }
    let rec = state
        .store()
        .get_seat(workshop_id, seat)
        .await?
        .ok_or(MoveError::NoSeat)?;
    let from = rec.agent_id.ok_or(MoveError::Unplaced)?;
    // Refuse before touching the seat when nowhere else could take it.
    let others = state
        .provisioner()
        .agents()
        .await
        .into_iter()
        .any(|a| a.agent_id != from);
    if !others {
        return Err(MoveError::NoOtherAgent(ProvisionError::NoCapacity {
            needed: 1,
            free: 0,
            agents: 0,
            short_of: crate::scheduler::Shortage::Slots,
        }));
    }
    let release = ControlMessage::DestroySeat {
        workshop_id: workshop_id.to_string(),
        seat,
        delete_volume: true,
    };
    if rec.state != SeatState::Lost
        && state
            .provisioner()
            .send_to_agent(&from, release)
            .await
            .unwrap_or(false)
    {
        let deadline = Instant::now() + RELEASE_TIMEOUT;
        loop {
            let now = state.store().get_seat(workshop_id, seat).await?;
            match now {
                Some(s) if s.agent_id.as_deref() != Some(from.as_str()) => {
                    return Err(MoveError::Raced)
                }
                Some(s) if matches!(s.state, SeatState::Destroyed | SeatState::Lost) => break,
                Some(_) => {}
                None => return Err(MoveError::NoSeat),
            }
            if Instant::now() >= deadline {
                return Err(MoveError::ReleaseTimeout);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    relocate(state, workshop_id, seat, &from, false).await
}

/// `destroy_seat` (volume included) for every seat that moved off `agent_id` and is elsewhere
/// now: sent after its registration, whose desired state already leaves them out.
pub async fn stale_copies(state: &AppState, agent_id: &str) -> Vec<ControlMessage> {
    match state.store().seats_moved_from(agent_id).await {
        Ok(seats) => seats
            .into_iter()
            .map(|(workshop_id, seat)| {
                tracing::info!(workshop.id = %workshop_id, seat, agent.id = agent_id, "dropping the stale copy of a moved seat");
                ControlMessage::DestroySeat {
                    workshop_id,
                    seat,
                    delete_volume: true,
                }
            })
            .collect(),
        Err(e) => {
            tracing::warn!(agent.id = agent_id, error = %e, "cannot read the seats moved off an agent");
            Vec::new()
        }
    }
}

/// Moves the seats of agents gone longer than the grace period, until the server shuts down.
/// Does nothing without an object store (there would be no files to recreate the seats from).
pub async fn run(state: AppState) {
    if state.config().object_store.is_none() {
        return;
    }
    let grace = state.config().host_loss_grace;
    let tick = (grace / 4).clamp(Duration::from_millis(200), Duration::from_secs(2));
    let mut shutdown = state.shutdown_signal();
    let mut gone_since: HashMap<String, Instant> = HashMap::new();
    let mut every = tokio::time::interval(tick);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = round(&state, grace, &mut gone_since).await {
            tracing::warn!(error = %clarateach_core::error::error_chain(&e), "host-loss check failed");
        }
    }
}

/// One look at the lost seats: those of agents gone for `grace` move.
async fn round(
    state: &AppState,
    grace: Duration,
    gone_since: &mut HashMap<String, Instant>,
) -> Result<(), StoreError> {
    let lost = state.store().lost_seats().await?;
    if lost.is_empty() {
        gone_since.clear();
        return Ok(());
    }
    let live: Vec<String> = state
        .provisioner()
        .agents()
        .await
        .into_iter()
        .map(|a| a.agent_id)
        .collect();
    let now = Instant::now();
    gone_since.retain(|agent, _| lost.iter().any(|l| &l.agent_id == agent));
    for l in lost {
        if live.contains(&l.agent_id) {
            // Back (possibly through another replica): its registration settles its seats.
            gone_since.remove(&l.agent_id);
            continue;
        }
        let since = *gone_since.entry(l.agent_id.clone()).or_insert(now);
        if now.duration_since(since) < grace {
            continue;
        }
        match relocate(state, &l.workshop_id, l.seat, &l.agent_id, true).await {
            Ok(_) | Err(MoveError::Raced) => {}
            Err(e) => {
                tracing::warn!(workshop.id = %l.workshop_id, seat = l.seat, agent.id = %l.agent_id,
                    error = %clarateach_core::error::error_chain(&e), "cannot move a seat off a lost host")
            }
        }
    }
    Ok(())
}
