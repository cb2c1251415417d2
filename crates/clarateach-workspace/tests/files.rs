//! The file API against a real daemon, including the confinement table.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::symlink;
use std::time::Duration;

use common::{Daemon, TOKEN};
use serde_json::{json, Value};

async fn status_json(r: reqwest::RequestBuilder) -> (u16, Value) {
    let r = r.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn put(d: &Daemon, path: &str, body: Value) -> reqwest::RequestBuilder {
    d.http()
        .put(d.url(&format!("/files/{path}")))
        .bearer_auth(TOKEN)
        .json(&body)
}

fn post(d: &Daemon, route: &str, body: Value) -> reqwest::RequestBuilder {
    d.http().post(d.url(route)).bearer_auth(TOKEN).json(&body)
}

/// GET with the path sent byte for byte (reqwest would normalise `%2e%2e` away).
async fn raw_get(d: &Daemon, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out)
}

#[tokio::test]
async fn list_read_write_mkdir_rename_delete() {
    let d = Daemon::start().await;
    let (s, _) = status_json(put(
        &d,
        "src/deep/main.py",
        json!({"content": "print('hi')\n"}),
    ))
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        std::fs::read_to_string(d.root.join("src/deep/main.py")).unwrap(),
        "print('hi')\n"
    );
    std::fs::write(d.root.join("b.txt"), "b").unwrap();
    std::fs::write(d.root.join("A.txt"), "a").unwrap();
    std::fs::create_dir(d.root.join("zdir")).unwrap();

    let (s, v) = status_json(d.get("/files?path=/workspace")).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["src", "zdir", "A.txt", "b.txt"]);
    assert_eq!(v["files"][0]["is_directory"], true);
    assert_eq!(v["files"][0]["path"], "/src");
    assert_eq!(v["files"][2]["size"], 1);
    let (_, v) = status_json(d.get("/files?path=/src")).await;
    assert_eq!(v["files"][0]["path"], "/src/deep");

    let (s, v) = status_json(d.get("/files/src/deep/main.py")).await;
    assert_eq!(
        (s, v),
        (
            200,
            json!({"content": "print('hi')\n", "encoding": "utf-8"})
        )
    );
    let (s, v) = status_json(d.get("/files//workspace/src/deep/main.py")).await;
    assert_eq!((s, v["encoding"].clone()), (200, json!("utf-8")));

    // binary round trip through base64, and raw bytes on request
    let (s, _) = status_json(put(
        &d,
        "bin.dat",
        json!({"content": "AP8BgA==", "encoding": "base64"}),
    ))
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        std::fs::read(d.root.join("bin.dat")).unwrap(),
        [0, 255, 1, 128]
    );
    let (_, v) = status_json(d.get("/files/bin.dat")).await;
    assert_eq!(v, json!({"content": "AP8BgA==", "encoding": "base64"}));
    let raw = d
        .get("/files/bin.dat")
        .header("accept", "application/octet-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.bytes().await.unwrap().as_ref(), [0, 255, 1, 128]);

    // overwrite keeps the mode (an executable stays executable)
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.root.join("A.txt"), std::fs::Permissions::from_mode(0o755)).unwrap();
    status_json(put(&d, "A.txt", json!({"content": "new"}))).await;
    assert_eq!(
        std::fs::metadata(d.root.join("A.txt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );

    assert_eq!(
        status_json(post(&d, "/files-mkdir", json!({"path": "/x/y/z"})))
            .await
            .0,
        200
    );
    assert!(d.root.join("x/y/z").is_dir());
    assert_eq!(
        status_json(post(&d, "/files-mkdir", json!({"path": "/A.txt"})))
            .await
            .0,
        409
    );
    assert_eq!(
        status_json(post(
            &d,
            "/files-rename",
            json!({"from": "/b.txt", "to": "/x/b2.txt"})
        ))
        .await
        .0,
        200
    );
    assert!(d.root.join("x/b2.txt").is_file());
    assert_eq!(
        status_json(post(
            &d,
            "/files-rename",
            json!({"from": "/A.txt", "to": "/x/b2.txt"})
        ))
        .await
        .0,
        409
    );
    assert_eq!(
        status_json(post(
            &d,
            "/files-rename",
            json!({"from": "/nope", "to": "/y"})
        ))
        .await
        .0,
        404
    );

    let del = d.http().delete(d.url("/files/x")).bearer_auth(TOKEN);
    assert_eq!(status_json(del).await.0, 200);
    assert!(!d.root.join("x").exists());
    let (s, v) = status_json(d.get("/files/x")).await;
    assert_eq!((s, v["code"].clone()), (404, json!("not_found")));
    assert_eq!(status_json(d.get("/files/src")).await.0, 400); // a directory
    assert_eq!(
        status_json(put(&d, "q", json!({"content": "x", "bogus": 1})))
            .await
            .0,
        422 // JSON of the wrong shape: validation_failed, as on the control plane
    );
    assert_eq!(
        status_json(put(&d, "q", json!({"content": "@@", "encoding": "base64"})))
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn size_cap_gives_413() {
    let d = Daemon::start_with(|c| c.max_file_bytes = 1000).await;
    let (s, v) = status_json(put(&d, "big", json!({"content": "x".repeat(1001)}))).await;
    assert_eq!((s, v["code"].clone()), (413, json!("payload_too_large")));
    std::fs::write(d.root.join("big"), vec![b'x'; 1001]).unwrap();
    assert_eq!(status_json(d.get("/files/big")).await.0, 413);
    let huge = d
        .http()
        .put(d.url("/files/huge"))
        .bearer_auth(TOKEN)
        .json(&json!({"content": "x".repeat(3 << 20)}));
    assert_eq!(status_json(huge).await.0, 413);
}

#[tokio::test]
async fn a_file_named_watch_is_still_a_file() {
    let d = Daemon::start().await;
    assert_eq!(
        status_json(put(&d, "watch", json!({"content": "w"})))
            .await
            .0,
        200
    );
    let (_, v) = status_json(d.get("/files/watch")).await;
    assert_eq!(v["content"], "w");
    assert_eq!(
        status_json(d.http().delete(d.url("/files/watch")).bearer_auth(TOKEN))
            .await
            .0,
        200
    );
}

/// Every escape attempt is refused (403/400) or, for absolute paths, taken relative to the
/// root (404): the secret outside is never read and nothing is written outside.
#[tokio::test]
async fn confinement_table() {
    let d = Daemon::start().await;
    let base = d.dir.path();
    std::fs::write(base.join("secret"), "TOP-SECRET").unwrap();
    let sibling = base.join("root2"); // shares the root's prefix: the seed's startswith bug
    std::fs::create_dir(&sibling).unwrap();
    std::fs::write(sibling.join("secret"), "TOP-SECRET").unwrap();
    symlink(base.join("secret"), d.root.join("out-file")).unwrap();
    symlink(&sibling, d.root.join("out-dir")).unwrap();
    symlink("../root2", d.root.join("out-rel")).unwrap();
    std::fs::create_dir(d.root.join("inside")).unwrap();
    std::fs::write(d.root.join("inside/ok.txt"), "fine").unwrap();
    symlink("inside/ok.txt", d.root.join("in-link")).unwrap();
    symlink("inside", d.root.join("in-dir")).unwrap();

    let refused_reads = [
        ("/files/..%2Fsecret", 403),
        ("/files/%2e%2e/secret", 403),
        ("/files/a/..%2F..%2Fsecret", 403),
        ("/files/..%2Froot2/secret", 403),
        ("/files/out-file", 403),
        ("/files/out-dir/secret", 403),
        ("/files/out-rel/secret", 403),
        ("/files/x%00y", 400),
        ("/files?path=..", 403),
        ("/files?path=/workspace/../root2", 403),
        ("/files?path=out-dir", 403),
        ("/files?path=out-rel", 403),
    ];
    for (path, want) in refused_reads {
        let (status, body) = raw_get(&d, path).await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(!body.contains("TOP-SECRET"), "{path} leaked");
    }
    // Absolute paths are relative to the root: no host file is read.
    let (s, _) = status_json(d.get("/files//etc/passwd")).await;
    assert_eq!(s, 404);
    let (s, _) = status_json(d.get(&format!("/files/{}", base.join("secret").display()))).await;
    assert_eq!(s, 404);

    let refused_writes = [
        put(&d, "..%2Fevil", json!({"content": "x"})),
        put(&d, "out-dir/evil", json!({"content": "x"})),
        put(&d, "out-rel/evil", json!({"content": "x"})),
        put(&d, "out-dir/new/evil", json!({"content": "x"})),
        post(&d, "/files-mkdir", json!({"path": "out-dir/evil"})),
        post(
            &d,
            "/files-rename",
            json!({"from": "inside/ok.txt", "to": "out-dir/evil"}),
        ),
        post(
            &d,
            "/files-rename",
            json!({"from": "out-dir/secret", "to": "stolen"}),
        ),
        post(
            &d,
            "/files-rename",
            json!({"from": "../secret", "to": "stolen"}),
        ),
        d.http()
            .delete(d.url("/files/out-dir/secret"))
            .bearer_auth(TOKEN),
        d.http()
            .delete(d.url("/files/..%2Froot2"))
            .bearer_auth(TOKEN),
    ];
    for req in refused_writes {
        let (s, v) = status_json(req).await;
        assert!(s == 403 || s == 400, "status {s}: {v}");
    }
    assert_eq!(
        std::fs::read_dir(&sibling).unwrap().count(),
        1,
        "something was written outside"
    );
    assert_eq!(
        std::fs::read_to_string(sibling.join("secret")).unwrap(),
        "TOP-SECRET"
    );
    assert!(!d.root.join("stolen").exists());

    // Writing to a symlink that points outside replaces the link, never the target.
    assert_eq!(
        status_json(put(&d, "out-file", json!({"content": "mine"})))
            .await
            .0,
        200
    );
    assert_eq!(
        std::fs::read_to_string(base.join("secret")).unwrap(),
        "TOP-SECRET"
    );
    // Deleting a link to a directory removes the link only.
    assert_eq!(
        status_json(d.http().delete(d.url("/files/out-dir")).bearer_auth(TOKEN))
            .await
            .0,
        200
    );
    assert!(sibling.join("secret").exists());

    // Symlinks that stay inside work.
    assert_eq!(
        status_json(d.get("/files/in-link")).await.1["content"],
        "fine"
    );
    assert_eq!(
        status_json(d.get("/files/in-dir/ok.txt")).await.1["content"],
        "fine"
    );
    assert_eq!(
        status_json(put(&d, "in-dir/new.txt", json!({"content": "n"})))
            .await
            .0,
        200
    );
    assert!(d.root.join("inside/new.txt").exists());
    let (_, v) = status_json(d.get("/files")).await;
    let in_dir = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "in-dir")
        .unwrap()
        .clone();
    assert_eq!(in_dir["is_directory"], true);
}

/// A symlink swapped between "inside" and "outside" while requests run never yields the
/// outside content (a check-then-use implementation would).
#[tokio::test]
async fn symlink_swap_race_never_leaks() {
    let d = Daemon::start().await;
    let base = d.dir.path().to_path_buf();
    std::fs::create_dir(base.join("outside")).unwrap();
    std::fs::write(base.join("outside/f"), "TOP-SECRET").unwrap();
    std::fs::create_dir(d.root.join("real")).unwrap();
    std::fs::write(d.root.join("real/f"), "inside").unwrap();
    let root = d.root.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let swapper = std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let tmp = root.join(format!(".swap{n}"));
            let target = if n.is_multiple_of(2) {
                base.join("outside")
            } else {
                root.join("real")
            };
            let _ = symlink(&target, &tmp);
            let _ = std::fs::rename(&tmp, root.join("link"));
            n += 1;
        }
    });
    let (mut ok, mut refused) = (0, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        let r = d.get("/files/link/f").send().await.unwrap();
        let s = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("TOP-SECRET"),
            "leaked through a swapped symlink"
        );
        let w = put(&d, "link/w", json!({"content": "x"}))
            .send()
            .await
            .unwrap();
        assert!(
            !d.dir.path().join("outside/w").exists(),
            "wrote through a swapped symlink ({})",
            w.status()
        );
        if s == 200 {
            ok += 1
        } else {
            refused += 1
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
    println!("swap race: {ok} reads inside, {refused} refused, none leaked");
    assert!(refused > 0);
}
