//! `GET /api/workshops/{id}/screens`: one multiplexed WebSocket for the whole grid, a frame per
//! seat only when its screen changed, instructor only. The seats' data path is a stand-in that
//! answers the daemon's `GET /screen?since=V` the way the real daemon does (its screen logic is
//! tested against real bash in the workspace crate; the full stack in the web e2e).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::common::TestServer;

/// Screen versions per seat the stand-in serves; bump one to "change" that seat's screen.
pub(crate) type Versions = Arc<Mutex<HashMap<u32, u64>>>;

pub(crate) async fn screen_data_path(versions: Versions) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let versions = versions.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&got).to_string();
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                // /agent/seats/{ws}/{seat}/screen?session=main[&since=V]
                let seat: u32 = path
                    .split('/')
                    .nth(4)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let since = path
                    .split("since=")
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok());
                let version = *versions.lock().expect("versions").get(&seat).unwrap_or(&1);
                let resp = if since == Some(version) {
                    "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_string()
                } else {
                    let body = json!({
                        "session": "main", "version": version, "rows": 24, "cols": 80,
                        "lines": [format!("seat {seat} v{version}"), "<b>not html</b>"],
                        "cursor": {"row": 1, "col": 2, "visible": true},
                        "cwd": "/workspace",
                        "commands": [{"command": "make", "exit_code": 2,
                                      "finished_at": "2026-12-01T10:00:00Z"}],
                        "idle_s": 3
                    })
                    .to_string();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/agent")
}

pub(crate) async fn running_with(s: &TestServer, seats: u32, data_url: &str) -> String {
    let agent = s.agent_with_data_url("ag-screens", 50, data_url).await;
    std::mem::forget(agent);
    let w = s.create(json!({"name": "Grid", "seats": seats})).await;
    let id = w["id"].as_str().expect("id").to_string();
    let (st, v) = s
        .call(Method::POST, &format!("/api/workshops/{id}/start"), None)
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    s.wait_status(&id, "running").await;
    id
}

pub(crate) async fn ticket(s: &TestServer, token: &str, body: Value) -> String {
    let (st, v) = s
        .call_as(token, Method::POST, "/api/session/ticket", Some(body))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["ticket"].as_str().expect("ticket").to_string()
}

async fn next_frame(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    secs: u64,
) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.ok()??;
        if let Ok(Message::Text(t)) = msg {
            return serde_json::from_str(&t).ok();
        }
    }
}

#[tokio::test]
async fn the_grid_stream_multiplexes_seats_and_sends_only_changes() {
    let s = TestServer::start().await;
    let versions: Versions = Arc::default();
    let data_url = screen_data_path(versions.clone()).await;
    let id = running_with(&s, 3, &data_url).await;

    // Without an upgrade: the current screens once, as JSON.
    let (st, v) = s
        .call(Method::GET, &format!("/api/workshops/{id}/screens"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let seats: Vec<u64> = v["screens"]
        .as_array()
        .expect("screens")
        .iter()
        .map(|f| f["seat"].as_u64().expect("seat"))
        .collect();
    assert_eq!(seats, vec![1, 2, 3]);
    assert_eq!(v["screens"][0]["commands"][0]["exit_code"], 2);

    // The WebSocket, opened with a one-time instructor ticket as a browser does.
    let t = ticket(
        &s,
        &s.token,
        json!({"workshop_id": id, "seat": 1, "mode": "watch"}),
    )
    .await;
    let url = format!(
        "{}/api/workshops/{id}/screens?ticket={t}",
        s.base.replacen("http://", "ws://", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url.into_client_request().expect("req"))
        .await
        .expect("upgrade");
    let mut first = Vec::new();
    for _ in 0..3 {
        let f = next_frame(&mut ws, 5).await.expect("a frame per seat");
        assert_eq!(f["lines"][1], "<b>not html</b>", "lines pass as text");
        first.push(f["seat"].as_u64().expect("seat"));
    }
    first.sort_unstable();
    assert_eq!(first, vec![1, 2, 3]);
    // Nothing changed: no frames for the next two rounds.
    assert!(
        next_frame(&mut ws, 2).await.is_none(),
        "unchanged seats send nothing"
    );
    // Seat 2 changes: one frame, for seat 2 only.
    versions.lock().expect("versions").insert(2, 5);
    let f = next_frame(&mut ws, 3).await.expect("seat 2 changed");
    assert_eq!(f["seat"], 2);
    assert_eq!(f["lines"][0], "seat 2 v5");
    assert!(
        next_frame(&mut ws, 2).await.is_none(),
        "only the changed seat"
    );
}

#[tokio::test]
async fn learners_and_other_instructors_see_no_screens() {
    let s = TestServer::start().await;
    let versions: Versions = Arc::default();
    let data_url = screen_data_path(versions).await;
    let id = running_with(&s, 2, &data_url).await;
    let w = s.workshop(&id).await;
    let code = w["code"].as_str().expect("code").to_string();
    let (_, v, _) = s.join(json!({"code": code})).await;
    let learner = v["token"].as_str().expect("token").to_string();
    let path = format!("/api/workshops/{id}/screens");

    let (st, _) = s.call_as(&learner, Method::GET, &path, None).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "a learner's token is no instructor's"
    );
    let other = clarateach_server::accounts::create_instructor(s.state.store(), "other")
        .await
        .expect("instructor");
    let (st, _) = s.call_as(&other, Method::GET, &path, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "another instructor's workshop");

    // A learner's own (valid) ticket does not open the grid.
    let t = ticket(&s, &learner, json!({})).await;
    let url = format!(
        "{}{path}?ticket={t}",
        s.base.replacen("http://", "ws://", 1)
    );
    match tokio_tungstenite::connect_async(url.into_client_request().expect("req")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status().as_u16(), 403)
        }
        other => panic!("a learner's ticket opened the grid: {other:?}"),
    }
    // An instructor's ticket for another workshop does not either.
    let id2 = {
        let w2 = s.create(json!({"name": "Other", "seats": 1})).await;
        w2["id"].as_str().expect("id").to_string()
    };
    let t = ticket(
        &s,
        &s.token,
        json!({"workshop_id": id2, "seat": 1, "mode": "watch"}),
    )
    .await;
    let url = format!(
        "{}{path}?ticket={t}",
        s.base.replacen("http://", "ws://", 1)
    );
    match tokio_tungstenite::connect_async(url.into_client_request().expect("req")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status().as_u16(), 403)
        }
        other => panic!("a ticket for another workshop opened the grid: {other:?}"),
    }
    // A ticket is for WebSockets only.
    let t = ticket(
        &s,
        &s.token,
        json!({"workshop_id": id, "seat": 1, "mode": "watch"}),
    )
    .await;
    let (st, _) = s
        .call(Method::GET, &format!("{path}?ticket={t}"), None)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}
