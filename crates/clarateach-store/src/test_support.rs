//! Test support shared by this crate's and the control plane's test suites: which back end a
//! test runs on. With `CLARATEACH_TEST_DATABASE_URL` set (scripts/test.sh starts a throwaway
//! cluster with scripts/pg.sh), each test gets a new empty PostgreSQL database on that server;
//! unset, PostgreSQL tests print a SKIP line and SQLite is used.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Connection;

use crate::{Result, StoreError};

/// The environment variable naming the test PostgreSQL server (any database on it; the tests
/// create their own).
pub const TEST_DATABASE_URL_ENV: &str = "CLARATEACH_TEST_DATABASE_URL";

/// The test server's URL, when one is configured.
pub fn test_server_url() -> Option<String> {
    std::env::var(TEST_DATABASE_URL_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// `url` pointing at database `name` instead of the one it names.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let host_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path = base[host_start..]
        .find('/')
        .map(|i| host_start + i)
        .unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..path])
}

/// Creates a new empty database on the test server and returns its URL; `None` when no test
/// server is configured.
pub async fn fresh_database_url() -> Result<Option<String>> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let Some(server) = test_server_url() else {
        return Ok(None);
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = format!(
        "ct_test_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = sqlx::PgConnection::connect(&server)
        .await
        .map_err(|source| StoreError::Open {
            path: crate::postgres::redact(&server),
            source,
        })?;
    // The name is ours (digits and underscores), not input.
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok(Some(with_database(&server, &name)))
}

/// Prints the line that makes a skipped PostgreSQL test visible (also under capture).
pub fn skip_postgres(test: &str) {
    let line =
        format!("SKIP: {test}: {TEST_DATABASE_URL_ENV} is not set (scripts/pg.sh starts a server)");
    eprintln!("{line}");
    println!("{line}");
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_is_replaced() {
        assert_eq!(
            with_database("postgres://u:p@h:5/postgres", "x"),
            "postgres://u:p@h:5/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h:5/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
