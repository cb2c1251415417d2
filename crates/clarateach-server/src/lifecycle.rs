//! Workshop lifecycle: start (place seats), stop (destroy workspaces, forget the secret),
//! delete, and what agents' seat reports do to a workshop's status.
//!
//! Status moves are conditional updates in the store (`transition`), so two racing starts or
//! stops cannot both act. Failures are a [`LifecycleError`]; the HTTP layer (`error.rs`) maps
//! them to status codes, so this module knows nothing of HTTP.

use std::collections::BTreeMap;
use std::time::Duration;

use clarateach_core::agent_proto::{SeatReport, SeatSpec};
use clarateach_core::{SeatState, Workshop, WorkshopStatus};
use clarateach_store::{StoreError, WorkshopRecord};

use crate::scheduler::ProvisionError;
use crate::secrets::SecretError;
use crate::state::AppState;

/// Why a lifecycle step failed.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no workshop with that id")]
    NotFound,
    #[error("the workshop is still stopping")]
    Stopping,
    #[error("the workshop must be stopped first")]
    Running,
    #[error("not enough agent capacity to place the seats")]
    NoCapacity(#[source] ProvisionError),
    #[error("cannot place the seats")]
    Place(#[source] ProvisionError),
    #[error("cannot open the workshop's api key")]
    OpenApiKey(#[source] SecretError),
    #[error("store")]
    Store(#[from] StoreError),
}

/// The API shape of a workshop; `base` is the public base URL of the control plane.
pub fn to_api(w: WorkshopRecord, base: &str) -> Workshop {
    Workshop {
        endpoint: Some(format!("{base}/api/session")),
        has_api_key: w.api_key_enc.is_some(),
        id: w.id,
        name: w.name,
        code: w.code,
        seats: w.seats,
        status: w.status,
        created_at: w.created_at,
        image: w.image,
        limits: w.limits,
        seats_ready: w.seats_ready,
        seats_joined: w.seats_joined,
        start_at: None,
        idle_pause_minutes: None,
    }
}

/// [`to_api`] with the schedule fields (scheduled start, idle policy) from the store.
pub async fn to_api_scheduled(
    state: &AppState,
    w: WorkshopRecord,
    base: &str,
) -> Result<Workshop, LifecycleError> {
    let schedule = state.store().schedule(&w.id).await?;
    let mut out = to_api(w, base);
    out.start_at = schedule.start_at;
    out.idle_pause_minutes = schedule.idle_pause_minutes;
    Ok(out)
}

/// What each seat's workspace should look like; the decrypted api key goes into its env only,
/// the starter files of the workshop's template (if any) ride along for a new volume.
pub async fn seat_specs(
    state: &AppState,
    w: &WorkshopRecord,
    seats: &[u32],
) -> Result<Vec<SeatSpec>, LifecycleError> {
    let mut env = BTreeMap::new();
    if let Some(sealed) = &w.api_key_enc {
        let key = state
            .secrets()
            .open(&w.id, sealed)
            .map_err(LifecycleError::OpenApiKey)?;
        env.insert("ANTHROPIC_API_KEY".to_string(), key.expose().to_string());
        env.insert("CLAUDE_API_KEY".to_string(), key.expose().to_string());
    }
    let starter = crate::handlers::templates::seat_starter(state, &w.id).await?;
    Ok(seats
        .iter()
        .map(|&seat| SeatSpec {
            starter: starter.clone(),
            workshop_id: w.id.clone(),
            seat,
            image: w.image.clone(),
            limits: w.limits.clone(),
            env: env.clone(),
        })
        .collect())
}

/// Specs for seats an agent should host (`(workshop_id, seat)` pairs from the store).
pub async fn desired_specs(
    state: &AppState,
    hosted: &[(String, u32)],
) -> Result<Vec<SeatSpec>, LifecycleError> {
    let mut by_workshop: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (ws, seat) in hosted {
        by_workshop.entry(ws.as_str()).or_default().push(*seat);
    }
    let mut out = Vec::new();
    for (ws, seats) in by_workshop {
        if let Some(w) = state.store().get_workshop(ws).await? {
            out.extend(seat_specs(state, &w, &seats).await?);
        }
    }
    Ok(out)
}

async fn reload(state: &AppState, id: &str) -> Result<WorkshopRecord, LifecycleError> {
    state
        .store()
        .get_workshop(id)
        .await?
        .ok_or(LifecycleError::NotFound)
}

/// Places every seat; the workshop is `provisioning` until all report ready. Without enough
/// agent capacity it stays as it was and the caller gets 503 `no_capacity`.
pub async fn start(state: &AppState, w: WorkshopRecord) -> Result<WorkshopRecord, LifecycleError> {
    use WorkshopStatus::*;
    match w.status {
        Provisioning | Running => return Ok(w),
        Stopping => return Err(LifecycleError::Stopping),
        Created | Stopped | Failed => {}
    }
    let store = state.store();
    if !store
        .transition(&w.id, &[Created, Stopped, Failed], Provisioning)
        .await?
    {
        return reload(state, &w.id).await; // a concurrent start won
    }
    let seats: Vec<u32> = (1..=w.seats).collect();
    let placed = match seat_specs(state, &w, &seats).await {
        Ok(specs) => {
            store
                .set_seats_state(&w.id, None, SeatState::Pending)
                .await?;
            state
                .provisioner()
                .place(&w.id, specs)
                .await
                .map_err(|e| match e {
                    ProvisionError::NoCapacity { .. } | ProvisionError::NoImage { .. } => {
                        LifecycleError::NoCapacity(e)
                    }
                    other => LifecycleError::Place(other),
                })
        }
        Err(e) => Err(e),
    };
    if let Err(e) = placed {
        store.transition(&w.id, &[Provisioning], w.status).await?;
        return Err(e);
    }
    tracing::info!(workshop.id = %w.id, seats = w.seats, "workshop provisioning");
    reload(state, &w.id).await
}

/// Destroys every workspace (volumes kept) and forgets the api key. Returns once stopped, or
/// after a short wait with status `stopping` while agents are still reporting.
pub async fn stop(state: &AppState, w: WorkshopRecord) -> Result<WorkshopRecord, LifecycleError> {
    use WorkshopStatus::*;
    let store = state.store();
    match w.status {
        Stopped | Stopping => return Ok(w),
        Created => {
            if store.transition(&w.id, &[Created], Stopped).await? {
                store.clear_api_key(&w.id).await?;
                crate::prepare::give_back(state, &w.id).await;
            }
            return reload(state, &w.id).await;
        }
        Provisioning | Running | Failed => {}
    }
    if !store
        .transition(&w.id, &[Provisioning, Running, Failed], Stopping)
        .await?
    {
        return reload(state, &w.id).await;
    }
    let release = match state.provisioner().release(&w.id, false).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(workshop.id = %w.id, error = %e, "cannot release seats");
            Default::default()
        }
    };
    store
        .set_seats_state(&w.id, Some(&release.unreachable), SeatState::Destroyed)
        .await?;
    // Seats run ahead on an agent the Start placed none (or fewer) of them on go now, not
    // when the agent's own time limit ends.
    crate::prepare::give_back(state, &w.id).await;
    let finisher = tokio::spawn(finish_stop(state.clone(), w.id.clone()));
    let _ = tokio::time::timeout(Duration::from_secs(2), finisher).await;
    reload(state, &w.id).await
}

/// Waits (up to the stop timeout) for every seat to be destroyed, then marks the workshop
/// stopped and deletes its secret.
async fn finish_stop(state: AppState, id: String) {
    let deadline = tokio::time::Instant::now() + state.config().stop_timeout;
    let mut left = Vec::new();
    loop {
        match state.store().list_seats(&id).await {
            Ok(seats) => {
                left = seats
                    .iter()
                    .filter(|s| {
                        matches!(
                            s.state,
                            SeatState::Creating
                                | SeatState::Ready
                                | SeatState::Paused
                                | SeatState::Preparing
                        )
                    })
                    .map(|s| s.seat)
                    .collect();
                if left.is_empty() {
                    break;
                }
            }
            Err(e) => {
                tracing::error!(workshop.id = %id, error = %e, "cannot read seats while stopping")
            }
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(workshop.id = %id, seats = ?left, "agents did not confirm destroy in time; seats marked lost");
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let done: Result<(), StoreError> = async {
        if !left.is_empty() {
            state
                .store()
                .set_seats_state(&id, Some(&left), SeatState::Lost)
                .await?;
        }
        state.store().clear_api_key(&id).await?;
        state
            .store()
            .transition(&id, &[WorkshopStatus::Stopping], WorkshopStatus::Stopped)
            .await?;
        Ok(())
    }
    .await;
    match done {
        Ok(()) => tracing::info!(workshop.id = %id, "workshop stopped"),
        Err(e) => tracing::error!(workshop.id = %id, error = %e, "cannot finish stopping"),
    }
}

/// Deletes a workshop that is not running, with its seat volumes on connected agents.
pub async fn delete(state: &AppState, w: WorkshopRecord) -> Result<(), LifecycleError> {
    use WorkshopStatus::*;
    if matches!(w.status, Provisioning | Running | Stopping) {
        return Err(LifecycleError::Running);
    }
    match state.provisioner().release(&w.id, true).await {
        Ok(r) if !r.unreachable.is_empty() => {
            tracing::info!(workshop.id = %w.id, seats = r.unreachable.len(), "seat volumes not on a connected agent")
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(workshop.id = %w.id, error = %e, "cannot ask agents to delete volumes")
        }
    }
    // The seats' synced files go with the workshop (issue 13).
    if let Some(store) = &state.config().object_store {
        match store.delete_prefix(&store.workshop_prefix(&w.id)).await {
            Ok(n) => tracing::info!(workshop.id = %w.id, objects = n, "synced seat files deleted"),
            Err(e) => {
                tracing::warn!(workshop.id = %w.id, error = %e, "cannot delete the synced seat files")
            }
        }
    }
    crate::prepare::give_back(state, &w.id).await;
    state.store().delete_workshop(&w.id).await?;
    tracing::info!(workshop.id = %w.id, "workshop deleted");
    Ok(())
}

/// Applies an agent's report about one of its seats.
pub async fn on_seat_report(
    state: &AppState,
    agent_id: &str,
    r: &SeatReport,
) -> Result<(), StoreError> {
    let store = state.store();
    if !store
        .report_seat(&r.workshop_id, r.seat, agent_id, r.state)
        .await?
    {
        return Ok(());
    }
    if r.state == SeatState::Ready {
        crate::pause::on_ready(state, &r.workshop_id, r.seat).await;
    }
    crate::pause::reported(state);
    match r.state {
        SeatState::Ready if store.promote_if_all_ready(&r.workshop_id).await? => {
            tracing::info!(workshop.id = %r.workshop_id, "workshop running");
        }
        SeatState::Failed => {
            tracing::error!(workshop.id = %r.workshop_id, seat = r.seat, agent.id = agent_id, reason = ?r.error, "seat failed");
            store
                .transition(
                    &r.workshop_id,
                    &[WorkshopStatus::Provisioning],
                    WorkshopStatus::Failed,
                )
                .await?;
        }
        _ => {}
    }
    Ok(())
}
