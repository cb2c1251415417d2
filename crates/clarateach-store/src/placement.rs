//! Placement exactly once across control-plane replicas (issue 13): a lock the scheduler holds
//! from reading the agents' loads until the seats it placed are recorded, so two replicas
//! starting workshops in the same instant cannot both count the same free room and overbook an
//! agent.
//!
//! On PostgreSQL it is a session-level advisory lock on one connection of the pool, taken by
//! every replica on the same key; on SQLite (one process owns the file) a mutex of the process.
//! A lock dropped without [`PlacementLock::release`] (an error path, a cancelled start) still
//! frees it: its PostgreSQL connection is closed rather than returned to the pool, and the
//! server drops the session's locks with it.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::Postgres;

use crate::Result;

/// The advisory lock key every replica takes for placement (an arbitrary constant, distinct
/// from the claims' keys, which are hashes of workshop ids).
pub(crate) const PG_PLACEMENT_KEY: i64 = 0x0c1a_7a7e_0013;

/// The SQLite store's lock: placement in one process is serialized by one mutex.
pub(crate) static SQLITE_PLACEMENT: LazyLock<Arc<tokio::sync::Mutex<()>>> =
    LazyLock::new(|| Arc::new(tokio::sync::Mutex::new(())));

/// Serializes seat placement among every process sharing the store.
#[async_trait]
pub trait PlacementStore: Send + Sync {
    /// Waits until no other placer (in any replica) holds the placement lock, then holds it until
    /// the returned guard is released or dropped. Reads of the agents' loads made after this
    /// returns see every placement recorded before the previous holder released it.
    async fn lock_placement(&self) -> Result<PlacementLock>;
}

/// The held placement lock.
#[must_use = "the lock is released when this is dropped"]
pub struct PlacementLock {
    inner: Held,
}

enum Held {
    Local(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>),
    Pg(Option<PoolConnection<Postgres>>),
}

impl PlacementLock {
    pub(crate) fn local(guard: tokio::sync::OwnedMutexGuard<()>) -> Self {
        Self {
            inner: Held::Local(guard),
        }
    }

    /// Holds `conn` (taken from the pool, not yet locked): dropped from here on, the
    /// connection is closed, so a lock its session may hold (or be about to get) goes with it.
    pub(crate) fn pg(conn: PoolConnection<Postgres>) -> Self {
        Self {
            inner: Held::Pg(Some(conn)),
        }
    }

    pub(crate) fn pg_conn(&mut self) -> Option<&mut PoolConnection<Postgres>> {
        match &mut self.inner {
            Held::Pg(conn) => conn.as_mut(),
            Held::Local(_) => None,
        }
    }

    /// Releases the lock; its PostgreSQL connection goes back to the pool.
    pub async fn release(mut self) -> Result<()> {
        if let Held::Pg(conn) = &mut self.inner {
            if let Some(mut c) = conn.take() {
                sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(PG_PLACEMENT_KEY)
                    .execute(&mut *c)
                    .await?;
            }
        }
        Ok(())
    }
}

impl Drop for PlacementLock {
    fn drop(&mut self) {
        if let Held::Pg(conn) = &mut self.inner {
            if let Some(c) = conn.take() {
                // Not released: close the session instead of pooling a connection that may hold
                // the lock (or be waiting for it on the server).
                drop(c.detach());
            }
        }
    }
}

impl std::fmt::Debug for PlacementLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner {
            Held::Local(_) => "local",
            Held::Pg(_) => "postgres",
        };
        f.debug_struct("PlacementLock")
            .field("kind", &kind)
            .finish()
    }
}
