//! Which preview ports of a seat its learner made public (issue 12). In the store, not in the
//! control plane's memory, so a restart or another replica keeps each port public or private
//! as the learner set it. A share belongs to the seat's generation: resetting the seat (a new
//! learner) makes every port private again.

use async_trait::async_trait;

use crate::Result;

/// Public preview ports, by seat.
#[async_trait]
pub trait PreviewStore: Send + Sync {
    /// Makes `port` of the seat public (for the seat's current generation) or private again.
    /// A seat that does not exist has nothing to share: making its port public does nothing.
    async fn set_preview_public(
        &self,
        workshop_id: &str,
        seat: u32,
        port: u16,
        public: bool,
    ) -> Result<()>;
    /// Whether anyone may open `port` of the seat: shared by the seat's current generation.
    async fn is_preview_public(&self, workshop_id: &str, seat: u32, port: u16) -> Result<bool>;
    /// The seat's public ports (current generation), ascending.
    async fn public_preview_ports(&self, workshop_id: &str, seat: u32) -> Result<Vec<u16>>;
}

/// A stored port back to `u16` (the column is an integer wide enough for any).
pub(crate) fn to_port(v: i64) -> Result<u16> {
    u16::try_from(v).map_err(|_| crate::StoreError::Corrupt(format!("preview port {v}")))
}

#[cfg(test)]
mod tests {
    //! Run on SQLite always and on PostgreSQL when a test server is configured, as
    //! `conformance.rs` does.
    use std::sync::Arc;

    use crate::conformance::{postgres, sqlite};
    use crate::sqlite::new_workshop;
    use crate::Store;

    async fn shares_follow_the_seat_generation(s: Arc<dyn Store>) {
        s.create_instructor("i1", "ada", "h")
            .await
            .expect("instructor");
        s.insert_workshop(&new_workshop("ws-p", "CLAUDE-PREV", 2))
            .await
            .expect("workshop");
        assert!(!s.is_preview_public("ws-p", 1, 8000).await.expect("read"));
        s.set_preview_public("ws-p", 1, 8000, true)
            .await
            .expect("share");
        s.set_preview_public("ws-p", 1, 8000, true)
            .await
            .expect("share twice");
        s.set_preview_public("ws-p", 1, 5173, true)
            .await
            .expect("share another");
        assert!(s.is_preview_public("ws-p", 1, 8000).await.expect("read"));
        assert!(!s.is_preview_public("ws-p", 2, 8000).await.expect("seat 2"));
        assert!(!s.is_preview_public("ws-p", 1, 8001).await.expect("port"));
        assert_eq!(
            s.public_preview_ports("ws-p", 1).await.expect("list"),
            [5173, 8000]
        );
        assert!(s
            .public_preview_ports("ws-p", 2)
            .await
            .expect("list 2")
            .is_empty());

        s.set_preview_public("ws-p", 1, 8000, false)
            .await
            .expect("unshare");
        s.set_preview_public("ws-p", 1, 8000, false)
            .await
            .expect("unshare twice");
        assert!(!s.is_preview_public("ws-p", 1, 8000).await.expect("read"));
        assert_eq!(
            s.public_preview_ports("ws-p", 1).await.expect("list"),
            [5173]
        );

        // A seat that does not exist shares nothing.
        s.set_preview_public("ws-p", 9, 8000, true)
            .await
            .expect("no seat");
        assert!(!s.is_preview_public("ws-p", 9, 8000).await.expect("read"));

        // A reset seat (new generation, new learner) starts private; sharing again works.
        s.transition(
            "ws-p",
            &[clarateach_core::WorkshopStatus::Created],
            clarateach_core::WorkshopStatus::Running,
        )
        .await
        .expect("running");
        let claimed = s
            .claim_seat("ws-p", "ODE-PREV1", Some("pat"), chrono::Utc::now())
            .await
            .expect("claim")
            .expect("a seat");
        assert_eq!(claimed.seat, 1);
        s.reset_seat("ws-p", 1, "ODE-PREV2")
            .await
            .expect("reset")
            .expect("held");
        assert!(!s.is_preview_public("ws-p", 1, 5173).await.expect("read"));
        assert!(s
            .public_preview_ports("ws-p", 1)
            .await
            .expect("list")
            .is_empty());
        s.set_preview_public("ws-p", 1, 5173, true)
            .await
            .expect("share again");
        assert!(s.is_preview_public("ws-p", 1, 5173).await.expect("read"));

        // Deleting the workshop drops its shares.
        s.delete_workshop("ws-p").await.expect("delete");
        assert!(!s.is_preview_public("ws-p", 1, 5173).await.expect("read"));
    }

    #[tokio::test]
    async fn shares_follow_the_seat_generation_sqlite() {
        let (_dir, s) = sqlite().await;
        shares_follow_the_seat_generation(s).await;
    }

    #[tokio::test]
    async fn shares_follow_the_seat_generation_postgres() {
        if let Some(s) = postgres("preview::shares_follow_the_seat_generation_postgres").await {
            shares_follow_the_seat_generation(s).await;
        }
    }
}
