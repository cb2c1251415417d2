//! Router behaviour: SPA fallback, cache headers, content types, API 404s, conditional GETs.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn get(path: &str) -> axum::response::Response {
    clarateach_web::router()
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("infallible")
}

fn header_of(res: &axum::response::Response, name: header::HeaderName) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii").to_string())
        .unwrap_or_default()
}

async fn body(res: axum::response::Response) -> Vec<u8> {
    res.into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec()
}

#[tokio::test]
async fn index_and_client_routes_serve_the_shell_uncached() {
    for path in [
        "/",
        "/workspace",
        "/instructor/workshops/ws-abc123",
        "/join?code=X",
    ] {
        let res = get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(
            header_of(&res, header::CONTENT_TYPE),
            "text/html; charset=utf-8",
            "{path}"
        );
        assert_eq!(header_of(&res, header::CACHE_CONTROL), "no-cache", "{path}");
        let html = String::from_utf8(body(res).await).expect("utf-8");
        assert!(html.contains("ClaraTeach"), "{path}");
    }
}

#[tokio::test]
async fn unknown_api_paths_are_json_404() {
    for path in ["/api", "/api/nope", "/api/workshops/x/y/z"] {
        let res = get(path).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(header_of(&res, header::CONTENT_TYPE).starts_with("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&body(res).await).expect("json");
        assert_eq!(v["code"], "not_found");
        assert!(v["message"].is_string());
    }
}

#[tokio::test]
async fn missing_assets_are_404_not_html() {
    assert_eq!(
        get("/assets/index-deadbeef.js").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(get("/favicon.ico").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn other_methods_are_refused() {
    let res = clarateach_web::router()
        .oneshot(Request::post("/").body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn hashed_assets_are_immutable_with_the_right_type() {
    if !clarateach_web::has_ui() {
        clarateach_core::skip::report(
            "hashed_assets_are_immutable_with_the_right_type",
            "built with CLARATEACH_SKIP_WEB_BUILD=1, no hashed assets embedded",
        );
        return;
    }
    let html = String::from_utf8(body(get("/").await).await).expect("utf-8");
    let js = html
        .split('"')
        .find(|s| s.starts_with("/assets/") && s.ends_with(".js"))
        .expect("index.html references a script");
    let res = get(js).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header_of(&res, header::CONTENT_TYPE),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        header_of(&res, header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    let css = html
        .split('"')
        .find(|s| s.starts_with("/assets/") && s.ends_with(".css"))
        .expect("a stylesheet");
    assert_eq!(
        header_of(&get(css).await, header::CONTENT_TYPE),
        "text/css; charset=utf-8"
    );

    let etag = header_of(&res, header::ETAG);
    assert!(etag.starts_with('"'));
    let again = clarateach_web::router()
        .oneshot(
            Request::get(js)
                .header(header::IF_NONE_MATCH, &etag)
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}
