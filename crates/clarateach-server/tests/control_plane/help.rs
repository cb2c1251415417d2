//! The help queue: a learner asks (the control plane adds cwd and last commands from the seat's
//! screen), sees their place; the instructor lists, claims ("someone is coming") and resolves.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::TestServer;
use crate::screens::{running_with, screen_data_path, Versions};

#[tokio::test]
async fn ask_list_claim_resolve_with_the_seats_context() {
    let s = TestServer::start().await;
    let data_url = screen_data_path(Versions::default()).await;
    let id = running_with(&s, 3, &data_url).await;
    let code = s.workshop(&id).await["code"]
        .as_str()
        .expect("code")
        .to_string();
    let mut learners = Vec::new();
    for name in ["Ada", "Bob"] {
        let (st, v, _) = s.join(json!({"code": code, "name": name})).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        learners.push(v["token"].as_str().expect("token").to_string());
    }
    let (st, v) = s
        .call_as(&learners[0], Method::GET, "/api/session/help", None)
        .await;
    assert_eq!((st, v["request"].is_null()), (StatusCode::OK, true), "{v}");

    let (st, v) = s
        .call_as(
            &learners[0],
            Method::POST,
            "/api/session/help",
            Some(json!({"message": "  make fails \u{1b}[2J ", "open_file": "src/main.c"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["position"], 1);
    let r = &v["request"];
    assert_eq!(
        r["message"], "make fails  [2J",
        "trimmed, controls replaced"
    );
    assert_eq!(r["cwd"], "/workspace", "from the seat's screen");
    assert_eq!(r["commands"][0]["command"], "make");
    assert_eq!(r["commands"][0]["exit_code"], 2);
    assert_eq!(r["open_file"], "src/main.c");
    assert_eq!(r["name"], "Ada");
    let first_id = r["id"].as_str().expect("id").to_string();

    // Asking again does not file a second request nor jump the queue.
    let (st, v) = s
        .call_as(
            &learners[0],
            Method::POST,
            "/api/session/help",
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["request"]["id"], first_id.as_str());

    let (st, v) = s
        .call_as(
            &learners[1],
            Method::POST,
            "/api/session/help",
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(v["position"], 2);
    assert!(v["request"]["message"].is_null());

    let (st, v) = s
        .call(Method::GET, &format!("/api/workshops/{id}/help"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let names: Vec<&str> = v["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["Ada", "Bob"], "longest waiting first");

    let (st, v) = s
        .call(
            Method::POST,
            &format!("/api/workshops/{id}/help/{first_id}/claim"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "claimed");
    let (_, v) = s
        .call_as(&learners[0], Method::GET, "/api/session/help", None)
        .await;
    assert_eq!(
        v["request"]["status"], "claimed",
        "the learner sees someone is coming"
    );
    assert!(v["position"].is_null());
    let (_, v) = s
        .call_as(&learners[1], Method::GET, "/api/session/help", None)
        .await;
    assert_eq!(v["position"], 1, "Bob moves up once Ada's is claimed");

    let (st, _) = s
        .call(
            Method::POST,
            &format!("/api/workshops/{id}/help/{first_id}/resolve"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(
            Method::POST,
            &format!("/api/workshops/{id}/help/{first_id}/resolve"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "resolved once");
    let (_, v) = s
        .call(Method::GET, &format!("/api/workshops/{id}/help"), None)
        .await;
    assert_eq!(v["requests"].as_array().map(Vec::len), Some(1));

    // A learner cannot read the queue or claim; another instructor sees nothing of it.
    let (st, _) = s
        .call_as(
            &learners[1],
            Method::GET,
            &format!("/api/workshops/{id}/help"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let other = clarateach_server::accounts::create_instructor(s.state.store(), "other")
        .await
        .expect("instructor");
    let (st, _) = s
        .call_as(
            &other,
            Method::GET,
            &format!("/api/workshops/{id}/help"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Bad input is a JSON error (422 validation_failed, as elsewhere), not a 500.
    let (st, v) = s
        .call_as(
            &learners[1],
            Method::POST,
            "/api/session/help",
            Some(json!({"message": 5})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "validation_failed");
}
