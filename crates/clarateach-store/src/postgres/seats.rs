//! Seats: atomic assignment to learners, placement on agents, states reported by agents;
//! mirrors `sqlite/seats.rs` (claims go through the group commit in `claims`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clarateach_core::SeatState;
use sqlx::Row;
use tokio::sync::oneshot;

use super::claims::Claim;
use super::PgStore;
use crate::rows::{seat as record, SEAT_COLUMNS as COLUMNS};
use crate::sqlite::{seat_state, to_u32};
use crate::{Result, SeatRecord, SeatStore, StoreError};

/// The claim task only ends when its store is dropped or its runtime shut down.
fn claim_task_gone() -> StoreError {
    StoreError::Query(sqlx::Error::PoolClosed)
}

fn seat_numbers(seats: &[u32]) -> Vec<i64> {
    seats.iter().map(|s| i64::from(*s)).collect()
}

#[async_trait]
impl SeatStore for PgStore {
    async fn list_seats(&self, workshop_id: &str) -> Result<Vec<SeatRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM seats WHERE workshop_id = $1 ORDER BY seat"
        ))
        .bind(workshop_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }

    async fn get_seat(&self, workshop_id: &str, seat: u32) -> Result<Option<SeatRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM seats WHERE workshop_id = $1 AND seat = $2"
        ))
        .bind(workshop_id)
        .bind(i64::from(seat))
        .fetch_optional(&self.pool)
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
        self.claims.send(claim).map_err(|_| claim_task_gone())?;
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
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(record).transpose()
    }

    async fn place_seats(
        &self,
        workshop_id: &str,
        placements: &[(u32, String)],
        state: SeatState,
    ) -> Result<()> {
        let seats: Vec<i64> = placements.iter().map(|(s, _)| i64::from(*s)).collect();
        let agents: Vec<&str> = placements.iter().map(|(_, a)| a.as_str()).collect();
        // One statement for the whole placement (atomic like SQLite's transaction).
        sqlx::query(
            "UPDATE seats AS s SET agent_id = p.agent, state = $2 \
             FROM unnest($3::BIGINT[], $4::TEXT[]) AS p(seat, agent) \
             WHERE s.workshop_id = $1 AND s.seat = p.seat",
        )
        .bind(workshop_id)
        .bind(state.as_str())
        .bind(&seats)
        .bind(&agents)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn report_seat(
        &self,
        workshop_id: &str,
        seat: u32,
        agent_id: &str,
        state: SeatState,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE seats SET state = $1 WHERE workshop_id = $2 AND seat = $3 AND agent_id = $4 AND state <> $1",
        )
        .bind(state.as_str())
        .bind(workshop_id)
        .bind(i64::from(seat))
        .bind(agent_id)
        .execute(&self.pool)
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
                    .execute(&self.pool)
                    .await?;
            }
            Some(list) => {
                sqlx::query(
                    "UPDATE seats SET state = $1 WHERE workshop_id = $2 AND seat = ANY($3::BIGINT[])",
                )
                .bind(state.as_str())
                .bind(workshop_id)
                .bind(seat_numbers(list))
                .execute(&self.pool)
                .await?;
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
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn seats_for_agent(&self, agent_id: &str) -> Result<Vec<(String, u32)>> {
        let rows = sqlx::query(
            "SELECT s.workshop_id, s.seat FROM seats s JOIN workshops w ON w.id = s.workshop_id \
             WHERE s.agent_id = $1 AND w.status IN ('provisioning', 'running') ORDER BY s.workshop_id, s.seat",
        )
        .bind(agent_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("workshop_id")?,
                    to_u32(r.try_get("seat")?, "seat")?,
                ))
            })
            .collect()
    }

    async fn touch_activity(&self, workshop_id: &str, seat: u32, at: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE seats SET last_activity_at = $1 WHERE workshop_id = $2 AND seat = $3")
            .bind(at)
            .bind(workshop_id)
            .bind(i64::from(seat))
            .execute(&self.pool)
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
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(record).transpose()
    }

    async fn count_seats_by_state(&self) -> Result<Vec<(SeatState, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM seats GROUP BY state")
            .fetch_all(&self.pool)
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
