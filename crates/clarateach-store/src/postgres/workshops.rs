//! What workshops do differently on PostgreSQL (the queries are `queries/workshops.rs`): a new
//! workshop's seat rows are one statement (`generate_series`), so a 300-seat workshop is one
//! round trip, not 300.

use super::PgStore;
use crate::Result;

impl PgStore {
    /// Inserts seats `1..=seats` of `workshop_id` as `pending` in `tx`.
    pub(crate) async fn insert_seat_rows(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        workshop_id: &str,
        seats: u32,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO seats (workshop_id, seat, state) \
             SELECT $1, n, 'pending' FROM generate_series(1, $2::BIGINT) AS n",
        )
        .bind(workshop_id)
        .bind(i64::from(seats))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
