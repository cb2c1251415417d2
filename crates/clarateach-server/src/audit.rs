//! Audit and consent (issue 10): every watch, take-over, broadcast, check, reset and export an
//! instructor does is appended to the store ([`record`]), and while an instructor's terminal is
//! open on a seat the learner can see it ([`Presence`]: the gateway holds a [`PresenceGuard`]
//! for as long as it splices an instructor's terminal WebSocket).
//!
//! Presence is kept per control-plane process: with several replicas a learner sees the
//! instructors connected through the replica that answers them.

use chrono::Utc;
use clarateach_core::toolkit::{AuditAction, AuditEvent};
use clarateach_core::TerminalMode;

use crate::gateway::seat::{Role, SeatAccess};
use crate::state::AppState;
use crate::terminal_presence::lock;
pub use crate::terminal_presence::Presence;

/// Appends an event. A store failure is logged, never turned into the action failing: the
/// action already happened, and refusing to report it would hide it twice.
pub async fn record(
    state: &AppState,
    workshop_id: &str,
    actor: &str,
    action: AuditAction,
    seat: Option<u32>,
    detail: Option<String>,
) {
    let event = AuditEvent {
        at: Utc::now(),
        actor: actor.to_string(),
        actor_name: None,
        action,
        seat,
        detail: detail.map(|d| clarateach_core::classroom::bounded_text(&d, 300)),
    };
    if let Err(e) = state.store().append_audit(workshop_id, &event).await {
        tracing::error!(workshop.id = workshop_id, action = action.as_str(), error = %e, "cannot record an audit event");
    }
}

/// Counts an instructor terminal open until dropped.
#[derive(Debug)]
pub struct PresenceGuard {
    state: AppState,
    key: (String, u32),
    typing: bool,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let mut open = lock(&self.state.presence().open);
        let empty = match open.get_mut(&self.key) {
            Some(e) => {
                if self.typing {
                    e.1 = e.1.saturating_sub(1);
                } else {
                    e.0 = e.0.saturating_sub(1);
                }
                *e == (0, 0)
            }
            None => false,
        };
        if empty {
            open.remove(&self.key);
        }
    }
}

/// For an instructor's terminal WebSocket: records the watch or take-over and counts it as
/// present until the guard drops. `None` for anything else.
pub async fn instructor_terminal(
    state: &AppState,
    access: &SeatAccess,
    rest: &str,
) -> Option<PresenceGuard> {
    if access.role != Role::Instructor || rest != "terminal" {
        return None;
    }
    let typing = access.mode == TerminalMode::Takeover;
    let action = if typing {
        AuditAction::TakeOver
    } else {
        AuditAction::Watch
    };
    // Only the workshop's own instructor gets this far (the access check), so it is the actor.
    let actor = match state.store().get_workshop(&access.workshop_id).await {
        Ok(Some(w)) => w.instructor_id,
        _ => "unknown".to_string(),
    };
    record(
        state,
        &access.workshop_id,
        &actor,
        action,
        Some(access.seat),
        None,
    )
    .await;
    let key = (access.workshop_id.clone(), access.seat);
    {
        let mut open = lock(&state.presence().open);
        let (w, t) = open.entry(key.clone()).or_default();
        *(if typing { t } else { w }) += 1;
    }
    Some(PresenceGuard {
        state: state.clone(),
        key,
        typing,
    })
}
