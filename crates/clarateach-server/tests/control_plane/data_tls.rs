//! The gateway's TLS dial to an `https://` data URL: it trusts only the control plane's
//! data-path CA and the SAN of the agent the seat is routed to. A test TLS server stands in for
//! the agent's data path with (a) a certificate from another CA, (b) one from the real CA issued
//! to another agent id, and (c) the right one; the gateway must answer 502
//! `workspace_unreachable` for (a) and (b) without sending a byte of HTTP (so never the data
//! token), and reach (c) with the data token.

use std::sync::{Arc, Mutex};

use clarateach_tls::data_ca::{AgentKey, DataCa};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::TestServer;

/// What the stand-in data path saw: finished handshakes and the plaintext received.
#[derive(Default)]
struct Seen {
    handshakes: usize,
    failed_handshakes: usize,
    plaintext: Vec<u8>,
}

/// A TLS data path on 127.0.0.1 presenting a certificate `ca` issued to `cert_agent_id`.
async fn tls_data_path(ca: &DataCa, cert_agent_id: &str) -> (String, Arc<Mutex<Seen>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("addr"));
    let key_dir = tempfile::tempdir().expect("tempdir");
    let key = AgentKey::load_or_create(key_dir.path()).expect("key");
    let issued = ca
        .issue(cert_agent_id, &url, key.public_key_pem())
        .expect("issue");
    key.install(&issued.cert_pem).expect("install");
    let acceptor = tokio_rustls::TlsAcceptor::from(key.server_config().expect("config"));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        let _keep = key_dir;
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, record) = (acceptor.clone(), Arc::clone(&record));
            tokio::spawn(async move {
                let mut tls = match acceptor.accept(tcp).await {
                    Ok(s) => s,
                    Err(_) => {
                        record.lock().expect("seen").failed_handshakes += 1;
                        return;
                    }
                };
                record.lock().expect("seen").handshakes += 1;
                // Keep-alive: one small GET per read, answered, until the gateway closes.
                let mut buf = vec![0u8; 8192];
                loop {
                    let n = tls.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    record
                        .lock()
                        .expect("seen")
                        .plaintext
                        .extend_from_slice(&buf[..n]);
                    let body = r#"{"path":"a.txt","content":"hi"}"#;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if tls.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

/// Starts a one-seat workshop on `agent_id` (whose data URL is `data_url`) and returns the
/// answer to a learner's file read through the gateway (the last of `reads`).
async fn learner_read(
    s: &TestServer,
    agent_id: &str,
    data_url: &str,
    reads: usize,
) -> (StatusCode, String) {
    let (last, _) = learner_read_and_terminal(s, agent_id, data_url, reads, false).await;
    last
}

/// Like [`learner_read`]; with `terminal`, also the HTTP status a terminal upgrade got (101 if
/// it went through).
async fn learner_read_and_terminal(
    s: &TestServer,
    agent_id: &str,
    data_url: &str,
    reads: usize,
    terminal: bool,
) -> ((StatusCode, String), Option<u16>) {
    let _agent = s.agent_with_data_url(agent_id, 10, data_url).await;
    let w = s.create(json!({"name": "Data TLS", "seats": 1})).await;
    let id = w["id"].as_str().expect("id").to_string();
    let (status, _) = s
        .call(Method::POST, &format!("/api/workshops/{id}/start"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    s.wait_status(&id, "running").await;
    let (status, joined, _) = s.join(json!({"code": w["code"]})).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let token = joined["token"].as_str().expect("token").to_string();
    let mut last = (StatusCode::IM_A_TEAPOT, String::new());
    for _ in 0..reads {
        let res = s
            .http
            .get(s.url("/api/session/files/a.txt"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("get");
        let status = res.status();
        last = (status, res.text().await.unwrap_or_default());
    }
    if !terminal {
        return (last, None);
    }
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("{}/api/session/terminal", s.base.replacen("http", "ws", 1))
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let upgrade = match tokio_tungstenite::connect_async(req).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("terminal upgrade: {e}"),
    };
    (last, Some(upgrade))
}

/// The gateway dialed but refused the handshake: not one byte of HTTP reached the impostor.
fn assert_never_spoken_to(seen: &Mutex<Seen>) {
    let seen = seen.lock().expect("seen");
    assert!(seen.failed_handshakes >= 1, "the gateway did dial it");
    assert_eq!(seen.handshakes, 0);
    assert!(seen.plaintext.is_empty(), "no request, no data token sent");
}

#[tokio::test]
async fn the_gateway_reaches_a_tls_data_path_with_the_right_certificate_only() {
    // (c) The control plane's own CA, issued to the agent the seat is on: reached.
    let s = TestServer::start().await;
    let real_ca = DataCa::load_or_create(&s.dir).expect("the server's CA");
    let (url, seen) = tls_data_path(&real_ca, "ag-right").await;
    let (status, body) = learner_read(&s, "ag-right", &url, 3).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (plain, handshakes) = {
        let seen = seen.lock().expect("seen");
        (
            String::from_utf8_lossy(&seen.plaintext).to_string(),
            seen.handshakes,
        )
    };
    assert!(
        plain.contains("/seats/") && plain.contains("Bearer data-ag-right"),
        "the request and its data token arrive over TLS: {plain}"
    );
    assert_eq!(plain.matches("GET ").count(), 3, "{plain}");
    assert_eq!(
        handshakes, 1,
        "plain requests reuse one pooled TLS connection"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_data_path_certificate_from_another_ca_is_refused() {
    let s = TestServer::start().await;
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other_ca = DataCa::load_or_create(other_dir.path()).expect("other CA");
    // Right agent id and host, wrong issuer.
    let (url, seen) = tls_data_path(&other_ca, "ag-victim").await;
    let ((status, body), upgrade) = learner_read_and_terminal(&s, "ag-victim", &url, 1, true).await;
    assert_eq!(upgrade, Some(502), "the terminal upgrade is refused too");
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("workspace_unreachable"), "{body}");
    assert_never_spoken_to(&seen);
    s.shutdown().await;
}

#[tokio::test]
async fn another_agents_data_path_certificate_is_refused() {
    let s = TestServer::start().await;
    let real_ca = DataCa::load_or_create(&s.dir).expect("the server's CA");
    // A genuine certificate of the control plane's CA, but issued to another agent: it cannot
    // stand in for the data path of the agent the seat is routed to.
    let (url, seen) = tls_data_path(&real_ca, "ag-other").await;
    let ((status, body), upgrade) = learner_read_and_terminal(&s, "ag-victim", &url, 1, true).await;
    assert_eq!(upgrade, Some(502), "the terminal upgrade is refused too");
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("workspace_unreachable"), "{body}");
    assert_never_spoken_to(&seen);
    s.shutdown().await;
}
