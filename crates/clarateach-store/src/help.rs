//! The help queue's records (issue 10): a learner's request with the context it was filed
//! with, claimed and resolved by the instructor. In the store so the queue survives a page
//! reload and a control-plane restart.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clarateach_core::classroom::HelpRequest;

use crate::Result;

/// Help requests, by workshop.
#[async_trait]
pub trait HelpStore: Send + Sync {
    /// Files `req` (its status is `open`).
    async fn insert_help(&self, req: &HelpRequest) -> Result<()>;
    /// The seat's open or claimed request, if any (a seat has at most one in the queue).
    async fn active_help_for_seat(
        &self,
        workshop_id: &str,
        seat: u32,
    ) -> Result<Option<HelpRequest>>;
    /// Open and claimed requests of the workshop, oldest first.
    async fn list_active_help(&self, workshop_id: &str) -> Result<Vec<HelpRequest>>;
    /// Marks an open or claimed request claimed by `by`; `None` when there is no such active
    /// request in this workshop.
    async fn claim_help(
        &self,
        workshop_id: &str,
        id: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<HelpRequest>>;
    /// Marks an active request resolved; `None` when there is no such active request.
    async fn resolve_help(
        &self,
        workshop_id: &str,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<HelpRequest>>;
}

#[cfg(test)]
mod tests {
    //! Run on SQLite always and on PostgreSQL when a test server is configured, as
    //! `conformance.rs` does.
    #![allow(unused_imports)]
    use std::sync::Arc;

    use super::*;
    use crate::conformance::{postgres, sqlite};
    use crate::Store;
    use crate::{AccountStore, WorkshopStore};
    use crate::{HelpStore, Result, StoreError};
    use chrono::{DateTime, Utc};
    use clarateach_core::classroom::{HelpRequest, HelpStatus};

    fn req(id: &str, seat: u32, at: DateTime<Utc>) -> HelpRequest {
        HelpRequest {
            id: id.into(),
            workshop_id: "ws-h".into(),
            seat,
            name: Some("Ada".into()),
            message: Some("stuck".into()),
            cwd: Some("/workspace".into()),
            commands: vec![clarateach_core::classroom::CommandRecord {
                command: "make".into(),
                exit_code: Some(2),
                finished_at: at,
            }],
            open_file: Some("main.c".into()),
            status: HelpStatus::Open,
            created_at: at,
            claimed_by: None,
            claimed_at: None,
            resolved_at: None,
        }
    }

    async fn the_queue_is_ordered_claimed_and_resolved(s: Arc<dyn Store>) {
        s.create_instructor("i1", "i", "h")
            .await
            .expect("instructor");
        s.insert_workshop(&crate::sqlite::new_workshop("ws-h", "CODE-HELP", 3))
            .await
            .expect("workshop");
        let t0 = Utc::now();
        s.insert_help(&req("help-b", 2, t0 + chrono::Duration::seconds(5)))
            .await
            .expect("b");
        s.insert_help(&req("help-a", 1, t0)).await.expect("a");
        let q = s.list_active_help("ws-h").await.expect("list");
        assert_eq!(
            q.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["help-a", "help-b"],
            "longest waiting first"
        );
        assert_eq!(q[0].commands[0].exit_code, Some(2));
        let c = s
            .claim_help("ws-h", "help-a", "Grace", t0)
            .await
            .expect("claim")
            .expect("claimed");
        assert_eq!(c.status, HelpStatus::Claimed);
        assert_eq!(c.claimed_by.as_deref(), Some("Grace"));
        assert!(s
            .claim_help("ws-x", "help-b", "G", t0)
            .await
            .expect("other")
            .is_none());
        let r = s
            .resolve_help("ws-h", "help-a", t0)
            .await
            .expect("resolve")
            .expect("resolved");
        assert_eq!(r.status, HelpStatus::Resolved);
        assert!(s
            .resolve_help("ws-h", "help-a", t0)
            .await
            .expect("again")
            .is_none());
        assert!(s
            .active_help_for_seat("ws-h", 1)
            .await
            .expect("seat 1")
            .is_none());
        assert_eq!(
            s.active_help_for_seat("ws-h", 2)
                .await
                .expect("seat 2")
                .map(|r| r.id),
            Some("help-b".to_string())
        );
        assert_eq!(s.list_active_help("ws-h").await.expect("list").len(), 1);
    }

    #[tokio::test]
    async fn the_queue_is_ordered_claimed_and_resolved_sqlite() {
        let (_dir, s) = sqlite().await;
        the_queue_is_ordered_claimed_and_resolved(s).await;
    }

    #[tokio::test]
    async fn the_queue_is_ordered_claimed_and_resolved_postgres() {
        if let Some(s) = postgres("help::the_queue_is_ordered_claimed_and_resolved_postgres").await
        {
            the_queue_is_ordered_claimed_and_resolved(s).await;
        }
    }
}
