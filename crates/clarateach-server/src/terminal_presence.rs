//! Which seats an instructor watches or types in now ([`Presence`]), counted per control-plane
//! process. A plain value `AppState` holds; the guards that count (in `crate::audit`) need the
//! whole state, this does not, so it lives below it.

use std::collections::HashMap;
use std::sync::Mutex;

/// Instructor terminals open per seat: (watching, typing).
#[derive(Debug, Default)]
pub struct Presence {
    pub(crate) open: Mutex<HashMap<(String, u32), (usize, usize)>>,
}

/// Locks one of the map mutexes of this module and of `audit`.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Single inserts and removes: a panic elsewhere leaves the map consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Presence {
    /// Whether an instructor watches, and whether one types in, the seat now.
    pub fn of(&self, workshop_id: &str, seat: u32) -> clarateach_core::toolkit::Presence {
        let open = lock(&self.open);
        let (watching, typing) = open
            .get(&(workshop_id.to_string(), seat))
            .copied()
            .unwrap_or_default();
        clarateach_core::toolkit::Presence {
            watching: watching + typing > 0,
            typing: typing > 0,
        }
    }
}
