//! The control plane's own clock: scheduled workshop starts (`start_at`, persisted, so a
//! restart keeps them; one in the past starts at once) and the idle policy's rounds. One task
//! per server, ticking every `schedule_tick`; each scheduled start is taken with a conditional
//! update, so two replicas never both start a workshop.

use chrono::Utc;
use clarateach_core::WorkshopStatus;
use tokio::sync::watch;

use crate::state::AppState;

/// Runs until `shutdown` turns true.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(state.config().schedule_tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        starts_due(&state).await;
        if let Err(e) = crate::pause::idle_tick(&state).await {
            tracing::warn!(error = ?e, "idle policy round failed");
        }
    }
}

/// Starts every workshop whose `start_at` has come.
pub async fn starts_due(state: &AppState) {
    let due = match state.store().scheduled_starts().await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read scheduled starts");
            return;
        }
    };
    let now = Utc::now();
    for (id, at) in due.into_iter().filter(|(_, at)| *at <= now) {
        match state.store().take_start_at(&id, at).await {
            Ok(true) => {}
            Ok(false) => continue, // another replica, or the instructor, got there first
            Err(e) => {
                tracing::warn!(workshop.id = %id, error = %e, "cannot take a scheduled start");
                continue;
            }
        }
        let w = match state.store().get_workshop(&id).await {
            Ok(Some(w)) => w,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(workshop.id = %id, error = %e, "cannot read a scheduled workshop");
                continue;
            }
        };
        if matches!(
            w.status,
            WorkshopStatus::Provisioning | WorkshopStatus::Running
        ) {
            continue;
        }
        match crate::lifecycle::start(state, w).await {
            Ok(w) => {
                tracing::info!(workshop.id = %id, scheduled = %at, status = ?w.status, "scheduled start")
            }
            Err(e) => tracing::error!(workshop.id = %id, error = ?e, "scheduled start failed"),
        }
    }
}
