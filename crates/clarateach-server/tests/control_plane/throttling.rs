//! Join throttling as a client sees it: by IPv6 /64, a class behind one NAT, reconnect-code
//! budgets, `X-Forwarded-For` only from trusted proxies, and counters that survive a restart.
//! Client addresses other than loopback are simulated through a trusted proxy (the test
//! client on 127.0.0.1 plays it); TEST-NET and documentation ranges only, nothing is sent.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::TestServer;

async fn behind_proxy(dir: &Path) -> TestServer {
    TestServer::start_in(dir, |c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().expect("cidr")];
    })
    .await
}

async fn join_from(s: &TestServer, forwarded: &str, body: Value) -> (StatusCode, Value) {
    let res = s
        .http
        .post(s.url("/api/join"))
        .header("x-forwarded-for", forwarded)
        .json(&body)
        .send()
        .await
        .expect("join");
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn addresses_in_one_slash_64_share_a_budget() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = behind_proxy(&tmp.path().join("d")).await;
    let (w, _agent) = s.running_workshop(2).await;
    for i in 0..10 {
        let (st, _) = join_from(
            &s,
            &format!("2001:db8:1:2::{:x}", i % 2 + 1),
            json!({"code": "CLAUDE-ZZZZ"}),
        )
        .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
    let (st, v) = join_from(&s, "2001:db8:1:2:abcd::9", json!({"code": w["code"]})).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("too_many_attempts")),
        "another address of the same /64, even with the right code"
    );
    let (st, v) = join_from(&s, "2001:db8:1:3::1", json!({"code": w["code"]})).await;
    assert_eq!(st, StatusCode::OK, "the next /64 is someone else: {v}");
}

#[tokio::test]
async fn a_class_behind_one_nat_is_not_locked_out_by_typos() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = behind_proxy(&tmp.path().join("d")).await;
    let (w, _agent) = s.running_workshop(30).await;
    let code = w["code"].as_str().expect("code");
    let nat = "203.0.113.77";
    let mut joined = 0;
    let mut typos = 0;
    for learner in 0..30 {
        if learner % 2 == 1 {
            // Every other learner mistypes first: 15 typos, over the address's budget of 10.
            let (st, v) = join_from(&s, nat, json!({"code": "CLAUDE-QQQQ"})).await;
            assert_eq!(st, StatusCode::NOT_FOUND, "typo {learner}: {v}");
            typos += 1;
        }
        let (st, v) = join_from(&s, nat, json!({"code": code})).await;
        assert_eq!(st, StatusCode::OK, "learner {learner}: {v}");
        joined += 1;
    }
    assert_eq!((joined, typos), (30, 15));
    // A lone guesser elsewhere still has only the address budget.
    for _ in 0..10 {
        join_from(&s, "198.51.100.3", json!({"code": "CLAUDE-QQQQ"})).await;
    }
    let (st, _) = join_from(&s, "198.51.100.3", json!({"code": "CLAUDE-QQQR"})).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn reconnect_codes_have_their_own_budget() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = TestServer::start_in(&tmp.path().join("d"), |c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().expect("cidr")];
        c.workshop_reconnect_failures_per_minute = 15;
    })
    .await;
    let (w, _agent) = s.running_workshop(3).await;
    let code = w["code"].as_str().expect("code");
    let (_, mine) = join_from(&s, "198.51.100.10", json!({"code": code})).await;
    for i in 0..10 {
        let (st, _) = join_from(
            &s,
            "198.51.100.20",
            json!({"code": code, "odehash": format!("zzzz{}", i % 7 + 2)}),
        )
        .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
    let (st, _) = join_from(
        &s,
        "198.51.100.20",
        json!({"code": code, "odehash": mine["odehash"]}),
    )
    .await;
    assert_eq!(
        st,
        StatusCode::TOO_MANY_REQUESTS,
        "the guesser is out of reconnects"
    );
    let (st, v) = join_from(&s, "198.51.100.20", json!({"code": code})).await;
    assert_eq!(st, StatusCode::OK, "but join codes are another budget: {v}");
    // Many addresses guessing one workshop's codes share its budget (15 here).
    for i in 0..5 {
        join_from(
            &s,
            &format!("198.51.100.{}", 30 + i),
            json!({"code": code, "odehash": "zzzzz"}),
        )
        .await;
    }
    let (st, _) = join_from(
        &s,
        "198.51.100.99",
        json!({"code": code, "odehash": "yyyyy"}),
    )
    .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    // Untrusted peer: X-Forwarded-For is ignored, so rotating it does not reset the budget.
    let s = TestServer::start().await;
    for i in 0..10 {
        let (st, _) = join_from(
            &s,
            &format!("198.51.100.{i}"),
            json!({"code": "CLAUDE-ZZZZ"}),
        )
        .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
    let (st, _) = join_from(&s, "198.51.100.200", json!({"code": "CLAUDE-ZZZZ"})).await;
    assert_eq!(
        st,
        StatusCode::TOO_MANY_REQUESTS,
        "the header is not believed"
    );

    // Trusted proxy: the rightmost hop it appended counts; what the client wrote on the left
    // (spoofed, rotating) does not.
    let tmp = tempfile::tempdir().expect("tmp");
    let s = behind_proxy(&tmp.path().join("d")).await;
    for i in 0..10 {
        let (st, _) = join_from(
            &s,
            &format!("192.0.2.{i}, 203.0.113.5"),
            json!({"code": "CLAUDE-ZZZZ"}),
        )
        .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
    let (st, _) = join_from(
        &s,
        "192.0.2.99, 203.0.113.5",
        json!({"code": "CLAUDE-ZZZZ"}),
    )
    .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    let (st, _) = join_from(&s, "203.0.113.6", json!({"code": "CLAUDE-ZZZZ"})).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "another client behind the proxy");
}

#[tokio::test]
async fn the_limiter_survives_a_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("d");
    let s = TestServer::start_in(&dir, |_| {}).await;
    for _ in 0..10 {
        let (st, _, _) = s.join(json!({"code": "CLAUDE-ZZZZ"})).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
    s.shutdown().await;
    let s = TestServer::start_in(&dir, |_| {}).await;
    let (st, v, retry) = s.join(json!({"code": "CLAUDE-ZZZZ"})).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(retry.is_some());
}
