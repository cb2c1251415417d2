//! Instructor sessions, one-time WebSocket tickets, no tokens in URLs, and seat resets.
//!
//! The protocol agent's data path is a closed port, so a WebSocket that passes the gateway's
//! checks ends in 502 `workspace_unreachable`: that status is how these tests tell "authorised"
//! from 401/403 without a real workspace (the full path is covered by the web e2e tests).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::common::TestServer;

/// Opens a WebSocket on `path` (with an optional bearer header) and returns the HTTP status
/// the gateway answered (101 when it upgraded) and its error code.
async fn ws_status(s: &TestServer, path: &str, bearer: Option<&str>) -> (u16, String) {
    let url = format!("{}{path}", s.base.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().expect("request");
    if let Some(b) = bearer {
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {b}").parse().expect("header"),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((_, res)) => (res.status().as_u16(), String::new()),
        Err(WsError::Http(res)) => {
            let body: Value = res
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            (
                res.status().as_u16(),
                body["code"].as_str().unwrap_or("").to_string(),
            )
        }
        Err(e) => panic!("websocket to {path}: {e}"),
    }
}

const AUTHORISED: (u16, &str) = (502, "workspace_unreachable");

async fn ticket(s: &TestServer, token: &str, body: Value) -> (StatusCode, Value) {
    s.call_as(token, Method::POST, "/api/session/ticket", Some(body))
        .await
}

async fn session(s: &TestServer, token: &str) -> (StatusCode, Value) {
    s.call_as(token, Method::POST, "/api/instructor/sessions", None)
        .await
}

#[tokio::test]
async fn sessions_are_created_used_refused_to_mint_and_revoked() {
    let s = TestServer::start().await;
    let (st, v) = session(&s, &s.token).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let token = v["token"].as_str().expect("token").to_string();
    assert!(token.starts_with("cts_") && token != s.token);
    let expires: chrono::DateTime<chrono::Utc> = v["expires_at"]
        .as_str()
        .expect("expiry")
        .parse()
        .expect("time");
    let left = expires - chrono::Utc::now();
    assert!(left > chrono::Duration::hours(11) && left <= chrono::Duration::hours(12));

    // A session works on every instructor route the long-lived token does.
    let (st, created) = s
        .call_as(
            &token,
            Method::POST,
            "/api/workshops",
            Some(json!({"name": "By session", "seats": 1})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let id = created["workshop"]["id"].as_str().expect("id");
    for path in [
        "/api/workshops".to_string(),
        format!("/api/workshops/{id}"),
        format!("/api/workshops/{id}/seats"),
    ] {
        let (st, v) = s.call_as(&token, Method::GET, &path, None).await;
        assert_eq!(st, StatusCode::OK, "{path}: {v}");
    }
    // Only its hash is stored.
    let stored = s.stored_bytes().await;
    assert!(stored.len() > 100, "the store was read");
    assert!(!stored.windows(token.len()).any(|w| w == token.as_bytes()));

    let (st, v) = session(&s, &token).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("session_cannot_mint"))
    );
    let (st, _) = s
        .call_as(&token, Method::DELETE, "/api/instructor/sessions", None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s.call_as(&token, Method::GET, "/api/workshops", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "revoked");
    let (st, _) = s
        .call_as(&token, Method::DELETE, "/api/instructor/sessions", None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "revoked twice");
    let (st, _) = s
        .call_as(&s.token, Method::DELETE, "/api/instructor/sessions", None)
        .await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "the long-lived token is not a session to revoke"
    );
    let (st, _) = s.call(Method::GET, "/api/workshops", None).await;
    assert_eq!(st, StatusCode::OK, "the long-lived token still works");
    let (st, _) = session(&s, "cts_not-a-session").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sessions_expire() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = TestServer::start_in(&tmp.path().join("d"), |c| {
        c.session_ttl = Duration::from_secs(1)
    })
    .await;
    let (_, v) = session(&s, &s.token).await;
    let token = v["token"].as_str().expect("token").to_string();
    let (st, _) = s.call_as(&token, Method::GET, "/api/workshops", None).await;
    assert_eq!(st, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (st, _) = s.call_as(&token, Method::GET, "/api/workshops", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "expired");
}

#[tokio::test]
async fn tokens_in_urls_are_refused_on_gets_and_websockets() {
    let s = TestServer::start().await;
    let (w, _agent) = s.running_workshop(2).await;
    let (_, joined, _) = s.join(json!({"code": w["code"]})).await;
    let learner = joined["token"].as_str().expect("token").to_string();
    let id = w["id"].as_str().expect("id");
    let (_, v) = session(&s, &s.token).await;
    let sess = v["token"].as_str().expect("session").to_string();
    for (path, token) in [
        ("/api/workshops".to_string(), s.token.as_str()),
        ("/api/workshops".to_string(), sess.as_str()),
        (format!("/api/workshops/{id}/seats"), s.token.as_str()),
        ("/api/me".to_string(), learner.as_str()),
        ("/api/session/files".to_string(), learner.as_str()),
        (
            format!("/api/session/files?workshop_id={id}&seat=1"),
            s.token.as_str(),
        ),
    ] {
        let sep = if path.contains('?') { '&' } else { '?' };
        let res = s
            .http
            .get(s.url(&format!("{path}{sep}token={token}")))
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(
        ws_status(&s, &format!("/api/session/terminal?token={learner}"), None).await,
        (401, "unauthorized".into())
    );
    assert_eq!(
        ws_status(
            &s,
            &format!(
                "/api/session/terminal?workshop_id={id}&seat=1&token={}",
                s.token
            ),
            None
        )
        .await,
        (401, "unauthorized".into())
    );
    // Even with a good header, a token in the URL is refused rather than ignored.
    assert_eq!(
        ws_status(
            &s,
            &format!("/api/session/terminal?token={learner}"),
            Some(&learner)
        )
        .await,
        (401, "unauthorized".into())
    );
    // The header alone (non-browser clients) is fine.
    let (st, code) = ws_status(&s, "/api/session/terminal", Some(&learner)).await;
    assert_eq!((st, code.as_str()), AUTHORISED);
}

#[tokio::test]
async fn tickets_are_single_use_bound_to_seat_and_mode() {
    let s = TestServer::start().await;
    let (w, _agent) = s.running_workshop(2).await;
    let id = w["id"].as_str().expect("id").to_string();
    let (_, joined, _) = s.join(json!({"code": w["code"]})).await;
    let learner = joined["token"].as_str().expect("token").to_string();

    // Learner: its own seat, interactive by default; single use.
    let (st, v) = ticket(&s, &learner, json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["expires_in"], 30);
    let t = v["ticket"].as_str().expect("ticket").to_string();
    let (st, code) = ws_status(&s, &format!("/api/session/terminal?ticket={t}"), None).await;
    assert_eq!((st, code.as_str()), AUTHORISED);
    assert_eq!(
        ws_status(&s, &format!("/api/session/terminal?ticket={t}"), None).await,
        (401, "unauthorized".into()),
        "replayed"
    );
    assert_eq!(
        ws_status(&s, "/api/session/terminal?ticket=ctk_guessed", None).await,
        (401, "unauthorized".into())
    );

    // Bound to its mode: a watch ticket cannot open an interactive terminal.
    let (_, v) = ticket(&s, &learner, json!({"mode": "watch"})).await;
    let t = v["ticket"].as_str().expect("ticket").to_string();
    assert_eq!(
        ws_status(
            &s,
            &format!("/api/session/terminal?ticket={t}&mode=interactive"),
            None
        )
        .await,
        (403, "ticket_mismatch".into())
    );
    assert_eq!(
        ws_status(
            &s,
            &format!("/api/session/terminal?ticket={t}&mode=watch"),
            None
        )
        .await,
        (401, "unauthorized".into()),
        "a refused ticket is spent too"
    );
    let (st, v) = ticket(&s, &learner, json!({"mode": "takeover"})).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden_mode"))
    );

    // Instructor (long-lived token or session): names the seat; bound to it.
    let (_, v) = session(&s, &s.token).await;
    let sess = v["token"].as_str().expect("session").to_string();
    for token in [s.token.as_str(), sess.as_str()] {
        let (st, v) = ticket(&s, token, json!({"workshop_id": id, "seat": 1})).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let t = v["ticket"].as_str().expect("ticket").to_string();
        assert_eq!(
            ws_status(
                &s,
                &format!("/api/session/terminal?ticket={t}&workshop_id={id}&seat=2"),
                None
            )
            .await,
            (403, "ticket_mismatch".into()),
            "wrong seat"
        );
        let (_, v) = ticket(
            &s,
            token,
            json!({"workshop_id": id, "seat": 1, "mode": "takeover"}),
        )
        .await;
        let t = v["ticket"].as_str().expect("ticket").to_string();
        let (st, code) = ws_status(
            &s,
            &format!("/api/session/terminal?ticket={t}&workshop_id={id}&seat=1&mode=takeover"),
            None,
        )
        .await;
        assert_eq!((st, code.as_str()), AUTHORISED);
    }
    let (st, _) = ticket(&s, &s.token, json!({})).await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "an instructor must name the seat"
    );
    let (st, _) = ticket(&s, &s.token, json!({"workshop_id": id, "seat": 3})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = ticket(&s, "cti_wrong", json!({"workshop_id": id, "seat": 1})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let res = s
        .http
        .post(s.url("/api/session/ticket"))
        .json(&json!({}))
        .send()
        .await
        .expect("anonymous");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // A ticket opens only a WebSocket, never a plain GET.
    let (_, v) = ticket(&s, &learner, json!({})).await;
    let t = v["ticket"].as_str().expect("ticket");
    let res = s
        .http
        .get(s.url(&format!("/api/session/files?ticket={t}")))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

async fn reset(s: &TestServer, id: &str, seat: u64) -> (StatusCode, Value) {
    s.call(
        Method::POST,
        &format!("/api/workshops/{id}/seats/{seat}/reset"),
        None,
    )
    .await
}

#[tokio::test]
async fn reset_seat_refuses_old_tokens_codes_and_tickets() {
    let s = TestServer::start().await;
    let (w, _agent) = s.running_workshop(2).await;
    let id = w["id"].as_str().expect("id").to_string();
    let code = w["code"].as_str().expect("code");
    let (_, joined, _) = s.join(json!({"code": code, "name": "Ada"})).await;
    let old_token = joined["token"].as_str().expect("token").to_string();
    let old_code = joined["odehash"].as_str().expect("odehash").to_string();
    let seat = joined["seat"].as_u64().expect("seat");
    let (_, v) = ticket(&s, &old_token, json!({})).await;
    let old_ticket = v["ticket"].as_str().expect("ticket").to_string();

    let (st, v) = reset(&s, &id, seat).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["generation"], 1);
    let new_code = v["odehash"].as_str().expect("new code").to_string();
    assert_ne!(new_code, old_code);

    assert_eq!(s.me(&old_token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        ws_status(
            &s,
            &format!("/api/session/terminal?ticket={old_ticket}"),
            None
        )
        .await,
        (401, "unauthorized".into()),
        "a ticket issued before the reset"
    );
    let (st, v, _) = s.join(json!({"code": code, "odehash": old_code})).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (st, v, _) = s.join(json!({"code": code, "odehash": new_code})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["seat"].as_u64(), Some(seat));
    assert_eq!(
        s.me(v["token"].as_str().expect("token")).await,
        StatusCode::OK
    );
    let (_, seats) = s
        .call(Method::GET, &format!("/api/workshops/{id}/seats"), None)
        .await;
    assert_eq!(seats["seats"][0]["name"], "Ada", "the seat is still hers");

    // A second reset bumps again; a free seat, a missing seat, another instructor's workshop.
    let (_, v) = reset(&s, &id, seat).await;
    assert_eq!(v["generation"], 2);
    let (st, v) = reset(&s, &id, 2).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("seat_not_joined"))
    );
    let (st, _) = reset(&s, &id, 3).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let other = clarateach_server::create_instructor(s.state.store(), "bob")
        .await
        .expect("bob");
    let (st, _) = s
        .call_as(
            &other,
            Method::POST,
            &format!("/api/workshops/{id}/seats/1/reset"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let res = s
        .http
        .post(s.url(&format!("/api/workshops/{id}/seats/1/reset")))
        .send()
        .await
        .expect("anonymous");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}
