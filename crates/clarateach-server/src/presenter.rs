//! What the instructor is presenting to a workshop's learners (issue 10): its announcements
//! (banners) and its spotlight (the one terminal shared read-only as a "Presenter" tab).
//!
//! The store is the truth ([`PresenterStore`]): a control-plane restart keeps both, and every
//! replica serves the same ones. This replica keeps, for each workshop one of its learners is
//! watching (an event stream or a Presenter tab open here, see [`Presenter::watch`]), the last
//! state it read, and one version in a `watch` channel that its viewers wait on:
//! - a change made through this replica re-reads the store and bumps the version at once;
//! - a change made through another replica is found by this replica's refresher, which re-reads
//!   every watched workshop each [`REFRESH`] and bumps the version when one differs.
//!
//! A plain mutex: held for a map operation, never across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use clarateach_core::presenter::{Announcement, Spotlight};
use clarateach_store::{AnnouncementRecord, SpotlightRecord, Store, StoreError};
use tokio::sync::watch;

/// Announcements kept per workshop; the oldest go first.
pub const MAX_ANNOUNCEMENTS: usize = 20;
/// How often this replica re-reads the watched workshops, to learn of another replica's changes.
pub const REFRESH: Duration = Duration::from_secs(2);

/// What a workshop's learners are shown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shown {
    pub announcements: Vec<Announcement>,
    pub spotlight: Option<Spotlight>,
}

#[derive(Debug, Default)]
struct Watched {
    viewers: usize,
    shown: Shown,
}

#[derive(Debug)]
struct Shared {
    watched: Mutex<HashMap<String, Watched>>,
    version: watch::Sender<u64>,
    refresher: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Watched>> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `now` as the workshop's state if it is watched; true when that changed it.
    fn update(&self, workshop_id: &str, now: Shown) -> bool {
        match self.lock().get_mut(workshop_id) {
            Some(w) if w.shown != now => {
                w.shown = now;
                true
            }
            _ => false,
        }
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }
}

/// Announcements and spotlights as this replica's learners see them.
#[derive(Debug)]
pub struct Presenter {
    shared: Arc<Shared>,
}

impl Default for Presenter {
    fn default() -> Self {
        Self {
            shared: Arc::new(Shared {
                watched: Mutex::new(HashMap::new()),
                version: watch::Sender::new(0),
                refresher: AtomicBool::new(false),
            }),
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn announcement(r: AnnouncementRecord) -> Announcement {
    Announcement {
        id: r.id,
        message: r.message,
        created_at: rfc3339(r.created_at),
    }
}

fn spotlight(r: SpotlightRecord) -> Spotlight {
    Spotlight {
        seat: r.seat,
        session: r.session,
        since: rfc3339(r.since),
    }
}

/// The workshop's state, from the store.
async fn read(store: &dyn Store, workshop_id: &str) -> Result<Shown, StoreError> {
    Ok(Shown {
        announcements: store
            .list_announcements(workshop_id)
            .await?
            .into_iter()
            .map(announcement)
            .collect(),
        spotlight: store.spotlight(workshop_id).await?.map(spotlight),
    })
}

/// A learner's view of a workshop held open on this replica: while it lives, the workshop is
/// re-read each [`REFRESH`].
#[derive(Debug)]
pub struct Viewer {
    shared: Arc<Shared>,
    workshop_id: String,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let mut map = self.shared.lock();
        if let Some(w) = map.get_mut(&self.workshop_id) {
            w.viewers = w.viewers.saturating_sub(1);
            if w.viewers == 0 {
                map.remove(&self.workshop_id);
            }
        }
    }
}

impl Presenter {
    /// After a change made here: the store's state reaches this replica's viewers at once.
    async fn changed(&self, store: &dyn Store, workshop_id: &str) -> Result<(), StoreError> {
        let now = read(store, workshop_id).await?;
        self.shared.update(workshop_id, now);
        self.shared.bump();
        Ok(())
    }

    /// Adds an announcement (already validated) and returns it.
    pub async fn announce(
        &self,
        store: &dyn Store,
        workshop_id: &str,
        message: String,
    ) -> Result<Announcement, StoreError> {
        let r = AnnouncementRecord {
            id: format!("an-{}", &crate::accounts::new_token("")[..12]),
            message,
            created_at: Utc::now(),
        };
        store
            .add_announcement(workshop_id, &r, MAX_ANNOUNCEMENTS as u32)
            .await?;
        self.changed(store, workshop_id).await?;
        Ok(announcement(r))
    }

    /// Removes one announcement; false if the workshop has no such one.
    pub async fn dismiss(
        &self,
        store: &dyn Store,
        workshop_id: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let gone = store.delete_announcement(workshop_id, id).await?;
        if gone {
            self.changed(store, workshop_id).await?;
        }
        Ok(gone)
    }

    /// The workshop's announcements, oldest first, from the store.
    pub async fn announcements(
        &self,
        store: &dyn Store,
        workshop_id: &str,
    ) -> Result<Vec<Announcement>, StoreError> {
        Ok(read(store, workshop_id).await?.announcements)
    }

    /// Shares `seat`'s `session` with every learner (replacing what was shared; the same
    /// terminal again is no change).
    pub async fn spotlight_on(
        &self,
        store: &dyn Store,
        workshop_id: &str,
        seat: u32,
        session: String,
    ) -> Result<Spotlight, StoreError> {
        let want = SpotlightRecord {
            seat,
            session,
            since: Utc::now(),
        };
        let now = store.set_spotlight(workshop_id, &want).await?;
        if now == want {
            self.changed(store, workshop_id).await?;
        }
        Ok(spotlight(now))
    }

    /// Stops sharing; false if nothing was shared.
    pub async fn spotlight_off(
        &self,
        store: &dyn Store,
        workshop_id: &str,
    ) -> Result<bool, StoreError> {
        let was = store.clear_spotlight(workshop_id).await?;
        if was {
            self.changed(store, workshop_id).await?;
        }
        Ok(was)
    }

    /// What the workshop shares now, from the store.
    pub async fn spotlight(
        &self,
        store: &dyn Store,
        workshop_id: &str,
    ) -> Result<Option<Spotlight>, StoreError> {
        Ok(store.spotlight(workshop_id).await?.map(spotlight))
    }

    /// Both, from the store (a learner's snapshot).
    pub async fn shown(&self, store: &dyn Store, workshop_id: &str) -> Result<Shown, StoreError> {
        read(store, workshop_id).await
    }

    /// Clears both (the workshop stopped).
    pub async fn forget(&self, store: &dyn Store, workshop_id: &str) -> Result<(), StoreError> {
        store.clear_presenter(workshop_id).await?;
        self.changed(store, workshop_id).await
    }

    /// Keeps the workshop's state fresh on this replica while the returned [`Viewer`] lives
    /// (read now, then each [`REFRESH`]); [`Presenter::cached`] gives it without a query.
    pub async fn watch(
        &self,
        store: Arc<dyn Store>,
        workshop_id: &str,
    ) -> Result<Viewer, StoreError> {
        let now = read(store.as_ref(), workshop_id).await?;
        {
            let mut map = self.shared.lock();
            let w = map.entry(workshop_id.to_string()).or_default();
            w.viewers += 1;
            w.shown = now;
        }
        if !self.shared.refresher.swap(true, Ordering::SeqCst) {
            tokio::spawn(refresh(Arc::downgrade(&self.shared), store));
        }
        Ok(Viewer {
            shared: self.shared.clone(),
            workshop_id: workshop_id.to_string(),
        })
    }

    /// The last state read of a workshop watched on this replica (empty if it is not).
    pub fn cached(&self, workshop_id: &str) -> Shown {
        self.shared
            .lock()
            .get(workshop_id)
            .map(|w| w.shown.clone())
            .unwrap_or_default()
    }

    /// Changes of any workshop: wait on it, then re-read your own ([`Presenter::cached`]).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.version.subscribe()
    }
}

/// The refresher: re-reads every watched workshop each [`REFRESH`] until the presenter is gone.
async fn refresh(shared: Weak<Shared>, store: Arc<dyn Store>) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let ids: Vec<String> = shared.lock().keys().cloned().collect();
        let mut changed = false;
        for id in ids {
            match read(store.as_ref(), &id).await {
                Ok(now) => changed |= shared.update(&id, now),
                Err(e) => {
                    tracing::warn!(workshop.id = %id, error = %clarateach_core::error::error_chain(&e), "cannot re-read the presenter state")
                }
            }
        }
        if changed {
            shared.bump();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clarateach_store::{AccountStore, WorkshopStore};

    async fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = clarateach_store::SqliteStore::open(&dir.path().join("t.db"))
            .await
            .expect("store");
        s.create_instructor("i1", "ada", "h")
            .await
            .expect("instructor");
        for (id, code) in [("ws-a", "CLAUDE-AAAA"), ("ws-b", "CLAUDE-BBBB")] {
            s.insert_workshop(&clarateach_store::NewWorkshop {
                id: id.into(),
                instructor_id: "i1".into(),
                name: id.into(),
                code: code.into(),
                seats: 3,
                created_at: Utc::now(),
                image: None,
                limits: Default::default(),
                api_key_enc: None,
            })
            .await
            .expect("workshop");
        }
        (dir, Arc::new(s))
    }

    #[tokio::test]
    async fn announcements_are_bounded_and_dismissable_per_workshop() {
        let (_dir, s) = store().await;
        let p = Presenter::default();
        let rx = p.subscribe();
        let first = p
            .announce(s.as_ref(), "ws-a", "hello".into())
            .await
            .expect("add");
        assert!(rx.has_changed().expect("open"));
        for i in 0..MAX_ANNOUNCEMENTS {
            p.announce(s.as_ref(), "ws-a", format!("n{i}"))
                .await
                .expect("add");
        }
        let list = p.announcements(s.as_ref(), "ws-a").await.expect("list");
        assert_eq!(list.len(), MAX_ANNOUNCEMENTS);
        assert!(list.iter().all(|a| a.id != first.id), "the oldest went");
        assert_eq!(list[0].message, "n0");
        assert!(p
            .announcements(s.as_ref(), "ws-b")
            .await
            .expect("b")
            .is_empty());
        assert!(
            !p.dismiss(s.as_ref(), "ws-b", &list[0].id).await.expect("d"),
            "not another workshop's"
        );
        assert!(p.dismiss(s.as_ref(), "ws-a", &list[0].id).await.expect("d"));
        assert!(!p.dismiss(s.as_ref(), "ws-a", &list[0].id).await.expect("d"));
        p.forget(s.as_ref(), "ws-a").await.expect("forget");
        assert!(p
            .announcements(s.as_ref(), "ws-a")
            .await
            .expect("a")
            .is_empty());
    }

    #[tokio::test]
    async fn spotlight_on_off_and_no_change_without_a_change() {
        let (_dir, s) = store().await;
        let p = Presenter::default();
        let mut rx = p.subscribe();
        let on = p
            .spotlight_on(s.as_ref(), "ws-a", 3, "main".into())
            .await
            .expect("on");
        assert!(rx.has_changed().expect("open"));
        rx.mark_unchanged();
        assert_eq!(
            p.spotlight_on(s.as_ref(), "ws-a", 3, "main".into())
                .await
                .expect("again"),
            on
        );
        assert!(
            !rx.has_changed().expect("open"),
            "the same spotlight again is no change"
        );
        assert_eq!(
            p.spotlight(s.as_ref(), "ws-a")
                .await
                .expect("q")
                .map(|s| s.seat),
            Some(3)
        );
        assert_eq!(p.spotlight(s.as_ref(), "ws-b").await.expect("q"), None);
        assert!(p.spotlight_off(s.as_ref(), "ws-a").await.expect("off"));
        assert!(!p.spotlight_off(s.as_ref(), "ws-a").await.expect("off"));
        assert_eq!(p.spotlight(s.as_ref(), "ws-a").await.expect("q"), None);
    }

    /// Two replicas on one store: a change made through one reaches the other's viewers within
    /// one refresh, and a restarted replica (a new presenter) shows what was there.
    #[tokio::test]
    async fn another_replicas_change_reaches_this_replicas_viewers() {
        let (_dir, s) = store().await;
        let (a, b) = (Presenter::default(), Presenter::default());
        let viewer = b.watch(s.clone(), "ws-a").await.expect("watch");
        let mut changes = b.subscribe();
        assert_eq!(b.cached("ws-a"), Shown::default());
        let t = std::time::Instant::now();
        let an = a
            .announce(s.as_ref(), "ws-a", "Break until 11".into())
            .await
            .expect("add");
        a.spotlight_on(s.as_ref(), "ws-a", 2, "main".into())
            .await
            .expect("on");
        // A refresh may land between the two changes: wait for one that saw both.
        let seen = tokio::time::timeout(REFRESH * 2, async {
            loop {
                changes.changed().await.expect("open");
                let seen = b.cached("ws-a");
                if seen.spotlight.is_some() {
                    return seen;
                }
            }
        })
        .await
        .expect("b learns of it within a refresh");
        assert_eq!(seen.announcements, std::slice::from_ref(&an));
        assert_eq!(seen.spotlight.map(|s| s.seat), Some(2));
        assert!(
            t.elapsed() <= REFRESH + Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(
            b.cached("ws-b"),
            Shown::default(),
            "not watched: nothing cached"
        );
        drop(viewer);
        assert_eq!(
            b.cached("ws-a"),
            Shown::default(),
            "forgotten with its last viewer"
        );

        let restarted = Presenter::default();
        assert_eq!(
            restarted
                .shown(s.as_ref(), "ws-a")
                .await
                .expect("q")
                .announcements,
            [an]
        );
    }
}
