//! Seats prepared ahead of a workshop's start (issue 12: a class ready within a second of
//! Start). When a workshop is created (or a start is scheduled for it), the agent most likely to
//! host it (the connected agent of this replica with the most free seats, holding the
//! workshop's image when it names one) is asked to make what the seats need that holds nothing
//! of a learner or of the secret (`ControlMessage::PrepareSeats`: the seat count, limits and
//! image only; a sandbox agent makes the seats and runs them frozen, without the workshop's
//! environment); the start then finds them made and only activates them. A workshop that is deleted, or stopped before it ever
//! started, gives it back (`ReleasePrepared`, sent to every connected agent: cheap, and right
//! even if placement changed since); so does a stop after the start (what an agent made that no
//! seat took). Preparing is best effort: a start without it is the cold
//! start it always was.

use clarateach_core::agent_proto::ControlMessage;
use clarateach_store::WorkshopRecord;

use crate::state::AppState;

/// Asks one agent to prepare the seats of `w`; logs and returns when no agent can.
/// `CLARATEACH_PREPARE=off` turns it off (the cold start, for A/B figures).
pub async fn ahead(state: &AppState, w: &WorkshopRecord) {
    if std::env::var("CLARATEACH_PREPARE").is_ok_and(|v| v == "off") {
        return;
    }
    let agents = state.provisioner().agents().await;
    let best = agents
        .iter()
        .filter(|a| a.held_by.is_none())
        .filter(|a| {
            w.image
                .as_ref()
                .is_none_or(|i| a.images.contains(i) || a.buildable.contains(i))
        })
        .max_by_key(|a| a.capacity.saturating_sub(a.placed));
    let Some(agent) = best else {
        tracing::info!(workshop.id = %w.id, "no agent to prepare the seats ahead of the start");
        return;
    };
    let seats = w.seats.min(agent.capacity.saturating_sub(agent.placed));
    if seats == 0 {
        return;
    }
    let msg = ControlMessage::PrepareSeats {
        workshop_id: w.id.clone(),
        seats,
        limits: w.limits.clone(),
        image: w.image.clone(),
    };
    match state
        .provisioner()
        .send_to_agent(&agent.agent_id, msg)
        .await
    {
        Ok(true) => {
            tracing::info!(workshop.id = %w.id, agent.id = %agent.agent_id, seats, "seats to be prepared ahead of the start")
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(workshop.id = %w.id, error = %clarateach_core::error::error_chain(&e), "cannot ask for seats prepared ahead")
        }
    }
}

/// Tells every connected agent to give back what it prepared for `workshop_id`.
pub async fn give_back(state: &AppState, workshop_id: &str) {
    for agent in state.provisioner().agents().await {
        if agent.held_by.is_some() {
            continue;
        }
        let msg = ControlMessage::ReleasePrepared {
            workshop_id: workshop_id.to_string(),
        };
        if let Err(e) = state
            .provisioner()
            .send_to_agent(&agent.agent_id, msg)
            .await
        {
            tracing::warn!(workshop.id = workshop_id, agent.id = %agent.agent_id, error = %clarateach_core::error::error_chain(&e), "cannot ask to give back seats prepared ahead");
        }
    }
}
