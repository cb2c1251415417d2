//! The UI router answers with the build's precompressed copies when the client allows them, and
//! with the plain bytes otherwise; `Vary` tells caches the answer depends on `Accept-Encoding`.

#![allow(clippy::unwrap_used)]

use std::io::Read;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn get(router: &axum::Router, path: &str, accept: Option<&str>) -> axum::response::Response {
    let mut req = Request::get(path);
    if let Some(a) = accept {
        req = req.header(header::ACCEPT_ENCODING, a);
    }
    router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn body(res: axum::response::Response) -> Vec<u8> {
    res.into_body().collect().await.unwrap().to_bytes().to_vec()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn a_directory_build_serves_its_precompressed_copies() {
    let dir = tempfile::tempdir().unwrap();
    let js = "console.log('hello');\n".repeat(200);
    std::fs::create_dir(dir.path().join("assets")).unwrap();
    std::fs::write(dir.path().join("index.html"), "<!doctype html><p>ui</p>").unwrap();
    std::fs::write(dir.path().join("assets/app-1234.js"), &js).unwrap();
    std::fs::write(
        dir.path().join("assets/app-1234.js.gz"),
        gzip(js.as_bytes()),
    )
    .unwrap();
    std::fs::write(dir.path().join("assets/app-1234.js.br"), b"pretend-brotli").unwrap();
    let router = clarateach_web::router_from_dir(dir.path()).unwrap();

    let res = get(&router, "/assets/app-1234.js", Some("gzip, deflate, br")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_ENCODING], "br");
    assert_eq!(res.headers()[header::VARY], "accept-encoding");
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    let br_tag = res.headers()[header::ETAG].clone();
    assert_eq!(body(res).await, b"pretend-brotli");

    let res = get(&router, "/assets/app-1234.js", Some("gzip")).await;
    assert_eq!(res.headers()[header::CONTENT_ENCODING], "gzip");
    let gz_tag = res.headers()[header::ETAG].clone();
    assert_eq!(gunzip(&body(res).await), js.as_bytes());

    let res = get(&router, "/assets/app-1234.js", None).await;
    assert!(res.headers().get(header::CONTENT_ENCODING).is_none());
    assert_eq!(res.headers()[header::VARY], "accept-encoding");
    let plain_tag = res.headers()[header::ETAG].clone();
    assert_eq!(body(res).await, js.as_bytes());

    // Each representation has its own validator, so a cache never revalidates the wrong bytes.
    assert_ne!(br_tag, gz_tag);
    assert_ne!(gz_tag, plain_tag);
    let req = Request::get("/assets/app-1234.js")
        .header(header::ACCEPT_ENCODING, "gzip")
        .header(header::IF_NONE_MATCH, gz_tag)
        .body(Body::empty())
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);

    // The copies are representations of the file, not files of their own.
    let res = get(&router, "/assets/app-1234.js.br", None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_directory_without_index_is_refused_and_links_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let err = match clarateach_web::router_from_dir(dir.path()) {
        Ok(_) => panic!("a directory without index.html was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("index.html"), "{err}");

    std::fs::write(dir.path().join("index.html"), "<p>ui</p>").unwrap();
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "host secret").unwrap();
    std::os::unix::fs::symlink(secret.path(), dir.path().join("leak.txt")).unwrap();
    let router = clarateach_web::router_from_dir(dir.path()).unwrap();
    let res = get(&router, "/leak.txt", None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(!String::from_utf8_lossy(&body(res).await).contains("host secret"));
}

/// With the real UI embedded (a build without `CLARATEACH_SKIP_WEB_BUILD`), every script of the
/// first page load comes back compressed when the browser asks for it.
#[tokio::test]
async fn embedded_scripts_come_back_compressed() {
    if !clarateach_web::has_ui() {
        println!("SKIP: embedded_scripts_come_back_compressed: built with CLARATEACH_SKIP_WEB_BUILD, no UI embedded");
        eprintln!("SKIP: embedded_scripts_come_back_compressed: built with CLARATEACH_SKIP_WEB_BUILD, no UI embedded");
        return;
    }
    let router = clarateach_web::router();
    let html = String::from_utf8(body(get(&router, "/", None).await).await).unwrap();
    let scripts: Vec<&str> = html
        .split('"')
        .filter(|s| s.starts_with("/assets/") && s.ends_with(".js"))
        .collect();
    assert!(!scripts.is_empty(), "no scripts in {html}");
    for s in scripts {
        let res = get(&router, s, Some("gzip, deflate, br, zstd")).await;
        assert_eq!(res.headers()[header::CONTENT_ENCODING], "br", "{s}");
        let res = get(&router, s, Some("gzip")).await;
        assert_eq!(res.headers()[header::CONTENT_ENCODING], "gzip", "{s}");
        let unzipped = gunzip(&body(res).await);
        let plain = body(get(&router, s, None).await).await;
        assert_eq!(unzipped, plain, "{s}");
    }
}
