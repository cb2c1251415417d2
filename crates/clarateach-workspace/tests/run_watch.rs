//! `POST /run` and `/files/watch` against a real daemon.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Daemon, TOKEN};
use serde_json::{json, Value};

async fn run(d: &Daemon, body: Value) -> (u16, Value) {
    let r = d
        .http()
        .post(d.url("/run"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn run_reports_exit_code_stdout_stderr_and_stages_files() {
    let d = Daemon::start().await;
    let (s, v) = run(
        &d,
        json!({
            "command": "cat src/in.txt; echo err-$GREETING >&2; test ! -e \"$CLARATEACH_DAEMON_TOKEN\" || echo leak; exit 3",
            "files": {"src/in.txt": "staged!\n"},
            "env": {"GREETING": "hello"}
        }),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["stdout"], "staged!\n");
    assert_eq!(v["stderr"], "err-hello\n");
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["timed_out"], false);
    assert_eq!(v["truncated"], false);
    let (s, v) = run(&d, json!({"command": "true", "files": {"../x": "no"}})).await;
    assert_eq!((s, v["code"].clone()), (403, json!("outside_workspace")));
    let (s, _) = run(&d, json!({"command": "true", "timeout_s": 601})).await;
    assert_eq!(s, 400);
    let (_, v) = run(&d, json!({"command": "head -c 3000000 /dev/zero"})).await;
    assert_eq!(v["truncated"], true);
    assert_eq!(v["stdout"].as_str().unwrap().len(), 1 << 20);
}

#[tokio::test]
async fn run_timeout_kills_the_whole_process_group() {
    let d = Daemon::start().await;
    let (s, v) = run(
        &d,
        json!({"command": "sleep 60 & echo $!; sleep 60", "timeout_s": 1}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["timed_out"], true);
    assert_eq!(v["exit_code"], Value::Null);
    assert!(v["duration_ms"].as_u64().unwrap() < 5000);
    let pid: u32 = v["stdout"].as_str().unwrap().trim().parse().unwrap();
    let gone = async {
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), gone)
        .await
        .expect("background child survived the timeout");
}

#[tokio::test]
async fn watch_reports_created_changed_deleted() {
    let d = Daemon::start().await;
    let outside = d.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, d.root.join("link")).unwrap();
    let mut w = d.ws_path("/files/watch").await;
    std::fs::write(outside.join("secret-name"), "x").unwrap(); // not watched: behind a symlink
    std::fs::create_dir(d.root.join("sub")).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // the new dir's watch is added
    std::fs::write(d.root.join("sub/a.txt"), "1").unwrap();
    std::fs::remove_file(d.root.join("sub/a.txt")).unwrap();
    let mut seen = Vec::new();
    let res = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            w.next().await.unwrap();
            seen = w.events.clone();
            let has = |t: &str, p: &str| seen.iter().any(|e| e["type"] == t && e["path"] == p);
            if has("created", "/sub")
                && has("created", "/sub/a.txt")
                && has("deleted", "/sub/a.txt")
            {
                return;
            }
        }
    })
    .await;
    assert!(res.is_ok(), "events: {seen:?}");
    assert!(
        !seen.iter().any(|e| e.to_string().contains("secret-name")),
        "{seen:?}"
    );
    // Writes through the API use a temp file; only the final name is reported.
    let r = d
        .http()
        .put(d.url("/files/api.txt"))
        .bearer_auth(TOKEN)
        .json(&json!({"content": "x"}))
        .send()
        .await;
    assert_eq!(r.unwrap().status(), 200);
    let res = tokio::time::timeout(Duration::from_secs(5), async {
        while !w.events.iter().any(|e| e["path"] == "/api.txt") {
            w.next().await.unwrap();
        }
    })
    .await;
    assert!(res.is_ok(), "events: {:?}", w.events);
    assert!(
        !w.events
            .iter()
            .any(|e| e.to_string().contains("clarateach-tmp")),
        "{:?}",
        w.events
    );
}
