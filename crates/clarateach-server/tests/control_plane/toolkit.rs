//! Broadcast, checks and audit through the real control plane (issue 10). The seats' data path
//! is a stand-in holding each seat's files in memory and answering the daemon's files API and
//! `run` the way the daemon does (the daemon's own path confinement is tested in the workspace
//! crate; real sandboxes in `crates/clarateach/tests/toolkit_flow.rs`). What is checked here:
//! the three-way rule as seats see it, the bases kept host-side across broadcasts, the latest
//! results, the audit, and who may do what.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode as AxStatus;
use axum::response::IntoResponse;
use axum::routing::any;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::TestServer;
use crate::screens::running_with;

/// Files per seat.
type Seats = Arc<Mutex<HashMap<u32, BTreeMap<String, Vec<u8>>>>>;

async fn daemon(
    State(seats): State<Seats>,
    Path((_ws, seat, rest)): Path<(String, u32, String)>,
    Query(q): Query<HashMap<String, String>>,
    method: axum::http::Method,
    body: Bytes,
) -> axum::response::Response {
    let mut all = seats.lock().expect("seats");
    let files = all.entry(seat).or_default();
    if rest == "run" {
        let ok = files.contains_key("ok");
        let req: Value = serde_json::from_slice(&body).unwrap_or_default();
        let cmd = req["command"].as_str().unwrap_or("");
        return axum::Json(json!({
            "stdout": format!("seat {seat}: {}", cmd.lines().last().unwrap_or("")),
            "stderr": if ok { "" } else { "no ok file" },
            "exit_code": if ok { 0 } else { 1 },
            "timed_out": false, "duration_ms": 7, "truncated": false,
        }))
        .into_response();
    }
    if rest == "files" {
        let dir = q.get("path").cloned().unwrap_or_default();
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut names = std::collections::BTreeSet::new();
        for p in files.keys().filter_map(|p| p.strip_prefix(&prefix)) {
            let (name, is_dir) = match p.split_once('/') {
                Some((d, _)) => (d.to_string(), true),
                None => (p.to_string(), false),
            };
            names.insert((name, is_dir));
        }
        let list: Vec<Value> = names
            .into_iter()
            .map(|(name, is_dir)| {
                json!({"name": name, "path": format!("/{prefix}{name}"), "is_directory": is_dir,
                       "size": 0, "modified_at": "2026-12-01T10:00:00Z"})
            })
            .collect();
        return axum::Json(json!({ "files": list })).into_response();
    }
    if rest == "files-sync" {
        // The flush that ends a seat's batch of `X-Clarateach-Sync: later` writes.
        return axum::Json(json!({"success": true})).into_response();
    }
    let Some(path) = rest.strip_prefix("files/") else {
        return AxStatus::NOT_FOUND.into_response();
    };
    match method.as_str() {
        "GET" => match files.get(path) {
            Some(data) => axum::Json(json!({
                "content": String::from_utf8_lossy(data), "encoding": "utf-8"
            }))
            .into_response(),
            None => (
                AxStatus::NOT_FOUND,
                axum::Json(json!({"code": "not_found", "message": "no"})),
            )
                .into_response(),
        },
        "PUT" => {
            files.insert(path.to_string(), body.to_vec());
            axum::Json(json!({"success": true})).into_response()
        }
        _ => AxStatus::METHOD_NOT_ALLOWED.into_response(),
    }
}

async fn files_data_path(seats: Seats) -> String {
    let app = axum::Router::new()
        .route("/agent/seats/{ws}/{seat}/{*rest}", any(daemon))
        .with_state(seats);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/agent")
}

fn file_of(seats: &Seats, seat: u32, path: &str) -> Option<String> {
    let all = seats.lock().expect("seats");
    all.get(&seat)?
        .get(path)
        .map(|d| String::from_utf8_lossy(d).into_owned())
}

fn outcomes(report: &Value) -> Vec<(u64, String, String)> {
    let mut out = Vec::new();
    for s in report["seats"].as_array().expect("seats") {
        for f in s["files"].as_array().expect("files") {
            out.push((
                s["seat"].as_u64().unwrap_or(0),
                f["path"].as_str().unwrap_or("").to_string(),
                f["outcome"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out
}

const V1: &str = "def f():\n    return 1\n\n\n\ndef g():\n    pass\n";
const V2: &str = "def f():\n    return 1\n\n\n\ndef g():\n    return 'step 2'\n";

#[tokio::test]
async fn broadcast_merges_edits_and_keeps_conflicts_beside() {
    let s = TestServer::start().await;
    let seats: Seats = Arc::default();
    let data_url = files_data_path(seats.clone()).await;
    let id = running_with(&s, 3, &data_url).await;
    let code = s.workshop(&id).await["code"]
        .as_str()
        .expect("code")
        .to_string();
    let (_, v, _) = s.join(json!({"code": code})).await;
    let learner = v["token"].as_str().expect("token").to_string();
    let seat_of_learner = v["seat"].as_u64().expect("seat") as u32;
    let path = format!("/api/workshops/{id}/broadcast");

    let (st, r) = s
        .call(
            Method::POST,
            &path,
            Some(json!({"files": [{"path": "ex/step.py", "content": V1}]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert!(outcomes(&r).iter().all(|(_, _, o)| o == "written"), "{r}");
    assert_eq!(outcomes(&r).len(), 3);

    // Seat 1 edits another part, seat 2 the same line the next version changes, seat 3 nothing.
    let edit = |seat: u32, text: &str| {
        seats
            .lock()
            .expect("seats")
            .entry(seat)
            .or_default()
            .insert("ex/step.py".into(), text.as_bytes().to_vec());
    };
    edit(1, &V1.replace("return 1", "return 42  # mine"));
    edit(2, &V1.replace("    pass", "    return 'my own'"));
    let (st, r) = s
        .call(
            Method::POST,
            &path,
            Some(json!({"files": [{"path": "ex/step.py", "content": V2}]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let got = outcomes(&r);
    assert_eq!(
        got,
        [
            (1, "ex/step.py".into(), "merged".into()),
            (2, "ex/step.py".into(), "conflicted".into()),
            (3, "ex/step.py".into(), "written".into()),
        ],
        "{r}"
    );
    let merged = file_of(&seats, 1, "ex/step.py").expect("seat 1");
    assert!(
        merged.contains("return 42  # mine") && merged.contains("step 2"),
        "{merged}"
    );
    assert!(file_of(&seats, 2, "ex/step.py")
        .expect("kept")
        .contains("my own"));
    assert_eq!(file_of(&seats, 2, "ex/step.py.new").as_deref(), Some(V2));
    assert_eq!(r["seats"][1]["files"][0]["new_path"], "ex/step.py.new");
    assert_eq!(file_of(&seats, 3, "ex/step.py").as_deref(), Some(V2));

    // The learner sees what arrived in their own seat; the instructor the latest report.
    let (st, mine) = s
        .call_as(&learner, Method::GET, "/api/session/broadcast", None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(mine["id"], r["id"]);
    let want = ["merged", "conflicted", "written"][seat_of_learner as usize - 1];
    assert_eq!(mine["files"][0]["outcome"], want, "{mine}");
    let (_, latest) = s.call(Method::GET, &path, None).await;
    assert_eq!(latest["report"]["id"], r["id"]);

    // From seat 3's directory: everyone gets its files.
    seats
        .lock()
        .expect("seats")
        .entry(3)
        .or_default()
        .insert("ex/data/in.txt".into(), b"42\n".to_vec());
    let (st, r) = s
        .call(
            Method::POST,
            &path,
            Some(json!({"from_seat": 3, "dir": "ex/data"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["files"], json!(["ex/data/in.txt"]));
    assert_eq!(
        file_of(&seats, 1, "ex/data/in.txt").as_deref(),
        Some("42\n")
    );

    // Bad input is refused before any seat is touched.
    for (body, want) in [
        (
            json!({"files": [{"path": "../../etc/passwd", "content": "x"}]}),
            "bad_path",
        ),
        (
            json!({"files": [{"path": "/etc/passwd", "content": "x"}]}),
            "bad_path",
        ),
        (
            json!({"files": [{"path": "a", "content": "%%", "encoding": "base64"}]}),
            "validation_failed",
        ),
        (json!({"files": []}), "validation_failed"),
        (
            json!({"files": [{"path": "a", "content": "x"}], "from_seat": 1}),
            "validation_failed",
        ),
        (json!({"from_seat": 9}), "not_found"),
        (json!({"nope": 1}), "validation_failed"),
    ] {
        let (st, v) = s.call(Method::POST, &path, Some(body.clone())).await;
        assert!(st.is_client_error(), "{body}: {st} {v}");
        assert_eq!(v["code"], want, "{body}: {v}");
    }
    assert!(file_of(&seats, 1, "../../etc/passwd").is_none());

    // A tar.gz upload is the third form.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_path("tgz/a.txt").expect("path");
    h.set_cksum();
    tar.append(&h, &b"tgz"[..]).expect("append");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar.into_inner().expect("tar")).expect("gz");
    let res = s
        .http
        .post(s.url(&path))
        .bearer_auth(&s.token)
        .header("content-type", "application/gzip")
        .body(gz.finish().expect("gz"))
        .send()
        .await
        .expect("upload");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(file_of(&seats, 2, "tgz/a.txt").as_deref(), Some("tgz"));

    // Checks: pass where the file exists.
    for seat in [1, 3] {
        seats
            .lock()
            .expect("seats")
            .entry(seat)
            .or_default()
            .insert("ok".into(), vec![]);
    }
    let checks = format!("/api/workshops/{id}/checks");
    let (st, v) = s.call(Method::POST, &checks, Some(json!({}))).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("no_check_command")),
        "{v}"
    );
    let (st, run) = s
        .call(
            Method::POST,
            &checks,
            Some(json!({"command": "test -f ok", "timeout_s": 5, "save": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{run}");
    let passed: Vec<bool> = run["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["passed"] == true)
        .collect();
    assert_eq!(passed, [true, false, true], "{run}");
    assert_eq!(run["results"][1]["exit_code"], 1);
    assert_eq!(run["results"][1]["stderr"], "no ok file");
    assert_eq!(
        run["results"][0]["stdout"], "seat 1: test -f ok",
        "the seat ran the command"
    );
    let (_, latest) = s.call(Method::GET, &checks, None).await;
    assert_eq!(latest["saved"]["command"], "test -f ok");
    assert_eq!(latest["latest"]["results"], run["results"]);
    let (st, again) = s.call(Method::POST, &checks, Some(json!({}))).await;
    assert_eq!(
        (st, &again["command"]),
        (StatusCode::OK, &json!("test -f ok")),
        "the stored command"
    );
    for bad in [
        json!({"command": ""}),
        json!({"command": "true", "timeout_s": 0}),
        json!({"command": "true", "timeout_s": 301}),
    ] {
        let (st, v) = s.call(Method::POST, &checks, Some(bad.clone())).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
    }

    // Reset is audited too; the audit lists everything, newest first.
    let (_, other_learner, _) = s.join(json!({"code": code})).await;
    let reset_seat = other_learner["seat"].as_u64().expect("seat");
    let (st, _) = s
        .call(
            Method::POST,
            &format!("/api/workshops/{id}/seats/{reset_seat}/reset"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, audit) = s
        .call(Method::GET, &format!("/api/workshops/{id}/audit"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        actions,
        [
            "reset",
            "check",
            "check",
            "broadcast",
            "broadcast",
            "broadcast",
            "broadcast"
        ],
        "{audit}"
    );
    assert_eq!(audit["events"][0]["seat"], reset_seat);
    assert!(
        audit["events"][1]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("2/3 passed"),
        "{audit}"
    );
    assert_eq!(audit["events"][0]["actor_name"], "admin", "{audit}");

    // Learners and other instructors get nothing of it.
    let other = clarateach_server::accounts::create_instructor(s.state.store(), "other")
        .await
        .expect("instructor");
    for p in [
        path.clone(),
        checks.clone(),
        format!("/api/workshops/{id}/audit"),
    ] {
        let (st, _) = s.call_as(&learner, Method::GET, &p, None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{p}");
        let (st, _) = s.call_as(&other, Method::GET, &p, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{p}");
    }
    let (st, _) = s
        .call_as(
            &other,
            Method::POST,
            &path,
            Some(json!({"files": [{"path": "x", "content": "evil"}]})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(
        file_of(&seats, 1, "x").is_none(),
        "another instructor wrote nothing"
    );
    let (st, _) = s
        .call_as(
            &learner,
            Method::POST,
            &checks,
            Some(json!({"command": "true"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}
