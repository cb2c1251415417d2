//! Group commit for seat claims: one task takes every claim waiting for the writer and commits
//! them in a single transaction, then answers each.
//!
//! A burst of learners joining at once is the control plane's hottest write path. Committed one
//! by one, each claim pays a pool round trip, `BEGIN`/`COMMIT` and a WAL append of the same seat
//! pages; batched, the burst pays those once per batch. Every claimant is answered only after
//! the `COMMIT` returned, so a seat a learner was told about survives a crash, and claims are
//! applied in arrival order, so seats are still handed out lowest first.

use sqlx::SqlitePool;
use tokio::sync::mpsc;

use crate::rows::{seat as record, SEAT_COLUMNS as COLUMNS};
use crate::{Result, SeatRecord, StoreError};

/// Most claims committed in one transaction, so one batch cannot hold the writer for long.
const MAX_BATCH: usize = 256;

use crate::rows::answer as answer_claimants;
pub(super) use crate::rows::Claim;

/// Starts the claim task on the writer pool; it ends when every sender is dropped.
pub(super) fn spawn(writer: SqlitePool) -> mpsc::UnboundedSender<Claim> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            commit(&writer, &mut batch).await;
        }
    });
    tx
}

/// Claims every seat of `batch` in one transaction and answers each claimant (draining `batch`).
async fn commit(writer: &SqlitePool, batch: &mut Vec<Claim>) {
    let outcome = apply(writer, batch).await;
    answer_claimants(batch, outcome);
}

/// The per-claim results of one committed transaction; `Err` when nothing was committed.
async fn apply(
    writer: &SqlitePool,
    batch: &[Claim],
) -> std::result::Result<Vec<Result<Option<SeatRecord>>>, sqlx::Error> {
    // One statement per claim: the pick of the lowest free seat and the write cannot interleave
    // with another claim, so two learners never get the same seat. The status check makes the
    // claim itself refuse a workshop that stopped since the caller looked it up.
    let sql = format!(
        "UPDATE seats SET odehash = ?, name = ?, joined_at = ? WHERE workshop_id = ? AND odehash IS NULL \
         AND seat = (SELECT MIN(seat) FROM seats WHERE workshop_id = ? AND odehash IS NULL) \
         AND EXISTS (SELECT 1 FROM workshops WHERE id = ? AND status = 'running') RETURNING {COLUMNS}"
    );
    let mut tx = writer.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    for c in batch {
        let row = sqlx::query(&sql)
            .bind(&c.odehash)
            .bind(&c.name)
            .bind(c.at)
            .bind(&c.workshop_id)
            .bind(&c.workshop_id)
            .bind(&c.workshop_id)
            .fetch_optional(&mut *tx)
            .await;
        match row {
            Ok(row) => results.push(row.as_ref().map(record).transpose()),
            // A taken reconnect code fails only its own statement; the caller retries.
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                results.push(Err(StoreError::Conflict))
            }
            Err(e) => return Err(e),
        }
    }
    tx.commit().await?;
    Ok(results)
}
