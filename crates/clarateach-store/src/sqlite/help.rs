//! Unit tests of `queries/help.rs` on SQLite (the conformance suite runs on both back ends).

#![cfg(test)]
#![allow(unused_imports)]

use super::SqliteStore;
use crate::{HelpStore, Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clarateach_core::classroom::{HelpRequest, HelpStatus};
use sqlx::Row;
#[cfg(test)]
mod tests {
    use super::super::temp_store;
    use super::*;
    use crate::{AccountStore, WorkshopStore};

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

    #[tokio::test]
    async fn the_queue_is_ordered_claimed_and_resolved() {
        let (_d, s) = temp_store().await;
        s.create_instructor("i1", "i", "h")
            .await
            .expect("instructor");
        s.insert_workshop(&super::super::workshops::tests::new_workshop(
            "ws-h",
            "CODE-HELP",
            3,
        ))
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
}
