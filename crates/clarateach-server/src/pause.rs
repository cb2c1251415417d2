//! Pause and resume over breaks. The instructor (or the workshop's idle policy) asks a seat's
//! agent to freeze it (`PauseSeat`); the agent answers with a `paused` seat report, and a
//! `ready` one after `ResumeSeat`. Who paused a seat is kept in the store: a seat paused by the
//! instructor answers its learner `423 seat_paused` until resumed, while a seat the idle policy
//! paused is resumed by its learner's next request (the gateway waits for the thaw, a few
//! milliseconds, then goes on).
//!
//! Idle means no learner input and no open learner connection for the workshop's
//! `idle_pause_minutes`: the gateway counts open WebSockets per seat here ([`Connections`]),
//! and its activity timestamps give the last input.

use clarateach_core::ErrorCode;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::Utc;
use clarateach_core::agent_proto::ControlMessage;
use clarateach_core::{PauseReason, SeatState, WorkshopStatus};
use clarateach_store::{SeatRecord, WorkshopRecord};

use crate::connections::lock;
pub use crate::connections::Connections;
use crate::error::ApiError;
use crate::gateway::seat::SeatAccess;
use crate::state::AppState;

/// How long a pause or resume request waits for the agents' reports.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Marks a seat's resume as under way until dropped (also when the request is cancelled).
struct Resuming<'a> {
    state: &'a AppState,
    key: (String, u32),
}

impl Drop for Resuming<'_> {
    fn drop(&mut self) {
        lock(&self.state.connections().resuming).remove(&self.key);
    }
}

/// A seat report was applied (called by `lifecycle::on_seat_report`): wakes every `settle`.
pub fn reported(state: &AppState) {
    state.connections().reported.notify_waiters();
}

/// How often `settle` reads the store without a report of this replica's (an agent connected
/// to another replica reports there).
const SETTLE_POLL: Duration = Duration::from_millis(5);

/// Held while a learner connection is open; dropping it counts the connection closed.
#[derive(Debug)]
pub struct ConnectionGuard {
    state: AppState,
    key: (String, u32),
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut open = lock(&self.state.connections().open);
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Counts a learner connection to the seat as open until the guard drops.
pub fn connection_opened(state: &AppState, workshop_id: &str, seat: u32) -> ConnectionGuard {
    let key = (workshop_id.to_string(), seat);
    *lock(&state.connections().open)
        .entry(key.clone())
        .or_default() += 1;
    ConnectionGuard {
        state: state.clone(),
        key,
    }
}

fn not_running() -> ApiError {
    ApiError::conflict(
        ErrorCode::WorkshopNotRunning,
        "Only the seats of a running workshop can be paused or resumed.",
    )
}

/// The answer a learner gets from a seat the instructor paused.
pub fn seat_paused() -> ApiError {
    ApiError::new(
        StatusCode::LOCKED,
        ErrorCode::SeatPaused,
        "The instructor paused this seat; it goes on where it was when they resume it.",
    )
}

/// Pauses (`paused`) or resumes `seats` of a running workshop (every seat when `None`) and
/// waits until their agents report the change (at most a few seconds). Seats that are not
/// ready (or, to resume, not paused) are left alone. Returns the seats afterwards.
pub async fn set_paused(
    state: &AppState,
    w: &WorkshopRecord,
    seats: Option<&[u32]>,
    paused: bool,
    reason: PauseReason,
) -> Result<Vec<SeatRecord>, ApiError> {
    if !matches!(
        w.status,
        WorkshopStatus::Running | WorkshopStatus::Provisioning
    ) {
        return Err(not_running());
    }
    let all = state.store().list_seats(&w.id).await?;
    let from = if paused {
        SeatState::Ready
    } else {
        SeatState::Paused
    };
    let targets: Vec<&SeatRecord> = all
        .iter()
        .filter(|s| seats.is_none_or(|list| list.contains(&s.seat)))
        .filter(|s| s.state == from || (paused && s.state == SeatState::Paused))
        .collect();
    let numbers: Vec<u32> = targets.iter().map(|s| s.seat).collect();
    // Recorded first, so the gateway answers `seat_paused` from the moment the freeze is asked.
    state
        .store()
        .set_paused_by(&w.id, &numbers, paused.then_some(reason))
        .await?;
    let mut waiting = Vec::new();
    for s in &targets {
        let Some(agent_id) = &s.agent_id else {
            continue;
        };
        let (workshop_id, seat) = (w.id.clone(), s.seat);
        let msg = if paused {
            ControlMessage::PauseSeat { workshop_id, seat }
        } else {
            ControlMessage::ResumeSeat { workshop_id, seat }
        };
        match state.provisioner().send_to_agent(agent_id, msg).await {
            Ok(true) => waiting.push(s.seat),
            Ok(false) => {
                tracing::warn!(workshop.id = %w.id, seat = s.seat, agent.id = %agent_id, "agent not connected: seat not paused or resumed")
            }
            Err(e) => return Err(ApiError::internal(&e)),
        }
    }
    let to = if paused {
        SeatState::Paused
    } else {
        SeatState::Ready
    };
    let began = Instant::now();
    let after = settle(state, &w.id, &waiting, to).await?;
    tracing::info!(workshop.id = %w.id, seats = waiting.len(), paused, reason = reason.as_str(), ms = began.elapsed().as_secs_f64() * 1e3, "seats paused or resumed");
    Ok(after)
}

/// Waits until every seat of `seats` is in `to` in the store, or the settle timeout passes:
/// looks again on every seat report this replica applies, and every `SETTLE_POLL` for reports
/// applied by another replica.
async fn settle(
    state: &AppState,
    workshop_id: &str,
    seats: &[u32],
    to: SeatState,
) -> Result<Vec<SeatRecord>, ApiError> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        // Registered before the read, so a report applied meanwhile is not missed.
        let report = state.connections().reported.notified();
        tokio::pin!(report);
        report.as_mut().enable();
        let now = state.store().list_seats(workshop_id).await?;
        let done = now
            .iter()
            .filter(|s| seats.contains(&s.seat))
            .all(|s| s.state == to || !matches!(s.state, SeatState::Ready | SeatState::Paused));
        if done || Instant::now() >= deadline {
            return Ok(now);
        }
        let _ = tokio::time::timeout(SETTLE_POLL, report).await;
    }
}

/// Starts thawing a seat the idle policy paused as soon as its learner comes back with the
/// reconnect code (issue 12's reconnect-resume), so the thaw overlaps the page load, the
/// ticket and the terminal's upgrade instead of starting with the upgrade. The gateway's
/// [`admit`] still waits for the seat; a seat the instructor paused stays paused.
pub fn wake(state: &AppState, workshop_id: &str, seat: u32) {
    let access = SeatAccess {
        workshop_id: workshop_id.to_string(),
        seat,
        role: crate::gateway::seat::Role::Learner,
        mode: clarateach_core::TerminalMode::Interactive,
    };
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = admit(&state, &access).await {
            tracing::debug!(workshop.id = %access.workshop_id, seat = access.seat, error = ?e, "seat not woken at reconnect");
        }
    });
}

/// The gateway's check before it forwards a request to a seat: a seat the instructor paused
/// answers `seat_paused`; a seat the idle policy paused is resumed first (this is the
/// "learner comes back" path, so it is timed).
pub async fn admit(state: &AppState, access: &SeatAccess) -> Result<(), ApiError> {
    let Some(seat) = state
        .store()
        .get_seat(&access.workshop_id, access.seat)
        .await?
    else {
        return Ok(());
    };
    if seat.state != SeatState::Paused {
        return Ok(());
    }
    if state
        .store()
        .paused_by(&access.workshop_id, access.seat)
        .await?
        == Some(PauseReason::Instructor)
    {
        return Err(seat_paused());
    }
    let began = Instant::now();
    let key = (access.workshop_id.clone(), access.seat);
    let first = lock(&state.connections().resuming).insert(key.clone());
    let after = if first {
        let _under_way = Resuming { state, key };
        let Some(w) = state.store().get_workshop(&access.workshop_id).await? else {
            return Ok(());
        };
        set_paused(state, &w, Some(&[access.seat]), false, PauseReason::Idle).await?
    } else {
        settle(state, &access.workshop_id, &[access.seat], SeatState::Ready).await?
    };
    let ready = after
        .iter()
        .any(|s| s.seat == access.seat && s.state == SeatState::Ready);
    tracing::info!(workshop.id = %access.workshop_id, seat = access.seat, ready, asked = first, ms = began.elapsed().as_secs_f64() * 1e3, "idle seat resumed by its learner");
    if ready {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::SeatUnavailable,
            "The seat is waking up; try again in a moment.",
        ))
    }
}

/// A `ready` report ends a pause: whoever paused the seat is forgotten.
pub async fn on_ready(state: &AppState, workshop_id: &str, seat: u32) {
    let store = state.store();
    match store.paused_by(workshop_id, seat).await {
        Ok(Some(_)) => {
            if let Err(e) = store.set_paused_by(workshop_id, &[seat], None).await {
                tracing::warn!(workshop.id = workshop_id, seat, error = %e, "cannot clear a pause");
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(workshop.id = workshop_id, seat, error = %e, "cannot read a pause")
        }
    }
}

/// One round of the idle policy: every ready seat of a running workshop with a policy whose
/// learner neither typed nor held a connection for the policy's minutes is paused.
pub async fn idle_tick(state: &AppState) -> Result<(), ApiError> {
    for (workshop_id, minutes) in state.store().idle_policies().await? {
        let limit = chrono::Duration::minutes(i64::from(minutes));
        let Some(w) = state.store().get_workshop(&workshop_id).await? else {
            continue;
        };
        let now = Utc::now();
        let mut idle = Vec::new();
        for s in state.store().list_seats(&workshop_id).await? {
            let key = (workshop_id.clone(), s.seat);
            if s.state != SeatState::Ready || state.connections().is_open(&workshop_id, s.seat) {
                lock(&state.connections().unused_since).remove(&key);
                continue;
            }
            // The gateway touches the seat on every learner request, so the last activity (else
            // the join) is when the learner was last there.
            let last = s.last_activity_at.or(s.joined_at);
            let quiet = match last {
                Some(t) => now - t >= limit,
                // Never used: idle since the policy first saw it so.
                None => {
                    let mut unused = lock(&state.connections().unused_since);
                    let since = *unused.entry(key).or_insert_with(Instant::now);
                    since.elapsed() >= limit.to_std().unwrap_or(Duration::MAX)
                }
            };
            if quiet {
                idle.push(s.seat);
            }
        }
        if !idle.is_empty() {
            tracing::info!(workshop.id = %workshop_id, seats = ?idle, minutes, "pausing idle seats");
            set_paused(state, &w, Some(&idle), true, PauseReason::Idle).await?;
        }
    }
    Ok(())
}
