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
