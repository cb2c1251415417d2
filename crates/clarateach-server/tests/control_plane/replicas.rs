//! Two control-plane replicas on one PostgreSQL database (issue 13): state written through one
//! is served by the other, and when one dies its agent (re-registering, as the real agent's
//! failover does: see the agent crate's `fails_over_to_the_next_control_plane_replica`) and its
//! learners carry on through the other. SQLite runs print SKIP: replicas need PostgreSQL.

use std::time::{Duration, Instant};

use clarateach_server::issue_bound_agent_token;
use clarateach_server::testing::ProtocolAgent;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{on_postgres, TestServer};

async fn registered(s: &TestServer, id: &str) -> bool {
    s.state
        .provisioner()
        .agents()
        .await
        .iter()
        .any(|a| a.agent_id == id)
}

#[tokio::test]
async fn killing_a_replica_loses_nothing_and_its_agent_and_learners_go_on_through_the_other() {
    if !on_postgres() {
        let line = "SKIP: replicas test: needs CLARATEACH_TEST_DATABASE_URL (PostgreSQL)";
        eprintln!("{line}");
        println!("{line}");
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    // One data dir for both: the same database URL file and the same jwt/secret/CA key files,
    // as an operator copies them to every replica.
    let dir = tmp.path().join("data");
    let a = TestServer::start_in(&dir, |_| {}).await;
    let b = TestServer::start_in(&dir, |_| {}).await;
    assert_ne!(a.base, b.base);

    let token = issue_bound_agent_token(a.state.store(), "ag-rep")
        .await
        .expect("agent token");
    let agent = ProtocolAgent::connect(&a.base, &token, "ag-rep", 50)
        .await
        .expect("agent connects to A");
    for _ in 0..200 {
        if registered(&a, "ag-rep").await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(registered(&a, "ag-rep").await);

    // Created and started through A, seen running through B.
    let w = a.create(json!({"name": "Replicas", "seats": 4})).await;
    let id = w["id"].as_str().expect("id").to_string();
    let (st, v) = a
        .call(Method::POST, &format!("/api/workshops/{id}/start"), None)
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    b.wait_status(&id, "running").await;

    // Learners join through both replicas; seats are distinct (one claim per seat across them).
    let mut joined = Vec::new();
    for (i, s) in [&b, &a, &b].into_iter().enumerate() {
        let (st, v, _) = s
            .join(json!({"code": w["code"], "name": format!("L{i}")}))
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        joined.push(v);
    }
    let mut seats: Vec<u64> = joined
        .iter()
        .map(|v| v["seat"].as_u64().expect("seat"))
        .collect();
    seats.sort_unstable();
    assert_eq!(seats, vec![1, 2, 3]);

    // kill -9 A: its listener and the agent's connection to it die at once.
    let _ = a.kill();
    agent.disconnect();
    let killed = Instant::now();
    let again = ProtocolAgent::connect(&b.base, &token, "ag-rep", 50)
        .await
        .expect("agent connects to B");
    while !registered(&b, "ag-rep").await {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "agent not re-registered on B"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "agent re-registered on B {:?} after A died",
        killed.elapsed()
    );
    // B hands the agent its seats back (from the database) and they are ready again.
    assert_eq!(again.received_specs().len(), 4, "every seat re-sent by B");

    // Every learner carries on through B: tokens from A and B are valid, reconnect codes give
    // the same seats, nothing was lost.
    for v in &joined {
        let t = v["token"].as_str().expect("token");
        assert_eq!(b.me(t).await, StatusCode::OK);
        let (st, back, _) = b
            .join(json!({"code": w["code"], "odehash": v["odehash"]}))
            .await;
        assert_eq!(
            (st, back["seat"].clone()),
            (StatusCode::OK, v["seat"].clone())
        );
    }
    let (st, list) = b
        .call(Method::GET, &format!("/api/workshops/{id}/seats"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let names: Vec<_> = list["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names.len(), 3, "{list}");
    let (st, v, _) = b.join(json!({"code": w["code"], "name": "late"})).await;
    assert_eq!((st, v["seat"].as_u64()), (StatusCode::OK, Some(4)));
    b.shutdown().await;
    drop(tmp);
}
