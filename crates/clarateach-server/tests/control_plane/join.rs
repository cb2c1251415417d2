//! Joining: the 200-learner race, reconnect codes, refusals and throttling.

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_racing_joins_fill_ten_seats_exactly() {
    let s = Arc::new(TestServer::start().await);
    let (w, _agent) = s.running_workshop(10).await;
    let code = w["code"].as_str().expect("code").to_string();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let s = s.clone();
            let code = code.clone();
            tokio::spawn(async move {
                s.join(json!({"code": code, "name": format!("learner {i}")}))
                    .await
            })
        })
        .collect();
    let mut seats = Vec::new();
    let mut refusals: BTreeMap<(u16, String), usize> = BTreeMap::new();
    for t in tasks {
        let (status, v, _) = t.await.expect("task");
        if status == StatusCode::OK {
            seats.push(v["seat"].as_u64().expect("seat"));
        } else {
            *refusals
                .entry((
                    status.as_u16(),
                    v["code"].as_str().unwrap_or("?").to_string(),
                ))
                .or_default() += 1;
        }
    }
    seats.sort_unstable();
    assert_eq!(seats, (1..=10).collect::<Vec<u64>>());
    assert_eq!(
        refusals,
        BTreeMap::from([((409, "workshop_full".to_string()), 190)])
    );
    let w = s.workshop(w["id"].as_str().expect("id")).await;
    assert_eq!(w["seats_joined"], 10);
}

#[tokio::test]
async fn reconnect_code_returns_same_seat_with_fresh_token() {
    let s = TestServer::start().await;
    let (w, _agent) = s.running_workshop(3).await;
    let code = w["code"].as_str().expect("code");
    let (st, first, _) = s.join(json!({"code": code, "name": "Ada"})).await;
    assert_eq!(st, StatusCode::OK, "{first}");
    assert!(first["endpoint"]
        .as_str()
        .expect("endpoint")
        .ends_with("/api/session"));
    let odehash = first["odehash"].as_str().expect("odehash");
    assert_eq!(odehash.len(), 5);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // a new `iat`
                                                                      // Typed sloppily: lower case, spaces, upper-case reconnect code.
    let sloppy = code.to_lowercase().replace('-', " - ");
    let (st, again, _) = s
        .join(json!({"code": sloppy, "odehash": odehash.to_uppercase()}))
        .await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(again["seat"], first["seat"]);
    assert_eq!(again["odehash"], first["odehash"]);
    assert_ne!(again["token"], first["token"]);
    assert_eq!(
        s.me(again["token"].as_str().expect("token")).await,
        StatusCode::OK
    );
    // The bare 4-character suffix works too.
    let (st, other, _) = s.join(json!({"code": &code[7..]})).await;
    assert_eq!(st, StatusCode::OK);
    assert_ne!(other["seat"], first["seat"]);

    let (_, v) = s
        .call(
            Method::GET,
            &format!("/api/workshops/{}/seats", w["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(v["seats"][0]["name"], "Ada");
    assert_eq!(v["seats"][0]["joined"], true);

    let (st, v, _) = s.join(json!({"code": code, "odehash": "zzzzz"})).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (st, v, _) = s.join(json!({"code": "CLAUDE-0000"})).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("workshop_not_found"))
    );
}

#[tokio::test]
async fn join_refused_while_not_running() {
    let s = TestServer::start().await;
    let w = s.create(json!({"name": "Later", "seats": 2})).await;
    let (st, v, _) = s.join(json!({"code": w["code"]})).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("workshop_not_running"))
    );
}

/// A join remembers its workshop's code; stopping and deleting the workshop must still refuse
/// the next join with the right code, never hand out a seat of a stopped workshop.
#[tokio::test]
async fn join_after_stop_and_delete_is_refused() {
    let s = TestServer::start().await;
    let (w, _agent) = s.running_workshop(3).await;
    let (id, code) = (
        w["id"].as_str().expect("id"),
        w["code"].as_str().expect("code"),
    );
    let (st, v, _) = s.join(json!({"code": code})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s
        .call(Method::POST, &format!("/api/workshops/{id}/stop"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v, _) = s.join(json!({"code": code})).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("workshop_not_running"))
    );
    let (st, _) = s
        .call(Method::DELETE, &format!("/api/workshops/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v, _) = s.join(json!({"code": code})).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("workshop_not_found"))
    );
}

#[tokio::test]
async fn failed_guesses_are_throttled_per_address() {
    let s = TestServer::start().await;
    let (w, _agent) = s.running_workshop(2).await;
    for i in 0..10 {
        let (st, _, _) = s
            .join(json!({"code": format!("CLAUDE-ZZZ{}", i % 8 + 2)}))
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
    let (st, v, retry) = s.join(json!({"code": "CLAUDE-ZZZZ"})).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("too_many_attempts"))
    );
    let retry: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&retry));
    // Even the right code waits now: guessing must not pay off.
    let (st, _, _) = s.join(json!({"code": w["code"]})).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    let (_, metrics) = (
        0,
        s.http
            .get(s.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text"),
    );
    assert!(
        metrics.contains("clarateach_joins_total{outcome=\"too_many_attempts\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("clarateach_joins_total{outcome=\"workshop_not_found\"} 10"));
}
