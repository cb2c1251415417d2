//! The ClaraTeach control plane: workshops, seats, learner joins and tokens, instructor auth,
//! scheduling seats onto agents, metrics and the OpenAPI document, over an embedded store.
//!
//! `clarateach serve` and `clarateach up` open a [`Server`] on a data dir and serve it:
//!
//! ```no_run
//! # async fn f() -> Result<(), clarateach_server::ServerError> {
//! let server = clarateach_server::Server::open(clarateach_server::ServerConfig::new("/tmp/ct")).await?;
//! if let Some(token) = server.first_instructor_token() { println!("instructor token: {token}"); }
//! let listener = clarateach_server::listen("127.0.0.1:8080".parse().expect("address"))?;
//! server.serve(listener, std::future::pending()).await
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod accounts;
pub mod agent_auth;
pub mod audit;
pub mod auth;
pub mod broadcast;
mod config;
mod connections;
pub mod error;
pub mod extract;
mod files;
pub mod gateway;
pub mod handlers;
pub mod headers;
pub mod ip;
mod join_codes;
pub mod keys;
pub mod lifecycle;
mod listen;
pub mod metrics;
pub mod openapi;
pub mod pause;
pub mod prepare;
pub mod presenter;
pub mod relocate;
mod router;
pub mod schedule;
pub mod scheduler;
pub mod secrets;
mod state;
pub mod terminal_presence;
pub mod testing;
pub mod throttle;
pub mod tickets;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use clarateach_store::{PgStore, SqliteStore, Store, StoreError};
use tokio::sync::watch;

pub use accounts::{
    create_instructor, issue_agent_token, issue_bound_agent_token, revoke_agent, AccountError,
    INSTRUCTOR_TOKEN_FILE,
};
pub use auth::{Instructor, Learner};
pub use config::{default_data_dir, ServerConfig};
pub use error::ApiError;
pub use listen::{listen, ConnLimits};
pub use scheduler::{AgentScheduler, Provisioner, RegistryHandle, SeatRoute};
pub use state::AppState;

/// File name of the SQLite store inside the data dir.
pub const DB_FILE: &str = "clarateach.db";

/// Why the server could not open or serve.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot prepare the data dir")]
    DataDir(#[source] files::FileError),
    #[error("cannot open the store")]
    Store(#[from] StoreError),
    #[error("the database URL {0} is neither postgres:// nor postgresql:// (leave it unset for the embedded SQLite store)")]
    DatabaseUrl(String),
    #[error("cannot load the token signing key")]
    Keys(#[from] keys::KeyError),
    #[error("cannot load the secret encryption key")]
    Secrets(#[from] secrets::SecretError),
    #[error("cannot create the first instructor")]
    Accounts(#[from] AccountError),
    #[error("cannot load the data-path CA")]
    DataCa(#[from] clarateach_tls::data_ca::DataTlsError),
    #[error("cannot bind the listen address")]
    Bind(#[source] std::io::Error),
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
}

/// Opens the store in `data_dir` (the same one `Server::open` uses), for CLI commands that
/// work on the data dir directly (`instructor add`, `agent token`).
pub async fn open_store(data_dir: &Path) -> Result<Arc<dyn Store>, ServerError> {
    open_database(data_dir, None).await
}

/// Opens the store: PostgreSQL when `database_url` is given (`postgres://...`, shared by every
/// replica), else the SQLite file in `data_dir`. The data dir is prepared either way (keys and
/// secrets live there).
pub async fn open_database(
    data_dir: &Path,
    database_url: Option<&str>,
) -> Result<Arc<dyn Store>, ServerError> {
    files::ensure_dir(data_dir).map_err(ServerError::DataDir)?;
    if let Some(url) = database_url.map(str::trim).filter(|u| !u.is_empty()) {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ServerError::DatabaseUrl(
                clarateach_store::redact_database_url(url),
            ));
        }
        return Ok(Arc::new(PgStore::open(url).await?));
    }
    let path = data_dir.join(DB_FILE);
    let store = SqliteStore::open(&path).await?;
    for suffix in ["", "-wal", "-shm"] {
        let file = data_dir.join(format!("{DB_FILE}{suffix}"));
        if file.exists() {
            files::restrict(&file).map_err(ServerError::DataDir)?;
        }
    }
    Ok(Arc::new(store))
}

/// An opened control plane, ready to serve.
pub struct Server {
    state: AppState,
    web: Option<axum::Router>,
    first_token: Option<String>,
    shutdown: watch::Sender<bool>,
}

impl Server {
    /// Opens the data dir: store (migrated), signing key, secret key, and on first start the
    /// `admin` instructor whose token is written to `DATA_DIR/instructor.token`.
    pub async fn open(config: ServerConfig) -> Result<Self, ServerError> {
        Self::open_with(config, |store, registry| {
            Arc::new(AgentScheduler::new(store, registry))
        })
        .await
    }

    /// Like [`Server::open`] with another [`Provisioner`] (unit tests use a fake here).
    pub async fn open_with(
        mut config: ServerConfig,
        provisioner: impl FnOnce(Arc<dyn Store>, RegistryHandle) -> Arc<dyn Provisioner>,
    ) -> Result<Self, ServerError> {
        let dir = config.data_dir.clone();
        let store = open_database(&dir, config.database_url.as_deref()).await?;
        let keys = keys::SigningKeys::load_or_create(&dir.join("jwt.key"))?;
        let secrets = secrets::SecretBox::load_or_create(&dir.join("secret.key"))?;
        let data_ca = Arc::new(clarateach_tls::data_ca::DataCa::load_or_create(&dir)?);
        let first_token = accounts::ensure_first_instructor(store.as_ref(), &dir).await?;
        // Replicas on one PostgreSQL reach each other's agents through the store; the
        // embedded SQLite store is one process, which holds every agent itself.
        let registry = if config
            .database_url
            .as_deref()
            .is_some_and(|u| !u.trim().is_empty())
        {
            RegistryHandle::spawn_shared(scheduler::Remote::new(
                store.clone(),
                secrets.clone(),
                config.heartbeat_interval,
            ))
        } else {
            RegistryHandle::spawn()
        };
        let provisioner = provisioner(store.clone(), registry.clone());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let web = config.web.take();
        let state = AppState::new(state::Parts {
            config,
            store,
            keys,
            secrets,
            registry,
            provisioner,
            data_ca,
            shutdown: shutdown_rx,
        });
        state.throttle().restore().await?;
        Ok(Self {
            state,
            web,
            first_token,
            shutdown,
        })
    }

    /// The first instructor's token, only when this open created it.
    pub fn first_instructor_token(&self) -> Option<&str> {
        self.first_token.as_deref()
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// The full router (API, gateway, metrics, web UI fallback). [`Server::serve`] serves it with
    /// the connection limits; serving it otherwise needs `ConnectInfo<SocketAddr>` so join
    /// throttling and the `/metrics` loopback rule see addresses.
    pub fn router(&self) -> axum::Router {
        router::build(self.state.clone(), self.web.clone())
    }

    /// Serves until `shutdown` completes, then ends agent sessions and returns.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let app = self.router();
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "control plane listening");
        }
        let config = self.state.config();
        let limits = listen::ConnLimits {
            header_read_timeout: config.header_read_timeout,
            stall_timeout: config.stall_timeout,
            max_connections: config.max_connections,
        };
        let signal = self.shutdown.clone();
        tokio::spawn(schedule::run(self.state.clone(), self.shutdown.subscribe()));
        tokio::spawn(relocate::run(self.state.clone()));
        let tls = self.state.config().tls.clone();
        let result = listen::serve(listener, app, limits, tls, async move {
            shutdown.await;
            let _ = signal.send(true);
        })
        .await
        .map_err(ServerError::Serve);
        let _ = self.shutdown.send(true);
        result
    }
}
