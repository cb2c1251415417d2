//! The terminal helper against a local axum WebSocket server that plays a tiny PTY: it echoes
//! input back as binary frames, answers resize with a text line, and reports the query it got.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::Query;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use clarateach_client::{Client, ClientError, TerminalEvent, TerminalOptions};
use clarateach_core::{TerminalClientMessage, TerminalServerMessage};

async fn terminal(
    ws: WebSocketUpgrade,
    headers: axum::http::HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    ws.on_upgrade(move |socket| pty(socket, q, auth))
}

async fn pty(mut socket: WebSocket, q: HashMap<String, String>, auth: String) {
    let attached = TerminalServerMessage::Attached {
        session: q.get("session").cloned().unwrap_or_else(|| "main".into()),
        new: true,
        mode: q
            .get("mode")
            .and_then(|m| clarateach_core::TerminalMode::parse(m))
            .unwrap_or(clarateach_core::TerminalMode::Interactive),
        replay_bytes: 0,
    };
    let hello = serde_json::to_string(&attached).expect("json");
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    let token = format!(
        "auth={auth} query-token={}\r\n",
        q.get("token").cloned().unwrap_or_default()
    );
    if socket
        .send(Message::Binary(token.into_bytes().into()))
        .await
        .is_err()
    {
        return;
    }
    while let Some(Ok(msg)) = socket.recv().await {
        let Message::Text(text) = msg else { continue };
        let reply = match serde_json::from_str::<TerminalClientMessage>(text.as_str()) {
            Ok(TerminalClientMessage::Input { data }) if data == "exit\r" => {
                let exit =
                    serde_json::to_string(&TerminalServerMessage::Exit { code: 0 }).expect("json");
                let _ = socket.send(Message::Text(exit.into())).await;
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            Ok(TerminalClientMessage::Input { data }) => Message::Binary(data.into_bytes().into()),
            Ok(TerminalClientMessage::Resize { cols, rows }) => {
                Message::Binary(format!("size {cols}x{rows}\r\n").into_bytes().into())
            }
            Err(_) => Message::Text(r#"{"type":"notice","message":"bad frame"}"#.into()),
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
}

async fn serve() -> String {
    let app = Router::new().route("/api/session/terminal", get(terminal));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{addr}")
}

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn input_resize_and_output_round_trip() {
    let url = serve().await;
    let client = Client::new(&url, Some("learner.jwt".into())).expect("client");
    let opts = TerminalOptions {
        session: Some("s1".into()),
        mode: Some("interactive".into()),
        ..Default::default()
    };
    let ws_url = client.terminal_url(&opts).expect("url");
    assert!(ws_url.as_str().starts_with("ws://"), "{ws_url}");
    let mut term = client.terminal(&opts).await.expect("connect");

    let first = term.next_event().await.expect("event").expect("open");
    let expected = TerminalServerMessage::Attached {
        session: "s1".into(),
        new: true,
        mode: clarateach_core::TerminalMode::Interactive,
        replay_bytes: 0,
    };
    assert_eq!(first, TerminalEvent::Control(expected));
    term.read_until(b"auth=Bearer learner.jwt query-token=\r\n", WAIT)
        .await
        .expect("token in the Authorization header, never in the query");
    assert!(!ws_url.as_str().contains("learner.jwt"), "{ws_url}");

    term.send_input("echo hi\r").await.expect("input");
    let out = term.read_until(b"echo hi", WAIT).await.expect("echo");
    assert!(out.ends_with(b"echo hi\r"));
    term.resize(120, 40).await.expect("resize");
    term.read_until(b"size 120x40", WAIT)
        .await
        .expect("resize answered");

    term.send_input("exit\r").await.expect("input");
    let e = term
        .read_until(b"never printed", WAIT)
        .await
        .expect_err("closes first");
    assert!(matches!(e, ClientError::TerminalExpect { .. }), "{e:?}");
}

#[tokio::test]
async fn read_until_times_out_with_the_tail() {
    let url = serve().await;
    let client = Client::new(&url, None).expect("client");
    let mut term = client
        .terminal(&TerminalOptions::default())
        .await
        .expect("connect");
    term.send_input("abc").await.expect("input");
    let e = term
        .read_until(b"xyz", Duration::from_millis(300))
        .await
        .expect_err("timeout");
    let ClientError::TerminalExpect { reason, tail, .. } = e else {
        panic!("wrong error")
    };
    assert!(reason.contains("300 ms"), "{reason}");
    assert!(tail.ends_with("abc"), "{tail}");
}

#[tokio::test]
async fn refused_handshake_reports_the_status() {
    let url = serve().await;
    let client = Client::new(&url, None).expect("client");
    let term =
        clarateach_client::Terminal::connect(&format!("{}/nope", url.replace("http", "ws")), None)
            .await;
    let e = term.err().expect("404 handshake");
    assert_eq!(e.status(), Some(404));
    assert!(!e.summary().contains('\n'));
    drop(client);
}
