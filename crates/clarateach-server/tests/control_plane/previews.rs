//! Preview hosts against a stand-in data path that echoes the request line it got: a request
//! whose Host is a seat's preview host reaches that seat's `preview/{port}/...` on the data path
//! and never the control plane's API or UI; it needs the host's own session cookie (set from a
//! one-time ticket) or a public port; a ticket is single use and bound to its host. A port's
//! public flag is in the store: it outlives a control-plane restart.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::authz_matrix::{echo_data_path, join, running};
use crate::common::TestServer;

/// A client that resolves the preview hosts of `ws`'s seats 1 and 2 (port 8000) to `base`'s
/// address, and `base`'s port.
fn preview_client(base: &str, ws: &str) -> (reqwest::Client, String, String) {
    let port = base
        .rsplit(':')
        .next()
        .expect("port")
        .trim_end_matches('/')
        .to_string();
    let host = format!(
        "p8000-{}.localhost",
        clarateach_core::preview::seat_handle(ws, 1)
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&host, addr)
        .build()
        .expect("client");
    (http, host, port)
}

#[tokio::test]
async fn preview_hosts_reach_only_their_seat_with_a_ticketed_cookie_or_when_public() {
    let s = TestServer::start().await;
    let data_url = echo_data_path().await;
    let agent = s.agent_with_data_url("ag-preview", 10, &data_url).await;
    let w = running(&s, &s.token, 2).await;
    let ws = w["id"].as_str().expect("id").to_string();
    let code = w["code"].as_str().expect("code").to_string();
    let learner = join(&s, &code).await;
    let other = join(&s, &code).await;
    let port = s
        .url("/")
        .rsplit(':')
        .next()
        .expect("port")
        .trim_end_matches('/')
        .to_string();
    let seat_host = |seat: u32| {
        format!(
            "p8000-{}.localhost",
            clarateach_core::preview::seat_handle(&ws, seat)
        )
    };
    let (host1, host2) = (seat_host(1), seat_host(2));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&host1, addr)
        .resolve(&host2, addr)
        .build()
        .expect("client");
    let on = |host: &str, path: &str| format!("http://{host}:{port}{path}");

    // Anonymous, or with a learner's bearer token: refused, and the API is not there.
    let r = http
        .get(on(&host1, "/api/health"))
        .send()
        .await
        .expect("anon");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["code"], "unauthorized");
    let r = http
        .get(on(&host1, "/api/me"))
        .bearer_auth(&learner)
        .send()
        .await
        .expect("bearer");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The learner of seat 1 gets a ticket URL on its seat's preview host.
    let (st, opened) = s
        .call_as(
            &learner,
            Method::POST,
            "/api/session/previews/8000/open",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{opened}");
    let url = opened["url"].as_str().expect("url").to_string();
    assert!(
        url.starts_with(&on(&host1, "/__clarateach/auth?ticket=cpt_")),
        "{url}"
    );
    // On another seat's host the ticket is refused (and used up).
    let wrong = url.replace(&host1, &host2);
    let r = http.get(&wrong).send().await.expect("wrong host");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        http.get(&url).send().await.expect("used").status(),
        StatusCode::UNAUTHORIZED,
        "a ticket tried on the wrong host is spent"
    );
    let (_, opened) = s
        .call_as(
            &learner,
            Method::POST,
            "/api/session/previews/8000/open",
            None,
        )
        .await;
    let url = opened["url"].as_str().expect("url").to_string();
    let r = http.get(&url).send().await.expect("sign in");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.to_ascii_lowercase().contains("domain="),
        "host-only: {cookie}"
    );
    let pair = cookie.split(';').next().expect("pair").to_string();

    // With the cookie: the request reaches seat 1's port 8000 on the data path, as sent.
    let r = http
        .get(on(&host1, "/api/health?x=1"))
        .header("cookie", &pair)
        .send()
        .await
        .expect("preview");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers().get("content-security-policy").is_none(),
        "the UI's policy is not put on the learner's page"
    );
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v["line"],
        format!("GET /agent/seats/{ws}/1/preview/8000/api/health?x=1 HTTP/1.1")
    );
    // Replayed on seat 2's host the cookie is refused.
    let r = http
        .get(on(&host2, "/"))
        .header("cookie", &pair)
        .send()
        .await
        .expect("other host");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Public per port, by the learner only.
    let (st, _) = s
        .call_as(
            &s.token,
            Method::PUT,
            &format!("/api/session/previews/8000?workshop_id={ws}&seat=2"),
            Some(json!({"public": true})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = s
        .call_as(
            &other,
            Method::PUT,
            "/api/session/previews/8000",
            Some(json!({"public": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["public"], true);
    let r = http.get(on(&host2, "/")).send().await.expect("public");
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .get(on(&host1, "/"))
        .send()
        .await
        .expect("still private");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (st, _) = s
        .call_as(
            &other,
            Method::PUT,
            "/api/session/previews/0",
            Some(json!({"public": true})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    drop(agent);
}

#[tokio::test]
async fn a_public_port_stays_public_across_a_restart_and_private_again_when_unshared() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = TestServer::start_in(&dir, |_| {}).await;
    let data_url = echo_data_path().await;
    let agent = s.agent_with_data_url("ag-share", 10, &data_url).await;
    let w = running(&s, &s.token, 1).await;
    let ws = w["id"].as_str().expect("id").to_string();
    let code = w["code"].as_str().expect("code").to_string();
    let learner = join(&s, &code).await;
    let anonymous = |s: &TestServer| {
        let (http, host, port) = preview_client(&s.url("/"), &ws);
        async move {
            http.get(format!("http://{host}:{port}/shared"))
                .send()
                .await
                .expect("anonymous preview request")
                .status()
        }
    };
    assert_eq!(
        anonymous(&s).await,
        StatusCode::UNAUTHORIZED,
        "private by default"
    );
    let (st, v) = s
        .call_as(
            &learner,
            Method::PUT,
            "/api/session/previews/8000",
            Some(json!({"public": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(anonymous(&s).await, StatusCode::OK, "public");

    // Restart on the same store (and the same agent): the port is still public.
    drop(agent);
    let _ = s.shutdown().await;
    let s = TestServer::start_in(&dir, |_| {}).await;
    let agent = s.agent_with_data_url("ag-share", 10, &data_url).await;
    assert_eq!(
        anonymous(&s).await,
        StatusCode::OK,
        "the learner's share survived the restart"
    );

    // Made private again (by the same learner token, valid across the restart): denied, and
    // still denied after one more restart.
    let (st, v) = s
        .call_as(
            &learner,
            Method::PUT,
            "/api/session/previews/8000",
            Some(json!({"public": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["public"], false);
    assert_eq!(
        anonymous(&s).await,
        StatusCode::UNAUTHORIZED,
        "private again"
    );
    drop(agent);
    let _ = s.shutdown().await;
    let s = TestServer::start_in(&dir, |_| {}).await;
    let agent = s.agent_with_data_url("ag-share", 10, &data_url).await;
    assert_eq!(
        anonymous(&s).await,
        StatusCode::UNAUTHORIZED,
        "private after a restart"
    );
    drop(agent);
    drop(tmp);
}
