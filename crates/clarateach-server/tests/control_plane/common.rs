//! A real control plane on 127.0.0.1:0 with a temp data dir, plus request helpers.
//!
//! The store is SQLite in the data dir, or, when `CLARATEACH_TEST_DATABASE_URL` names a test
//! PostgreSQL server (scripts/test.sh starts one), a new database on it per data dir (its URL is
//! kept in the data dir so a restart in the same dir finds the same database): the whole suite
//! runs on either back end.

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
        config.database_url = test_database_for(dir).await;
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

    /// Everything the store holds, as bytes: the SQLite file and its WAL, or every row of every
    /// table of the PostgreSQL database as text (to look for plaintext secrets).
    pub async fn stored_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        match test_database_for(&self.dir).await {
            None => {
                for f in ["clarateach.db", "clarateach.db-wal"] {
                    all.extend(std::fs::read(self.dir.join(f)).unwrap_or_default());
                }
            }
            Some(url) => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT tablename::TEXT FROM pg_tables WHERE schemaname = 'public'",
                )
                .fetch_all(&mut conn)
                .await
                .expect("tables");
                assert!(tables.iter().any(|t| t == "workshops"), "{tables:?}");
                for t in tables {
                    // bytea as its raw bytes too (row_to_json would hex-encode it).
                    let rows: Vec<String> = sqlx::query_scalar(&format!(
                        "SELECT row_to_json(x)::TEXT FROM \"{t}\" AS x"
                    ))
                    .fetch_all(&mut conn)
                    .await
                    .expect("rows");
                    for r in rows {
                        all.extend(r.into_bytes());
                    }
                }
                let keys: Vec<Option<Vec<u8>>> =
                    sqlx::query_scalar("SELECT api_key_enc FROM workshops")
                        .fetch_all(&mut conn)
                        .await
                        .expect("keys");
                for k in keys.into_iter().flatten() {
                    all.extend(k);
                }
            }
        }
        all
    }

    /// Stops serving at once without the orderly shutdown (no agent session is ended, nothing
    /// is written): what a replica killed with SIGKILL leaves behind, as far as one process
    /// can stage it (connection tasks already spawned are the caller's to cut).
    pub fn kill(mut self) -> Option<tempfile::TempDir> {
        self.stop.take();
        if let Some(h) = self.handle.take() {
            h.abort();
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
        self.registered(id).await;
        agent
    }

    /// A protocol agent that reports `images` as built on its host.
    pub async fn agent_with_images(
        &self,
        id: &str,
        capacity: u32,
        images: &[&str],
    ) -> ProtocolAgent {
        let token = issue_bound_agent_token(self.state.store(), id)
            .await
            .expect("agent token");
        let images = images.iter().map(|i| i.to_string()).collect();
        let agent = ProtocolAgent::connect_with_images(&self.base, &token, id, capacity, images)
            .await
            .expect("agent connects");
        self.registered(id).await;
        agent
    }

    /// Waits until the registry knows agent `id`.
    async fn registered(&self, id: &str) {
        for _ in 0..200 {
            if self
                .state
                .provisioner()
                .agents()
                .await
                .iter()
                .any(|a| a.agent_id == id)
            {
                return;
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

/// The test PostgreSQL database of data dir `dir` (created on first use), or `None` for SQLite.
pub async fn test_database_for(dir: &Path) -> Option<String> {
    clarateach_store::test_support::test_server_url()?;
    let file = dir.with_extension("test-database-url");
    if let Ok(url) = std::fs::read_to_string(&file) {
        return Some(url.trim().to_string());
    }
    let url = clarateach_store::test_support::fresh_database_url()
        .await
        .expect("create a test database")?;
    std::fs::write(&file, &url).expect("remember the test database");
    Some(url)
}

/// True when the suite runs on PostgreSQL (the SQLite file checks do not apply).
pub fn on_postgres() -> bool {
    clarateach_store::test_support::test_server_url().is_some()
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
