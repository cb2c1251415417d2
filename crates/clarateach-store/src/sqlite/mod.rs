//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go through a pool of exactly one connection so concurrent writers queue fairly in
//! the async pool instead of sleeping in SQLite's busy handler (that is what keeps a burst of
//! 200 joins fast); reads use a separate small pool and never block on the writer (WAL).

mod accounts;
mod seats;
mod workshops;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use clarateach_core::{SeatState, WorkshopStatus};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::{Result, StoreError};

/// SQLite implementation of [`crate::Store`].
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let base = SqliteConnectOptions::from_str("sqlite://")
            .map_err(open_err)?
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // Deleted rows (the encrypted api key after stop) are overwritten with zeros.
            .pragma("secure_delete", "ON");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(base.clone().create_if_missing(true))
            .await
            .map_err(open_err)?;
        sqlx::migrate!("./migrations")
            .run(&writer)
            .await
            .map_err(StoreError::Migrate)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(base.read_only(true))
            .await
            .map_err(open_err)?;
        Ok(Self { writer, reader })
    }

    /// Closes both pools, flushing the WAL.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

fn workshop_status(s: &str) -> Result<WorkshopStatus> {
    WorkshopStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("workshop status {s:?}")))
}

fn seat_state(s: &str) -> Result<SeatState> {
    SeatState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("seat state {s:?}")))
}

fn to_u32(v: i64, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v}")))
}

#[cfg(test)]
pub(crate) async fn temp_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("t.db"))
        .await
        .expect("open store");
    (dir, store)
}
