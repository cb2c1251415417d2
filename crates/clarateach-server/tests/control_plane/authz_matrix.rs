//! The authorization matrix: every route of the served OpenAPI document x every kind of caller,
//! with the status each must get. The routes come from `/api/openapi.json` of the running server,
//! so a route added without a row here fails this test. Seat traffic goes to a stand-in data
//! path that echoes which seat it was asked for, so "learner of seat 1 reached seat 2" cannot
//! hide behind a 200: every way of naming another seat (query, headers) is tried.

use std::collections::BTreeMap;

use clarateach_core::TokenClaims;
use clarateach_server::keys::SigningKeys;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{b64, unb64, TestServer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Anonymous,
    LearnerA1,
    LearnerA2,
    LearnerB1,
    InstructorA,
    InstructorB,
    Agent,
    Expired,
    Tampered,
}

const EVERYONE: [Who; 9] = [
    Who::Anonymous,
    Who::LearnerA1,
    Who::LearnerA2,
    Who::LearnerB1,
    Who::InstructorA,
    Who::InstructorB,
    Who::Agent,
    Who::Expired,
    Who::Tampered,
];

/// A data path that answers 200 with the request line it got, e.g.
/// `{"line":"GET /agent/seats/ws-abc/2/files HTTP/1.1"}`.
pub(crate) async fn echo_data_path() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&got);
                let line = head.lines().next().unwrap_or("").to_string();
                let body = json!({ "line": line }).to_string();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/agent")
}

struct World {
    s: TestServer,
    tokens: BTreeMap<Who, String>,
    /// Workshop of instructor A (2 seats), of instructor B (1 seat), and A's victim for
    /// destructive routes.
    ws_a: String,
    ws_b: String,
    ws_victim: String,
    code_a: String,
}

pub(crate) async fn running(s: &TestServer, token: &str, seats: u32) -> Value {
    let (st, w) = s
        .call_as(
            token,
            Method::POST,
            "/api/workshops",
            Some(json!({"name": "Matrix", "seats": seats})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{w}");
    let id = w["workshop"]["id"].as_str().expect("id").to_string();
    let (st, _) = s
        .call_as(
            token,
            Method::POST,
            &format!("/api/workshops/{id}/start"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    for _ in 0..300 {
        let (_, w) = s
            .call_as(token, Method::GET, &format!("/api/workshops/{id}"), None)
            .await;
        if w["workshop"]["status"] == "running" || w["status"] == "running" {
            return if w["workshop"].is_object() {
                w["workshop"].clone()
            } else {
                w
            };
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("workshop {id} never ran");
}

pub(crate) async fn join(s: &TestServer, code: &str) -> String {
    let (st, v, _) = s.join(json!({ "code": code })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["token"].as_str().expect("token").to_string()
}

async fn world() -> World {
    let s = TestServer::start().await;
    let data_url = echo_data_path().await;
    let agent = s.agent_with_data_url("ag-matrix", 50, &data_url).await;
    std::mem::forget(agent); // lives as long as the test process
    let token_b = clarateach_server::accounts::create_instructor(s.state.store(), "b")
        .await
        .expect("instructor b");
    let a = running(&s, &s.token, 2).await;
    let b = running(&s, &token_b, 1).await;
    let victim = running(&s, &s.token, 1).await;
    let code_a = a["code"].as_str().expect("code").to_string();
    let learner_a1 = join(&s, &code_a).await;
    let learner_a2 = join(&s, &code_a).await;
    let learner_b1 = join(&s, b["code"].as_str().expect("code")).await;
    let agent_token = clarateach_server::issue_agent_token(s.state.store())
        .await
        .expect("agent token");

    let parts: Vec<&str> = learner_a1.split('.').collect();
    let claims: TokenClaims = serde_json::from_slice(&b64(parts[1])).expect("claims");
    let keys = SigningKeys::load_or_create(&s.dir.join("jwt.key")).expect("key");
    let mut old = claims.clone();
    old.exp = old.iat.saturating_sub(10);
    let expired = keys.sign(&old).expect("sign");
    let mut other = claims;
    other.seat = 2;
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        unb64(&serde_json::to_vec(&other).expect("json")),
        parts[2]
    );
    let tokens = BTreeMap::from([
        (Who::LearnerA1, learner_a1),
        (Who::LearnerA2, learner_a2),
        (Who::LearnerB1, learner_b1),
        (Who::InstructorA, s.token.clone()),
        (Who::InstructorB, token_b),
        (Who::Agent, agent_token),
        (Who::Expired, expired),
        (Who::Tampered, tampered),
    ]);
    World {
        ws_a: a["id"].as_str().expect("id").into(),
        ws_b: b["id"].as_str().expect("id").into(),
        ws_victim: victim["id"].as_str().expect("id").into(),
        code_a,
        s,
        tokens,
    }
}

/// A body that would be accepted from the right caller.
fn body_for(w: &World, method: &Method, path: &str, who: Who) -> Option<Value> {
    match (method.as_str(), path) {
        ("POST", "/api/session/ticket") => Some(match who {
            Who::InstructorA | Who::InstructorB => {
                json!({"workshop_id": w.ws_a, "seat": 1, "mode": "watch"})
            }
            _ => json!({}),
        }),
        ("POST", "/api/workshops") => Some(json!({"name": "New", "seats": 1})),
        ("POST", "/api/join") => Some(json!({"code": w.code_a})),
        ("POST", "/api/session/files-mkdir") => Some(json!({"path": "d"})),
        ("POST", "/api/session/files-rename") => Some(json!({"from": "a", "to": "b"})),
        ("POST", "/api/session/run") => Some(json!({"command": "true"})),
        ("POST", "/api/session/help") => Some(json!({"message": "stuck"})),
        ("POST", "/api/workshops/{id}/broadcast") => {
            Some(json!({"files": [{"path": "a.txt", "content": "x"}]}))
        }
        ("POST", "/api/workshops/{id}/checks") => Some(json!({"command": "true"})),
        ("PUT", "/api/session/files/{path}") => Some(json!({"content": "x"})),
        ("PUT", "/api/session/previews/{port}") => Some(json!({"public": true})),
        ("PUT", "/api/workshops/{id}/idle-policy") => Some(json!({"pause_after_minutes": 30})),
        ("POST", "/api/workshops/{id}/announcements") => Some(json!({"message": "Break"})),
        ("PUT", "/api/workshops/{id}/spotlight") => Some(json!({"seat": 1})),
        _ => None,
    }
}

/// The status `who` must get on `method path`. `None` marks a row that has no entry yet: the
/// test fails on it, so a new route cannot slip through unclassified.
fn expected(method: &Method, path: &str, who: Who) -> Option<StatusCode> {
    use Who::*;
    let learner = matches!(who, LearnerA1 | LearnerA2 | LearnerB1);
    let ok = StatusCode::OK;
    let unauth = StatusCode::UNAUTHORIZED;
    let m = method.as_str();
    Some(match path {
        "/api/health" | "/api/openapi.json" | "/metrics" => ok,
        // Anonymous by design: a token changes nothing (A's two seats are taken by now).
        "/api/join" => StatusCode::CONFLICT,
        "/api/me" => {
            if learner {
                ok
            } else {
                unauth
            }
        }
        "/api/agents" | "/api/images" => match who {
            InstructorA | InstructorB => ok,
            _ => unauth,
        },
        // Only an agent token may dial in, and only as a WebSocket.
        "/api/agents/connect" => match who {
            Agent => StatusCode::BAD_REQUEST,
            _ => unauth,
        },
        "/api/workshops" => match who {
            InstructorA | InstructorB if m == "POST" => StatusCode::CREATED,
            InstructorA | InstructorB => ok,
            _ => unauth,
        },
        // {id} is A's workshop (the victim for DELETE and stop): B sees nothing of it.
        "/api/workshops/{id}" => match (who, m) {
            (InstructorA, "DELETE") => StatusCode::CONFLICT, // running
            (InstructorA, _) => ok,
            (InstructorB, _) => StatusCode::NOT_FOUND,
            _ => unauth,
        },
        "/api/workshops/{id}/start" => match who {
            InstructorA => StatusCode::ACCEPTED, // idempotent on a running workshop
            InstructorB => StatusCode::NOT_FOUND,
            _ => unauth,
        },
        "/api/workshops/{id}/stop" => match who {
            InstructorA => ok,
            InstructorB => StatusCode::NOT_FOUND,
            _ => unauth,
        },
        "/api/workshops/{id}/seats"
        | "/api/workshops/{id}/export"
        | "/api/workshops/{id}/screens" => match who {
            InstructorA => ok,
            InstructorB => StatusCode::NOT_FOUND,
            _ => unauth,
        },
        // Sessions are minted from the long-lived instructor token only, and only a session
        // token can be revoked (the long-lived one is not a session).
        "/api/instructor/sessions" => match (who, m) {
            (InstructorA | InstructorB, "POST") => StatusCode::CREATED,
            _ => unauth,
        },
        // A ticket for what the caller may open: a learner its own seat, instructor A a watch of
        // A's seat 1, instructor B nothing of A's.
        "/api/session/ticket" => match who {
            _ if learner => ok,
            InstructorA => ok,
            InstructorB => StatusCode::NOT_FOUND,
            _ => unauth,
        },
        // Rows run in path order, after every session row: A's seats are paused, then resumed
        // by the next row, so later rows find them ready.
        "/api/workshops/{id}/pause"
        | "/api/workshops/{id}/resume"
        | "/api/workshops/{id}/seats/{seat}/pause"
        | "/api/workshops/{id}/seats/{seat}/resume"
        | "/api/workshops/{id}/idle-policy" => match who {
            InstructorA => ok,
            InstructorB => StatusCode::NOT_FOUND,
            _ => unauth,
        },
        // Moving a seat needs object storage, which this control plane has not: A is told so
        // (409) only after its ownership of the workshop is checked; B learns nothing of A's.
        "/api/workshops/{id}/seats/{seat}/move" => match who {
            InstructorA => StatusCode::CONFLICT,
            InstructorB => StatusCode::NOT_FOUND,
            _ => unauth,
        },
        // {seat} is A's seat 2 (its learner's token is not used after this row).
        "/api/workshops/{id}/seats/{seat}/reset" => match who {
            InstructorA => ok,
            InstructorB => StatusCode::NOT_FOUND,
            _ => unauth,
        },
        // The help queue: a learner asks for and sees only their own request (first ask files
        // it: 201); the queue and its claim/resolve are the workshop's instructor's (the
        // request id in the path names none, so A gets 404 too).
        "/api/session/help" => match (who, m) {
            (_, "POST") if learner => StatusCode::CREATED,
            _ if learner => ok,
            _ => unauth,
        },
        "/api/workshops/{id}/help" => match who {
            InstructorA => ok,
            InstructorB => StatusCode::NOT_FOUND,
            _ => unauth,
        },
        "/api/workshops/{id}/help/{help_id}/claim"
        | "/api/workshops/{id}/help/{help_id}/resolve" => match who {
            InstructorA | InstructorB => StatusCode::NOT_FOUND,
            _ => unauth,
        },
        // Announcements and the spotlight are the workshop's instructor's; learners get them
        // only through their own stream (below).
        "/api/workshops/{id}/announcements" => match (who, m) {
            (InstructorA, "POST") => StatusCode::CREATED,
            (InstructorA, _) => ok,
            (InstructorB, _) => StatusCode::NOT_FOUND,
            _ => unauth,
        },
        "/api/workshops/{id}/announcements/{announcement_id}" => match who {
            InstructorA | InstructorB => StatusCode::NOT_FOUND,
            _ => unauth,
        },
        "/api/workshops/{id}/spotlight" => match (who, m) {
            (InstructorA, "DELETE") => StatusCode::NO_CONTENT,
            (InstructorA, _) => ok,
            (InstructorB, _) => StatusCode::NOT_FOUND,
            _ => unauth,
        },
        // Recordings: the instructor only, never a learner (not even of that seat). The stand-in
        // data path answers a line, not a recording list: A gets 502, as from a broken agent; a
        // name that is not a recording's is 404 before any agent is asked.
        "/api/workshops/{id}/seats/{seat}/recordings" => match who {
            InstructorA => StatusCode::BAD_GATEWAY,
            InstructorB => StatusCode::NOT_FOUND,
            _ => unauth,
        },
        "/api/workshops/{id}/seats/{seat}/recordings/{name}" => match who {
            InstructorA | InstructorB => StatusCode::NOT_FOUND,
            _ => unauth,
        },
        // The learner's own workshop's announcements and spotlight (JSON without an upgrade);
        // the instructor names a seat of their own workshop like any session route.
        "/api/session/events" | "/api/session/spotlight" => match who {
            _ if learner => ok,
            InstructorA => ok,
            InstructorB => StatusCode::NOT_FOUND,
            _ => unauth,
        },
        // Broadcast, checks and the audit are the workshop's instructor's (issue 10); a learner
        // sees only what a broadcast brought their own seat and whether they are watched.
        "/api/workshops/{id}/broadcast"
        | "/api/workshops/{id}/checks"
        | "/api/workshops/{id}/audit" => match who {
            InstructorA => ok,
            InstructorB => StatusCode::NOT_FOUND,
            _ => unauth,
        },
        "/api/session/broadcast" | "/api/session/presence" | "/api/session/seat" => match who {
            _ if learner => ok,
            _ => unauth,
        },
        // Templates and standalone sandboxes are the instructor's own: another instructor's
        // (or a missing) name is 404, a body-less create is refused before anything is made.
        "/api/templates" | "/api/sandboxes" => match (who, m) {
            (InstructorA | InstructorB, "POST") => StatusCode::BAD_REQUEST,
            (InstructorA | InstructorB, _) => ok,
            _ => unauth,
        },
        "/api/sandboxes/{id}/run" => match who {
            InstructorA | InstructorB => StatusCode::BAD_REQUEST,
            _ => unauth,
        },
        // Not a WebSocket upgrade: refused before the sandbox is looked up.
        "/api/sandboxes/{id}/exec" => match who {
            InstructorA | InstructorB => StatusCode::BAD_REQUEST,
            _ => unauth,
        },
        "/api/templates/{name}" | "/api/sandboxes/{id}" | "/api/sandboxes/{id}/files/{path}" => {
            match who {
                InstructorA | InstructorB => StatusCode::NOT_FOUND,
                _ => unauth,
            }
        }
        // A preview ticket for what the caller may open: a learner its own seat's port, instructor
        // A A's seat 1 (previews are viewed, never typed into), instructor B nothing of A's.
        // (PUT .../previews/{port}, the public toggle, is the learner's: the generic row below.)
        "/api/session/previews/{port}/open" => match who {
            _ if learner => ok,
            InstructorA => ok,
            InstructorB => StatusCode::NOT_FOUND,
            _ => unauth,
        },
        p if p.starts_with("/api/session/") => match who {
            _ if learner => ok,
            // The instructor names A's seat 1; watching is read-only.
            InstructorA if m == "GET" => ok,
            InstructorA => StatusCode::FORBIDDEN,
            InstructorB => StatusCode::NOT_FOUND,
            _ => unauth,
        },
        _ => return None,
    })
}

fn concrete(w: &World, method: &Method, path: &str, who: Who) -> String {
    let destructive = (method == Method::DELETE && path == "/api/workshops/{id}")
        || path == "/api/workshops/{id}/stop";
    let id = if destructive { &w.ws_victim } else { &w.ws_a };
    let mut p = path
        .replace("{id}", id)
        .replace("{path}", "notes.txt")
        .replace("{seat}", "2")
        .replace("{help_id}", "help-0000")
        .replace("{port}", "8000")
        .replace("{announcement_id}", "an-0000")
        .replace("{name}", "no-such-template");
    if p.starts_with("/api/session/")
        && p != "/api/session/ticket"
        && p != "/api/session/help"
        && matches!(who, Who::InstructorA | Who::InstructorB)
    {
        p.push_str(&format!("?workshop_id={}&seat=1", w.ws_a));
    }
    p
}

fn seat_of(who: Who, w: &World) -> Option<(String, u32)> {
    match who {
        Who::LearnerA1 | Who::InstructorA => Some((w.ws_a.clone(), 1)),
        Who::LearnerA2 => Some((w.ws_a.clone(), 2)),
        Who::LearnerB1 => Some((w.ws_b.clone(), 1)),
        _ => None,
    }
}

async fn send(
    w: &World,
    method: Method,
    path: &str,
    who: Who,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut req = w.s.http.request(method, w.s.url(path));
    if let Some(t) = w.tokens.get(&who) {
        req = req.bearer_auth(t);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    (status, res.text().await.unwrap_or_default())
}

#[tokio::test]
async fn every_route_by_every_caller() {
    let w = world().await;
    let doc: Value =
        w.s.http
            .get(w.s.url("/api/openapi.json"))
            .send()
            .await
            .expect("openapi")
            .json()
            .await
            .expect("json");
    let mut rows: Vec<(String, Method)> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in item.as_object().expect("item").keys() {
            if let Ok(method) = m.to_uppercase().parse::<Method>() {
                rows.push((path.clone(), method));
            }
        }
    }
    // DELETE of the victim before its stop, so the DELETE row sees it running.
    rows.sort_by(|a, b| (a.0.as_str(), a.1.as_str()).cmp(&(b.0.as_str(), b.1.as_str())));
    assert!(rows.len() >= 20, "{rows:?}");
    let mut failures = Vec::new();
    for (path, method) in &rows {
        for who in EVERYONE {
            let Some(want) = expected(method, path, who) else {
                failures.push(format!("{method} {path}: no row for {who:?}"));
                continue;
            };
            let url = concrete(&w, method, path, who);
            let (got, text) = send(
                &w,
                method.clone(),
                &url,
                who,
                body_for(&w, method, path, who),
                &[],
            )
            .await;
            if got != want {
                failures.push(format!(
                    "{method} {url} as {who:?}: {got} (want {want}) {text}"
                ));
                continue;
            }
            // Seat traffic must land on the caller's own seat.
            if got == StatusCode::OK
                && path.starts_with("/api/session/")
                && path != "/api/session/ticket"
                && path != "/api/session/help"
                && path != "/api/session/events"
                && path != "/api/session/spotlight"
                && path != "/api/session/broadcast"
                && path != "/api/session/presence"
            {
                let (ws, seat) = seat_of(who, &w).expect("seat");
                if path == "/api/session/seat" {
                    // The learner's own seat, named in the answer.
                    let v = serde_json::from_str::<Value>(&text).unwrap_or_default();
                    if v["workshop_id"] != ws.as_str() || v["seat"] != seat {
                        failures.push(format!("{method} {url} as {who:?} named {v}"));
                    }
                    continue;
                }
                if path.starts_with("/api/session/previews") {
                    // A preview answer names its seat in its URL's host.
                    let v = serde_json::from_str::<Value>(&text).unwrap_or_default();
                    let host = format!(
                        "p8000-{}.",
                        clarateach_core::preview::seat_handle(&ws, seat)
                    );
                    if v.get("url")
                        .is_some_and(|u| !u.as_str().unwrap_or("").contains(&host))
                    {
                        failures.push(format!("{method} {url} as {who:?} named {v}"));
                    }
                    continue;
                }
                let line = serde_json::from_str::<Value>(&text).unwrap_or_default()["line"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                if !line.contains(&format!("/seats/{ws}/{seat}/")) {
                    failures.push(format!("{method} {url} as {who:?} reached {line}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_learner_cannot_name_another_seat() {
    let w = world().await;
    let token_path = format!("/api/session/files?workshop_id={}&seat=1", w.ws_b);
    let tries: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/api/session/files?seat=1".into(), vec![]),
        (token_path, vec![]),
        ("/api/session/files?seat=1&seat=2".into(), vec![]),
        (
            "/api/session/files?workshop_id=x&seat=1&mode=takeover".into(),
            vec![],
        ),
        (
            "/api/session/files".into(),
            vec![
                ("x-seat", "1"),
                ("x-workshop-id", "x"),
                ("forwarded", "for=1"),
            ],
        ),
        ("/api/session/files/..%2f..%2f1%2ffiles".into(), vec![]),
        ("/api/session/files/%2e%2e/%2e%2e/1/files".into(), vec![]),
    ];
    for (path, headers) in tries {
        let (status, text) = send(&w, Method::GET, &path, Who::LearnerA2, None, &headers).await;
        if status == StatusCode::OK {
            let line = serde_json::from_str::<Value>(&text).unwrap_or_default()["line"]
                .as_str()
                .unwrap_or("")
                .to_string();
            assert!(
                line.contains(&format!("/seats/{}/2/", w.ws_a)),
                "{path} {headers:?} reached {line}"
            );
        } else {
            assert!(status.is_client_error(), "{path}: {status} {text}");
        }
    }
}
