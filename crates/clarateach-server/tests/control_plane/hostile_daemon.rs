//! A learner who replaced or tampered with their seat's daemon controls every byte of its
//! answers. Here a test server stands in for that daemon (behind the agent's data path) and
//! answers every request with an HTML page that would run script, set a cookie and redirect; the
//! gateway must hand the browser none of it as something a browser acts on.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::TestServer;

const PAGE: &str = "<html><script>fetch('/api/workshops',{headers:{authorization:'Bearer '+localStorage.token}})</script></html>";

/// Answers every connection with a hostile HTML response; returns its base URL.
async fn hostile_daemon(status: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = sock.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                     Set-Cookie: ct_session=stolen; Path=/\r\nLocation: https://evil.example/\r\n\
                     Refresh: 0; url=https://evil.example/\r\n\
                     Content-Security-Policy: default-src *\r\n\
                     Access-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n{PAGE}",
                    PAGE.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/agent")
}

fn assert_inert(res: &reqwest::Response, want_type: &str) {
    let h = res.headers();
    assert_eq!(h["content-type"], want_type, "{h:?}");
    assert_eq!(h["content-security-policy"], "sandbox", "{h:?}");
    assert_eq!(h["x-content-type-options"], "nosniff", "{h:?}");
    for banned in [
        "set-cookie",
        "location",
        "refresh",
        "access-control-allow-origin",
    ] {
        assert!(h.get(banned).is_none(), "{banned} passed through: {h:?}");
    }
}

#[tokio::test]
async fn a_tampered_daemon_cannot_serve_a_page_on_the_control_plane_origin() {
    let s = TestServer::start().await;
    let data_url = hostile_daemon("200 OK").await;
    let _agent = s.agent_with_data_url("ag-hostile", 10, &data_url).await;
    let w = s.create(json!({"name": "Hostile", "seats": 1})).await;
    let id = w["id"].as_str().expect("id").to_string();
    let (status, _) = s
        .call(Method::POST, &format!("/api/workshops/{id}/start"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    s.wait_status(&id, "running").await;
    let (status, joined, _) = s.join(json!({"code": w["code"]})).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let token = joined["token"].as_str().expect("token").to_string();

    // A link the learner sends the instructor, opened as a navigation: JSON, sandboxed.
    let res = s
        .http
        .get(s.url("/api/session/files/index.html"))
        .bearer_auth(&token)
        .header("accept", "text/html")
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), StatusCode::OK);
    assert_inert(&res, "application/json");

    // Raw bytes are a download, never a document.
    let res = s
        .http
        .get(s.url("/api/session/files/index.html"))
        .bearer_auth(&token)
        .header("accept", "application/octet-stream")
        .send()
        .await
        .expect("raw get");
    assert_inert(&res, "application/octet-stream");
    assert_eq!(res.headers()["content-disposition"], "attachment");
    assert_eq!(
        res.text().await.expect("body"),
        PAGE,
        "bytes pass unchanged"
    );

    // The instructor's view of the seat goes through the same filter.
    let res = s
        .http
        .get(s.url(&format!(
            "/api/session/files?workshop_id={id}&seat=1&path=."
        )))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("instructor get");
    assert_inert(&res, "application/json");
    s.shutdown().await;
}

#[tokio::test]
async fn a_tampered_daemon_cannot_redirect_or_fake_an_auth_failure() {
    let s = TestServer::start().await;
    for (i, (daemon_status, seen)) in [
        ("302 Found", StatusCode::FOUND),
        ("401 Unauthorized", StatusCode::BAD_GATEWAY),
    ]
    .into_iter()
    .enumerate()
    {
        let data_url = hostile_daemon(daemon_status).await;
        let _agent = s
            .agent_with_data_url(&format!("ag-h{i}"), 10, &data_url)
            .await;
        let w = s.create(json!({"name": "Hostile", "seats": 1})).await;
        let id = w["id"].as_str().expect("id").to_string();
        s.call(Method::POST, &format!("/api/workshops/{id}/start"), None)
            .await;
        s.wait_status(&id, "running").await;
        let (_, joined, _) = s.join(json!({"code": w["code"]})).await;
        let token = joined["token"].as_str().expect("token").to_string();
        let no_redirects = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let res = no_redirects
            .get(s.url("/api/session/files"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), seen, "daemon said {daemon_status}");
        assert_inert(&res, "application/json");
        drop(_agent);
    }
    s.shutdown().await;
}
