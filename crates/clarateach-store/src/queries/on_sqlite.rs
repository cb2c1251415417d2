//! The shared queries (see `queries/mod.rs`) on the embedded SQLite store.

#[allow(dead_code)]
type DbRow = sqlx::sqlite::SqliteRow;
type Store = crate::SqliteStore;

each_resource!();
