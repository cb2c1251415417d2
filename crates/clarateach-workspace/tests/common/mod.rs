//! Test harness: a real daemon on 127.0.0.1:0 over a temp root, and a WebSocket client.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clarateach_workspace::serve::Server;
use clarateach_workspace::{Config, Listen};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub const TOKEN: &str = "test-token-123";

pub struct Daemon {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Daemon {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut cfg = Config::new(
            vec![Listen::Tcp("127.0.0.1:0".parse().unwrap())],
            root.clone(),
            TOKEN.into(),
        );
        cfg.shell = Some(vec!["bash".into(), "--norc".into(), "--noprofile".into()]);
        f(&mut cfg);
        let server = Server::bind(&cfg).await.unwrap();
        let addr = server.tcp_addrs()[0];
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Self {
            addr,
            dir,
            root: std::fs::canonicalize(root).unwrap(),
            stop: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http().get(self.url(path)).bearer_auth(TOKEN)
    }

    pub async fn ws(&self, query: &str) -> Ws {
        self.ws_path(&format!("/terminal{query}")).await
    }

    pub async fn ws_path(&self, path: &str) -> Ws {
        let mut req = format!("ws://{}{}", self.addr, path)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        Ws::from(ws)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl From<WsStream> for Ws {
    fn from(ws: WsStream) -> Self {
        Ws {
            ws,
            text: String::new(),
            events: Vec::new(),
        }
    }
}

pub struct Ws {
    pub ws: WsStream,
    /// All output so far (binary frames and json `output` data), lossy UTF-8.
    pub text: String,
    /// Control messages (text frames other than `output`).
    pub events: Vec<serde_json::Value>,
}

impl Ws {
    pub async fn send_json(&mut self, v: serde_json::Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn input(&mut self, s: &str) {
        self.send_json(serde_json::json!({"type": "input", "data": s}))
            .await;
    }

    /// Reads one frame; `None` when closed. Returns the close frame reason as an event.
    pub async fn next(&mut self) -> Option<()> {
        match self.ws.next().await? {
            Ok(Message::Binary(b)) => self.text.push_str(&String::from_utf8_lossy(&b)),
            Ok(Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "output" {
                    self.text.push_str(v["data"].as_str().unwrap());
                } else {
                    self.events.push(v);
                }
            }
            Ok(Message::Close(c)) => {
                let (code, reason) = c
                    .map(|c| (u16::from(c.code), c.reason.to_string()))
                    .unwrap_or((0, String::new()));
                self.events
                    .push(serde_json::json!({"type": "close", "code": code, "reason": reason}));
            }
            Ok(_) => {}
            Err(_) => return None,
        }
        Some(())
    }

    /// Reads until the output contains `needle` (panics after `secs`).
    pub async fn until_text(&mut self, needle: &str, secs: u64) {
        let res = tokio::time::timeout(Duration::from_secs(secs), async {
            // Only the new text (and a needle's length before it) is searched each time, so a
            // flood of tens of MB is not rescanned per frame.
            let mut from = 0;
            while !self.text[from..].contains(needle) {
                from = self.text.len().saturating_sub(needle.len());
                while !self.text.is_char_boundary(from) {
                    from -= 1;
                }
                if self.next().await.is_none() {
                    return false;
                }
            }
            true
        })
        .await;
        assert!(
            matches!(res, Ok(true)),
            "no {needle:?} in output: {:?}",
            tail(&self.text)
        );
    }

    /// Reads until a control message of `kind` arrives and returns it.
    pub async fn until_event(&mut self, kind: &str, secs: u64) -> serde_json::Value {
        let res = tokio::time::timeout(Duration::from_secs(secs), async {
            loop {
                if let Some(e) = self.events.iter().find(|e| e["type"] == kind) {
                    return Some(e.clone());
                }
                self.next().await?;
            }
        })
        .await;
        match res {
            Ok(Some(e)) => e,
            _ => panic!(
                "no {kind} event; events: {:?}; output: {:?}",
                self.events,
                tail(&self.text)
            ),
        }
    }
}

pub fn tail(s: &str) -> String {
    s.chars()
        .rev()
        .take(400)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}
