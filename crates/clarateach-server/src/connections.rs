//! Open learner connections per seat ([`Connections`]), what the idle-pause policy counts. A
//! plain value `AppState` holds; the guard and the policy (in `crate::pause`) need the whole
//! state, this does not, so it lives below it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

/// Open learner connections (WebSockets spliced by the gateway) per seat, and since when the
/// idle policy has seen a seat with no activity at all.
#[derive(Debug, Default)]
pub struct Connections {
    pub(crate) open: Mutex<HashMap<(String, u32), usize>>,
    pub(crate) unused_since: Mutex<HashMap<(String, u32), Instant>>,
    /// Woken by every seat report this replica applies, so a pause or resume waiting for its
    /// seats (`settle`) looks again at once instead of at its next poll.
    pub(crate) reported: tokio::sync::Notify,
    /// Idle-paused seats whose resume a learner's return started and that have not settled:
    /// the next request of that return (the join's `pause::wake`, then the terminal's upgrade)
    /// waits for the same resume instead of asking the store and the agent again.
    pub(crate) resuming: Mutex<HashSet<(String, u32)>>,
}

/// Locks one of the map mutexes of this module and of `pause`.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Single inserts and removes: a panic elsewhere leaves the map consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Connections {
    pub(crate) fn is_open(&self, workshop_id: &str, seat: u32) -> bool {
        lock(&self.open).contains_key(&(workshop_id.to_string(), seat))
    }
}
