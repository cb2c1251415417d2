//! What the instructor presents to a workshop's learners (issue 10): its announcements (banners)
//! and its spotlight (the one terminal shared read-only). In the store, not in a replica's
//! memory, so a control-plane restart keeps them and every replica shows the same ones; deleted
//! with the workshop (`ON DELETE CASCADE`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;

/// One announcement of a workshop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncementRecord {
    pub id: String,
    pub message: String,
    pub created_at: DateTime<Utc>,
}

/// The terminal a workshop shares with every learner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotlightRecord {
    pub seat: u32,
    pub session: String,
    pub since: DateTime<Utc>,
}

/// Announcements and spotlights, by workshop.
#[async_trait]
pub trait PresenterStore: Send + Sync {
    /// Adds `a` and drops the workshop's oldest beyond the newest `keep`, in one transaction.
    async fn add_announcement(
        &self,
        workshop_id: &str,
        a: &AnnouncementRecord,
        keep: u32,
    ) -> Result<()>;
    /// True when the workshop had it.
    async fn delete_announcement(&self, workshop_id: &str, id: &str) -> Result<bool>;
    /// Oldest first.
    async fn list_announcements(&self, workshop_id: &str) -> Result<Vec<AnnouncementRecord>>;
    /// Shares `s`, unless that seat's session is shared already (then its `since` is kept);
    /// returns what is shared now.
    async fn set_spotlight(
        &self,
        workshop_id: &str,
        s: &SpotlightRecord,
    ) -> Result<SpotlightRecord>;
    /// True when something was shared.
    async fn clear_spotlight(&self, workshop_id: &str) -> Result<bool>;
    async fn spotlight(&self, workshop_id: &str) -> Result<Option<SpotlightRecord>>;
    /// Removes the workshop's announcements and spotlight (the workshop stopped).
    async fn clear_presenter(&self, workshop_id: &str) -> Result<()>;
}

#[cfg(test)]
mod tests {
    //! Run on SQLite always and on PostgreSQL when a test server is configured, as
    //! `conformance.rs` does.
    use std::sync::Arc;

    use super::*;
    use crate::conformance::{postgres, sqlite};
    use crate::sqlite::new_workshop;
    use crate::Store;

    fn a(id: &str, secs: i64) -> AnnouncementRecord {
        AnnouncementRecord {
            id: id.into(),
            message: format!("message {id}"),
            // Whole milliseconds: what both back ends keep.
            created_at: DateTime::from_timestamp(1_764_590_000 + secs, 123_000_000).expect("time"),
        }
    }

    async fn announcements_and_spotlight(s: Arc<dyn Store>) {
        s.create_instructor("i1", "ada", "h")
            .await
            .expect("instructor");
        for (id, code) in [("ws-p", "CLAUDE-PRES"), ("ws-q", "CLAUDE-QQQQ")] {
            s.insert_workshop(&new_workshop(id, code, 3))
                .await
                .expect("workshop");
        }
        // Same timestamps: the order is the order of adding.
        for i in 0..5 {
            s.add_announcement("ws-p", &a(&format!("an-{i}"), 0), 3)
                .await
                .expect("add");
        }
        s.add_announcement("ws-q", &a("an-q", 1), 3)
            .await
            .expect("other workshop");
        let list = s.list_announcements("ws-p").await.expect("list");
        let ids: Vec<&str> = list.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["an-2", "an-3", "an-4"], "the newest 3, oldest first");
        assert_eq!(list[0], a("an-2", 0), "kept as given");
        assert!(
            !s.delete_announcement("ws-q", "an-3").await.expect("del"),
            "not ws-q's"
        );
        assert!(s.delete_announcement("ws-p", "an-3").await.expect("del"));
        assert!(!s.delete_announcement("ws-p", "an-3").await.expect("again"));
        assert_eq!(s.list_announcements("ws-p").await.expect("list").len(), 2);

        assert_eq!(s.spotlight("ws-p").await.expect("none"), None);
        let on = |seat, session: &str, secs: i64| SpotlightRecord {
            seat,
            session: session.into(),
            since: DateTime::from_timestamp(1_764_590_000 + secs, 0).expect("time"),
        };
        assert_eq!(
            s.set_spotlight("ws-p", &on(2, "main", 0))
                .await
                .expect("on"),
            on(2, "main", 0)
        );
        assert_eq!(
            s.set_spotlight("ws-p", &on(2, "main", 9))
                .await
                .expect("same"),
            on(2, "main", 0),
            "the same terminal again keeps its start"
        );
        assert_eq!(
            s.set_spotlight("ws-p", &on(3, "main", 9))
                .await
                .expect("moved"),
            on(3, "main", 9)
        );
        assert_eq!(
            s.spotlight("ws-p").await.expect("q"),
            Some(on(3, "main", 9))
        );
        assert_eq!(s.spotlight("ws-q").await.expect("q"), None);
        assert!(s.clear_spotlight("ws-p").await.expect("off"));
        assert!(!s.clear_spotlight("ws-p").await.expect("off again"));

        s.set_spotlight("ws-p", &on(1, "main", 0))
            .await
            .expect("on");
        s.clear_presenter("ws-p").await.expect("clear");
        assert!(s.list_announcements("ws-p").await.expect("list").is_empty());
        assert_eq!(s.spotlight("ws-p").await.expect("q"), None);
        assert_eq!(
            s.list_announcements("ws-q").await.expect("q").len(),
            1,
            "others stay"
        );

        // Deleting the workshop deletes both.
        s.set_spotlight("ws-q", &on(1, "main", 0))
            .await
            .expect("on");
        assert!(s.delete_workshop("ws-q").await.expect("delete"));
        assert!(s.list_announcements("ws-q").await.expect("list").is_empty());
        assert_eq!(s.spotlight("ws-q").await.expect("q"), None);
    }

    #[tokio::test]
    async fn announcements_and_spotlight_sqlite() {
        let (_dir, s) = sqlite().await;
        announcements_and_spotlight(s).await;
    }

    #[tokio::test]
    async fn announcements_and_spotlight_postgres() {
        if let Some(s) = postgres("presenter::announcements_and_spotlight_postgres").await {
            announcements_and_spotlight(s).await;
        }
    }
}
