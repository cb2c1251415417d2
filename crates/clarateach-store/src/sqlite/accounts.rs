//! What accounts do differently on SQLite (the queries are `queries/accounts.rs`): nothing to
//! lock, the single writer connection already runs one transaction at a time.

use super::SqliteStore;
use crate::Result;

impl SqliteStore {
    /// Serializes the binding of `agent_id` (a no-op here: see the header).
    pub(crate) async fn lock_agent_id(
        _tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        _agent_id: &str,
    ) -> Result<()> {
        Ok(())
    }
}
