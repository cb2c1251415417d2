//! What seats do differently on SQLite (the queries are `queries/seats.rs`): batch updates are
//! a statement per seat in one transaction on the single writer.

use clarateach_core::SeatState;

use super::SqliteStore;
use crate::Result;

impl SqliteStore {
    /// Places every seat of `placements` on its agent with `state`, all or none.
    pub(crate) async fn place_in_one_go(
        &self,
        workshop_id: &str,
        placements: &[(u32, String)],
        state: SeatState,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        for (seat, agent_id) in placements {
            sqlx::query(
                "UPDATE seats SET agent_id = ?, state = ? WHERE workshop_id = ? AND seat = ?",
            )
            .bind(agent_id)
            .bind(state.as_str())
            .bind(workshop_id)
            .bind(i64::from(*seat))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sets the state of the listed seats of `workshop_id`, all or none.
    pub(crate) async fn set_listed_seats_state(
        &self,
        workshop_id: &str,
        list: &[u32],
        state: SeatState,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        for seat in list {
            sqlx::query("UPDATE seats SET state = ? WHERE workshop_id = ? AND seat = ?")
                .bind(state.as_str())
                .bind(workshop_id)
                .bind(i64::from(*seat))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
