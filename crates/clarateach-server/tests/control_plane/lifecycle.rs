//! Workshop lifecycle through the API with agents connecting over the real protocol.

use std::time::Duration;

use clarateach_server::testing::Mode;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::TestServer;

#[tokio::test]
async fn lifecycle_create_start_stop_delete() {
    crate::captured_logs();
    let s = TestServer::start().await;
    let w = s
        .create(json!({"name": "Intro to Rust", "seats": 3, "api_key": "sk-ant-lifecycle-key"}))
        .await;
    let id = w["id"].as_str().expect("id");
    assert_eq!(w["status"], "created");
    assert!(w["code"].as_str().expect("code").starts_with("CLAUDE-"));
    assert_eq!(w["has_api_key"], true);

    // No agent: start refuses honestly and the workshop stays created.
    let (st, v) = s
        .call(Method::POST, &format!("/api/workshops/{id}/start"), None)
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("no_capacity"))
    );
    assert_eq!(s.workshop(id).await["status"], "created");

    // Too little capacity: same.
    let small = s.agent("ag-small", 2).await;
    let (st, _) = s
        .call(Method::POST, &format!("/api/workshops/{id}/start"), None)
        .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    drop(small);

    let agent = s.agent("ag-1", 10).await;
    let (st, v) = s
        .call(Method::POST, &format!("/api/workshops/{id}/start"), None)
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let w = s.wait_status(id, "running").await;
    assert_eq!(w["seats_ready"], 3);
    let specs = agent.received_specs();
    assert_eq!(specs.len(), 3);
    assert!(specs
        .iter()
        .all(|sp| sp.env.get("ANTHROPIC_API_KEY").map(String::as_str)
            == Some("sk-ant-lifecycle-key")));
    assert!(
        specs
            .iter()
            .all(|sp| sp.env.get("CLAUDE_API_KEY").map(String::as_str)
                == Some("sk-ant-lifecycle-key"))
    );

    let (st, v) = s
        .call(Method::DELETE, &format!("/api/workshops/{id}"), None)
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("workshop_running"))
    );

    let (st, v) = s
        .call(Method::GET, &format!("/api/workshops/{id}/seats"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let seats = v["seats"].as_array().expect("seats");
    assert_eq!(
        seats
            .iter()
            .map(|x| x["seat"].as_u64().unwrap_or(0))
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(seats
        .iter()
        .all(|x| x["state"] == "ready" && x["agent_id"] == "ag-1"));

    let (st, v) = s
        .call(Method::POST, &format!("/api/workshops/{id}/stop"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["workshop"]["status"], "stopped");
    assert_eq!(
        v["workshop"]["has_api_key"], false,
        "secret deleted on stop"
    );
    let (_, v) = s
        .call(Method::GET, &format!("/api/workshops/{id}/seats"), None)
        .await;
    assert!(v["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .all(|x| x["state"] == "destroyed"));

    let (st, _) = s
        .call(Method::DELETE, &format!("/api/workshops/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = s
        .call(Method::GET, &format!("/api/workshops/{id}"), None)
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("workshop_not_found"))
    );
    s.shutdown().await;
}

#[tokio::test]
async fn silent_agent_loses_seats_and_reregister_restores_them() {
    let s = TestServer::start().await;
    let agent = s.agent("ag-flaky", 10).await;
    let w = s.create(json!({"name": "Flaky", "seats": 2})).await;
    let id = w["id"].as_str().expect("id");
    s.call(Method::POST, &format!("/api/workshops/{id}/start"), None)
        .await;
    s.wait_status(id, "running").await;

    agent.set_mode(Mode::Silent); // 3 missed heartbeats of 100 ms
    let mut lost = false;
    for _ in 0..100 {
        let (_, v) = s
            .call(Method::GET, &format!("/api/workshops/{id}/seats"), None)
            .await;
        if v["seats"]
            .as_array()
            .expect("seats")
            .iter()
            .all(|x| x["state"] == "lost")
        {
            lost = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(lost, "seats should be lost after missed heartbeats");
    assert!(s.state.provisioner().agents().await.is_empty());

    // The agent comes back: it gets its desired seats in `registered` and reports them ready.
    let back = s.agent("ag-flaky", 10).await;
    for _ in 0..100 {
        if s.workshop(id).await["seats_ready"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.workshop(id).await["seats_ready"], 2);
    assert_eq!(
        back.received_specs().len(),
        2,
        "desired state sent on re-register"
    );
    assert!(
        s.state.seat_route(id, 1).await.is_ok(),
        "gateway can route to the seat"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn seats_spread_across_agents_by_free_capacity() {
    let s = TestServer::start().await;
    let _a = s.agent("ag-a", 4).await;
    let _b = s.agent("ag-b", 4).await;
    let w = s.create(json!({"name": "Spread", "seats": 6})).await;
    let id = w["id"].as_str().expect("id");
    s.call(Method::POST, &format!("/api/workshops/{id}/start"), None)
        .await;
    s.wait_status(id, "running").await;
    let (_, v) = s
        .call(Method::GET, &format!("/api/workshops/{id}/seats"), None)
        .await;
    let on_a = v["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .filter(|x| x["agent_id"] == "ag-a")
        .count();
    assert_eq!(on_a, 3);
    let route = s.state.seat_route(id, 1).await.expect("route");
    assert!(route.data_url.starts_with("http://127.0.0.1:9/"));
    assert!(
        !format!("{route:?}").contains("data-ag"),
        "data token redacted in Debug"
    );
    s.shutdown().await;
}
