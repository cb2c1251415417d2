//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go through a pool of exactly one connection so concurrent writers queue fairly in
//! the async pool instead of sleeping in SQLite's busy handler; seat claims, the burst-prone
//! write, are further batched into one transaction each (group commit, see `claims`). Reads use
//! a separate small pool and never block on the writer (WAL).

mod accounts;
mod claims;
mod placement;
mod replicas;
mod seats;
mod workshops;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use clarateach_core::{SeatState, WorkshopStatus};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::mpsc;

use crate::{Result, StoreError};

#[cfg(test)]
pub(crate) use workshops::tests::new_workshop;

/// SQLite implementation of [`crate::Store`].
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    claims: mpsc::UnboundedSender<claims::Claim>,
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
        // No ping before handing out a connection: it is an in-process file, not a socket that
        // can go stale, and each ping is a round trip to the connection's worker thread.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(base.clone().create_if_missing(true))
            .await
            .map_err(open_err)?;
        sqlx::migrate!("./migrations")
            .run(&writer)
            .await
            .map_err(StoreError::Migrate)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(base.read_only(true))
            .await
            .map_err(open_err)?;
        let claims = claims::spawn(writer.clone());
        Ok(Self {
            writer,
            reader,
            claims,
        })
    }

    /// The one writer connection: every write, and reads that must see a write just made.
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// The read-only pool (WAL readers never wait for the writer).
    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// The queue of this store's claim task (group commit, see `claims`).
    pub(crate) fn claim_queue(&self) -> &mpsc::UnboundedSender<claims::Claim> {
        &self.claims
    }

    /// Closes both pools, flushing the WAL.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

pub(crate) fn workshop_status(s: &str) -> Result<WorkshopStatus> {
    WorkshopStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("workshop status {s:?}")))
}

pub(crate) fn seat_state(s: &str) -> Result<SeatState> {
    SeatState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("seat state {s:?}")))
}

pub(crate) fn to_u32(v: i64, what: &str) -> Result<u32> {
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
