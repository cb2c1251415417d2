//! `ProtocolAgent`: a minimal agent that speaks the real control-plane protocol over a real
//! WebSocket (`/api/agents/connect`) and reports every seat it is asked for as ready, without
//! creating any workspace. It exists for this crate's join/reconnect/throttling/lifecycle
//! tests and for `clarateach bench join`, where workspaces are irrelevant. Full-stack tests
//! with the real agent live in the agent crate.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clarateach_core::agent_proto::{AgentMessage, ControlMessage, SeatReport, SeatSpec};
use clarateach_core::SeatState;
use futures::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Why the protocol agent could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolAgentError {
    #[error("cannot build the connect request")]
    Request(#[source] tokio_tungstenite::tungstenite::Error),
    #[error("cannot connect to the control plane")]
    Connect(#[source] tokio_tungstenite::tungstenite::Error),
}

/// How the protocol agent behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Heartbeats and reports.
    Normal,
    /// Keeps the socket open but sends nothing (to test heartbeat loss).
    Silent,
}

/// A running protocol agent; dropping it disconnects.
pub struct ProtocolAgent {
    mode: watch::Sender<Mode>,
    task: JoinHandle<()>,
    specs: Arc<Mutex<Vec<SeatSpec>>>,
    /// `ResumeSeat` messages received (answered or not).
    resumes: Arc<std::sync::atomic::AtomicUsize>,
}

impl ProtocolAgent {
    /// Connects to `base` (e.g. `http://127.0.0.1:8080`) and registers as `agent_id`.
    pub async fn connect(
        base: &str,
        token: &str,
        agent_id: &str,
        capacity: u32,
    ) -> Result<Self, ProtocolAgentError> {
        Self::connect_tls(base, token, agent_id, capacity, None).await
    }

    /// Like [`ProtocolAgent::connect`]; an `https://` base is dialed as `wss://` verified
    /// with `tls`.
    pub async fn connect_tls(
        base: &str,
        token: &str,
        agent_id: &str,
        capacity: u32,
        tls: Option<std::sync::Arc<clarateach_tls::ClientConfig>>,
    ) -> Result<Self, ProtocolAgentError> {
        let data_url = format!("http://127.0.0.1:9/{agent_id}");
        Self::connect_with(
            base,
            token,
            agent_id,
            capacity,
            &data_url,
            tls,
            vec![],
            None,
        )
        .await
    }

    /// Like [`Self::connect`], with seat traffic routed to `data_url` (a test's own server
    /// standing in for an agent's data path, or for a tampered daemon behind it).
    pub async fn connect_with_data_url(
        base: &str,
        token: &str,
        agent_id: &str,
        capacity: u32,
        data_url: &str,
    ) -> Result<Self, ProtocolAgentError> {
        Self::connect_with(
            base,
            token,
            agent_id,
            capacity,
            data_url,
            None,
            vec![],
            None,
        )
        .await
    }

    /// Like [`Self::connect`], reporting `images` as built on its host (issue 11's placement).
    pub async fn connect_with_images(
        base: &str,
        token: &str,
        agent_id: &str,
        capacity: u32,
        images: Vec<String>,
    ) -> Result<Self, ProtocolAgentError> {
        let data_url = format!("http://127.0.0.1:9/{agent_id}");
        Self::connect_with(
            base, token, agent_id, capacity, &data_url, None, images, None,
        )
        .await
    }

    /// Like [`Self::connect`], reporting a host of `memory_mb` MiB and `cpu_millis` CPU
    /// (issue 13's placement by memory and CPU).
    pub async fn connect_with_resources(
        base: &str,
        token: &str,
        agent_id: &str,
        capacity: u32,
        memory_mb: u64,
        cpu_millis: u64,
    ) -> Result<Self, ProtocolAgentError> {
        let data_url = format!("http://127.0.0.1:9/{agent_id}");
        let resources = Some((memory_mb, cpu_millis));
        Self::connect_with(
            base,
            token,
            agent_id,
            capacity,
            &data_url,
            None,
            vec![],
            resources,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn connect_with(
        base: &str,
        token: &str,
        agent_id: &str,
        capacity: u32,
        data_url: &str,
        tls: Option<std::sync::Arc<clarateach_tls::ClientConfig>>,
        images: Vec<String>,
        resources: Option<(u64, u64)>,
    ) -> Result<Self, ProtocolAgentError> {
        let url = format!("{}/api/agents/connect", base.replacen("http", "ws", 1));
        let mut req = url
            .into_client_request()
            .map_err(ProtocolAgentError::Request)?;
        if let Ok(v) = format!("Bearer {token}").parse() {
            req.headers_mut().insert("authorization", v);
        }
        if let Ok(v) = agent_id.parse() {
            req.headers_mut()
                .insert(crate::handlers::agents::AGENT_ID_HEADER, v);
        }
        let connector = tls.map(tokio_tungstenite::Connector::Rustls);
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(req, None, true, connector)
            .await
            .map_err(ProtocolAgentError::Connect)?;
        let (mode, mode_rx) = watch::channel(Mode::Normal);
        let register = AgentMessage::Register {
            image_details: images
                .iter()
                .map(|name| clarateach_core::SeatImageSummary {
                    name: name.clone(),
                    digest: format!("digest-of-{name}"),
                    description: String::new(),
                    packages: vec![format!("apt:{name}-tools")],
                    size_bytes: 1 << 20,
                    built_at: 1,
                })
                .collect(),
            images,
            buildable: vec![],
            agent_id: agent_id.to_string(),
            hostname: "protocol-agent".into(),
            capacity,
            backends: vec!["none".into()],
            data_url: data_url.to_string(),
            data_token: format!("data-{agent_id}"),
            seats: vec![],
            data_tls_public_key: None,
            memory_mb: resources.map(|r| r.0),
            cpu_millis: resources.map(|r| r.1),
        };
        let specs = Arc::new(Mutex::new(Vec::new()));
        let resumes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = tokio::spawn(run(ws, register, mode_rx, specs.clone(), resumes.clone()));
        Ok(Self {
            mode,
            task,
            specs,
            resumes,
        })
    }

    /// How many `ResumeSeat` messages this agent received.
    pub fn resumes_received(&self) -> usize {
        self.resumes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every seat spec received so far (from `registered` and `create_seat`).
    pub fn received_specs(&self) -> Vec<SeatSpec> {
        self.specs.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn set_mode(&self, mode: Mode) {
        let _ = self.mode.send(mode);
    }

    /// Closes the connection abruptly.
    pub fn disconnect(self) {
        self.task.abort();
    }
}

impl Drop for ProtocolAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn text(msg: &AgentMessage) -> Message {
    Message::Text(serde_json::to_string(msg).unwrap_or_default().into())
}

fn report(workshop_id: String, seat: u32, state: SeatState) -> AgentMessage {
    AgentMessage::SeatStatus(SeatReport {
        workshop_id,
        seat,
        state,
        error: None,
    })
}

async fn run<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    register: AgentMessage,
    mode: watch::Receiver<Mode>,
    specs: Arc<Mutex<Vec<SeatSpec>>>,
    resumes: Arc<std::sync::atomic::AtomicUsize>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    if sink.send(text(&register)).await.is_err() {
        return;
    }
    let mut hosted: u32 = 0;
    let mut beat = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            frame = stream.next() => {
                let Some(Ok(Message::Text(t))) = frame else {
                    if matches!(frame, Some(Ok(_))) { continue } else { return }
                };
                let Ok(msg) = serde_json::from_str::<ControlMessage>(t.as_str()) else { continue };
                if matches!(msg, ControlMessage::ResumeSeat { .. }) {
                    resumes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                if *mode.borrow() == Mode::Silent {
                    continue;
                }
                let replies = match msg {
                    ControlMessage::Registered { heartbeat_interval_ms, desired, .. } => {
                        beat = tokio::time::interval(Duration::from_millis(heartbeat_interval_ms.max(10)));
                        hosted = desired.len() as u32;
                        if let Ok(mut v) = specs.lock() { v.extend(desired.iter().cloned()); }
                        desired.into_iter().map(|s| report(s.workshop_id, s.seat, SeatState::Ready)).collect()
                    }
                    ControlMessage::CreateSeat(spec) => {
                        hosted += 1;
                        if let Ok(mut v) = specs.lock() { v.push(spec.clone()); }
                        vec![report(spec.workshop_id.clone(), spec.seat, SeatState::Creating), report(spec.workshop_id, spec.seat, SeatState::Ready)]
                    }
                    ControlMessage::DestroySeat { workshop_id, seat, .. } => {
                        hosted = hosted.saturating_sub(1);
                        vec![report(workshop_id, seat, SeatState::Destroyed)]
                    }
                    ControlMessage::PauseSeat { workshop_id, seat } => {
                        vec![report(workshop_id, seat, SeatState::Paused)]
                    }
                    ControlMessage::ResumeSeat { workshop_id, seat } => {
                        vec![report(workshop_id, seat, SeatState::Ready)]
                    }
                    // Nothing to make ahead and nothing reported back.
                    ControlMessage::PrepareSeats { .. } | ControlMessage::ReleasePrepared { .. } => vec![],
                };
                for r in replies {
                    if sink.send(text(&r)).await.is_err() {
                        return;
                    }
                }
            }
            _ = beat.tick() => {
                if *mode.borrow() == Mode::Normal && sink.send(text(&AgentMessage::Heartbeat { used: hosted })).await.is_err() {
                    return;
                }
            }
        }
    }
}
