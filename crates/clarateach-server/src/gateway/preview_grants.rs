//! Preview tickets and preview-host sessions ([`Previews`]), kept in memory: a restart signs
//! preview viewers out. A plain value `AppState` holds; the preview host's routing and sign-in
//! (in [`super::preview`]) need the whole state, this does not, so it lives below it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clarateach_core::preview::PreviewTarget;
use clarateach_core::TokenClaims;

use super::seat::Role;

/// How long a preview ticket may wait to be redeemed.
const TICKET_TTL: Duration = Duration::from_secs(30);
pub(super) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Live tickets and sessions at most (each a few hundred bytes).
const MAX_LIVE: usize = 50_000;

/// Who a ticket or session was issued to, for which preview.
#[derive(Debug, Clone)]
pub struct PreviewGrant {
    pub target: PreviewTarget,
    pub role: Role,
    /// A learner's claims, checked against the store again on every request (a reset seat
    /// signs its old learner out of its previews too).
    pub learner: Option<TokenClaims>,
}

#[derive(Debug, Default)]
struct Live {
    tickets: HashMap<String, (Instant, PreviewGrant)>,
    sessions: HashMap<String, (Instant, PreviewGrant)>,
}

/// Preview tickets and preview-host sessions. The mutex is held for one map
/// operation, never across an `.await`.
#[derive(Debug, Default)]
pub struct Previews(Mutex<Live>);

fn take_live(
    map: &mut HashMap<String, (Instant, PreviewGrant)>,
    key: &str,
    ttl: Duration,
    single_use: bool,
) -> Option<PreviewGrant> {
    let now = Instant::now();
    let fresh = map
        .get(key)
        .is_some_and(|(t, _)| now.duration_since(*t) < ttl);
    if single_use || !fresh {
        let (_, g) = map.remove(key)?;
        return fresh.then_some(g);
    }
    map.get(key).map(|(_, g)| g.clone())
}

fn insert_bounded(
    map: &mut HashMap<String, (Instant, PreviewGrant)>,
    prefix: &str,
    ttl: Duration,
    grant: PreviewGrant,
) -> Option<String> {
    let now = Instant::now();
    if map.len() >= MAX_LIVE {
        map.retain(|_, (t, _)| now.duration_since(*t) < ttl);
    }
    if map.len() >= MAX_LIVE {
        return None;
    }
    let key = crate::accounts::new_token(prefix);
    map.insert(key.clone(), (now, grant));
    Some(key)
}

impl Previews {
    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A one-time ticket (30 s) for `grant`; `None` when too many are live.
    pub fn issue_ticket(&self, grant: PreviewGrant) -> Option<String> {
        insert_bounded(&mut self.live().tickets, "cpt_", TICKET_TTL, grant)
    }

    pub(super) fn redeem_ticket(&self, ticket: &str) -> Option<PreviewGrant> {
        take_live(&mut self.live().tickets, ticket, TICKET_TTL, true)
    }

    pub(super) fn open_session(&self, grant: PreviewGrant) -> Option<String> {
        insert_bounded(&mut self.live().sessions, "cps_", SESSION_TTL, grant)
    }

    pub(super) fn session(&self, id: &str) -> Option<PreviewGrant> {
        take_live(&mut self.live().sessions, id, SESSION_TTL, false)
    }
}
