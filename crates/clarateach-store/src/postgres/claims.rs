//! Group commit for seat claims on PostgreSQL; mirrors `sqlite/claims.rs`.
//!
//! As on SQLite, one task per control-plane process takes every claim waiting and commits them
//! in one transaction, answering each claimant only after `COMMIT`. What SQLite's single writer
//! gave for free has to be explicit here, because several replicas claim at once:
//!
//! - Claims of one workshop are serialized across replicas by a transaction-scoped advisory
//!   lock on the workshop id, taken for every workshop of the batch in key order (no deadlock
//!   between two batches). Without it, two replicas' `UPDATE ... seat = (SELECT MIN ...)` would
//!   pick the same seat and the second, after waiting for the row lock, would find it taken and
//!   answer "full" although other seats are free (READ COMMITTED re-checks the row, not the
//!   subquery).
//! - A taken reconnect code is detected inside the claim statement (PostgreSQL aborts the whole
//!   transaction on a unique violation, SQLite only the statement), so it fails only its own
//!   claim; under the workshop's lock no other claim can take the code in between.
//! - The workshop row is read `FOR SHARE`, so a claim and a concurrent stop are ordered.

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tokio::sync::mpsc;

use crate::rows::{seat as record, SEAT_COLUMNS as COLUMNS};
use crate::{Result, SeatRecord, StoreError};

/// Most claims committed in one transaction, so one batch cannot hold a workshop's lock long.
const MAX_BATCH: usize = 256;

use crate::rows::answer as answer_claimants;
pub(super) use crate::rows::Claim;

/// Starts the claim task on the pool; it ends when every sender is dropped.
pub(super) fn spawn(pool: PgPool) -> mpsc::UnboundedSender<Claim> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            commit(&pool, &mut batch).await;
        }
    });
    tx
}

/// Claims every seat of `batch` in one transaction and answers each claimant (draining `batch`).
async fn commit(pool: &PgPool, batch: &mut Vec<Claim>) {
    let outcome = apply(pool, batch).await;
    answer_claimants(batch, outcome);
}

fn answer(row: &PgRow) -> Result<Option<SeatRecord>> {
    if row.try_get::<bool, _>("taken")? {
        return Err(StoreError::Conflict);
    }
    match row.try_get::<Option<String>, _>("workshop_id")? {
        Some(_) => record(row).map(Some),
        None => Ok(None),
    }
}

/// The per-claim results of one committed transaction; `Err` when nothing was committed.
async fn apply(
    pool: &PgPool,
    batch: &[Claim],
) -> std::result::Result<Vec<Result<Option<SeatRecord>>>, sqlx::Error> {
    let sql = format!(
        "WITH taken AS (SELECT EXISTS (SELECT 1 FROM seats WHERE workshop_id = $4 AND odehash = $1) AS t), \
         claimed AS (UPDATE seats SET odehash = $1, name = $2, joined_at = $3 \
           WHERE workshop_id = $4 AND odehash IS NULL \
           AND seat = (SELECT MIN(seat) FROM seats WHERE workshop_id = $4 AND odehash IS NULL) \
           AND NOT (SELECT t FROM taken) \
           AND EXISTS (SELECT 1 FROM workshops WHERE id = $4 AND status = 'running' FOR SHARE) \
           RETURNING {COLUMNS}) \
         SELECT taken.t AS taken, claimed.* FROM taken LEFT JOIN claimed ON TRUE"
    );
    let mut workshops: Vec<&str> = batch.iter().map(|c| c.workshop_id.as_str()).collect();
    workshops.sort_unstable();
    workshops.dedup();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k) FROM \
         (SELECT DISTINCT hashtextextended(w, 0) AS k FROM unnest($1::TEXT[]) AS w ORDER BY k) AS keys",
    )
    .bind(&workshops)
    .execute(&mut *tx)
    .await?;
    let mut results = Vec::with_capacity(batch.len());
    for c in batch {
        let row = sqlx::query(&sql)
            .bind(&c.odehash)
            .bind(&c.name)
            .bind(c.at)
            .bind(&c.workshop_id)
            .fetch_one(&mut *tx)
            .await?;
        results.push(answer(&row));
    }
    tx.commit().await?;
    Ok(results)
}
