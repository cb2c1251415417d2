//! What the instructor is presenting to a workshop's learners (issue 10): its announcements
//! (banners) and its spotlight (the one terminal shared read-only as a "Presenter" tab). Kept in
//! this replica's memory: a page reload gets them again from here (the learner event stream
//! sends a snapshot at connect), a control-plane restart clears them, like a whiteboard.
//!
//! Every change bumps one version in a `watch` channel; the learner event streams and spotlight
//! viewers wait on it and re-read their own workshop's state. A plain mutex: held for a map
//! operation, never across an `.await`.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{SecondsFormat, Utc};
use clarateach_core::presenter::{Announcement, Spotlight};
use tokio::sync::watch;

/// Announcements kept per workshop; the oldest go first.
pub const MAX_ANNOUNCEMENTS: usize = 20;

#[derive(Debug, Default)]
struct WorkshopLive {
    announcements: Vec<Announcement>,
    spotlight: Option<Spotlight>,
}

/// Announcements and spotlights of every workshop of this replica.
#[derive(Debug)]
pub struct Presenter {
    live: Mutex<HashMap<String, WorkshopLive>>,
    version: watch::Sender<u64>,
}

impl Default for Presenter {
    fn default() -> Self {
        Self {
            live: Mutex::new(HashMap::new()),
            version: watch::Sender::new(0),
        }
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Presenter {
    fn with<T>(&self, workshop_id: &str, f: impl FnOnce(&mut WorkshopLive) -> (T, bool)) -> T {
        let (out, changed) = {
            let mut map = self.live.lock().unwrap_or_else(|p| p.into_inner());
            let entry = map.entry(workshop_id.to_string()).or_default();
            let r = f(entry);
            if entry.announcements.is_empty() && entry.spotlight.is_none() {
                map.remove(workshop_id);
            }
            r
        };
        if changed {
            self.version.send_modify(|v| *v += 1);
        }
        out
    }

    /// Adds an announcement (already validated) and returns it.
    pub fn announce(&self, workshop_id: &str, message: String) -> Announcement {
        let a = Announcement {
            id: format!("an-{}", &crate::accounts::new_token("")[..12]),
            message,
            created_at: now(),
        };
        self.with(workshop_id, |w| {
            w.announcements.push(a.clone());
            let over = w.announcements.len().saturating_sub(MAX_ANNOUNCEMENTS);
            w.announcements.drain(..over);
            (a, true)
        })
    }

    /// Removes one announcement; false if there is no such one.
    pub fn dismiss(&self, workshop_id: &str, id: &str) -> bool {
        self.with(workshop_id, |w| {
            let before = w.announcements.len();
            w.announcements.retain(|a| a.id != id);
            let gone = w.announcements.len() != before;
            (gone, gone)
        })
    }

    pub fn announcements(&self, workshop_id: &str) -> Vec<Announcement> {
        self.with(workshop_id, |w| (w.announcements.clone(), false))
    }

    /// Shares `seat`'s `session` with every learner (replacing what was shared).
    pub fn spotlight_on(&self, workshop_id: &str, seat: u32, session: String) -> Spotlight {
        self.with(workshop_id, |w| {
            if let Some(s) = &w.spotlight {
                if s.seat == seat && s.session == session {
                    return (s.clone(), false);
                }
            }
            let s = Spotlight {
                seat,
                session,
                since: now(),
            };
            w.spotlight = Some(s.clone());
            (s, true)
        })
    }

    /// Stops sharing; false if nothing was shared.
    pub fn spotlight_off(&self, workshop_id: &str) -> bool {
        self.with(workshop_id, |w| {
            let was = w.spotlight.take().is_some();
            (was, was)
        })
    }

    pub fn spotlight(&self, workshop_id: &str) -> Option<Spotlight> {
        self.with(workshop_id, |w| (w.spotlight.clone(), false))
    }

    /// Forgets a workshop (stopped or deleted).
    pub fn forget(&self, workshop_id: &str) {
        self.with(workshop_id, |w| {
            let had = !w.announcements.is_empty() || w.spotlight.is_some();
            *w = WorkshopLive::default();
            ((), had)
        })
    }

    /// Changes of any workshop: wait on it, then re-read your own.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_are_bounded_and_dismissable_per_workshop() {
        let p = Presenter::default();
        let mut rx = p.subscribe();
        let first = p.announce("ws-a", "hello".into());
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        for i in 0..MAX_ANNOUNCEMENTS {
            p.announce("ws-a", format!("n{i}"));
        }
        let list = p.announcements("ws-a");
        assert_eq!(list.len(), MAX_ANNOUNCEMENTS);
        assert!(list.iter().all(|a| a.id != first.id), "the oldest went");
        assert!(p.announcements("ws-b").is_empty());
        assert!(!p.dismiss("ws-b", &list[0].id), "not another workshop's");
        assert!(p.dismiss("ws-a", &list[0].id));
        assert!(!p.dismiss("ws-a", &list[0].id));
        p.forget("ws-a");
        assert!(p.announcements("ws-a").is_empty());
    }

    #[test]
    fn spotlight_on_off_and_no_change_without_a_change() {
        let p = Presenter::default();
        let mut rx = p.subscribe();
        let s = p.spotlight_on("ws-a", 3, "main".into());
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        assert_eq!(p.spotlight_on("ws-a", 3, "main".into()), s);
        assert!(
            !rx.has_changed().unwrap(),
            "the same spotlight again is no change"
        );
        assert_eq!(p.spotlight("ws-a").map(|s| s.seat), Some(3));
        assert_eq!(p.spotlight("ws-b"), None);
        assert!(p.spotlight_off("ws-a"));
        assert!(!p.spotlight_off("ws-a"));
        assert_eq!(p.spotlight("ws-a"), None);
    }
}
