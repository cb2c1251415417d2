//! The agent end to end with a real HTTP server, a real WebSocket control plane (a tiny axum
//! server speaking agent_proto) and per-seat daemons served on real Unix sockets: registration,
//! heartbeats, seat creation on command, auth on the data path, streamed HTTP relay and a
//! WebSocket relayed byte for byte.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ws::{Message as AxMessage, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::routing::{any, get, post};
use axum::Router;
use clarateach_agent::{Agent, AgentConfig};
use clarateach_core::agent_proto::{AgentMessage, ControlMessage, SeatKey, SeatSpec};
use clarateach_core::{Limits, SeatState};
use clarateach_isolation::{
    Backend, BackendError, BackendKind, DaemonAddr, DaemonEndpoint, WorkspaceSpec, WorkspaceStatus,
};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A backend whose "workspace" is an axum server on a Unix socket checking the daemon token.
struct SocketBackend {
    dir: PathBuf,
    tokens: Mutex<BTreeMap<SeatKey, String>>,
    running: Mutex<BTreeMap<SeatKey, tokio::task::JoinHandle<()>>>,
}

fn daemon_router(token: String) -> Router {
    let check = move |h: &HeaderMap| {
        h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {token}"))
    };
    let c1 = check.clone();
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/echo",
            post(move |h: HeaderMap, body: axum::body::Bytes| async move {
                if !c1(&h) {
                    return (
                        axum::http::StatusCode::UNAUTHORIZED,
                        axum::body::Bytes::new(),
                    );
                }
                (axum::http::StatusCode::OK, body)
            }),
        )
        .route(
            "/ws",
            any(move |h: HeaderMap, ws: WebSocketUpgrade| async move {
                assert!(check(&h), "daemon token relayed");
                ws.on_upgrade(|mut socket| async move {
                    while let Some(Ok(msg)) = socket.recv().await {
                        if let AxMessage::Text(t) = msg {
                            let _ = socket
                                .send(AxMessage::Binary(t.as_str().as_bytes().to_vec().into()))
                                .await;
                        }
                    }
                })
            }),
        )
}

#[async_trait]
impl Backend for SocketBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Sandbox
    }
    async fn create(&self, spec: &WorkspaceSpec) -> Result<(), BackendError> {
        self.tokens
            .lock()
            .expect("lock")
            .insert(spec.key.clone(), spec.daemon_token.clone());
        Ok(())
    }
    async fn start(&self, key: &SeatKey) -> Result<DaemonEndpoint, BackendError> {
        let token = self
            .tokens
            .lock()
            .expect("lock")
            .get(key)
            .cloned()
            .ok_or_else(|| BackendError::Unknown(key.clone()))?;
        let path = self.dir.join(format!("{}.sock", key.seat));
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).map_err(|e| BackendError::Io {
            action: "bind",
            source: e,
        })?;
        let app = daemon_router(token.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        self.running.lock().expect("lock").insert(key.clone(), task);
        Ok(DaemonEndpoint {
            addr: DaemonAddr::Unix(path),
            token,
        })
    }
    async fn stop(&self, key: &SeatKey) -> Result<(), BackendError> {
        if let Some(t) = self.running.lock().expect("lock").remove(key) {
            t.abort();
        }
        Ok(())
    }
    async fn destroy(&self, key: &SeatKey, _delete_volume: bool) -> Result<(), BackendError> {
        self.stop(key).await
    }
    async fn status(&self, key: &SeatKey) -> Result<WorkspaceStatus, BackendError> {
        Ok(if self.running.lock().expect("lock").contains_key(key) {
            WorkspaceStatus::Running
        } else {
            WorkspaceStatus::Missing
        })
    }
    fn endpoint(&self, _key: &SeatKey) -> Option<DaemonEndpoint> {
        None
    }
    async fn adopt(&self) -> Result<Vec<(SeatKey, WorkspaceStatus)>, BackendError> {
        Ok(vec![])
    }
    fn volume_dir(&self, key: &SeatKey) -> PathBuf {
        self.dir.join(format!("vol-{}", key.seat))
    }
}

/// A control plane that accepts one agent, answers `registered` with one desired seat and
/// forwards what the agent says to the test.
async fn fake_control_plane(out: mpsc::Sender<AgentMessage>) -> std::net::SocketAddr {
    let app = Router::new().route(
        "/api/agents/connect",
        get(move |h: HeaderMap, ws: WebSocketUpgrade| async move {
            assert_eq!(
                h.get("authorization").and_then(|v| v.to_str().ok()),
                Some("Bearer agent-secret")
            );
            ws.on_upgrade(move |mut socket| async move {
                while let Some(Ok(AxMessage::Text(t))) = socket.recv().await {
                    let msg: AgentMessage =
                        serde_json::from_str(t.as_str()).expect("agent message");
                    if matches!(msg, AgentMessage::Register { .. }) {
                        let spec = SeatSpec {
                            starter: None,
                            workshop_id: "ws-data01".into(),
                            seat: 1,
                            image: None,
                            limits: Limits::default(),
                            env: BTreeMap::new(),
                        };
                        let reply = ControlMessage::Registered {
                            heartbeat_interval_ms: 100,
                            desired: vec![spec],
                            data_tls: None,
                        };
                        socket
                            .send(AxMessage::Text(
                                serde_json::to_string(&reply).expect("json").into(),
                            ))
                            .await
                            .expect("send");
                    }
                    if out.send(msg).await.is_err() {
                        return;
                    }
                }
            })
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

#[tokio::test]
async fn registers_creates_and_relays_http_and_websocket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, mut rx) = mpsc::channel(64);
    let cp = fake_control_plane(tx).await;
    let backend = Arc::new(SocketBackend {
        dir: dir.path().into(),
        tokens: Mutex::default(),
        running: Mutex::default(),
    });
    let config = AgentConfig {
        control_plane: format!("http://{cp}"),
        agent_token: "agent-secret".into(),
        agent_id: None,
        ca: None,
        data_dir: dir.path().into(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_url: None,
        capacity: 4,
        export_cap_bytes: clarateach_agent::export::archive::DEFAULT_CAP_BYTES,
        object_store: None,
    };
    let agent = Agent::start(config, backend).await.expect("agent");

    let mut data_token = None;
    let (mut ready, mut heartbeat) = (false, false);
    while !(ready && heartbeat) {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("message in time")
            .expect("open")
        {
            AgentMessage::Register {
                data_url,
                data_token: t,
                capacity,
                ..
            } => {
                assert_eq!(data_url, format!("http://{}", agent.local_addr));
                assert_eq!(capacity, 4);
                data_token = Some(t);
            }
            AgentMessage::SeatStatus(r) if r.state == SeatState::Ready => ready = true,
            AgentMessage::Heartbeat { used } => heartbeat = used == 1,
            _ => {}
        }
    }
    let token = data_token.expect("registered");
    let base = format!("http://{}/seats/ws-data01/1", agent.local_addr);
    let http = reqwest::Client::new();

    let unauth = http
        .post(format!("{base}/echo"))
        .body("x")
        .send()
        .await
        .expect("send");
    assert_eq!(unauth.status(), 401);
    let missing = http
        .post(format!(
            "http://{}/seats/ws-data01/2/echo",
            agent.local_addr
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    assert_eq!(missing.status(), 404);

    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let resp = http
        .post(format!("{base}/echo"))
        .bearer_auth(&token)
        .body(big.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.expect("body").as_ref(), &big[..]);

    let mut req = format!("ws://{}/seats/ws-data01/1/ws", agent.local_addr)
        .into_client_request()
        .expect("req");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("ws through the agent");
    for i in 0..20 {
        ws.send(Message::text(format!("key {i}")))
            .await
            .expect("send");
        match ws.next().await.expect("frame").expect("ok") {
            Message::Binary(b) => assert_eq!(b.as_ref(), format!("key {i}").as_bytes()),
            other => panic!("unexpected {other:?}"),
        }
    }

    let vms: serde_json::Value = http
        .get(format!("http://{}/vms", agent.local_addr))
        .bearer_auth("agent-secret")
        .send()
        .await
        .expect("vms")
        .json()
        .await
        .expect("json");
    assert_eq!(vms["vms"][0]["state"], "ready");
    agent.shutdown(true).await;
}

/// With several control-plane replicas listed, an agent whose first replica is gone (nothing
/// listens there any more, as after kill -9) registers with the next one at once, without
/// waiting for the reconnect backoff.
#[tokio::test]
async fn fails_over_to_the_next_control_plane_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, mut rx) = mpsc::channel(64);
    let cp = fake_control_plane(tx).await;
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let backend = Arc::new(SocketBackend {
        dir: dir.path().into(),
        tokens: Mutex::default(),
        running: Mutex::default(),
    });
    let config = AgentConfig {
        control_plane: format!("http://{gone}, http://{cp}"),
        agent_token: "agent-secret".into(),
        agent_id: None,
        ca: None,
        data_dir: dir.path().into(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_url: None,
        capacity: 4,
        export_cap_bytes: clarateach_agent::export::archive::DEFAULT_CAP_BYTES,
        object_store: None,
    };
    let started = std::time::Instant::now();
    let _agent = Agent::start(config, backend).await.expect("agent");
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .expect("registered with the second replica within 2 s")
            .expect("open");
        if matches!(msg, AgentMessage::Register { .. }) {
            break;
        }
    }
    let took = started.elapsed();
    println!("failover to the second replica took {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}
