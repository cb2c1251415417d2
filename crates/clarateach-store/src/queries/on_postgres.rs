//! The shared queries (see `queries/mod.rs`) on the shared PostgreSQL store.

#[allow(dead_code)]
type DbRow = sqlx::postgres::PgRow;
type Store = crate::PgStore;

#[path = "accounts.rs"]
mod accounts;
#[path = "help.rs"]
mod help;
#[path = "presenter.rs"]
mod presenter;
#[path = "preview.rs"]
mod preview;
#[path = "replicas.rs"]
mod replicas;
#[path = "schedule.rs"]
mod schedule;
#[path = "seats.rs"]
mod seats;
#[path = "templates.rs"]
mod templates;
#[path = "throttle.rs"]
mod throttle;
#[path = "toolkit.rs"]
mod toolkit;
#[path = "workshops.rs"]
mod workshops;
