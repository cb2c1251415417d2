//! The agent's outbound WebSocket to the control plane (`/api/agents/connect`): registers with
//! the seats it hosts, heartbeats, hands commands to the state task, forwards seat status, and
//! reconnects with exponential backoff and jitter whenever the link drops.

use std::time::Duration;

use clarateach_core::agent_proto::{AgentMessage, ControlMessage, DataTlsCert};
use futures::{SinkExt, StreamExt};
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::state::StateHandle;

/// Who the agent is and how to reach the control plane.
#[derive(Clone)]
pub struct ControlPlaneLink {
    /// Base URL of the control plane, `http://host:port` (or `ws://`), or several replicas'
    /// URLs separated by commas: the agent fails over to the next when one drops or refuses.
    pub control_plane: String,
    /// How to verify a `wss://` control plane (`None` for plain `ws://`).
    pub tls: Option<std::sync::Arc<clarateach_tls::ClientConfig>>,
    pub agent_token: String,
    pub agent_id: String,
    pub hostname: String,
    pub capacity: u32,
    pub backends: Vec<String>,
    pub data_url: String,
    pub data_token: String,
    /// With an `https://` data URL: the data-path key; its certificate arrives in `registered`.
    pub data_tls: Option<std::sync::Arc<clarateach_tls::data_ca::AgentKey>>,
    /// Seat-image store whose built images `register` reports (read at every registration).
    pub images_dir: std::path::PathBuf,
}

impl std::fmt::Debug for ControlPlaneLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlaneLink")
            .field("control_plane", &self.control_plane)
            .field("agent_id", &self.agent_id)
            .field("data_url", &self.data_url)
            .finish_non_exhaustive()
    }
}

/// Why one connection attempt ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("the control-plane URL {0:?} is not http(s):// or ws(s)://")]
    Url(String),
    #[error("connecting to the control plane failed")]
    Connect(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    #[error("the control plane refused the agent token (HTTP {0}: {1})")]
    Refused(u16, String),
    #[error("the WebSocket to the control plane failed")]
    Socket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    #[error("the control plane sent a message that is not valid JSON")]
    Decode(#[source] serde_json::Error),
    #[error("the agent is shutting down")]
    ShuttingDown,
}

/// Header naming the agent id the agent registers as (the control plane's
/// `handlers::agents::AGENT_ID_HEADER`).
pub const AGENT_ID_HEADER: &str = "clarateach-agent-id";

/// `http://h:p/x` -> `ws://h:p/x/api/agents/connect`.
pub fn connect_url(base: &str) -> Result<String, ConnectionError> {
    let base = base.trim_end_matches('/');
    let rest = if let Some(r) = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("ws://"))
    {
        format!("ws://{r}")
    } else if let Some(r) = base
        .strip_prefix("https://")
        .or_else(|| base.strip_prefix("wss://"))
    {
        format!("wss://{r}")
    } else {
        return Err(ConnectionError::Url(base.to_string()));
    };
    Ok(format!("{rest}/api/agents/connect"))
}

/// The replicas' base URLs in `list` (comma-separated, blanks ignored), in order.
pub fn control_plane_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

/// What this host gives seats, reported at every registration: the control plane reserves each
/// seat's memory and CPU limits from it. Its physical memory (`MemTotal`) and CPUs x 1000,
/// unless `CLARATEACH_AGENT_MEMORY_MB` / `CLARATEACH_AGENT_CPU_MILLIS` say otherwise (a host
/// shared with other work, or a test staging a small host); `0` reports none (slots only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostResources {
    pub memory_mb: Option<u64>,
    pub cpu_millis: Option<u64>,
}

impl HostResources {
    pub fn detect() -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get() as u64);
        Self::from_parts(
            &meminfo,
            cpus,
            std::env::var("CLARATEACH_AGENT_MEMORY_MB").ok().as_deref(),
            std::env::var("CLARATEACH_AGENT_CPU_MILLIS").ok().as_deref(),
        )
    }

    fn from_parts(
        meminfo: &str,
        cpus: u64,
        memory_env: Option<&str>,
        cpu_env: Option<&str>,
    ) -> Self {
        let total_mb = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb / 1024);
        let pick = |env: Option<&str>, measured: Option<u64>| match env.map(str::trim) {
            Some(v) if !v.is_empty() => v.parse::<u64>().ok().filter(|n| *n > 0),
            _ => measured.filter(|n| *n > 0),
        };
        Self {
            memory_mb: pick(memory_env, total_mb),
            cpu_millis: pick(cpu_env, Some(cpus * 1000)),
        }
    }
}

/// Delay before trying the next replica of a list that has not been tried through yet: short,
/// so losing a replica costs its agents well under a second, randomised so they do not all
/// arrive at the same instant.
fn failover_delay() -> Duration {
    Duration::from_millis(rand::thread_rng().gen_range(50..=250))
}

/// Delay before the `attempt`-th reconnection: doubling from 200 ms up to 10 s, with the upper
/// half randomised so a restarted control plane is not hit by every agent at once.
pub fn backoff(attempt: u32) -> Duration {
    let cap = 200u64.saturating_mul(1u64 << attempt.min(6)).min(10_000);
    Duration::from_millis(rand::thread_rng().gen_range(cap / 2..=cap))
}

/// Keeps the agent connected until `shutdown` turns true.
/// `registered` is true while the control plane has accepted this agent.
pub async fn run(
    link: ControlPlaneLink,
    state: StateHandle,
    mut shutdown: watch::Receiver<bool>,
    registered_tx: watch::Sender<bool>,
) {
    let mut attempt = 0u32;
    let mut urls = control_plane_urls(&link.control_plane);
    if urls.is_empty() {
        urls.push(link.control_plane.clone());
    }
    // Which replica to dial, and how many replicas failed in a row (a full round of failures
    // backs off; a single replica's loss only moves on to the next).
    let mut current = 0usize;
    let mut failed_in_round = 0usize;
    loop {
        let mut registered = false;
        let url = &urls[current % urls.len()];
        let result = connect_once(
            &link,
            url,
            &state,
            &mut shutdown,
            &mut registered,
            &registered_tx,
        )
        .await;
        registered_tx.send_replace(false);
        state.disconnected().await;
        if registered {
            attempt = 0;
            failed_in_round = 0;
        }
        match result {
            Err(ConnectionError::ShuttingDown) => return,
            Ok(()) => tracing::warn!("control plane closed the connection"),
            Err(e) => {
                tracing::warn!(error = %crate::reconcile::error_chain(&e), "control-plane connection failed")
            }
        }
        if *shutdown.borrow() {
            return;
        }
        current = (current + 1) % urls.len();
        failed_in_round += 1;
        let delay = if failed_in_round < urls.len() {
            failover_delay()
        } else {
            failed_in_round = 0;
            let d = backoff(attempt);
            attempt = attempt.saturating_add(1);
            d
        };
        tracing::info!(
            delay_ms = delay.as_millis() as u64,
            control_plane = %urls[current],
            "reconnecting to the control plane"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn connect_once(
    link: &ControlPlaneLink,
    base: &str,
    state: &StateHandle,
    shutdown: &mut watch::Receiver<bool>,
    registered: &mut bool,
    registered_tx: &watch::Sender<bool>,
) -> Result<(), ConnectionError> {
    let url = connect_url(base)?;
    let mut request = url
        .clone()
        .into_client_request()
        .map_err(|e| ConnectionError::Connect(Box::new(e)))?;
    let auth = format!("Bearer {}", link.agent_token)
        .parse()
        .map_err(|_| ConnectionError::Url(url.clone()))?;
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, auth);
    // Named before the upgrade so a token bound to another id is refused with 403 at once.
    let id = link
        .agent_id
        .parse()
        .map_err(|_| ConnectionError::Url(url.clone()))?;
    request.headers_mut().insert(AGENT_ID_HEADER, id);
    let connector = link.tls.clone().map(tokio_tungstenite::Connector::Rustls);
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector)
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(resp) => {
                let body = resp
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                let code = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["code"].as_str().map(str::to_string))
                    .unwrap_or_default();
                ConnectionError::Refused(resp.status().as_u16(), code)
            }
            e => ConnectionError::Connect(Box::new(e)),
        })?;
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<AgentMessage>(1024);
    let seats = state
        .connected(out_tx)
        .await
        .map_err(|_| ConnectionError::ShuttingDown)?;
    let built = clarateach_image::ImageStore::new(&link.images_dir)
        .list()
        .unwrap_or_default();
    let resources = HostResources::detect();
    let register = AgentMessage::Register {
        images: built.iter().map(|i| i.name.clone()).collect(),
        image_details: built.into_iter().map(image_summary).collect(),
        buildable: clarateach_image::prepare::buildable(),
        agent_id: link.agent_id.clone(),
        hostname: link.hostname.clone(),
        capacity: link.capacity,
        backends: link.backends.clone(),
        data_url: link.data_url.clone(),
        data_token: link.data_token.clone(),
        seats,
        data_tls_public_key: link
            .data_tls
            .as_ref()
            .map(|k| k.public_key_pem().to_string()),
        memory_mb: resources.memory_mb,
        cpu_millis: resources.cpu_millis,
    };
    send(&mut sink, &register).await?;
    tracing::info!(agent.id = %link.agent_id, control_plane = %base, "connected to the control plane");
    let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let msg: ControlMessage = serde_json::from_str(text.as_str()).map_err(ConnectionError::Decode)?;
                    if let ControlMessage::Registered { heartbeat_interval_ms, data_tls, .. } = &msg {
                        *registered = true;
                        install_data_cert(link, data_tls.as_ref());
                        let every = Duration::from_millis((*heartbeat_interval_ms).clamp(100, 60_000));
                        heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                    }
                    let is_registered = matches!(msg, ControlMessage::Registered { .. });
                    state.control(msg).await.map_err(|_| ConnectionError::ShuttingDown)?;
                    if is_registered {
                        registered_tx.send_replace(true);
                    }
                }
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(ConnectionError::Socket(Box::new(e))),
            },
            Some(msg) = out_rx.recv() => send(&mut sink, &msg).await?,
            _ = heartbeat.tick(), if *registered => {
                send(&mut sink, &AgentMessage::Heartbeat { used: state.used() }).await?;
            }
            _ = shutdown.changed() => {
                let _ = sink.send(Message::Close(None)).await;
                return Err(ConnectionError::ShuttingDown);
            }
        }
    }
}

/// Puts the data-path certificate from `registered` in place (kept from an earlier
/// registration when none came).
fn install_data_cert(link: &ControlPlaneLink, issued: Option<&DataTlsCert>) {
    let Some(key) = &link.data_tls else { return };
    match issued {
        Some(cert) => match key.install(&cert.cert_pem) {
            Ok(()) => tracing::info!(data_url = %link.data_url, "data-path certificate installed"),
            Err(e) => tracing::error!(error = %crate::reconcile::error_chain(&e),
                "the control plane's data-path certificate is not usable"),
        },
        None if !key.has_cert() => tracing::error!(data_url = %link.data_url,
            "the control plane issued no data-path certificate: the gateway cannot reach this \
             agent's https:// data URL"),
        None => {}
    }
}

async fn send<S>(sink: &mut S, msg: &AgentMessage) -> Result<(), ConnectionError>
where
    S: futures::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    let text = serde_json::to_string(msg).map_err(ConnectionError::Decode)?;
    sink.send(Message::text(text))
        .await
        .map_err(|e| ConnectionError::Socket(Box::new(e)))
}

/// What `register` says about one built image.
fn image_summary(i: clarateach_image::ImageInfo) -> clarateach_core::SeatImageSummary {
    clarateach_core::SeatImageSummary {
        name: i.name,
        digest: i.digest,
        description: i.description,
        packages: i.packages,
        size_bytes: i.size_bytes,
        built_at: i.built_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_resources_from_meminfo_cpus_and_overrides() {
        let meminfo = "MemTotal:       24683520 kB\nMemFree:         4715000 kB\n";
        let r = HostResources::from_parts(meminfo, 2, None, None);
        assert_eq!((r.memory_mb, r.cpu_millis), (Some(24105), Some(2000)));
        let r = HostResources::from_parts(meminfo, 2, Some("1024"), Some(" 500 "));
        assert_eq!((r.memory_mb, r.cpu_millis), (Some(1024), Some(500)));
        // `0` or garbage in the override reports nothing (slots only); no meminfo: no memory.
        let r = HostResources::from_parts("", 0, Some("0"), Some("lots"));
        assert_eq!((r.memory_mb, r.cpu_millis), (None, None));
        let r = HostResources::from_parts("", 4, None, None);
        assert_eq!((r.memory_mb, r.cpu_millis), (None, Some(4000)));
    }

    #[test]
    fn urls_and_backoff() {
        assert_eq!(
            connect_url("http://127.0.0.1:8080/").expect("url"),
            "ws://127.0.0.1:8080/api/agents/connect"
        );
        assert_eq!(
            connect_url("https://cp.example").expect("url"),
            "wss://cp.example/api/agents/connect"
        );
        assert!(connect_url("ftp://x").is_err());
        assert_eq!(
            control_plane_urls(" http://a:1, https://b:2 ,,"),
            vec!["http://a:1".to_string(), "https://b:2".to_string()]
        );
        assert_eq!(control_plane_urls("http://a"), vec!["http://a".to_string()]);
        for attempt in 0..20 {
            let d = backoff(attempt);
            assert!(
                d >= Duration::from_millis(100) && d <= Duration::from_secs(10),
                "{d:?}"
            );
        }
        assert!(backoff(0) <= Duration::from_millis(200));
    }
}
