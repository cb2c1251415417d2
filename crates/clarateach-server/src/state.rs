//! `AppState`: what every handler, extractor and agent session shares. Cheap to clone.
//! Also the calls the gateway makes: [`AppState::seat_route`] and [`AppState::touch_activity`].

use clarateach_core::ErrorCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clarateach_store::Store;
use clarateach_tls::data_ca::DataCa;
use tokio::sync::watch;

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::join_codes::JoinCodes;
use crate::keys::SigningKeys;
use crate::metrics::Metrics;
use crate::scheduler::{Provisioner, RegistryHandle, SeatRoute};
use crate::secrets::SecretBox;
use crate::throttle::{Budgets, Throttle};
use crate::tickets::Tickets;

/// Activity timestamps are written at most this often per seat.
const ACTIVITY_WRITE_EVERY: Duration = Duration::from_secs(5);

struct Inner {
    config: ServerConfig,
    store: Arc<dyn Store>,
    keys: SigningKeys,
    secrets: SecretBox,
    registry: RegistryHandle,
    provisioner: Arc<dyn Provisioner>,
    data_ca: Arc<DataCa>,
    data_clients: crate::gateway::data_path::TlsClients,
    metrics: Arc<Metrics>,
    throttle: Throttle,
    tickets: Tickets,
    previews: crate::gateway::preview_grants::Previews,
    join_codes: JoinCodes,
    activity: Mutex<HashMap<(String, u32), Instant>>,
    connections: crate::connections::Connections,
    seat_resets: tokio::sync::broadcast::Sender<(String, u32)>,
    shutdown: watch::Receiver<bool>,
    /// Standalone sandboxes (`/api/sandboxes`), opened on first use.
    sandboxes: tokio::sync::OnceCell<Arc<clarateach_sandbox::Sandboxes>>,
    /// Announcements and spotlights (issue 10).
    presenter: crate::presenter::Presenter,
    /// Instructor terminals open per seat, for the learner's notice (issue 10).
    presence: crate::terminal_presence::Presence,
}

/// Shared server state.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("data_dir", &self.inner.config.data_dir)
            .finish_non_exhaustive()
    }
}

/// The parts an [`AppState`] is built from.
pub(crate) struct Parts {
    pub config: ServerConfig,
    pub store: Arc<dyn Store>,
    pub keys: SigningKeys,
    pub secrets: SecretBox,
    pub registry: RegistryHandle,
    pub provisioner: Arc<dyn Provisioner>,
    /// Issues agents their data-path certificates; the gateway trusts only it.
    pub data_ca: Arc<DataCa>,
    pub shutdown: watch::Receiver<bool>,
}

impl AppState {
    pub(crate) fn new(p: Parts) -> Self {
        let throttle = Throttle::new(Budgets::from_config(&p.config), p.store.clone());
        Self {
            inner: Arc::new(Inner {
                config: p.config,
                store: p.store,
                keys: p.keys,
                secrets: p.secrets,
                registry: p.registry,
                provisioner: p.provisioner,
                data_ca: p.data_ca,
                data_clients: Default::default(),
                metrics: Arc::default(),
                throttle,
                tickets: Tickets::default(),
                previews: Default::default(),
                join_codes: JoinCodes::default(),
                activity: Mutex::new(HashMap::new()),
                connections: Default::default(),
                seat_resets: tokio::sync::broadcast::channel(256).0,
                shutdown: p.shutdown,
                sandboxes: tokio::sync::OnceCell::new(),
                presenter: Default::default(),
                presence: Default::default(),
            }),
        }
    }

    /// Standalone sandboxes of this host, opened by the first `/api/sandboxes` request.
    pub fn sandboxes(&self) -> &tokio::sync::OnceCell<Arc<clarateach_sandbox::Sandboxes>> {
        &self.inner.sandboxes
    }
    /// Instructor terminals open per seat (issue 10's consent notice).
    pub fn presence(&self) -> &crate::terminal_presence::Presence {
        &self.inner.presence
    }
    /// Open learner connections per seat, for the idle policy.
    pub fn connections(&self) -> &crate::connections::Connections {
        &self.inner.connections
    }

    /// Announcements and spotlights of this replica's workshops.
    pub fn presenter(&self) -> &crate::presenter::Presenter {
        &self.inner.presenter
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }
    pub fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }
    pub fn store_arc(&self) -> Arc<dyn Store> {
        self.inner.store.clone()
    }
    /// The data-path CA (`DATA_DIR/data-ca.pem`).
    pub fn data_ca(&self) -> &DataCa {
        &self.inner.data_ca
    }
    /// The gateway's pooled clients for agents' `https://` data paths.
    pub(crate) fn data_clients(&self) -> &crate::gateway::data_path::TlsClients {
        &self.inner.data_clients
    }
    pub fn keys(&self) -> &SigningKeys {
        &self.inner.keys
    }
    pub fn secrets(&self) -> &SecretBox {
        &self.inner.secrets
    }
    pub fn registry(&self) -> &RegistryHandle {
        &self.inner.registry
    }
    pub fn provisioner(&self) -> &dyn Provisioner {
        self.inner.provisioner.as_ref()
    }
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
    /// The metrics alone, for the middleware that counts every request (so `metrics.rs` needs
    /// no `AppState`).
    pub(crate) fn metrics_handle(&self) -> Arc<Metrics> {
        Arc::clone(&self.inner.metrics)
    }
    pub fn throttle(&self) -> &Throttle {
        &self.inner.throttle
    }
    /// One-time WebSocket tickets.
    pub fn tickets(&self) -> &Tickets {
        &self.inner.tickets
    }

    /// Preview tickets, preview-host sessions and public ports (issue 12).
    pub fn previews(&self) -> &crate::gateway::preview_grants::Previews {
        &self.inner.previews
    }
    pub(crate) fn join_codes(&self) -> &JoinCodes {
        &self.inner.join_codes
    }
    /// Tells open learner connections of a seat that it was reset (they close).
    pub fn announce_seat_reset(&self, workshop_id: &str, seat: u32) {
        let _ = self.inner.seat_resets.send((workshop_id.to_string(), seat));
    }

    /// A future that completes when the seat is reset. Subscribes when called, so call it before
    /// the connection it guards is handed over, not when it is first polled.
    pub fn seat_reset(
        &self,
        workshop_id: &str,
        seat: u32,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.seat_resets.subscribe();
        let key = (workshop_id.to_string(), seat);
        async move {
            loop {
                match rx.recv().await {
                    Ok(k) if k == key => return,
                    Ok(_) => continue,
                    // Missed announcements may have been ours: close rather than keep a stale
                    // learner attached (the client reconnects and is checked afresh).
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await
                    }
                }
            }
        }
    }

    /// Changes to `true` when the server shuts down; long-lived sessions end on it.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.clone()
    }

    /// Where to send a seat's traffic: the data path of the agent hosting it.
    /// 503 `seat_unavailable` when no connected agent hosts the seat.
    pub async fn seat_route(&self, workshop_id: &str, seat: u32) -> Result<SeatRoute, ApiError> {
        self.provisioner()
            .seat_route(workshop_id, seat)
            .await
            .ok_or_else(|| {
                ApiError::new(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::SeatUnavailable,
                    "The workspace of this seat is not reachable right now.",
                )
            })
    }

    /// Records learner activity on a seat (shown as `last_activity_at`). Cheap to call on every
    /// frame: the store is written at most every few seconds per seat.
    pub async fn touch_activity(&self, workshop_id: &str, seat: u32) {
        let now = Instant::now();
        {
            let mut map = self
                .inner
                .activity
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let key = (workshop_id.to_string(), seat);
            if map
                .get(&key)
                .is_some_and(|t| now.duration_since(*t) < ACTIVITY_WRITE_EVERY)
            {
                return;
            }
            map.insert(key, now);
        }
        if let Err(e) = self
            .store()
            .touch_activity(workshop_id, seat, chrono::Utc::now())
            .await
        {
            tracing::warn!(workshop.id = workshop_id, seat, error = %e, "cannot record seat activity");
        }
    }
}
