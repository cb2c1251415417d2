//! The records of the instructor's broadcast, checks and audit (issue 10): the base of every
//! file a seat got from a broadcast (kept host-side: a base inside the seat would let the
//! learner choose what counts as "untouched"), the latest broadcast report, check run and stored
//! check command, and the append-only audit of what instructors did to seats.

use async_trait::async_trait;
use clarateach_core::toolkit::AuditEvent;

use crate::Result;

/// A workshop's latest document of each kind (stored as JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatestKind {
    BroadcastReport,
    CheckRun,
    CheckCommand,
}

impl LatestKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BroadcastReport => "broadcast_report",
            Self::CheckRun => "check_run",
            Self::CheckCommand => "check_command",
        }
    }
}

/// One seat's base for one path: `hash` names a blob put with [`ToolkitStore::put_broadcast_blob`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseEntry {
    pub seat: u32,
    pub path: String,
    pub hash: String,
}

/// Broadcast bases, latest documents and the audit, by workshop.
#[async_trait]
pub trait ToolkitStore: Send + Sync {
    /// Keeps `content` under `hash` (its SHA-256, hex) for the workshop; a second put is a no-op.
    async fn put_broadcast_blob(&self, workshop_id: &str, hash: &str, content: &[u8])
        -> Result<()>;
    /// Every base of the seat: (path, content last broadcast to it).
    async fn broadcast_bases(&self, workshop_id: &str, seat: u32)
        -> Result<Vec<(String, Vec<u8>)>>;
    /// Sets the bases in one transaction (replacing earlier ones of the same seat and path).
    async fn set_broadcast_bases(&self, workshop_id: &str, entries: &[BaseEntry]) -> Result<()>;
    /// Replaces the workshop's document of `kind`.
    async fn put_latest(&self, workshop_id: &str, kind: LatestKind, body: &str) -> Result<()>;
    async fn latest(&self, workshop_id: &str, kind: LatestKind) -> Result<Option<String>>;
    /// Appends an event (`actor_name` is not stored: it is read from the account).
    async fn append_audit(&self, workshop_id: &str, event: &AuditEvent) -> Result<()>;
    /// The workshop's newest `limit` events, newest first.
    async fn list_audit(&self, workshop_id: &str, limit: u32) -> Result<Vec<AuditEvent>>;
}

#[cfg(test)]
mod tests {
    //! Run on SQLite always and on PostgreSQL when a test server is configured, as
    //! `conformance.rs` does.
    use std::sync::Arc;

    use chrono::Utc;
    use clarateach_core::toolkit::AuditAction;

    use super::*;
    use crate::conformance::{postgres, sqlite};
    use crate::sqlite::new_workshop;
    use crate::Store;

    async fn bases_latest_and_audit(s: Arc<dyn Store>) {
        s.create_instructor("i1", "ada", "h")
            .await
            .expect("instructor");
        s.insert_workshop(&new_workshop("ws-t", "CLAUDE-TOOL", 3))
            .await
            .expect("workshop");
        s.put_broadcast_blob("ws-t", "h1", b"one\n")
            .await
            .expect("blob");
        s.put_broadcast_blob("ws-t", "h1", b"one\n")
            .await
            .expect("blob again");
        s.put_broadcast_blob("ws-t", "h2", &[0, 255, 1])
            .await
            .expect("blob");
        let e = |seat, path: &str, hash: &str| BaseEntry {
            seat,
            path: path.into(),
            hash: hash.into(),
        };
        s.set_broadcast_bases(
            "ws-t",
            &[e(1, "a.py", "h1"), e(1, "b.bin", "h2"), e(2, "a.py", "h1")],
        )
        .await
        .expect("bases");
        s.set_broadcast_bases("ws-t", &[e(1, "a.py", "h2")])
            .await
            .expect("replace");
        let mut b1 = s.broadcast_bases("ws-t", 1).await.expect("seat 1");
        b1.sort();
        assert_eq!(
            b1,
            [
                ("a.py".to_string(), vec![0, 255, 1]),
                ("b.bin".to_string(), vec![0, 255, 1])
            ]
        );
        assert_eq!(
            s.broadcast_bases("ws-t", 2).await.expect("seat 2"),
            [("a.py".to_string(), b"one\n".to_vec())]
        );
        assert!(s
            .broadcast_bases("ws-t", 3)
            .await
            .expect("seat 3")
            .is_empty());

        assert_eq!(
            s.latest("ws-t", LatestKind::CheckRun).await.expect("none"),
            None
        );
        s.put_latest("ws-t", LatestKind::CheckRun, "{\"a\":1}")
            .await
            .expect("put");
        s.put_latest("ws-t", LatestKind::CheckRun, "{\"a\":2}")
            .await
            .expect("put");
        s.put_latest("ws-t", LatestKind::CheckCommand, "{}")
            .await
            .expect("put");
        assert_eq!(
            s.latest("ws-t", LatestKind::CheckRun)
                .await
                .expect("latest")
                .as_deref(),
            Some("{\"a\":2}")
        );

        let t0 = Utc::now();
        for (i, (action, seat)) in [(AuditAction::Watch, Some(2)), (AuditAction::Check, None)]
            .into_iter()
            .enumerate()
        {
            s.append_audit(
                "ws-t",
                &AuditEvent {
                    at: t0 + chrono::Duration::seconds(i as i64),
                    actor: "i1".into(),
                    actor_name: None,
                    action,
                    seat,
                    detail: Some(format!("d{i}")),
                },
            )
            .await
            .expect("audit");
        }
        let events = s.list_audit("ws-t", 10).await.expect("list");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].action, AuditAction::Check, "newest first");
        assert_eq!(events[0].seat, None);
        assert_eq!(events[1].seat, Some(2));
        assert_eq!(
            events[1].actor_name.as_deref(),
            Some("ada"),
            "named from the account"
        );
        assert_eq!(s.list_audit("ws-t", 1).await.expect("list").len(), 1);
        assert!(s.list_audit("ws-x", 10).await.expect("other").is_empty());
    }

    #[tokio::test]
    async fn bases_latest_and_audit_sqlite() {
        let (_dir, s) = sqlite().await;
        bases_latest_and_audit(s).await;
    }

    #[tokio::test]
    async fn bases_latest_and_audit_postgres() {
        if let Some(s) = postgres("toolkit::bases_latest_and_audit_postgres").await {
            bases_latest_and_audit(s).await;
        }
    }
}
