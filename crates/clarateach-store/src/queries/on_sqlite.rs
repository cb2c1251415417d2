//! The shared queries (see `queries/mod.rs`) on the embedded SQLite store.

#[allow(dead_code)]
type DbRow = sqlx::sqlite::SqliteRow;
type Store = crate::SqliteStore;

#[path = "presenter.rs"]
mod presenter;
#[path = "preview.rs"]
mod preview;
#[path = "throttle.rs"]
mod throttle;
#[path = "toolkit.rs"]
mod toolkit;
