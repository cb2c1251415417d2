//! What seats do differently on PostgreSQL (the queries are `queries/seats.rs`): a batch update
//! is one statement over arrays (`unnest`, `ANY`), atomic like SQLite's transaction and one round
//! trip instead of one per seat.

use clarateach_core::SeatState;

use super::PgStore;
use crate::Result;

impl PgStore {
    /// Places every seat of `placements` on its agent with `state`, all or none.
    pub(crate) async fn place_in_one_go(
        &self,
        workshop_id: &str,
        placements: &[(u32, String)],
        state: SeatState,
    ) -> Result<()> {
        let seats: Vec<i64> = placements.iter().map(|(s, _)| i64::from(*s)).collect();
        let agents: Vec<&str> = placements.iter().map(|(_, a)| a.as_str()).collect();
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

    /// Sets the state of the listed seats of `workshop_id`, all or none.
    pub(crate) async fn set_listed_seats_state(
        &self,
        workshop_id: &str,
        list: &[u32],
        state: SeatState,
    ) -> Result<()> {
        let seats: Vec<i64> = list.iter().map(|s| i64::from(*s)).collect();
        sqlx::query(
            "UPDATE seats SET state = $1 WHERE workshop_id = $2 AND seat = ANY($3::BIGINT[])",
        )
        .bind(state.as_str())
        .bind(workshop_id)
        .bind(seats)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
