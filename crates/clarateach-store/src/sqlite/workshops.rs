//! What workshops do differently on SQLite (the queries are `queries/workshops.rs`): a new
//! workshop's seat rows are one INSERT each in the creating transaction; plus the SQLite unit
//! tests of the workshop queries.

use super::SqliteStore;
use crate::Result;

impl SqliteStore {
    /// Inserts seats `1..=seats` of `workshop_id` as `pending` in `tx`.
    pub(crate) async fn insert_seat_rows(
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        workshop_id: &str,
        seats: u32,
    ) -> Result<()> {
        for seat in 1..=seats {
            sqlx::query("INSERT INTO seats (workshop_id, seat, state) VALUES (?, ?, 'pending')")
                .bind(workshop_id)
                .bind(i64::from(seat))
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::Utc;
    use clarateach_core::Limits;

    use crate::NewWorkshop;

    pub(crate) fn new_workshop(id: &str, code: &str, seats: u32) -> NewWorkshop {
        NewWorkshop {
            id: id.into(),
            instructor_id: "i1".into(),
            name: "Intro".into(),
            code: code.into(),
            seats,
            created_at: Utc::now(),
            image: None,
            limits: Limits::default(),
            api_key_enc: Some(vec![1, 2, 3]),
        }
    }
}
