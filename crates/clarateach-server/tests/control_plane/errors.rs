//! Bad input gets `{code, message}` with the right status, never a 500.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::TestServer;

#[tokio::test]
async fn validation_table() {
    let s = TestServer::start().await;
    let long_name = "x".repeat(101);
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"name": "ok", "seats": 0}), 422, "validation_failed"),
        (
            json!({"name": "ok", "seats": 201}),
            422,
            "validation_failed",
        ),
        (json!({"name": "ok", "seats": -1}), 422, "validation_failed"),
        (
            json!({"name": "ok", "seats": 4294967296u64}),
            422,
            "validation_failed",
        ),
        (
            json!({"name": "ok", "seats": "ten"}),
            422,
            "validation_failed",
        ),
        (json!({"name": "", "seats": 3}), 422, "validation_failed"),
        (json!({"name": "   ", "seats": 3}), 422, "validation_failed"),
        (
            json!({"name": long_name, "seats": 3}),
            422,
            "validation_failed",
        ),
        (json!({"seats": 3}), 422, "validation_failed"),
        (
            json!({"name": "ok", "seats": 3, "api_key": "short"}),
            422,
            "validation_failed",
        ),
        (
            json!({"name": "ok", "seats": 3, "image": "../etc"}),
            422,
            "validation_failed",
        ),
        (
            json!({"name": "ok", "seats": 3, "limits": {"memory_mb": 1}}),
            422,
            "validation_failed",
        ),
        (
            json!({"name": "ok", "seats": 3, "limits": {"bogus": 1}}),
            422,
            "validation_failed",
        ),
        (
            json!({"name": "ok", "seats": 3, "surprise": true}),
            422,
            "validation_failed",
        ),
        (json!([1, 2]), 422, "validation_failed"),
        (json!({"name": "x".repeat(100), "seats": 200}), 201, ""),
    ];
    for (body, status, code) in cases {
        let (st, v) = s
            .call(Method::POST, "/api/workshops", Some(body.clone()))
            .await;
        assert_eq!(st.as_u16(), status, "{body} -> {v}");
        if !code.is_empty() {
            assert_eq!(v["code"], code, "{body}");
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
    // Raw bodies: malformed JSON, no content type, too large.
    let raw = |body: &'static str, ct: Option<&'static str>| {
        let mut req = s
            .http
            .post(s.url("/api/workshops"))
            .bearer_auth(&s.token)
            .body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req
    };
    for (req, status, code) in [
        (
            raw("{\"name\": ", Some("application/json")),
            400,
            "invalid_request",
        ),
        (raw("{}", None), 400, "invalid_request"),
        (raw("", Some("application/json")), 400, "invalid_request"),
    ] {
        let res = req.send().await.expect("send");
        assert_eq!(res.status().as_u16(), status);
        assert_eq!(res.json::<Value>().await.expect("json")["code"], code);
    }
    let big = format!(
        "{{\"name\": \"{}\", \"seats\": 1}}",
        "a".repeat(2 * 1024 * 1024)
    );
    let res = s
        .http
        .post(s.url("/api/workshops"))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        res.json::<Value>().await.expect("json")["code"],
        "payload_too_large"
    );

    // Join input.
    for (body, status) in [
        (json!({"code": ""}), 422),
        (json!({"code": 5}), 422),
        (json!({"code": "CLAUDE-ABCD", "name": "n".repeat(65)}), 422),
        (json!({"code": "CLAUDE-ABCD", "name": "bell\u{7}"}), 422),
        (json!({}), 422),
    ] {
        let (st, v, _) = s.join(body.clone()).await;
        assert_eq!(st.as_u16(), status, "{body} -> {v}");
        assert!(v["code"].is_string());
    }
}

#[tokio::test]
async fn unknown_routes_methods_and_auth_answer_json() {
    let s = TestServer::start().await;
    let (st, v) = s.call(Method::GET, "/api/nope", None).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (st, v) = s.call(Method::PUT, "/api/workshops", None).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
    let (st, v) = s
        .call_as("wrong", Method::GET, "/api/workshops", None)
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let res = s
        .http
        .get(s.url("/api/workshops"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // A token as query parameter is refused (it would land in access logs); see sessions.rs.
    let res = s
        .http
        .get(s.url(&format!("/api/workshops?token={}", s.token)))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Agent channel: no token 401; a valid token but not a WebSocket 400.
    let res = s
        .http
        .get(s.url("/api/agents/connect"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let token = clarateach_server::issue_agent_token(s.state.store())
        .await
        .expect("token");
    let res = s
        .http
        .get(s.url("/api/agents/connect"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // Meta routes.
    let (st, v) = s.call(Method::GET, "/api/health", None).await;
    assert_eq!((st, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (st, v) = s.call(Method::GET, "/api/openapi.json", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["paths"]["/api/join"].is_object());
    let metrics = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("clarateach_workshops{status=\"created\"} 0"));
    assert!(metrics.contains(
        "clarateach_http_requests_total{route=\"/api/health\",method=\"GET\",status=\"200\"} 1"
    ));
    assert!(metrics
        .contains("clarateach_http_request_duration_seconds_bucket{route=\"/api/workshops\""));
    assert!(metrics.contains("clarateach_agents_connected 0"));
}
