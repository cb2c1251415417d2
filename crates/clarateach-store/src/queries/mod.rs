//! One query source per store resource, compiled once per back end.
//!
//! Each `queries/<resource>.rs` implements its store trait (e.g. [`crate::ThrottleStore`]) for
//! `Store` with rows of type `DbRow`; `on_sqlite.rs` and `on_postgres.rs` include every such file, once in
//! `on_sqlite` (`Store` = [`SqliteStore`], `DbRow` = `SqliteRow`) and once in `on_postgres`
//! (`Store` = [`PgStore`], `DbRow` = `PgRow`), so the SQL and the row mapping are written once
//! and checked by the compiler against both drivers. The rules that make that work:
//!
//! - placeholders are `$1`, `$2`, ... (sqlx's SQLite driver binds `$N` by its number, as
//!   PostgreSQL does), and the SQL is the portable subset both speak (`ON CONFLICT ... DO
//!   UPDATE`, `INSERT ... SELECT`, no `RETURNING` where SQLite's version lacks it);
//! - a query names its pool through `self.writer()` / `self.reader()`: SQLite's single writer
//!   connection and its read-only pool, PostgreSQL's one pool for both (see each store's
//!   `mod.rs`); reads that must see a write just made use `writer()`;
//! - what is genuinely different per back end (PostgreSQL's advisory locks and `FOR UPDATE`,
//!   LISTEN/NOTIFY, SQLite's group commit of seat claims) stays in `sqlite/<resource>.rs` and
//!   `postgres/<resource>.rs`, as inherent methods or functions of the same name on both
//!   stores, which the shared file calls.
//!
//! A new resource: write `queries/<resource>.rs` against `Store`/`DbRow`, add it to
//! `each_resource!` below, and keep a conformance test (`on_every_back_end!`) for it.

/// Every resource file, declared as a module of the back end this is expanded in.
macro_rules! each_resource {
    () => {
        #[path = "accounts.rs"]
        mod accounts;
        #[path = "help.rs"]
        mod help;
        #[path = "moves.rs"]
        mod moves;
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
    };
}

// Each resource file is a module of both: loading it twice is the point.
#[allow(clippy::duplicate_mod)]
mod on_postgres;
#[allow(clippy::duplicate_mod)]
mod on_sqlite;
