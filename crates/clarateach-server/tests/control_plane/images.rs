//! Seat images on the control plane (issue 11): `GET /api/images` lists what the connected
//! agents built; a workshop's seats are placed only on agents that have its image (a roomier
//! agent without it gets none, and when the agents with it are full the start is refused naming
//! the image); a learner of a template's workshop gets its README from `GET /api/me`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::TestServer;

#[tokio::test]
async fn image_seats_go_only_where_the_image_is_and_the_learner_gets_the_readme() {
    let s = TestServer::start().await;
    let _plain = s.agent("ag-plain", 50).await;
    let _claude = s.agent_with_images("ag-claude", 2, &["claude"]).await;

    let (status, v) = s.call(Method::GET, "/api/images", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["images"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["images"][0]["name"], "claude");
    assert_eq!(v["images"][0]["agents"], json!(["ag-claude"]));
    assert_eq!(v["images"][0]["packages"], json!(["apt:claude-tools"]));

    let readme = "# Claude day\n\nRun `claude --version`.\n";
    let (status, v) = s
        .call(
            Method::POST,
            "/api/templates",
            Some(json!({"name": "claude-intro", "image": "claude", "readme": readme})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let w = s
        .create(json!({"name": "Claude day", "seats": 2, "template": "claude-intro"}))
        .await;
    assert_eq!(w["image"], "claude");
    let id = w["id"].as_str().expect("id").to_string();
    let (status, v) = s
        .call(Method::POST, &format!("/api/workshops/{id}/start"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let w = s.wait_status(&id, "running").await;
    let seats = s.state.store().list_seats(&id).await.expect("seats");
    assert_eq!(seats.len(), 2);
    assert!(
        seats
            .iter()
            .all(|x| x.agent_id.as_deref() == Some("ag-claude")),
        "every seat on the agent with the image, none on the roomier one: {seats:?}"
    );

    // The learner's README.
    let (status, joined, _) = s.join(json!({"code": w["code"]})).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let token = joined["token"].as_str().expect("token");
    let (status, me) = s.call_as(token, Method::GET, "/api/me", None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["readme"], readme);
    assert_eq!(me["template"], "claude-intro");
    // Instructors only: a learner token cannot list images.
    let (status, _) = s.call_as(token, Method::GET, "/api/images", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The agent with the image is full: a third seat is refused, naming the image, although
    // ag-plain has room (a seat there could only fail).
    let w2 = s
        .create(json!({"name": "More", "seats": 1, "image": "claude"}))
        .await;
    let id2 = w2["id"].as_str().expect("id");
    let (status, v) = s
        .call(Method::POST, &format!("/api/workshops/{id2}/start"), None)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["code"], "no_capacity");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"claude\"")),
        "{v}"
    );

    // A workshop without a template: no README, no template in `/api/me`.
    let w3 = s.create(json!({"name": "Plain", "seats": 1})).await;
    let id3 = w3["id"].as_str().expect("id").to_string();
    let (status, _) = s
        .call(Method::POST, &format!("/api/workshops/{id3}/start"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let w3 = s.wait_status(&id3, "running").await;
    let (_, joined, _) = s.join(json!({"code": w3["code"]})).await;
    let token = joined["token"].as_str().expect("token");
    let (_, me): (StatusCode, Value) = s.call_as(token, Method::GET, "/api/me", None).await;
    assert!(
        me.get("readme").is_none() && me.get("template").is_none(),
        "{me}"
    );
}
