//! Row decoding both back ends share. A [`StoreRow`] reads one column as a Rust type on SQLite
//! and PostgreSQL alike (both store seat numbers as 64-bit integers and times as UTC), so a
//! record is decoded by one function instead of a copy per back end; the seat record's is here,
//! used by the seat queries (`seats.rs`) and the claim group commit (`claims.rs`) of each back
//! end, so neither of those modules has to import the other.

use chrono::{DateTime, Utc};
use sqlx::Row;
use tokio::sync::oneshot;

use crate::sqlite::{seat_state, to_u32};
use crate::{Result, SeatRecord, StoreError};
use std::sync::Arc;

/// The column reads a record decoder needs, for any back end's row type.
pub(crate) trait StoreRow {
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn int(&self, col: &str) -> Result<i64>;
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>>;
}

/// Implements [`StoreRow`] with sqlx's typed reads; the same text for every back end.
macro_rules! store_row {
    ($($row:ty),*) => {$(
        impl StoreRow for $row {
            fn text(&self, col: &str) -> Result<String> {
                Ok(self.try_get(col)?)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>> {
                Ok(self.try_get(col)?)
            }
            fn int(&self, col: &str) -> Result<i64> {
                Ok(self.try_get(col)?)
            }
            fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
                Ok(self.try_get(col)?)
            }
        }
    )*};
}
store_row!(sqlx::sqlite::SqliteRow, sqlx::postgres::PgRow);

/// The `seats` columns [`seat`] reads, in `SELECT`/`RETURNING` order.
pub(crate) const SEAT_COLUMNS: &str =
    "workshop_id, seat, state, agent_id, odehash, name, joined_at, last_activity_at, generation";

/// One `seats` row (selected with [`SEAT_COLUMNS`]) as a record.
pub(crate) fn seat(r: &impl StoreRow) -> Result<SeatRecord> {
    Ok(SeatRecord {
        workshop_id: r.text("workshop_id")?,
        seat: to_u32(r.int("seat")?, "seat")?,
        state: seat_state(&r.text("state")?)?,
        agent_id: r.opt_text("agent_id")?,
        odehash: r.opt_text("odehash")?,
        name: r.opt_text("name")?,
        joined_at: r.opt_time("joined_at")?,
        last_activity_at: r.opt_time("last_activity_at")?,
        generation: to_u32(r.int("generation")?, "generation")?,
    })
}

/// One learner's request (sent to a back end's claim task, `sqlite/claims.rs` or
/// `postgres/claims.rs`) for the lowest free seat of a running workshop.
pub(crate) struct Claim {
    pub workshop_id: String,
    pub odehash: String,
    pub name: Option<String>,
    pub at: DateTime<Utc>,
    pub reply: oneshot::Sender<Result<Option<SeatRecord>>>,
}

/// Answers every claimant of `batch` (draining it) with the outcome of its one transaction:
/// each its own result, or all the same `ClaimBatch` error when nothing was committed. Shared
/// by both back ends' claim tasks.
pub(crate) fn answer(
    batch: &mut Vec<Claim>,
    outcome: std::result::Result<Vec<Result<Option<SeatRecord>>>, sqlx::Error>,
) {
    match outcome {
        Ok(results) => {
            for (claim, result) in batch.drain(..).zip(results) {
                // The learner may have gone away; the seat stays theirs to reconnect to.
                let _ = claim.reply.send(result);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, claims = batch.len(), "seat claim transaction failed");
            let e = Arc::new(e);
            for claim in batch.drain(..) {
                let _ = claim.reply.send(Err(StoreError::ClaimBatch(e.clone())));
            }
        }
    }
}
