//! The shared store: one PostgreSQL database that several control-plane replicas use at once.
//!
//! Same semantics as the SQLite store (`crate::sqlite`), file for file: each `<resource>.rs`
//! here mirrors the SQLite file of the same name with `$n` placeholders and PostgreSQL types.
//! What SQLite got from its single writer connection is made explicit here: seat claims of one
//! workshop are serialized across replicas by a transaction-scoped advisory lock (see
//! `claims`), and statements that must not interleave are single statements or take row locks.

mod accounts;
mod claims;
mod placement;
mod replicas;
mod seats;
mod workshops;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::mpsc;

use crate::{Result, StoreError};

/// Connections per control-plane process; PostgreSQL's default limit (100) leaves room for a
/// handful of replicas.
const MAX_CONNECTIONS: u32 = 16;

/// PostgreSQL implementation of [`crate::Store`].
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    claims: mpsc::UnboundedSender<claims::Claim>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db`, libpq parameters such as
    /// `sslmode` and `options` allowed) and applies pending migrations. Replicas starting at once
    /// are safe: sqlx holds an advisory lock while it migrates.
    pub async fn open(url: &str) -> Result<Self> {
        let open_err = |source| StoreError::Open {
            path: redact(url),
            source,
        };
        let options = PgConnectOptions::from_str(url).map_err(open_err)?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(open_err)?;
        sqlx::migrate!("./migrations-postgres")
            .run(&pool)
            .await
            .map_err(StoreError::Migrate)?;
        let claims = claims::spawn(pool.clone());
        Ok(Self { pool, claims })
    }

    /// The connection pool (for LISTEN/NOTIFY and advisory locks of the control plane).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pool, for writes (the shared query modules name `writer()` and `reader()`).
    pub(crate) fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// The pool, for reads: the same one as [`Self::writer`].
    pub(crate) fn reader(&self) -> &PgPool {
        &self.pool
    }

    /// The queue of this store's claim task (group commit, see `claims`).
    pub(crate) fn claim_queue(&self) -> &mpsc::UnboundedSender<claims::Claim> {
        &self.claims
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `url` with its password replaced, for error messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://ct:s3cret@db:5432/ct"),
            "postgres://ct:***@db:5432/ct"
        );
        assert_eq!(redact("postgres://db/ct"), "postgres://db/ct");
        assert_eq!(redact("postgres://ct@db/ct"), "postgres://ct@db/ct");
    }
}
