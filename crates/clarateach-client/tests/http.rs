//! The client against a small local axum server that answers like the control plane (and like
//! things that are not the control plane), to pin down how each answer is decoded.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use clarateach_client::{Client, ClientError};
use clarateach_core::{CreateWorkshopRequest, ErrorBody, Limits, Workshop, WorkshopStatus};
use serde_json::json;

fn workshop(id: &str, status: WorkshopStatus) -> Workshop {
    Workshop {
        id: id.to_string(),
        name: "Intro to Rust".into(),
        code: "CLAUDE-XY9Z".into(),
        seats: 3,
        status,
        created_at: chrono::Utc::now(),
        endpoint: None,
        image: None,
        limits: Limits::default(),
        has_api_key: false,
        seats_ready: 0,
        seats_joined: 0,
        start_at: None,
        idle_pause_minutes: None,
    }
}

#[derive(Clone, Default)]
struct Seen {
    auth: Arc<Mutex<Vec<Option<String>>>>,
}

async fn list(State(seen): State<Seen>, headers: HeaderMap) -> impl IntoResponse {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    seen.auth.lock().expect("lock").push(auth);
    Json(json!({ "workshops": [workshop("ws-aaaaaa", WorkshopStatus::Created)] }))
}

async fn get_one(Path(id): Path<String>) -> axum::response::Response {
    match id.as_str() {
        "ws-aaaaaa" => Json(json!({ "workshop": workshop("ws-aaaaaa", WorkshopStatus::Running) }))
            .into_response(),
        "ws-garbage" => (StatusCode::OK, "{\"workshop\": 42}").into_response(),
        "ws-proxy" => (
            StatusCode::BAD_GATEWAY,
            "<html><body>502 Bad Gateway</body></html>",
        )
            .into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            Json(ErrorBody::new(
                clarateach_core::ErrorCode::WorkshopNotFound,
                format!("workshop {id} not found"),
            )),
        )
            .into_response(),
    }
}

async fn create(Json(req): Json<CreateWorkshopRequest>) -> impl IntoResponse {
    let mut w = workshop("ws-bbbbbb", WorkshopStatus::Created);
    w.name = req.name;
    w.seats = req.seats;
    w.has_api_key = req.api_key.is_some();
    (StatusCode::CREATED, Json(json!({ "workshop": w })))
}

async fn stop(Path(id): Path<String>) -> axum::response::Response {
    if id == "ws-aaaaaa" {
        Json(json!({ "workshop": workshop(&id, WorkshopStatus::Stopping) })).into_response()
    } else {
        Json(json!({ "success": true })).into_response()
    }
}

async fn start() -> impl IntoResponse {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(ErrorBody::new(
            clarateach_core::ErrorCode::NoCapacity,
            "no agent has room for 3 seats",
        )),
    )
}

async fn export() -> impl IntoResponse {
    ([("content-type", "application/gzip")], vec![7u8; 100_000])
}

async fn serve() -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route(
            "/api/health",
            get(|| async { Json(json!({"status": "ok", "version": "0.1.0"})) }),
        )
        .route("/api/workshops", get(list).post(create))
        .route(
            "/api/workshops/{id}",
            get(get_one).delete(|| async { StatusCode::NO_CONTENT }),
        )
        .route("/api/workshops/{id}/stop", post(stop))
        .route("/api/workshops/{id}/start", post(start))
        .route("/api/workshops/{id}/export", get(export))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn decodes_success_bodies_and_sends_the_token() {
    let (url, seen) = serve().await;
    let client = Client::new(&url, Some("tok-123".into())).expect("client");
    assert_eq!(client.health().await.expect("health").status, "ok");
    let list = client.list_workshops().await.expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, "ws-aaaaaa");
    assert_eq!(
        seen.auth.lock().expect("lock").as_slice(),
        [Some("Bearer tok-123".to_string())]
    );

    let req = CreateWorkshopRequest {
        template: None,
        name: "Rust".into(),
        seats: 5,
        api_key: Some("sk-0123456789".into()),
        image: None,
        limits: None,
    };
    let w = client.create_workshop(&req).await.expect("create");
    assert_eq!((w.name.as_str(), w.seats, w.has_api_key), ("Rust", 5, true));
    assert_eq!(
        client.get_workshop("ws-aaaaaa").await.expect("get").status,
        WorkshopStatus::Running
    );
    client
        .delete_workshop("ws-aaaaaa")
        .await
        .expect("delete answers 204");
}

#[tokio::test]
async fn stop_accepts_both_answer_shapes() {
    let (url, _) = serve().await;
    let client = Client::new(&url, None).expect("client");
    let w = client
        .stop_workshop("ws-aaaaaa")
        .await
        .expect("stop")
        .expect("workshop");
    assert_eq!(w.status, WorkshopStatus::Stopping);
    assert!(client
        .stop_workshop("ws-other1")
        .await
        .expect("stop")
        .is_none());
}

#[tokio::test]
async fn api_errors_carry_status_code_and_message() {
    let (url, _) = serve().await;
    let client = Client::new(&url, None).expect("client");
    let e = client.get_workshop("ws-nope00").await.expect_err("404");
    assert!(
        matches!(&e, ClientError::Api { status: 404, code, .. } if code == "workshop_not_found")
    );
    assert_eq!(
        e.summary(),
        "workshop ws-nope00 not found (workshop_not_found)"
    );
    let e = client.start_workshop("ws-aaaaaa").await.expect_err("503");
    assert_eq!((e.status(), e.code()), (Some(503), Some("no_capacity")));
}

#[tokio::test]
async fn foreign_error_pages_and_bad_bodies_are_told_apart() {
    let (url, _) = serve().await;
    let client = Client::new(&url, None).expect("client");
    let e = client.get_workshop("ws-proxy").await.expect_err("502");
    assert!(matches!(&e, ClientError::Http { status: 502, .. }), "{e:?}");
    assert!(e.summary().contains("502 Bad Gateway"));
    let e = client
        .get_workshop("ws-garbage")
        .await
        .expect_err("bad body");
    assert!(matches!(&e, ClientError::Decode { .. }), "{e:?}");
    assert!(!e.summary().contains('\n'));
}

#[tokio::test]
async fn a_closed_port_is_unreachable_in_one_line() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let url = format!("http://{addr}");
    let client = Client::new(&url, None).expect("client");
    let e = client.list_workshops().await.expect_err("nothing listens");
    assert!(e.is_unreachable(), "{e:?}");
    assert_eq!(
        e.summary(),
        format!("cannot reach the control plane at {url}: connection refused")
    );
}

#[tokio::test]
async fn export_streams_into_a_writer() {
    let (url, _) = serve().await;
    let client = Client::new(&url, None).expect("client");
    let export = client.export_workshop("ws-aaaaaa").await.expect("export");
    assert_eq!(export.content_type(), Some("application/gzip"));
    let mut out = Vec::new();
    let mut calls = 0;
    let n = export
        .write_to(&mut out, |_| calls += 1)
        .await
        .expect("write");
    assert_eq!(n, 100_000);
    assert_eq!(out, vec![7u8; 100_000]);
    assert!(calls >= 1);
}
