//! [`PlacementStore`] on SQLite: one process owns the database file, so a mutex of the
//! process serializes placement.

use async_trait::async_trait;

use super::SqliteStore;
use crate::placement::{PlacementLock, SQLITE_PLACEMENT};
use crate::{PlacementStore, Result};

#[async_trait]
impl PlacementStore for SqliteStore {
    async fn lock_placement(&self) -> Result<PlacementLock> {
        Ok(PlacementLock::local(
            SQLITE_PLACEMENT.clone().lock_owned().await,
        ))
    }
}
