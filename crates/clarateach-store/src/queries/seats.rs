//! Seats: atomic assignment to learners, placement on agents, states reported by agents, on
//! both back ends. What differs per back end: the claim task (`claims.rs` of each) and the
//! batch updates `place_in_one_go` and `set_listed_seats_state` (`seats.rs` of each).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clarateach_core::SeatState;
use sqlx::Row;

use tokio::sync::oneshot;

use super::{DbRow, Store};
use crate::rows::Claim;
use crate::rows::{seat as record, SEAT_COLUMNS as COLUMNS};
use crate::sqlite::{seat_state, to_u32};
use crate::{Result, SeatRecord, SeatStore, StoreError};

/// The claim task only ends when its store is dropped or its runtime shut down.
fn claim_task_gone() -> StoreError {
    StoreError::Query(sqlx::Error::PoolClosed)
}

#[async_trait]
impl SeatStore for Store {
    async fn list_seats(&self, workshop_id: &str) -> Result<Vec<SeatRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM seats WHERE workshop_id = $1 ORDER BY seat"
        ))
        .bind(workshop_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(record).collect()
    }

    async fn get_seat(&self, workshop_id: &str, seat: u32) -> Result<Option<SeatRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM seats WHERE workshop_id = $1 AND seat = $2"
        ))
        .bind(workshop_id)
        .bind(i64::from(seat))
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(record).transpose()
    }

    async fn claim_seat(
        &self,
        workshop_id: &str,
        odehash: &str,
        name: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Option<SeatRecord>> {
        let (reply, answer) = oneshot::channel();
        let claim = Claim {
            workshop_id: workshop_id.to_string(),
            odehash: odehash.to_string(),
            name: name.map(str::to_string),
            at,
            reply,
        };
        self.claim_queue()
            .send(claim)
            .map_err(|_| claim_task_gone())?;
        answer.await.map_err(|_| claim_task_gone())?
    }

    async fn seat_by_odehash(
        &self,
        workshop_id: &str,
        odehash: &str,
    ) -> Result<Option<SeatRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM seats WHERE workshop_id = $1 AND odehash = $2"
        ))
        .bind(workshop_id)
        .bind(odehash)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(record).transpose()
    }

    async fn place_seats(
        &self,
        workshop_id: &str,
        placements: &[(u32, String)],
        state: SeatState,
    ) -> Result<()> {
        // Atomic on both back ends, spelled per back end (`sqlite/seats.rs`, `postgres/seats.rs`).
        self.place_in_one_go(workshop_id, placements, state).await
    }

    async fn report_seat(
        &self,
        workshop_id: &str,
        seat: u32,
        agent_id: &str,
        state: SeatState,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE seats SET state = $1 WHERE workshop_id = $2 AND seat = $3 AND agent_id = $4 AND state <> $5",
        )
        .bind(state.as_str())
        .bind(workshop_id)
        .bind(i64::from(seat))
        .bind(agent_id)
        .bind(state.as_str())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_seats_state(
        &self,
        workshop_id: &str,
        seats: Option<&[u32]>,
        state: SeatState,
    ) -> Result<()> {
        match seats {
            None => {
                sqlx::query("UPDATE seats SET state = $1 WHERE workshop_id = $2")
                    .bind(state.as_str())
                    .bind(workshop_id)
                    .execute(self.writer())
                    .await?;
            }
            Some(list) => {
                self.set_listed_seats_state(workshop_id, list, state)
                    .await?
            }
        }
        Ok(())
    }

    async fn mark_agent_seats_lost(&self, agent_id: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE seats SET state = 'lost' WHERE agent_id = $1 AND state IN ('creating', 'ready', 'paused', 'preparing') AND workshop_id IN \
             (SELECT id FROM workshops WHERE status IN ('provisioning', 'running'))",
        )
        .bind(agent_id)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected())
    }

    async fn seats_for_agent(&self, agent_id: &str) -> Result<Vec<(String, u32)>> {
        let rows = sqlx::query(
            "SELECT s.workshop_id, s.seat FROM seats s JOIN workshops w ON w.id = s.workshop_id \
             WHERE s.agent_id = $1 AND w.status IN ('provisioning', 'running') ORDER BY s.workshop_id, s.seat",
        )
        .bind(agent_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(seat_key_of).collect()
    }

    async fn touch_activity(&self, workshop_id: &str, seat: u32, at: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE seats SET last_activity_at = $1 WHERE workshop_id = $2 AND seat = $3")
            .bind(at)
            .bind(workshop_id)
            .bind(i64::from(seat))
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn reset_seat(
        &self,
        workshop_id: &str,
        seat: u32,
        odehash: &str,
    ) -> Result<Option<SeatRecord>> {
        let row = sqlx::query(&format!(
            "UPDATE seats SET odehash = $1, generation = generation + 1 \
             WHERE workshop_id = $2 AND seat = $3 AND odehash IS NOT NULL RETURNING {COLUMNS}"
        ))
        .bind(odehash)
        .bind(workshop_id)
        .bind(i64::from(seat))
        .fetch_optional(self.writer())
        .await?;
        row.as_ref().map(record).transpose()
    }

    async fn count_seats_by_state(&self) -> Result<Vec<(SeatState, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM seats GROUP BY state")
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    seat_state(&r.try_get::<String, _>("state")?)?,
                    r.try_get("n")?,
                ))
            })
            .collect()
    }
}

/// A `(workshop_id, seat)` row: the seat's key.
pub(super) fn seat_key_of(r: &DbRow) -> Result<(String, u32)> {
    Ok((
        r.try_get("workshop_id")?,
        to_u32(r.try_get("seat")?, "seat")?,
    ))
}
