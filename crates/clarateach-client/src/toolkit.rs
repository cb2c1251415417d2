//! The instructor toolkit's routes (issue 10): broadcast files, run a check in every seat, read
//! the audit.

use std::time::Duration;

use clarateach_core::toolkit::{
    AuditResponse, BroadcastReport, BroadcastRequest, CheckRequest, CheckRun, ChecksResponse,
};
use reqwest::Method;

use crate::{Client, ClientError};

impl Client {
    /// `POST /api/workshops/{id}/broadcast` (JSON form).
    pub async fn broadcast(
        &self,
        id: &str,
        req: &BroadcastRequest,
    ) -> Result<BroadcastReport, ClientError> {
        let timeout = Duration::from_secs(120);
        self.call_within(
            Method::POST,
            &["workshops", id, "broadcast"],
            Some(req),
            timeout,
        )
        .await
    }

    /// `POST /api/workshops/{id}/checks`: waits for the command's timeout and some more.
    pub async fn run_check(&self, id: &str, req: &CheckRequest) -> Result<CheckRun, ClientError> {
        let timeout = Duration::from_secs(req.timeout_s.unwrap_or(300).saturating_add(30));
        self.call_within(
            Method::POST,
            &["workshops", id, "checks"],
            Some(req),
            timeout,
        )
        .await
    }

    /// `GET /api/workshops/{id}/checks`: the stored command and the latest run.
    pub async fn checks(&self, id: &str) -> Result<ChecksResponse, ClientError> {
        self.call(Method::GET, &["workshops", id, "checks"], None::<&()>)
            .await
    }

    /// `GET /api/workshops/{id}/audit`, newest first.
    pub async fn audit(&self, id: &str) -> Result<AuditResponse, ClientError> {
        self.call(Method::GET, &["workshops", id, "audit"], None::<&()>)
            .await
    }
}
