//! Server limits as an attacker meets them: slow clients that never finish their headers, a flood
//! of connections past the cap, made-up methods and paths that would grow the metrics, `/metrics`
//! without its token, and the hardening headers on every kind of answer.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::TestServer;

/// Opens `n` connections that send half a request head and then nothing.
async fn slow_clients(base: &str, n: usize) -> Vec<TcpStream> {
    let addr = base.trim_start_matches("http://").to_string();
    let mut socks = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(b"POST /api/join HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
            .await
            .expect("write");
        socks.push(s);
    }
    socks
}

/// Whether the server has closed `s` (EOF or reset) within `wait`.
async fn closed(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An answer (408 or 400) before the close is fine; keep reading to the EOF.
            Ok(Ok(_)) => continue,
        }
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_while_joins_are_answered() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let s = TestServer::start_in(&tmp.path().join("data"), |c| {
        c.header_read_timeout = Duration::from_secs(2);
    })
    .await;
    let (w, _agent) = s.running_workshop(40).await;
    let fds_before = open_fds();

    let mut socks = slow_clients(&s.base, 300).await;
    assert!(
        open_fds() >= fds_before + 300,
        "the slow clients are connected"
    );

    // While 300 clients sit on half-sent headers, learners keep joining promptly.
    let mut slowest = Duration::ZERO;
    for i in 0..30 {
        let started = Instant::now();
        let (status, v, _) = s
            .join(json!({"code": w["code"], "name": format!("Learner {i}")}))
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < Duration::from_secs(1), "slowest join {slowest:?}");

    // Every slow client is closed by the header timeout (2 s, allow for a loaded machine).
    let started = Instant::now();
    let mut still_open = 0;
    for sock in &mut socks {
        let left = Duration::from_secs(8).saturating_sub(started.elapsed());
        if !closed(sock, left).await {
            still_open += 1;
        }
    }
    assert_eq!(
        still_open, 0,
        "connections the header timeout did not close"
    );
    drop(socks);
    // The server's ends are gone too: the process is back near where it started.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fds_after = open_fds();
    assert!(
        fds_after < fds_before + 20,
        "descriptors before {fds_before}, after {fds_after}"
    );
    let (status, v, _) = s.join(json!({"code": w["code"], "name": "Late"})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    s.shutdown().await;
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_the_cap_frees_up() {
    const CAP: usize = 40;
    let tmp = tempfile::tempdir().expect("temp dir");
    let s = TestServer::start_in(&tmp.path().join("data"), |c| {
        c.max_connections = CAP;
        c.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let (w, _agent) = s.running_workshop(2).await;
    // The test's own pooled client holds a connection or two of the cap, so fill it up and
    // count how many the server kept.
    let mut held = slow_clients(&s.base, CAP + 10).await;
    let mut refused = 0;
    for sock in &mut held {
        if closed(sock, Duration::from_millis(300)).await {
            refused += 1;
        }
    }
    let kept = held.len() - refused;
    assert!(
        (CAP - 3..=CAP).contains(&kept),
        "kept {kept} of {} with a cap of {CAP}",
        held.len()
    );
    // A new client gets a closed socket, not a hang.
    let mut extra = slow_clients(&s.base, 1).await;
    assert!(closed(&mut extra[0], Duration::from_secs(2)).await);

    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fresh = reqwest::Client::new();
    let res = fresh
        .post(s.url("/api/join"))
        .json(&json!({"code": w["code"]}))
        .send()
        .await
        .expect("join after the slow clients left");
    assert_eq!(res.status(), StatusCode::OK);
    s.shutdown().await;
}

/// The `clarateach_http_requests_total` and latency series, one per line.
async fn series(s: &TestServer) -> Vec<String> {
    let text = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with("clarateach_http_"))
        .map(|l| l.rsplit_once(' ').map_or(l, |(k, _)| k).to_string())
        .collect()
}

#[tokio::test]
async fn made_up_methods_and_paths_create_no_new_series() {
    let s = TestServer::start().await;
    let round = |n: u32| {
        let s = &s;
        async move {
            let paths = [
                format!("/api/no-such-{n}"),
                format!("/totally/random/{n}"),
                format!("/api/workshops/ws-{n}"),
                format!("/api/session/x{n}"),
            ];
            for p in &paths {
                for m in ["FOO", "GET", "BREW", "PROPFIND"] {
                    let _ = s
                        .http
                        .request(Method::from_bytes(m.as_bytes()).expect("method"), s.url(p))
                        .send()
                        .await
                        .expect("request");
                }
            }
        }
    };
    round(0).await;
    // The first scrape is itself counted (as `/metrics`) once it has answered.
    let _ = series(&s).await;
    let first = series(&s).await;
    for n in 1..=25 {
        round(n).await;
    }
    let later = series(&s).await;
    let new: Vec<_> = later.iter().filter(|l| !first.contains(l)).collect();
    assert!(
        new.is_empty(),
        "new series appeared: {new:#?}\nfirst: {first:#?}"
    );
    assert_eq!(first.len(), later.len());
    for line in &later {
        for leaked in [
            "FOO", "BREW", "PROPFIND", "no-such", "random", "ws-1", "/x1",
        ] {
            assert!(!line.contains(leaked), "{line}");
        }
    }
    assert!(
        later.iter().any(|l| l.contains("method=\"other\"")),
        "{later:#?}"
    );
    assert!(
        later.iter().any(|l| l.contains("route=\"unmatched\"")),
        "{later:#?}"
    );
    assert!(
        later
            .iter()
            .any(|l| l.contains("route=\"/api/workshops/{id}\"")),
        "{later:#?}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_set() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let s = TestServer::start_in(&tmp.path().join("data"), |c| {
        c.metrics_token = Some("scrape-me-0123456789".into());
    })
    .await;
    let get = |token: Option<&str>| {
        let mut req = s.http.get(s.url("/metrics"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let instructor = s.token.clone();
    for token in [
        None,
        Some("scrape-me"),
        Some("scrape-me-0123456789x"),
        Some(instructor.as_str()),
    ] {
        let res = get(token).await.expect("metrics");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        let body: serde_json::Value = res.json().await.expect("json error");
        assert_eq!(body["code"], "unauthorized");
    }
    let res = get(Some("scrape-me-0123456789")).await.expect("metrics");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res
        .text()
        .await
        .expect("text")
        .contains("clarateach_agents_connected"));
    s.shutdown().await;

    // Without a token: loopback only, and not through a proxy on this host.
    let s = TestServer::start().await;
    let res = s.http.get(s.url("/metrics")).send().await.expect("metrics");
    assert_eq!(res.status(), StatusCode::OK);
    let res = s
        .http
        .get(s.url("/metrics"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .expect("metrics");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    s.shutdown().await;
}

#[tokio::test]
async fn hardening_headers_on_pages_api_answers_and_errors() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let s = TestServer::start_in(&tmp.path().join("data"), |c| {
        c.web = Some(clarateach_web::router());
    })
    .await;
    let cases = [
        (Method::GET, "/", None),
        (Method::GET, "/instructor", None),
        (Method::GET, "/api/health", Some(StatusCode::OK)),
        (
            Method::GET,
            "/api/workshops",
            Some(StatusCode::UNAUTHORIZED),
        ),
        (Method::GET, "/api/nope", Some(StatusCode::NOT_FOUND)),
        (
            Method::GET,
            "/assets/missing.js",
            Some(StatusCode::NOT_FOUND),
        ),
        (
            Method::DELETE,
            "/api/join",
            Some(StatusCode::METHOD_NOT_ALLOWED),
        ),
        (Method::POST, "/api/join", Some(StatusCode::BAD_REQUEST)),
    ];
    for (method, path, want) in cases {
        let res = s
            .http
            .request(method.clone(), s.url(path))
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .expect("request");
        if let Some(want) = want {
            assert_eq!(res.status(), want, "{method} {path}");
        }
        let h = res.headers();
        let csp = h
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        for part in [
            "default-src 'self'",
            "script-src 'self';",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(
                csp.contains(part),
                "{method} {path}: CSP {csp:?} lacks {part}"
            );
        }
        assert!(!csp.contains("unsafe-eval"), "{csp}");
        assert_eq!(h["x-frame-options"], "DENY", "{method} {path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{method} {path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{method} {path}");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn learner_names_with_controls_are_refused_and_unicode_kept() {
    let s = TestServer::start().await;
    let (w, _agent) = s.running_workshop(4).await;
    for bad in [
        "\u{1b}]0;owned\u{7}",
        "a\nb",
        "evil\u{202e}cod.exe",
        "x\u{2066}",
        &"n".repeat(65),
    ] {
        let (status, v, _) = s.join(json!({"code": w["code"], "name": bad})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}: {v}");
        assert_eq!(v["code"], "validation_failed");
    }
    let (status, v, _) = s
        .join(json!({"code": w["code"], "name": "  Zoë 李雷 🙂  "}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let id = w["id"].as_str().expect("id");
    let (_, seats) = s
        .call(Method::GET, &format!("/api/workshops/{id}/seats"), None)
        .await;
    let names: Vec<&str> = seats["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .filter_map(|seat| seat["name"].as_str())
        .collect();
    assert_eq!(names, ["Zoë 李雷 🙂"]);
    // `..` as an image name is refused before anything reaches an agent.
    let (status, v) = s
        .call(
            Method::POST,
            "/api/workshops",
            Some(json!({"name": "x", "seats": 1, "image": ".."})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    s.shutdown().await;
}

#[tokio::test]
async fn the_gateway_refuses_a_declared_body_over_the_file_limit() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let s = TestServer::start_in(&tmp.path().join("data"), |c| {
        c.file_body_limit = 64 * 1024;
    })
    .await;
    let put = |len: usize| {
        s.http
            .put(s.url("/api/session/files/big.bin?workshop_id=ws-x&seat=1"))
            .body(vec![b'x'; len])
            .send()
    };
    let res = put(64 * 1024 + 1).await.expect("put");
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: serde_json::Value = res.json().await.expect("json");
    assert_eq!(v["code"], "payload_too_large");
    // Under the cap the request goes on to the gateway, which wants credentials.
    let res = put(1024).await.expect("put");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    s.shutdown().await;
}

#[tokio::test]
async fn an_agent_message_over_the_cap_ends_the_agent_session() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let tmp = tempfile::tempdir().expect("temp dir");
    let s = TestServer::start_in(&tmp.path().join("data"), |c| {
        c.ws_max_message = 64 * 1024;
        // Slow heartbeats: a registered agent's socket would stay open for the whole test.
        c.heartbeat_interval = Duration::from_secs(60);
    })
    .await;
    let token = clarateach_server::issue_agent_token(s.state.store())
        .await
        .expect("agent token");
    let mut req = format!("{}/api/agents/connect", s.base.replacen("http", "ws", 1))
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    let register = json!({
        "type": "register", "agent_id": "ag-huge", "hostname": "h".repeat(128 * 1024),
        "capacity": 1, "backends": ["none"], "data_url": "http://127.0.0.1:9/x",
        "data_token": "d", "seats": [],
    });
    let _ = ws.send(Message::text(register.to_string())).await;
    // The server drops the socket instead of buffering or parsing the message.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true), "the agent socket stayed open");
    let agents = s.state.provisioner().agents().await;
    assert!(agents.iter().all(|a| a.agent_id != "ag-huge"));
    s.shutdown().await;
}
