//! The control plane's source of truth: instructors, agent tokens, workshops and seats.
//!
//! Callers see only the [`Store`] trait (split by resource into [`AccountStore`],
//! [`WorkshopStore`], [`SeatStore`] and [`ThrottleStore`]), implemented by the embedded SQLite
//! store ([`SqliteStore`], the default) and by PostgreSQL ([`PgStore`]) for several control-plane
//! replicas sharing one database. Schema changes are append-only files in `migrations/`
//! (SQLite) and `migrations-postgres/` (the same versions in PostgreSQL's spelling), embedded
//! into the binary.
//!
//! One query source per resource: `queries/<resource>.rs` implements a resource's trait once,
//! for a `Store` and a `DbRow` that `queries/on_sqlite.rs` and `queries/on_postgres.rs` bind to
//! each back end (the file is compiled into both, see `queries/mod.rs`). SQL there uses `$1`
//! placeholders and the portable subset; pools are named by `self.writer()`/`self.reader()`.
//! What really differs (PostgreSQL's advisory locks, arrays, NOTIFY/LISTEN, `RETURNING`
//! deletes; SQLite's group commit of seat claims) is a same-named inherent method in
//! `sqlite/<resource>.rs` and `postgres/<resource>.rs`, which the shared file calls. A new
//! store trait follows the same shape: trait in `src/<resource>.rs`, queries in
//! `queries/<resource>.rs` (listed in `each_resource!`), per-back-end methods only where the
//! back ends must differ, tests with `on_every_back_end!`.

#![forbid(unsafe_code)]

#[cfg(test)]
mod conformance;
mod help;
mod moves;
mod placement;
mod postgres;
mod presenter;
mod preview;
mod queries;
mod records;
mod replicas;
mod rows;
mod schedule;
mod sqlite;
mod templates;
#[doc(hidden)]
pub mod test_support;
mod toolkit;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clarateach_core::{SeatState, WorkshopStatus};

pub use help::HelpStore;
pub use moves::{LostSeat, MoveStore, SeatMove};
pub use placement::{PlacementLock, PlacementStore};
pub use postgres::{redact as redact_database_url, PgStore};
pub use presenter::{AnnouncementRecord, PresenterStore, SpotlightRecord};
pub use preview::PreviewStore;
pub use records::{AgentTokenRecord, InstructorRecord, NewWorkshop, SeatRecord, WorkshopRecord};
pub use replicas::{AgentLoad, AgentPresence, AgentPresenceInfo, QueuedCommand, ReplicaStore};
pub use schedule::{ScheduleStore, WorkshopSchedule};
pub use sqlite::SqliteStore;
pub use templates::{TemplateRecord, WorkshopStarter};
pub use toolkit::{BaseEntry, LatestKind, ToolkitStore};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database at {path}")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot apply the database migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A unique value (join code, reconnect code, token hash) is already taken.
    #[error("a unique value is already taken")]
    Conflict,
    #[error("database query failed")]
    Query(#[source] sqlx::Error),
    /// The transaction committing a batch of seat claims failed: none of them was committed.
    #[error("the seat claim transaction failed")]
    ClaimBatch(#[source] std::sync::Arc<sqlx::Error>),
    #[error("the database holds a value this version cannot read: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            _ => StoreError::Query(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Instructor accounts and agent tokens; only SHA-256 hashes of tokens are stored.
#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn create_instructor(&self, id: &str, name: &str, token_hash: &str) -> Result<()>;
    async fn instructor_by_token_hash(&self, token_hash: &str) -> Result<Option<InstructorRecord>>;
    async fn count_instructors(&self) -> Result<i64>;
    async fn create_agent_token(&self, id: &str, token_hash: &str) -> Result<()>;
    /// True when a token with this hash exists and is not revoked.
    async fn agent_token_exists(&self, token_hash: &str) -> Result<bool>;
    /// Inserts a token that may register only as `agent_id`.
    async fn create_bound_agent_token(
        &self,
        id: &str,
        token_hash: &str,
        agent_id: &str,
    ) -> Result<()>;
    /// The token with this hash, revoked or not.
    async fn agent_token_by_hash(&self, token_hash: &str) -> Result<Option<AgentTokenRecord>>;
    /// Binds an unbound, unrevoked token to `agent_id`, only when no unrevoked token is bound to
    /// that id yet (a legacy token cannot take over an id another credential holds); true when
    /// bound.
    async fn bind_agent_token(&self, token_id: &str, agent_id: &str) -> Result<bool>;
    /// Revokes every token bound to `agent_id`; returns how many were revoked.
    async fn revoke_agent_tokens(&self, agent_id: &str) -> Result<u64>;
    /// True while the token with this id exists and is not revoked.
    async fn agent_token_active(&self, token_id: &str) -> Result<bool>;
    /// Stores a short-lived instructor session (hash only); expired sessions are swept here.
    async fn create_instructor_session(
        &self,
        token_hash: &str,
        instructor_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()>;
    /// The instructor of a session that has not expired at `now`.
    async fn instructor_by_session_hash(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<InstructorRecord>>;
    /// Revokes a session; true when it existed.
    async fn delete_instructor_session(&self, token_hash: &str) -> Result<bool>;
}

/// The join limiter's counters, kept so a restart does not reset every budget.
#[async_trait]
pub trait ThrottleStore: Send + Sync {
    /// Every bucket whose window started at or after `since` (seconds since the epoch), as
    /// `(bucket, window_start, failures)`; older ones are deleted.
    async fn load_throttle(&self, since: i64) -> Result<Vec<(String, i64, u32)>>;
    /// Writes one bucket's counter.
    async fn save_throttle(&self, bucket: &str, window_start: i64, failures: u32) -> Result<()>;
}

/// Workshops and their lifecycle status.
#[async_trait]
pub trait WorkshopStore: Send + Sync {
    /// Inserts the workshop and its seats `1..=seats` (state pending) in one transaction.
    /// `Conflict` when the join code or id is taken.
    async fn insert_workshop(&self, new: &NewWorkshop) -> Result<()>;
    async fn get_workshop(&self, id: &str) -> Result<Option<WorkshopRecord>>;
    async fn list_workshops(&self, instructor_id: &str) -> Result<Vec<WorkshopRecord>>;
    async fn workshop_by_code(&self, code: &str) -> Result<Option<WorkshopRecord>>;
    /// Moves the workshop to `to` only if its status is one of `from`; true when it moved.
    async fn transition(
        &self,
        id: &str,
        from: &[WorkshopStatus],
        to: WorkshopStatus,
    ) -> Result<bool>;
    /// provisioning -> running when every seat is ready; true when it moved.
    async fn promote_if_all_ready(&self, id: &str) -> Result<bool>;
    /// Forgets the encrypted api key.
    async fn clear_api_key(&self, id: &str) -> Result<()>;
    /// Deletes the workshop and its seats; true when it existed.
    async fn delete_workshop(&self, id: &str) -> Result<bool>;
    async fn count_workshops_by_status(&self) -> Result<Vec<(WorkshopStatus, i64)>>;
}

/// Seats: placement on agents, workspace state, learners.
#[async_trait]
pub trait SeatStore: Send + Sync {
    async fn list_seats(&self, workshop_id: &str) -> Result<Vec<SeatRecord>>;
    async fn get_seat(&self, workshop_id: &str, seat: u32) -> Result<Option<SeatRecord>>;
    /// Atomically gives the lowest free seat of a running workshop to a new learner, committed
    /// before it returns. `None` when every seat is taken or the workshop is not running (the
    /// caller looks the workshop up to tell which); `Conflict` when `odehash` is already used in
    /// this workshop (the caller retries).
    async fn claim_seat(
        &self,
        workshop_id: &str,
        odehash: &str,
        name: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Option<SeatRecord>>;
    async fn seat_by_odehash(&self, workshop_id: &str, odehash: &str)
        -> Result<Option<SeatRecord>>;
    /// Records which agent hosts each seat and sets their state.
    async fn place_seats(
        &self,
        workshop_id: &str,
        placements: &[(u32, String)],
        state: SeatState,
    ) -> Result<()>;
    /// Sets a seat's state, only if `agent_id` still hosts it; true when it changed.
    async fn report_seat(
        &self,
        workshop_id: &str,
        seat: u32,
        agent_id: &str,
        state: SeatState,
    ) -> Result<bool>;
    /// Sets the state of the listed seats (all seats when `seats` is `None`).
    async fn set_seats_state(
        &self,
        workshop_id: &str,
        seats: Option<&[u32]>,
        state: SeatState,
    ) -> Result<()>;
    /// Marks the creating/ready seats an agent hosts in live workshops as lost; returns how many.
    async fn mark_agent_seats_lost(&self, agent_id: &str) -> Result<u64>;
    /// Seats an agent should host: its seats in provisioning or running workshops.
    async fn seats_for_agent(&self, agent_id: &str) -> Result<Vec<(String, u32)>>;
    async fn touch_activity(&self, workshop_id: &str, seat: u32, at: DateTime<Utc>) -> Result<()>;
    /// Gives a held seat a new reconnect code and bumps its generation (files, name and
    /// placement stay). `None` when the seat has no learner; `Conflict` when `odehash` is taken.
    async fn reset_seat(
        &self,
        workshop_id: &str,
        seat: u32,
        odehash: &str,
    ) -> Result<Option<SeatRecord>>;
    async fn count_seats_by_state(&self) -> Result<Vec<(SeatState, i64)>>;
}

/// Everything the control plane needs from its database.
pub trait Store:
    AccountStore
    + WorkshopStore
    + SeatStore
    + ThrottleStore
    + TemplateStore
    + ScheduleStore
    + HelpStore
    + ToolkitStore
    + ReplicaStore
    + PreviewStore
    + PresenterStore
    + PlacementStore
    + MoveStore
{
}

impl<T> Store for T where
    T: AccountStore
        + WorkshopStore
        + SeatStore
        + ThrottleStore
        + TemplateStore
        + ScheduleStore
        + HelpStore
        + ToolkitStore
        + ReplicaStore
        + PreviewStore
        + PresenterStore
        + PlacementStore
        + MoveStore
{
}

/// Workshop templates (per instructor) and the starter a workshop copied from one.
#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// `Conflict` when the instructor already has a template of that name.
    async fn insert_template(&self, t: &TemplateRecord) -> Result<()>;
    async fn get_template(&self, instructor_id: &str, name: &str)
        -> Result<Option<TemplateRecord>>;
    async fn list_templates(&self, instructor_id: &str) -> Result<Vec<TemplateRecord>>;
    /// True when it existed.
    async fn delete_template(&self, instructor_id: &str, name: &str) -> Result<bool>;
    /// Records the starter of a new workshop (deleted with the workshop).
    async fn set_workshop_starter(&self, workshop_id: &str, s: &WorkshopStarter) -> Result<()>;
    async fn workshop_starter(&self, workshop_id: &str) -> Result<Option<WorkshopStarter>>;
}
