//! What accounts do differently on PostgreSQL (the queries are `queries/accounts.rs`): two
//! replicas may bind legacy agent tokens at once, so the bind is serialized per agent id.

use super::PgStore;
use crate::Result;

impl PgStore {
    /// Takes a transaction-scoped advisory lock on `agent_id` (key space 1), held until `tx`
    /// ends, before the bind's NOT EXISTS check.
    pub(crate) async fn lock_agent_id(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        agent_id: &str,
    ) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))")
            .bind(agent_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
