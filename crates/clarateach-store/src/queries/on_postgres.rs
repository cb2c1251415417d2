//! The shared queries (see `queries/mod.rs`) on the shared PostgreSQL store.

#[allow(dead_code)]
type DbRow = sqlx::postgres::PgRow;
type Store = crate::PgStore;

each_resource!();
