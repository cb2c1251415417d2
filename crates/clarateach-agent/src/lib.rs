//! The host agent: owns the workspaces of the seats scheduled on this host. It adopts what it
//! finds after a restart, keeps one outbound WebSocket to the control plane (register, heartbeat,
//! commands, seat status), reconciles desired and actual workspaces in one state task, and serves
//! the data path the gateway uses to reach each seat's workspace daemon.

#![forbid(unsafe_code)]

pub mod api;
pub mod connection;
pub mod export;
mod http;
pub mod identity;
mod reconcile;
pub mod recording;
mod recordings_api;
pub mod relay;
pub mod starter;
pub mod state;
pub mod volume;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::serve::ListenerExt;
use clarateach_isolation::{Backend, BackendError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use connection::ControlPlaneLink;
pub use reconcile::prepared::Prepared;
pub use state::{SeatView, StateHandle};

/// How to run an agent.
#[derive(Clone)]
pub struct AgentConfig {
    /// Base URL of the control plane, e.g. `http://127.0.0.1:8080`, or several replicas' URLs
    /// separated by commas (the agent fails over between them).
    pub control_plane: String,
    pub agent_token: String,
    /// The agent id to register as (the one its token is bound to); `None` keeps the id stored
    /// in the data dir, creating `agent-<hostname>-<random>` on first start.
    pub agent_id: Option<String>,
    /// CA certificate(s) (PEM) to verify a `https://`/`wss://` control plane with; `None`
    /// trusts the Mozilla root set.
    pub ca: Option<PathBuf>,
    pub data_dir: PathBuf,
    /// Where the local API and data path listen (`127.0.0.1:9090` by default; port 0 picks one).
    pub listen: SocketAddr,
    /// URL the gateway uses to reach the data path; defaults to `http://{listen}`.
    pub data_url: Option<String>,
    /// Seats this host may run.
    pub capacity: u32,
    /// Per-seat cap on the bytes one seat's export archives (file data plus 512 per entry);
    /// [`export::archive::DEFAULT_CAP_BYTES`] (1 GiB) unless configured.
    pub export_cap_bytes: u64,
    /// Where seat volumes are synced (`--object-store s3://...`); `None`: they stay on this host.
    pub object_store: Option<clarateach_objstore::VolumeStore>,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("control_plane", &self.control_plane)
            .field("agent_id", &self.agent_id)
            .field("ca", &self.ca)
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("data_url", &self.data_url)
            .field("capacity", &self.capacity)
            .field("export_cap_bytes", &self.export_cap_bytes)
            .field("object_store", &self.object_store)
            .finish_non_exhaustive()
    }
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot load the agent's identity")]
    Identity(#[from] identity::IdentityError),
    #[error("cannot adopt the workspaces on this host")]
    Adopt(#[source] BackendError),
    #[error("cannot listen on {0}")]
    Listen(SocketAddr, #[source] std::io::Error),
    #[error("cannot set up TLS to the control plane")]
    Tls(#[from] clarateach_tls::TlsError),
    #[error("cannot set up TLS on the data path")]
    DataTls(#[from] clarateach_tls::data_ca::DataTlsError),
}

/// A running agent.
pub struct Agent {
    /// Address the local API and data path listen on.
    pub local_addr: SocketAddr,
    pub agent_id: String,
    pub state: StateHandle,
    /// Terminal recordings of this host's seats.
    pub recorder: Arc<recording::Recorder>,
    /// The seats' sync to object storage, when configured.
    pub volumes: Option<Arc<volume::VolumeSync>>,
    registered: watch::Receiver<bool>,
    shutdown: watch::Sender<bool>,
    connection: JoinHandle<()>,
    server: JoinHandle<()>,
}

impl Agent {
    /// Adopts existing workspaces, starts the HTTP server and connects to the control plane.
    pub async fn start(config: AgentConfig, backend: Arc<dyn Backend>) -> Result<Self, AgentError> {
        let urls = connection::control_plane_urls(&config.control_plane);
        let tls = if urls.iter().any(|u| clarateach_tls::is_tls_url(u)) {
            Some(clarateach_tls::client_config(config.ca.as_deref())?)
        } else {
            None
        };
        for url in urls.iter().filter(|u| !clarateach_tls::is_tls_url(u)) {
            if !clarateach_tls::is_loopback_url(url) {
                tracing::warn!(control_plane = %url,
                    "dialing the control plane over plain ws:// off this host: the agent token and \
                     every seat's specs and API keys cross the network in clear; use https://");
            }
        }
        let hostname = identity::hostname();
        let agent_id = match &config.agent_id {
            Some(id) => identity::store_agent_id(&config.data_dir, id)?,
            None => identity::load_or_create_agent_id(&config.data_dir, &hostname)?,
        };
        let tokens = identity::DaemonTokens::load(&config.data_dir)?;
        let volumes = config
            .object_store
            .clone()
            .map(|store| volume::VolumeSync::new(store, volume::SyncSettings::default()));
        let state = reconcile::spawn_with(Arc::clone(&backend), tokens, volumes.clone())
            .await
            .map_err(AgentError::Adopt)?;

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| AgentError::Listen(config.listen, e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| AgentError::Listen(config.listen, e))?;
        let data_token: Arc<str> = identity::random_token().into();
        let (shutdown, shutdown_rx) = watch::channel(false);

        // An https:// data URL: serve TLS with the certificate the control plane issues at
        // registration; handshakes fail (no certificate) until it has arrived.
        let data_key = match &config.data_url {
            Some(url) if clarateach_tls::is_tls_url(url) => Some(
                clarateach_tls::data_ca::AgentKey::load_or_create(&config.data_dir)?,
            ),
            _ => None,
        };
        let data_tls = data_key.as_ref().map(|k| k.server_config()).transpose()?;
        let recorder = Arc::new(recording::Recorder::new(
            config.data_dir.join("recordings"),
            recording::DEFAULT_SEAT_CAP,
        ));
        let router = api::router(api::ApiState {
            state: state.clone(),
            backend: Arc::clone(&backend),
            data_token: Arc::clone(&data_token),
            agent_token: config.agent_token.clone().into(),
            export_cap_bytes: config.export_cap_bytes,
            recorder: Arc::clone(&recorder),
        });
        let mut server_stop = shutdown_rx.clone();
        let server = tokio::spawn(async move {
            let stop = async move {
                let _ = server_stop.wait_for(|v| *v).await;
            };
            let served = match data_tls {
                // TlsListener sets TCP_NODELAY itself.
                Some(tls) => match clarateach_tls::TlsListener::new(listener, tls) {
                    Ok(listener) => {
                        axum::serve(listener, router)
                            .with_graceful_shutdown(stop)
                            .await
                    }
                    Err(e) => Err(e),
                },
                None => {
                    // Terminal frames are relayed as they come: no Nagle delay on the data path.
                    let listener = listener.tap_io(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    axum::serve(listener, router)
                        .with_graceful_shutdown(stop)
                        .await
                }
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "agent HTTP server failed");
            }
        });

        let data_url = config
            .data_url
            .unwrap_or_else(|| format!("http://{local_addr}"));
        if !clarateach_tls::is_tls_url(&data_url) && !clarateach_tls::is_loopback_url(&data_url) {
            tracing::warn!(%data_url, "the data path is plain HTTP off this host: keystrokes and \
                files between the gateway and this agent cross the network in clear");
        }
        let link = ControlPlaneLink {
            control_plane: config.control_plane,
            tls,
            agent_token: config.agent_token,
            agent_id: agent_id.clone(),
            hostname,
            capacity: config.capacity,
            backends: vec![backend.kind().as_str().to_string()],
            data_url,
            data_token: data_token.to_string(),
            data_tls: data_key,
            images_dir: std::env::var_os("CLARATEACH_IMAGES_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| config.data_dir.join("images")),
        };
        tracing::info!(agent.id = %agent_id, listen = %local_addr, data_url = %link.data_url, "agent started");
        let (registered_tx, registered) = watch::channel(false);
        let connection = tokio::spawn(connection::run(
            link,
            state.clone(),
            shutdown_rx,
            registered_tx,
        ));
        Ok(Self {
            local_addr,
            agent_id,
            state,
            recorder,
            volumes,
            registered,
            shutdown,
            connection,
            server,
        })
    }

    /// Waits until the control plane has accepted this agent (at most `timeout`); false if not.
    pub async fn wait_registered(&self, timeout: std::time::Duration) -> bool {
        let mut rx = self.registered.clone();
        let ok = matches!(
            tokio::time::timeout(timeout, rx.wait_for(|r| *r)).await,
            Ok(Ok(_))
        );
        ok
    }

    /// Disconnects and stops serving. With `stop_workspaces` every workspace is stopped first
    /// (no seat process left; volumes stay); otherwise they keep running for the next agent
    /// process to re-adopt.
    pub async fn shutdown(self, stop_workspaces: bool) {
        let _ = self.shutdown.send(true);
        let _ = self.connection.await;
        if stop_workspaces {
            self.state.shutdown().await;
        }
        let _ = self.server.await;
    }
}
