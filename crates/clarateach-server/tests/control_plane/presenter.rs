//! Announcements and the spotlight over the API: validation, what a learner's own stream shows
//! (`GET /api/session/events` and `/api/session/spotlight` as JSON), dismiss and stop, and the
//! workshop's stop clearing both. Recordings' names are checked before an agent is asked.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::TestServer;
use crate::screens::{running_with, screen_data_path, Versions};

#[tokio::test]
async fn announcements_and_spotlight_reach_the_learners_stream() {
    let s = TestServer::start().await;
    let data_url = screen_data_path(Versions::default()).await;
    let id = running_with(&s, 2, &data_url).await;
    let code = s.workshop(&id).await["code"]
        .as_str()
        .expect("code")
        .to_string();
    let (st, v, _) = s.join(json!({"code": code})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let learner = v["token"].as_str().expect("token").to_string();
    let path = format!("/api/workshops/{id}/announcements");

    for bad in [
        json!({"message": "   "}),
        json!({"message": "x".repeat(501)}),
    ] {
        let (st, v) = s.call(Method::POST, &path, Some(bad)).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["code"], "validation_failed");
    }
    let (st, v) = s
        .call(
            Method::POST,
            &path,
            Some(json!({"message": " Break \u{1b}[2J until 11 "})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let an = v["id"].as_str().expect("id").to_string();
    assert!(
        !v["message"].as_str().unwrap_or("").contains('\u{1b}'),
        "{v}"
    );

    let spot = format!("/api/workshops/{id}/spotlight");
    for (bad, want) in [
        (json!({"seat": 0}), StatusCode::NOT_FOUND),
        (json!({"seat": 3}), StatusCode::NOT_FOUND),
        (
            json!({"seat": 1, "session": "../x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (st, v) = s.call(Method::PUT, &spot, Some(bad.clone())).await;
        assert_eq!(st, want, "{bad}: {v}");
    }
    let (st, v) = s.call(Method::PUT, &spot, Some(json!({"seat": 2}))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["spotlight"]["session"], "main");

    let (st, v) = s
        .call_as(&learner, Method::GET, "/api/session/events", None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v[0]["type"], "announcements");
    assert_eq!(v[0]["announcements"][0]["id"], an.as_str());
    assert_eq!(v[1]["spotlight"]["seat"], 2);
    let (st, v) = s
        .call_as(&learner, Method::GET, "/api/session/spotlight", None)
        .await;
    assert_eq!(
        (st, v["spotlight"]["seat"].as_u64()),
        (StatusCode::OK, Some(2))
    );

    let (st, _) = s.call(Method::DELETE, &format!("{path}/{an}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s.call(Method::DELETE, &format!("{path}/{an}"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.call(Method::DELETE, &spot, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, v) = s
        .call_as(&learner, Method::GET, "/api/session/events", None)
        .await;
    assert_eq!(v[0]["announcements"], json!([]));
    assert!(v[1]["spotlight"].is_null(), "{v}");

    // A recording name that is not one the agent writes is refused before any agent is asked.
    for name in ["..%2Fx-1.cast", "main.cast", "main-1.txt"] {
        let (st, v) = s
            .call(
                Method::GET,
                &format!("/api/workshops/{id}/seats/1/recordings/{name}"),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{name}: {v}");
    }

    // Stopping the workshop clears what was presented.
    s.call(Method::POST, &path, Some(json!({"message": "bye"})))
        .await;
    s.call(Method::POST, &format!("/api/workshops/{id}/stop"), None)
        .await;
    let (_, v) = s.call(Method::GET, &path, None).await;
    assert_eq!(v["announcements"], json!([]), "{v}");
}

/// Announcements and the spotlight are in the store: a control-plane restart (a new server on
/// the same data dir and database) still shows them to the learner, through the snapshot of
/// the event stream and the Presenter tab's route, and to the instructor.
#[tokio::test]
async fn announcements_and_spotlight_survive_a_restart() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let s = TestServer::start_in(&dir, |_| {}).await;
    let (w, agent) = s.running_workshop(2).await;
    let id = w["id"].as_str().expect("id").to_string();
    let code = w["code"].as_str().expect("code").to_string();
    let (st, v, _) = s.join(json!({"code": code})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let learner = v["token"].as_str().expect("token").to_string();
    let (st, an) = s
        .call(
            Method::POST,
            &format!("/api/workshops/{id}/announcements"),
            Some(json!({"message": "Break until 11"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{an}");
    let (st, v) = s
        .call(
            Method::PUT,
            &format!("/api/workshops/{id}/spotlight"),
            Some(json!({"seat": 2})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    drop(agent);
    s.shutdown().await;

    let s = TestServer::start_in(&dir, |_| {}).await;
    let (st, v) = s
        .call_as(&learner, Method::GET, "/api/session/events", None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v[0]["announcements"][0]["id"], an["id"], "{v}");
    assert_eq!(v[0]["announcements"][0]["message"], "Break until 11");
    assert_eq!(
        v[0]["announcements"][0]["created_at"], an["created_at"],
        "the same announcement"
    );
    assert_eq!(v[1]["spotlight"]["seat"], 2, "{v}");
    let (st, v) = s
        .call_as(&learner, Method::GET, "/api/session/spotlight", None)
        .await;
    assert_eq!(
        (st, v["spotlight"]["seat"].as_u64()),
        (StatusCode::OK, Some(2)),
        "{v}"
    );
    let (_, v) = s
        .call(
            Method::GET,
            &format!("/api/workshops/{id}/announcements"),
            None,
        )
        .await;
    assert_eq!(v["announcements"][0]["id"], an["id"], "{v}");

    s.shutdown().await;
}
