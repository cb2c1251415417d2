//! The embedded store of sandbox records: one SQLite file in the state dir, one JSON record per
//! sandbox. Commands that change records hold the state lock (`lock`), so a record read, changed
//! and written back is never overwritten by another CLI meanwhile; readers need no lock (WAL).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;

use crate::record::SandboxRecord;

/// Errors of the store, one per step.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("opening the sandbox store {path}")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("a query on the sandbox store failed")]
    Query(#[source] sqlx::Error),
    #[error("the record of sandbox {id} cannot be read")]
    Decode {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the record of sandbox {id} cannot be written")]
    Encode {
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The store.
#[derive(Debug, Clone)]
pub struct Db {
    pool: SqlitePool,
}

impl Db {
    /// Opens (and creates) the store at `path`.
    pub async fn open(path: &Path) -> Result<Self, DbError> {
        let open_err = |source| DbError::Open {
            path: path.display().to_string(),
            source,
        };
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(open_err)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .map_err(open_err)?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS sandboxes (
                id TEXT PRIMARY KEY NOT NULL,
                created_at TEXT NOT NULL,
                record TEXT NOT NULL
            )",
        )
        .execute(&pool)
        .await
        .map_err(open_err)?;
        Ok(Self { pool })
    }

    /// Inserts a new record; `false` when the id is taken.
    pub async fn insert(&self, rec: &SandboxRecord) -> Result<bool, DbError> {
        let json = encode(rec)?;
        let done = sqlx::query(
            "INSERT INTO sandboxes (id, created_at, record) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&rec.info.id)
        .bind(rec.info.created_at.to_rfc3339())
        .bind(json)
        .execute(&self.pool)
        .await
        .map_err(DbError::Query)?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn update(&self, rec: &SandboxRecord) -> Result<(), DbError> {
        sqlx::query("UPDATE sandboxes SET record = ? WHERE id = ?")
            .bind(encode(rec)?)
            .bind(&rec.info.id)
            .execute(&self.pool)
            .await
            .map_err(DbError::Query)?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Option<SandboxRecord>, DbError> {
        let row = sqlx::query("SELECT record FROM sandboxes WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(DbError::Query)?;
        row.map(|r| decode(id, r.get::<String, _>(0))).transpose()
    }

    /// Every record, oldest first.
    pub async fn list(&self) -> Result<Vec<SandboxRecord>, DbError> {
        let rows = sqlx::query("SELECT id, record FROM sandboxes ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(DbError::Query)?;
        rows.into_iter()
            .map(|r| decode(&r.get::<String, _>(0), r.get::<String, _>(1)))
            .collect()
    }

    pub async fn delete(&self, id: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM sandboxes WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(DbError::Query)?;
        Ok(())
    }

    /// Closes the pool (flushes the WAL on the last connection).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn encode(rec: &SandboxRecord) -> Result<String, DbError> {
    serde_json::to_string(rec).map_err(|source| DbError::Encode {
        id: rec.info.id.clone(),
        source,
    })
}

fn decode(id: &str, json: String) -> Result<SandboxRecord, DbError> {
    serde_json::from_str(&json).map_err(|source| DbError::Decode {
        id: id.to_string(),
        source,
    })
}
