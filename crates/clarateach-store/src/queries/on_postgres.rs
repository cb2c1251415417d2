//! The shared queries (see `queries/mod.rs`) on the shared PostgreSQL store.

#[allow(dead_code)]
type DbRow = sqlx::postgres::PgRow;
type Store = crate::PgStore;

#[path = "presenter.rs"]
mod presenter;
#[path = "preview.rs"]
mod preview;
#[path = "throttle.rs"]
mod throttle;
#[path = "toolkit.rs"]
mod toolkit;
