//! A daemon started ahead of its seat's Start (`--await-activation`): nothing but `/activate`
//! is served before the activation, the start-up token dies with it, the workshop's
//! environment reaches the shells and commands started afterwards, and it happens once.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Daemon, Ws, TOKEN};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const NEW_TOKEN: &str = "the-token-of-the-start-0123456789";

async fn ahead() -> Daemon {
    Daemon::start_with(|c| c.await_activation = true).await
}

async fn post(d: &Daemon, path: &str, token: &str, body: Value) -> (u16, Value) {
    let r = d
        .http()
        .post(d.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn activate(d: &Daemon, token: &str) -> (u16, Value) {
    post(
        d,
        "/activate",
        token,
        json!({"token": NEW_TOKEN, "env": {"ANTHROPIC_API_KEY": "sk-ant-workshop-secret"}}),
    )
    .await
}

async fn terminal_with(d: &Daemon, token: &str) -> Ws {
    let mut req = format!("ws://{}/terminal", d.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    Ws::from(ws)
}

#[tokio::test]
async fn nothing_is_served_before_the_activation() {
    let d = ahead().await;
    assert_eq!(reqwest::get(d.url("/health")).await.unwrap().status(), 200);
    for path in ["/files", "/terminal", "/previews", "/screen"] {
        let r = d.get(path).send().await.unwrap();
        assert_eq!(r.status(), 409, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap()["code"], "not_activated");
    }
    let (status, body) = post(&d, "/run", TOKEN, json!({"command": "echo hi"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("not_activated"))
    );
    // A wrong token is refused before anything else.
    let (status, _) = activate(&d, "wrong").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_activation_swaps_the_token_and_brings_the_environment() {
    let d = ahead().await;
    let (status, body) = activate(&d, TOKEN).await;
    assert_eq!((status, &body), (200, &json!({"success": true})));
    // The start-up token is dead, on every route and on a second activation.
    assert_eq!(d.get("/files").send().await.unwrap().status(), 401);
    let (status, _) = activate(&d, TOKEN).await;
    assert_eq!(status, 401);
    // With the new one: served, once.
    let (status, body) = activate(&d, NEW_TOKEN).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("already_activated"))
    );
    let (status, body) = post(
        &d,
        "/run",
        NEW_TOKEN,
        json!({"command": "echo \"key=$ANTHROPIC_API_KEY token=${CLARATEACH_DAEMON_TOKEN-none}\""}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["stdout"], "key=sk-ant-workshop-secret token=none\n",
        "{body}"
    );
    let mut t = terminal_with(&d, NEW_TOKEN).await;
    t.until_event("attached", 5).await;
    t.input("echo \"K=$ANTHROPIC_API_KEY\"\r").await;
    t.until_text("K=sk-ant-workshop-secret", 5).await;
}

#[tokio::test]
async fn bad_activations_are_refused_and_leave_the_daemon_waiting() {
    let d = ahead().await;
    for (body, want) in [
        (
            json!({"token": "short", "env": {}}),
            (400, "invalid_request"),
        ),
        (
            json!({"token": NEW_TOKEN, "env": {"A=B": "x"}}),
            (400, "bad_env"),
        ),
        (
            json!({"token": NEW_TOKEN, "env": {"A": "x\u{0}y"}}),
            (400, "bad_env"),
        ),
        (
            json!({"token": NEW_TOKEN, "extra": 1}),
            (422, "validation_failed"),
        ),
    ] {
        let (status, reply) = post(&d, "/activate", TOKEN, body.clone()).await;
        assert_eq!(
            (status, reply["code"].as_str().unwrap_or_default()),
            want,
            "{body} -> {reply}"
        );
    }
    // Still waiting, on the start-up token.
    assert_eq!(d.get("/files").send().await.unwrap().status(), 409);
    let (status, _) = activate(&d, TOKEN).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_daemon_started_with_its_seat_takes_no_activation() {
    let d = Daemon::start().await;
    let (status, body) = activate(&d, TOKEN).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("already_activated"))
    );
    assert_eq!(d.get("/files").send().await.unwrap().status(), 200);
}
