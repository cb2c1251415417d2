//! Tokens, instructor isolation, the api key at rest, and restarts with the same data dir.

use std::time::Duration;

use clarateach_core::TokenClaims;
use clarateach_server::keys::SigningKeys;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{b64, unb64, TestServer};

#[tokio::test]
async fn tampered_expired_and_stopped_workshop_tokens_are_401() {
    let s = TestServer::start().await;
    let (w, _agent) = s.running_workshop(2).await;
    let (_, joined, _) = s.join(json!({"code": w["code"]})).await;
    let token = joined["token"].as_str().expect("token").to_string();
    assert_eq!(s.me(&token).await, StatusCode::OK);
    let res = s
        .http
        .get(s.url(&format!("/api/me?token={token}")))
        .send()
        .await
        .expect("me");
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "a token as query parameter is refused"
    );

    // Tamper with the payload (claim another seat) keeping the signature.
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: TokenClaims = serde_json::from_slice(&b64(parts[1])).expect("claims");
    claims.seat = 2;
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        unb64(&serde_json::to_vec(&claims).expect("json")),
        parts[2]
    );
    assert_eq!(s.me(&forged).await, StatusCode::UNAUTHORIZED);
    assert_eq!(s.me("not.a.jwt").await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        s.me(&s.token).await,
        StatusCode::UNAUTHORIZED,
        "an instructor token is not a learner token"
    );

    // Expired, signed with the server's own key.
    let keys = SigningKeys::load_or_create(&s.dir.join("jwt.key")).expect("key");
    let mut old: TokenClaims = serde_json::from_slice(&b64(parts[1])).expect("claims");
    old.exp = old.iat.saturating_sub(10);
    assert_eq!(
        s.me(&keys.sign(&old).expect("sign")).await,
        StatusCode::UNAUTHORIZED
    );
    let mut fresh = old.clone();
    fresh.exp = old.iat + 3600;
    assert_eq!(
        s.me(&keys.sign(&fresh).expect("sign")).await,
        StatusCode::OK,
        "same key, valid expiry"
    );

    // Stopped workshop: the token no longer opens anything.
    let id = w["id"].as_str().expect("id");
    s.call(Method::POST, &format!("/api/workshops/{id}/stop"), None)
        .await;
    assert_eq!(s.me(&token).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn instructors_only_see_their_own_workshops() {
    let s = TestServer::start().await;
    let w = s.create(json!({"name": "Mine", "seats": 1})).await;
    let id = w["id"].as_str().expect("id");
    let other = clarateach_server::create_instructor(s.state.store(), "Bob")
        .await
        .expect("instructor");
    let (st, v) = s.call_as(&other, Method::GET, "/api/workshops", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["workshops"].as_array().map(Vec::len), Some(0));
    for (method, path) in [
        (Method::GET, format!("/api/workshops/{id}")),
        (Method::GET, format!("/api/workshops/{id}/seats")),
        (Method::POST, format!("/api/workshops/{id}/start")),
        (Method::POST, format!("/api/workshops/{id}/stop")),
        (Method::DELETE, format!("/api/workshops/{id}")),
    ] {
        let (st, v) = s.call_as(&other, method.clone(), &path, None).await;
        assert_eq!(
            (st, v["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("workshop_not_found")),
            "{method} {path}"
        );
    }
    assert_eq!(s.workshop(id).await["status"], "created", "untouched");
}

#[tokio::test]
async fn api_key_never_leaves_in_plaintext() {
    let logs = crate::captured_logs();
    let s = TestServer::start().await;
    let secret = "sk-ant-PLAINTEXT-canary-7f3a9";
    let _agent = s.agent("ag-secret", 10).await;
    let (st, created) = s
        .call(
            Method::POST,
            "/api/workshops",
            Some(json!({"name": "S", "seats": 2, "api_key": secret})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let id = created["workshop"]["id"].as_str().expect("id").to_string();
    let mut bodies = vec![created.to_string()];
    bodies.push(
        s.call(Method::GET, "/api/workshops", None)
            .await
            .1
            .to_string(),
    );
    bodies.push(
        s.call(Method::POST, &format!("/api/workshops/{id}/start"), None)
            .await
            .1
            .to_string(),
    );
    s.wait_status(&id, "running").await;
    bodies.push(
        s.call(Method::GET, &format!("/api/workshops/{id}"), None)
            .await
            .1
            .to_string(),
    );
    bodies.push(
        s.call(Method::GET, &format!("/api/workshops/{id}/seats"), None)
            .await
            .1
            .to_string(),
    );
    bodies.push(
        s.http
            .get(s.url("/metrics"))
            .send()
            .await
            .expect("m")
            .text()
            .await
            .expect("t"),
    );
    for b in &bodies {
        assert!(!b.contains(secret), "secret in a response: {b}");
    }
    assert!(
        !contains(&s.stored_bytes().await, secret.as_bytes()),
        "secret in the database file in plaintext"
    );
    s.call(Method::POST, &format!("/api/workshops/{id}/stop"), None)
        .await;
    assert_eq!(s.workshop(&id).await["has_api_key"], false);
    let logged = logs.lock().expect("logs").clone();
    assert!(!logged.is_empty(), "logs were captured");
    assert!(!contains(&logged, secret.as_bytes()), "secret in the logs");
    assert!(
        !contains(&logged, s.token.as_bytes()),
        "instructor token in the logs"
    );
}

#[tokio::test]
async fn restart_keeps_workshops_seats_and_tokens() {
    let s = TestServer::start().await;
    let (w, agent) = s.running_workshop(3).await;
    let id = w["id"].as_str().expect("id").to_string();
    let (_, joined, _) = s.join(json!({"code": w["code"], "name": "Grace"})).await;
    let token = joined["token"].as_str().expect("token").to_string();
    let dir = s.dir.clone();
    let agent_id = agent.received_specs().len(); // keep the agent alive until shutdown
    assert_eq!(agent_id, 3);
    let tmp = s.shutdown().await;
    drop(agent);

    let s2 = TestServer::start_in(&dir, |_| {}).await;
    let w2 = s2.workshop(&id).await;
    assert_eq!(
        (w2["status"].as_str(), w2["seats_joined"].as_u64()),
        (Some("running"), Some(1))
    );
    assert_eq!(
        s2.me(&token).await,
        StatusCode::OK,
        "token valid across restart"
    );
    let (_, again, _) = s2
        .join(json!({"code": w["code"], "odehash": joined["odehash"]}))
        .await;
    assert_eq!(again["seat"], joined["seat"]);
    let (_, seats) = s2
        .call(Method::GET, &format!("/api/workshops/{id}/seats"), None)
        .await;
    assert_eq!(seats["seats"][0]["name"], "Grace");
    tokio::time::sleep(Duration::from_millis(10)).await;
    s2.shutdown().await;
    drop(tmp);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn key_token_and_database_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let s = TestServer::start().await;
    let mut files = vec!["jwt.key", "secret.key", "instructor.token"];
    if !crate::common::on_postgres() {
        files.push("clarateach.db");
    }
    for f in files {
        let mode = std::fs::metadata(s.dir.join(f))
            .expect(f)
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let dir_mode = std::fs::metadata(&s.dir).expect("dir").permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
}
