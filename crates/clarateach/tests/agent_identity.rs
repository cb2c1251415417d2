//! An agent token is for one agent id (issue 9). Against real `clarateach serve` and `clarateach
//! agent` processes: an impostor holding a valid token for another id tries to register as the
//! real agent, over the HTTP upgrade (403 `agent_id_mismatch`), inside the protocol (policy
//! close) and as a whole `clarateach agent` process, and the real agent's session, seat and
//! route are untouched; then `clarateach agent revoke` cuts the real agent off at once.
//! Needs root and bubblewrap (the real agent runs a sandbox seat).

mod support;

use std::process::Command;
use std::time::Duration;

use clarateach_client::Client;
use futures::{SinkExt, StreamExt};
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket upgrade to `/api/agents/connect` with `token`, naming `named` in the agent-id
/// header when given.
fn connect_request(
    base: &str,
    token: &str,
    named: Option<&str>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let url = format!("{}/api/agents/connect", base.replacen("http", "ws", 1));
    let mut req = url.into_client_request().expect("request");
    let h = req.headers_mut();
    h.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    if let Some(id) = named {
        h.insert("clarateach-agent-id", id.parse().expect("header"));
    }
    req
}

/// The `register` a hostile agent sends: claims `agent_id`, points the data path elsewhere.
fn hostile_register(agent_id: &str) -> String {
    serde_json::json!({
        "type": "register", "agent_id": agent_id, "hostname": "impostor", "capacity": 99,
        "backends": ["sandbox"], "data_url": "http://127.0.0.1:9/stolen",
        "data_token": "stolen", "seats": []
    })
    .to_string()
}

async fn agents(admin_http: &reqwest::Client, base: &str, token: &str) -> serde_json::Value {
    admin_http
        .get(format!("{base}/api/agents"))
        .bearer_auth(token)
        .send()
        .await
        .expect("list agents")
        .json()
        .await
        .expect("json")
}

async fn read_file(http: &reqwest::Client, base: &str, token: &str) -> Option<String> {
    let r = http
        .get(format!("{base}/api/session/files/mine.txt"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    v["content"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impostor_agent_is_refused_and_revoke_cuts_the_agent_off() {
    if let Some(why) = skip_reason() {
        clarateach_core::skip::report(
            "impostor_agent_is_refused_and_revoke_cuts_the_agent_off",
            &why,
        );
        return;
    }
    let SplitStack {
        tmp: _tmp,
        dir,
        port,
        base,
        cp: _cp,
        ag: _ag,
        instructor,
        agent_token: _,
    } = serve_and_agent();
    let admin = Client::new(&base, Some(instructor.clone())).expect("client");
    let http = reqwest::Client::new();
    let ws = start_workshop(&admin, &workshop_request("identity", 1)).await;
    let learner = join(&base, &ws.code).await;
    put_file(&http, &base, &learner.token, "mine.txt", "learner data").await;
    let before = agents(&http, &base, &instructor).await;
    assert_eq!(before["agents"][0]["agent_id"], AGENT_ID, "{before}");

    // The impostor holds a perfectly valid token, for its own id.
    let other = agent_token_for(&dir, "impostor-host");

    // 1. Over the upgrade: 403 agent_id_mismatch, no WebSocket.
    let refused = tokio_tungstenite::connect_async(connect_request(&base, &other, Some(AGENT_ID)))
        .await
        .expect_err("the upgrade must be refused");
    let tokio_tungstenite::tungstenite::Error::Http(resp) = refused else {
        panic!("expected an HTTP refusal, got {refused:?}");
    };
    assert_eq!(resp.status().as_u16(), 403);
    let body: serde_json::Value =
        serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).expect("json body");
    assert_eq!(body["code"], "agent_id_mismatch", "{body}");

    // 2. Inside the protocol (no header, lie in `register`): closed with policy violation, and
    //    nothing it said is recorded.
    let (mut sock, _) = tokio_tungstenite::connect_async(connect_request(&base, &other, None))
        .await
        .expect("upgrade without a named id");
    sock.send(Message::text(hostile_register(AGENT_ID)))
        .await
        .expect("send register");
    let mut got_spec = false;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(5), sock.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(Message::Text(t)))) => got_spec |= t.contains("registered"),
            Ok(Some(Ok(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert!(
        !got_spec,
        "the impostor must not get the agent's seat specs"
    );
    let close = close.expect("close frame with a reason");
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(close.reason.as_str(), "agent_id_mismatch");

    // 3. A whole impostor agent process with the other token, claiming the real id.
    let impostor = agent_as(&dir, port, &other, AGENT_ID, "impostor");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = std::fs::read_to_string(dir.join("impostor.log")).unwrap_or_default();
    assert!(log.contains("agent_id_mismatch"), "impostor log:\n{log}");
    drop(impostor);

    // The real agent's session, seat and route are untouched.
    let after = agents(&http, &base, &instructor).await;
    let list = after["agents"].as_array().expect("agents");
    assert_eq!(list.len(), 1, "{after}");
    for field in ["agent_id", "hostname", "capacity", "placed"] {
        assert_eq!(
            list[0][field], before["agents"][0][field],
            "{field} changed: {after}"
        );
    }
    let w = admin.get_workshop(&ws.id).await.expect("workshop");
    assert_eq!(w.seats_ready, 1);
    assert_eq!(
        read_file(&http, &base, &learner.token).await.as_deref(),
        Some("learner data"),
        "the learner's seat must still route to the real agent"
    );

    // A legacy, unbound token cannot claim the bound id either.
    let store = clarateach_server::open_store(&dir).await.expect("store");
    let legacy = clarateach_server::issue_agent_token(store.as_ref())
        .await
        .expect("legacy token");
    let refused = tokio_tungstenite::connect_async(connect_request(&base, &legacy, Some(AGENT_ID)))
        .await
        .expect_err("a legacy token must not take a bound id");
    assert!(
        matches!(&refused, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 403),
        "{refused:?}"
    );

    // Revoke: the live session ends within a heartbeat or two (serve runs 300 ms heartbeats),
    // its seat goes lost, and the agent's reconnects are refused.
    let out = Command::new(BIN)
        .args(["agent", "revoke", AGENT_ID, "--data-dir"])
        .arg(&dir)
        .output()
        .expect("agent revoke");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = std::time::Instant::now();
    eventually(
        "the revoked agent's session closed",
        Duration::from_secs(5),
        || async {
            let a = agents(&http, &base, &instructor).await;
            a["agents"]
                .as_array()
                .is_some_and(Vec::is_empty)
                .then_some(())
        },
    )
    .await;
    let closed_after = started.elapsed();
    println!("revoked agent session closed after {closed_after:?}");
    assert!(
        read_file(&http, &base, &learner.token).await.is_none(),
        "no route to a revoked agent"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
    assert!(
        log.contains("HTTP 401"),
        "the revoked agent's reconnects must be refused; log:\n{log}"
    );
    assert!(
        agents(&http, &base, &instructor).await["agents"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "the revoked agent must not come back"
    );
}
