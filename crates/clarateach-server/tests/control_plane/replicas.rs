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

/// Whether `s` itself holds agent `id`'s session (its list also shows the agents other
/// replicas hold, from their presence rows).
async fn registered(s: &TestServer, id: &str) -> bool {
    s.state
        .registry()
        .list_local()
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
    // B hands the agent its seats back (from the database) and they are ready again; the
    // `registered` message follows B's bookkeeping by a moment.
    while again.received_specs().len() < 4 {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "every seat re-sent by B: {}",
            again.received_specs().len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "B sent the agent its 4 seats {:?} after A died",
        killed.elapsed()
    );

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

/// A stand-in for an agent's data path: records each request's head and answers `[]`.
async fn recording_data_path() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                if let Ok(mut v) = log.lock() {
                    v.push(head);
                }
                let resp = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                            Content-Length: 2\r\nConnection: close\r\n\r\n[]";
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}/agent"), seen)
}

async fn seat_states(s: &TestServer, id: &str) -> Vec<String> {
    let (st, list) = s
        .call(Method::GET, &format!("/api/workshops/{id}/seats"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{list}");
    list["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|x| x["state"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn commands_and_seat_traffic_through_one_replica_reach_an_agent_held_by_the_other() {
    if !on_postgres() {
        clarateach_core::skip::report(
            "commands_and_seat_traffic_through_one_replica_reach_an_agent_held_by_the_other",
            "needs CLARATEACH_TEST_DATABASE_URL (PostgreSQL)",
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let a = TestServer::start_in(&dir, |_| {}).await;
    let b = TestServer::start_in(&dir, |_| {}).await;
    let (data_url, seen) = recording_data_path().await;
    let token = issue_bound_agent_token(a.state.store(), "ag-held-by-a")
        .await
        .expect("agent token");
    let agent =
        ProtocolAgent::connect_with_data_url(&a.base, &token, "ag-held-by-a", 10, &data_url)
            .await
            .expect("agent connects to A");
    // B lists it (from A's presence row), held by another replica.
    let mut held_by = None;
    for _ in 0..300 {
        held_by = b
            .state
            .registry()
            .list()
            .await
            .into_iter()
            .find(|x| x.agent_id == "ag-held-by-a")
            .map(|x| x.held_by);
        if held_by.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        matches!(held_by, Some(Some(_))),
        "B sees A's agent: {held_by:?}"
    );
    assert!(b.state.registry().list_local().await.is_empty());

    // Created and started through B: B places the seats on A's agent and A delivers the
    // create_seat commands (the agent reports ready to A; B sees it in the store).
    let w = b.create(json!({"name": "Across", "seats": 2})).await;
    let id = w["id"].as_str().expect("id").to_string();
    let began = Instant::now();
    let (st, v) = b
        .call(Method::POST, &format!("/api/workshops/{id}/start"), None)
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    b.wait_status(&id, "running").await;
    println!(
        "start through B -> running on A's agent: {:?}",
        began.elapsed()
    );
    assert_eq!(
        agent.received_specs().len(),
        2,
        "both create_seat commands arrived"
    );

    // A learner joined through B reaches the seat's data path through B's gateway, with the
    // agent's data token (from A's sealed presence row).
    let (st, joined, _) = b.join(json!({"code": w["code"], "name": "Bo"})).await;
    assert_eq!(st, StatusCode::OK, "{joined}");
    let learner = joined["token"].as_str().expect("token").to_string();
    let res = b
        .http
        .get(b.url("/api/session/files"))
        .bearer_auth(&learner)
        .send()
        .await
        .expect("files");
    assert_eq!(res.status(), StatusCode::OK);
    let heads = seen.lock().map(|v| v.clone()).unwrap_or_default();
    let seat = joined["seat"].as_u64().expect("seat");
    assert!(
        heads
            .iter()
            .any(|h| h.contains(&format!("/agent/seats/{id}/{seat}/files"))
                && h.to_ascii_lowercase()
                    .contains("authorization: bearer data-ag-held-by-a")),
        "{heads:?}"
    );

    // A remembers the code too (a join through A)...
    let (st, v, _) = a.join(json!({"code": w["code"], "name": "Al"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // Pause and resume through B reach the agent (it reports paused, then ready).
    let (st, v) = b
        .call(Method::POST, &format!("/api/workshops/{id}/pause"), None)
        .await;
    assert!(st.is_success(), "{st} {v}");
    assert_eq!(seat_states(&b, &id).await, vec!["paused", "paused"]);
    let (st, v) = b
        .call(Method::POST, &format!("/api/workshops/{id}/resume"), None)
        .await;
    assert!(st.is_success(), "{st} {v}");
    assert_eq!(seat_states(&b, &id).await, vec!["ready", "ready"]);

    // Stop through B: the destroy commands reach the agent, whose reports end the stop (the
    // seats are destroyed, not lost for want of an answer).
    let (st, v) = b
        .call(Method::POST, &format!("/api/workshops/{id}/stop"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    b.wait_status(&id, "stopped").await;
    assert_eq!(seat_states(&b, &id).await, vec!["destroyed", "destroyed"]);
    // ...and after the stop through B, A's remembered code gets no one in.
    let (st, v, _) = a.join(json!({"code": w["code"], "name": "late"})).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("workshop_not_running")),
        "{v}"
    );
    drop(agent);
    a.shutdown().await;
    b.shutdown().await;
    drop(tmp);
}
