//! [`MoveStore`] on both back ends. The move is one transaction: the seat's
//! agent changes only if it is still the old one (a compare-and-set two replicas cannot both
//! win), and its move is recorded in the same commit.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::Store;
use crate::sqlite::to_u32;
use crate::{LostSeat, MoveStore, Result, SeatMove};

#[async_trait]
impl MoveStore for Store {
    async fn lost_seats(&self) -> Result<Vec<LostSeat>> {
        let rows = sqlx::query(
            "SELECT s.workshop_id, s.seat, s.agent_id FROM seats s JOIN workshops w ON w.id = s.workshop_id \
             WHERE s.state = 'lost' AND s.agent_id IS NOT NULL AND w.status IN ('provisioning', 'running') \
             ORDER BY s.workshop_id, s.seat",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LostSeat {
                    workshop_id: r.try_get("workshop_id")?,
                    seat: to_u32(r.try_get("seat")?, "seat")?,
                    agent_id: r.try_get("agent_id")?,
                })
            })
            .collect()
    }

    async fn move_seat(
        &self,
        workshop_id: &str,
        seat: u32,
        from: &str,
        to: &str,
        only_lost: bool,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.writer().begin().await?;
        let lost = if only_lost { " AND state = 'lost'" } else { "" };
        let moved = sqlx::query(&format!(
            "UPDATE seats SET agent_id = $1, state = 'creating' \
             WHERE workshop_id = $2 AND seat = $3 AND agent_id = $4{lost}"
        ))
        .bind(to)
        .bind(workshop_id)
        .bind(i64::from(seat))
        .bind(from)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM seat_moves WHERE workshop_id = $1 AND seat = $2")
            .bind(workshop_id)
            .bind(i64::from(seat))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO seat_moves (workshop_id, seat, from_agent, moved_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(workshop_id)
        .bind(i64::from(seat))
        .bind(from)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn seat_moves(&self, workshop_id: &str) -> Result<Vec<SeatMove>> {
        let rows = sqlx::query(
            "SELECT seat, from_agent, moved_at FROM seat_moves WHERE workshop_id = $1 ORDER BY seat",
        )
        .bind(workshop_id)
        .fetch_all(self.writer())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SeatMove {
                    seat: to_u32(r.try_get("seat")?, "seat")?,
                    from_agent: r.try_get("from_agent")?,
                    moved_at: r.try_get::<DateTime<Utc>, _>("moved_at")?,
                })
            })
            .collect()
    }

    async fn seats_moved_from(&self, agent_id: &str) -> Result<Vec<(String, u32)>> {
        let rows = sqlx::query(
            "SELECT m.workshop_id, m.seat FROM seat_moves m JOIN seats s \
             ON s.workshop_id = m.workshop_id AND s.seat = m.seat \
             WHERE m.from_agent = $1 AND (s.agent_id IS NULL OR s.agent_id <> m.from_agent) \
             ORDER BY m.workshop_id, m.seat",
        )
        .bind(agent_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(super::seats::seat_key_of).collect()
    }
}
