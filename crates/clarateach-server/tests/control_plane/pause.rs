//! Pause, resume, the idle policy and scheduled starts through the API, with a protocol agent
//! that answers pause and resume like the real one (the real freeze is tested in the isolation
//! crate and end to end in the `clarateach` crate).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::TestServer;

fn states(v: &serde_json::Value) -> Vec<String> {
    v["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| s["state"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn learner_files(s: &TestServer, token: &str) -> (StatusCode, serde_json::Value) {
    s.call_as(token, Method::GET, "/api/session/files", None)
        .await
}

#[tokio::test]
async fn instructor_pause_locks_the_learner_out_until_resume() {
    let s = TestServer::start().await;
    let (w, _agent) = s.running_workshop(3).await;
    let id = w["id"].as_str().expect("id");
    let code = w["code"].as_str().expect("code");
    let (st, joined, _) = s.join(json!({"code": code})).await;
    assert_eq!(st, StatusCode::OK, "{joined}");
    let token = joined["token"].as_str().expect("token").to_string();
    let seat = joined["seat"].as_u64().expect("seat");

    let (st, v) = s
        .call(Method::POST, &format!("/api/workshops/{id}/pause"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(states(&v), vec!["paused"; 3]);
    let (st, v) = learner_files(&s, &token).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::LOCKED, Some("seat_paused")),
        "{v}"
    );
    assert!(v["message"]
        .as_str()
        .is_some_and(|m| m.contains("instructor")));
    // The workshop itself stays running; the grid shows the seats paused.
    assert_eq!(s.workshop(id).await["status"], "running");

    // One seat back.
    let (st, v) = s
        .call(
            Method::POST,
            &format!("/api/workshops/{id}/seats/{seat}/resume"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let st_of = |v: &serde_json::Value, n: u64| {
        v["seats"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["seat"] == n))
            .map(|x| x["state"].clone())
    };
    assert_eq!(st_of(&v, seat), Some(json!("ready")));
    assert_eq!(states(&v).iter().filter(|s| *s == "paused").count(), 2);
    // No longer refused as paused (this protocol agent has no data path: 502).
    let (st, v) = learner_files(&s, &token).await;
    assert_ne!(st, StatusCode::LOCKED, "{v}");
    assert_eq!(
        s.state.store().paused_by(id, seat as u32).await.expect("q"),
        None
    );

    let (st, v) = s
        .call(Method::POST, &format!("/api/workshops/{id}/resume"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(states(&v), vec!["ready"; 3]);

    // Bad input is answered, not panicked on.
    let (st, _) = s
        .call(
            Method::POST,
            &format!("/api/workshops/{id}/seats/99/pause"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .call_as(
            &token,
            Method::POST,
            &format!("/api/workshops/{id}/pause"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "a learner cannot pause");
    let created = s.create(json!({"name": "Later", "seats": 1})).await;
    let (st, v) = s
        .call(
            Method::POST,
            &format!(
                "/api/workshops/{}/pause",
                created["id"].as_str().expect("id")
            ),
            None,
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("workshop_not_running"))
    );
}

#[tokio::test]
async fn idle_seats_pause_and_the_learner_coming_back_resumes_them() {
    let s = TestServer::start().await;
    let (w, _agent) = s.running_workshop(2).await;
    let id = w["id"].as_str().expect("id");
    let (_, joined, _) = s.join(json!({"code": w["code"]})).await;
    let token = joined["token"].as_str().expect("token").to_string();
    let seat = joined["seat"].as_u64().expect("seat") as u32;

    let (st, v) = s
        .call(
            Method::PUT,
            &format!("/api/workshops/{id}/idle-policy"),
            Some(json!({"pause_after_minutes": 0})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (st, v) = s
        .call(
            Method::PUT,
            &format!("/api/workshops/{id}/idle-policy"),
            Some(json!({"pause_after_minutes": 10})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["workshop"]["idle_pause_minutes"], 10);

    // Recent activity: nothing happens.
    s.state
        .store()
        .touch_activity(id, seat, chrono::Utc::now())
        .await
        .expect("touch");
    clarateach_server::pause::idle_tick(&s.state)
        .await
        .expect("tick");
    let seat_state = |n: u32| {
        let st = s.state.clone();
        let id = id.to_string();
        async move {
            st.store()
                .get_seat(&id, n)
                .await
                .expect("q")
                .expect("seat")
                .state
                .as_str()
        }
    };
    assert_eq!(seat_state(seat).await, "ready");

    // Eleven minutes without input: paused by the policy.
    s.state
        .store()
        .touch_activity(id, seat, chrono::Utc::now() - chrono::Duration::minutes(11))
        .await
        .expect("touch");
    clarateach_server::pause::idle_tick(&s.state)
        .await
        .expect("tick");
    assert_eq!(seat_state(seat).await, "paused");
    assert_eq!(
        s.state.store().paused_by(id, seat).await.expect("q"),
        Some(clarateach_core::PauseReason::Idle)
    );
    // The seat nobody joined is idle only after the policy watched it for its minutes.
    let other = if seat == 1 { 2 } else { 1 };
    assert_eq!(seat_state(other).await, "ready");

    // The learner comes back: the request resumes the seat instead of being refused.
    let t = Instant::now();
    let (st, v) = learner_files(&s, &token).await;
    let back = t.elapsed();
    assert_ne!(st, StatusCode::LOCKED, "{v}");
    assert_eq!(seat_state(seat).await, "ready");
    assert!(back < Duration::from_secs(2), "resume took {back:?}");
    eprintln!("idle seat resumed by its learner's request in {back:?}");

    // Turned off: a null policy.
    let (st, v) = s
        .call(
            Method::PUT,
            &format!("/api/workshops/{id}/idle-policy"),
            Some(json!({"pause_after_minutes": null})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["workshop"].get("idle_pause_minutes").is_none());
}

/// The browser's return to an idle-paused seat is two requests close together: the join with
/// the reconnect code (which starts the thaw) and the terminal's upgrade. The second waits for
/// the resume the first started; it does not ask the agent again.
#[tokio::test]
async fn a_learner_coming_back_asks_the_agent_to_resume_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Slow heartbeats: the agent stays silent for a while below without being taken for lost.
    let s = TestServer::start_in(dir.path(), |c| {
        c.heartbeat_interval = Duration::from_secs(5)
    })
    .await;
    let (w, agent) = s.running_workshop(1).await;
    let id = w["id"].as_str().expect("id");
    let (_, joined, _) = s.join(json!({"code": w["code"]})).await;
    let odehash = joined["odehash"].as_str().expect("odehash").to_string();
    let seat = joined["seat"].as_u64().expect("seat") as u32;
    let (st, v) = s
        .call(
            Method::PUT,
            &format!("/api/workshops/{id}/idle-policy"),
            Some(json!({"pause_after_minutes": 10})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.state
        .store()
        .touch_activity(id, seat, chrono::Utc::now() - chrono::Duration::minutes(11))
        .await
        .expect("touch");
    clarateach_server::pause::idle_tick(&s.state)
        .await
        .expect("tick");
    let state_of = || async {
        s.state
            .store()
            .get_seat(id, seat)
            .await
            .expect("q")
            .expect("seat")
            .state
    };
    assert_eq!(state_of().await, clarateach_core::SeatState::Paused);

    // A slow thaw: the agent takes the resume but does not answer yet.
    agent.set_mode(clarateach_server::testing::Mode::Silent);
    let (st, again, _) = s.join(json!({"code": w["code"], "odehash": odehash})).await;
    assert_eq!(st, StatusCode::OK, "{again}");
    let token = again["token"].as_str().expect("token").to_string();
    let asked = Instant::now();
    while agent.resumes_received() == 0 && asked.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(agent.resumes_received(), 1, "the join started the thaw");
    // The terminal's upgrade meanwhile: it waits for that resume (which never comes here).
    let (st, v) = learner_files(&s, &token).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(
        agent.resumes_received(),
        1,
        "the second request waited for the resume under way instead of asking again"
    );

    // Once nothing is under way, a learner's request asks again, and the seat comes back.
    agent.set_mode(clarateach_server::testing::Mode::Normal);
    let (st, v) = learner_files(&s, &token).await;
    assert_ne!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_ne!(st, StatusCode::LOCKED, "{v}");
    assert_eq!(state_of().await, clarateach_core::SeatState::Ready);
    assert_eq!(agent.resumes_received(), 2);
}

#[tokio::test]
async fn a_start_in_the_past_starts_now_and_a_future_one_waits_across_a_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let tick = |c: &mut clarateach_server::ServerConfig| {
        c.schedule_tick = Duration::from_millis(50);
    };
    let s = TestServer::start_in(&dir, tick).await;
    let _agent = s.agent("ag-sched", 20).await;
    let past = s.create(json!({"name": "Past", "seats": 1})).await;
    let past_id = past["id"].as_str().expect("id").to_string();
    let (st, v) = s
        .call(
            Method::POST,
            &format!("/api/workshops/{past_id}/start"),
            Some(json!({"at": "2020-01-01T09:55:00Z"})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    s.wait_status(&past_id, "running").await;

    let (st, v) = s
        .call(
            Method::POST,
            &format!("/api/workshops/{past_id}/start"),
            Some(json!({"at": "tomorrow"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    let future = s.create(json!({"name": "Future", "seats": 2})).await;
    let id = future["id"].as_str().expect("id").to_string();
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let (st, v) = s
        .call(
            Method::POST,
            &format!("/api/workshops/{id}/start"),
            Some(json!({"at": at.to_rfc3339()})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["workshop"]["status"], "created");
    assert!(v["workshop"]["start_at"].is_string(), "{v}");
    // Restart before it is due: the schedule is in the store, not in memory.
    drop(_agent);
    let _ = s.shutdown().await;
    let s = TestServer::start_in(&dir, tick).await;
    let _agent = s.agent("ag-sched", 20).await;
    assert_eq!(s.workshop(&id).await["status"], "created");
    let mut started = None;
    for _ in 0..100 {
        let w = s.workshop(&id).await;
        if w["status"] != "created" {
            started = Some(chrono::Utc::now());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = started.expect("the scheduled start never happened");
    assert!(started >= at, "started before its time");
    let w = s.wait_status(&id, "running").await;
    assert!(
        w.get("start_at").is_none(),
        "start_at is cleared once started: {w}"
    );
}
