//! A real control plane on 127.0.0.1:0 with a temp data dir, plus request helpers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clarateach_server::testing::ProtocolAgent;
use clarateach_server::{
    issue_bound_agent_token, AppState, Server, ServerConfig, INSTRUCTOR_TOKEN_FILE,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestServer {
    pub base: String,
    pub token: String,
    pub dir: PathBuf,
    pub state: AppState,
    pub http: reqwest::Client,
    _tmp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("data");
        let mut s = Self::start_in(&dir, |_| {}).await;
        s._tmp = Some(tmp);
        s
    }

    pub async fn start_in(dir: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let mut config = ServerConfig::new(dir);
        config.heartbeat_interval = Duration::from_millis(100);
        config.stop_timeout = Duration::from_secs(3);
        tweak(&mut config);
        let server = Server::open(config).await.expect("open server");
        let token = std::fs::read_to_string(dir.join(INSTRUCTOR_TOKEN_FILE))
            .expect("token file")
            .trim()
            .to_string();
        if let Some(first) = server.first_instructor_token() {
            assert_eq!(first, token);
        }
        let state = server.state();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            server
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await
                .expect("serve");
        });
        Self {
            base,
            token,
            dir: dir.to_path_buf(),
            state,
            http: reqwest::Client::new(),
            _tmp: None,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub async fn shutdown(mut self) -> Option<tempfile::TempDir> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
        self._tmp.take()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn agent(&self, id: &str, capacity: u32) -> ProtocolAgent {
        self.agent_with_data_url(id, capacity, &format!("http://127.0.0.1:9/{id}"))
            .await
    }

    /// A protocol agent whose seats' traffic goes to `data_url`.
    pub async fn agent_with_data_url(
        &self,
        id: &str,
        capacity: u32,
        data_url: &str,
    ) -> ProtocolAgent {
        let token = issue_bound_agent_token(self.state.store(), id)
            .await
            .expect("agent token");
        let agent =
            ProtocolAgent::connect_with_data_url(&self.base, &token, id, capacity, data_url)
                .await
                .expect("agent connects");
        // Wait until the registry knows it.
        for _ in 0..200 {
            if self
                .state
                .provisioner()
                .agents()
                .await
                .iter()
                .any(|a| a.agent_id == id)
            {
                return agent;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("agent {id} never registered");
    }

    /// An instructor request: (status, JSON body or Null).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    pub async fn call_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let text = res.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn create(&self, body: Value) -> Value {
        let (status, v) = self
            .call(reqwest::Method::POST, "/api/workshops", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v["workshop"].clone()
    }

    pub async fn workshop(&self, id: &str) -> Value {
        let (status, v) = self
            .call(reqwest::Method::GET, &format!("/api/workshops/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["workshop"].clone()
    }

    pub async fn wait_status(&self, id: &str, want: &str) -> Value {
        for _ in 0..300 {
            let w = self.workshop(id).await;
            if w["status"] == want {
                return w;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "workshop {id} never reached {want}: {}",
            self.workshop(id).await
        );
    }

    /// A running workshop of `seats` seats on a fresh protocol agent.
    pub async fn running_workshop(&self, seats: u32) -> (Value, ProtocolAgent) {
        let agent = self.agent(&format!("ag-{}", uuid_like()), 500).await;
        let w = self
            .create(json!({"name": "Rust 101", "seats": seats}))
            .await;
        let id = w["id"].as_str().expect("id").to_string();
        let (status, v) = self
            .call(
                reqwest::Method::POST,
                &format!("/api/workshops/{id}/start"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        (self.wait_status(&id, "running").await, agent)
    }

    pub async fn join(&self, body: Value) -> (StatusCode, Value, Option<String>) {
        let res = self
            .http
            .post(self.url("/api/join"))
            .json(&body)
            .send()
            .await
            .expect("join");
        let status = res.status();
        let retry = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (status, res.json().await.unwrap_or(Value::Null), retry)
    }

    pub async fn me(&self, token: &str) -> StatusCode {
        self.http
            .get(self.url("/api/me"))
            .bearer_auth(token)
            .send()
            .await
            .expect("me")
            .status()
    }
}

pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Decodes a JWT part (base64url without padding).
pub fn b64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .expect("base64")
}

/// Encodes a JWT part (base64url without padding).
pub fn unb64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
