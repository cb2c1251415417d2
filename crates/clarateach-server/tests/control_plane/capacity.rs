//! Capacity counts memory and CPU, not only seat slots (issue 13): each seat reserves its
//! workshop's limits on its agent, a workshop spreads over agents as one fills, and a seat
//! beyond what every agent has left is refused with a message naming the resource.

use clarateach_server::issue_bound_agent_token;
use clarateach_server::testing::ProtocolAgent;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::TestServer;

async fn small_agent(s: &TestServer, id: &str, memory_mb: u64) -> ProtocolAgent {
    let token = issue_bound_agent_token(s.state.store(), id)
        .await
        .expect("agent token");
    // 50 slots and 16 CPUs: only memory can bind.
    let agent = ProtocolAgent::connect_with_resources(&s.base, &token, id, 50, memory_mb, 16_000)
        .await
        .expect("agent connects");
    for _ in 0..200 {
        if s.state
            .registry()
            .list()
            .await
            .iter()
            .any(|a| a.agent_id == id)
        {
            return agent;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("agent {id} never registered");
}

async fn start(s: &TestServer, id: &str) -> (StatusCode, Value) {
    s.call(Method::POST, &format!("/api/workshops/{id}/start"), None)
        .await
}

#[tokio::test]
async fn a_workshop_spreads_over_agents_by_memory_and_a_seat_beyond_both_is_refused() {
    let tmp = tempfile::tempdir().expect("temp dir");
    // No overcommit: a seat of 512 MiB needs 512 MiB of the agent's reported memory.
    let s = TestServer::start_in(&tmp.path().join("data"), |c| c.memory_overcommit = 1.0).await;
    // Each agent has room for one 512 MiB seat (768 MiB), though 50 slots.
    let _a = small_agent(&s, "ag-mem-a", 768).await;
    let _b = small_agent(&s, "ag-mem-b", 768).await;

    let limits = json!({"memory_mb": 512});
    let w = s
        .create(json!({"name": "Spread", "seats": 2, "limits": limits}))
        .await;
    let id = w["id"].as_str().expect("id").to_string();
    let (st, v) = start(&s, &id).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    s.wait_status(&id, "running").await;
    let (st, list) = s
        .call(Method::GET, &format!("/api/workshops/{id}/seats"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let mut hosts: Vec<&str> = list["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .filter_map(|x| x["agent_id"].as_str())
        .collect();
    hosts.sort_unstable();
    assert_eq!(
        hosts,
        vec!["ag-mem-a", "ag-mem-b"],
        "one seat on each: {list}"
    );

    // A third seat (another workshop's) fits on neither: refused, naming memory, and the
    // workshop stays as it was.
    let third = s
        .create(json!({"name": "Third", "seats": 1, "limits": limits}))
        .await;
    let third_id = third["id"].as_str().expect("id").to_string();
    let (st, v) = start(&s, &third_id).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("no_capacity")),
        "{v}"
    );
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("memory (512 MiB reserved per seat)"),
        "{message}"
    );
    assert!(message.contains("room for 0"), "{message}");
    assert_eq!(s.workshop(&third_id).await["status"], "created");

    // A smaller seat still fits in what is left (256 of 768 on each).
    let tiny = s
        .create(json!({"name": "Tiny", "seats": 2, "limits": {"memory_mb": 256}}))
        .await;
    let tiny_id = tiny["id"].as_str().expect("id").to_string();
    let (st, v) = start(&s, &tiny_id).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    s.wait_status(&tiny_id, "running").await;

    // Stopping the first workshop frees its memory: the third now starts.
    let (st, v) = s
        .call(Method::POST, &format!("/api/workshops/{id}/stop"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.wait_status(&id, "stopped").await;
    let (st, v) = start(&s, &third_id).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    s.wait_status(&third_id, "running").await;
    s.shutdown().await;
}
