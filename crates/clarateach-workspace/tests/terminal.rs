//! Terminal sessions over a real WebSocket against a real daemon and real bash.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::Daemon;
use serde_json::json;

#[tokio::test]
async fn echo_attached_first_and_resize() {
    let d = Daemon::start().await;
    let mut t = d.ws("").await;
    let mut attached = t.until_event("attached", 5).await;
    assert!(attached["replay_bytes"].is_u64(), "{attached}");
    attached.as_object_mut().unwrap().remove("replay_bytes");
    assert_eq!(
        attached,
        json!({"type": "attached", "session": "main", "new": true, "mode": "interactive"})
    );
    assert_eq!(t.events[0]["type"], "attached", "attached must come first");
    t.input("echo hi-$((40+2))\r").await;
    t.until_text("hi-42", 5).await;
    t.send_json(json!({"type": "resize", "cols": 123, "rows": 45}))
        .await;
    t.input("stty size\r").await;
    t.until_text("45 123", 5).await;
    t.input("echo $TERM\r").await;
    t.until_text("xterm-256color", 5).await;
}

#[tokio::test]
async fn utf8_split_across_reads_arrives_intact_in_json() {
    let d = Daemon::start().await;
    let mut t = d.ws("?format=json").await;
    t.until_event("attached", 5).await;
    t.input("yes é | head -n 6000 | tr -d '\\n'; echo; echo DO\"\"NE\r")
        .await;
    t.until_text("DONE", 10).await;
    let count = t.text.matches('é').count();
    assert!(count >= 6000, "only {count} é");
    assert!(!t.text.contains('\u{FFFD}'), "a character was mangled");
}

#[tokio::test]
async fn reconnect_replays_scrollback_and_continues() {
    let d = Daemon::start().await;
    let mut a = d.ws("?session=tab-1").await;
    a.until_event("attached", 5).await;
    a.input("X=7; echo mark-$((X*6))\r").await;
    a.until_text("mark-42", 5).await;
    drop(a);
    let mut b = d.ws("?session=tab-1").await;
    let attached = b.until_event("attached", 5).await;
    assert_eq!(attached["new"], false);
    // `replay_bytes` announces exactly the scrollback that comes before live output.
    let replay = attached["replay_bytes"].as_u64().unwrap() as usize;
    assert!(replay > 0, "{attached}");
    assert!(b.text.is_empty());
    while b.text.len() < replay {
        b.next().await.unwrap();
    }
    assert!(
        b.text[..replay].contains("mark-42"),
        "{:?}",
        &b.text[..replay]
    );
    b.until_text("mark-42", 5).await;
    b.input("echo again-$X\r").await; // same shell: the variable survives
    b.until_text("again-7", 5).await;
}

#[tokio::test]
async fn two_viewers_see_the_same_output() {
    let d = Daemon::start().await;
    let mut a = d.ws("").await;
    a.until_event("attached", 5).await;
    let mut b = d.ws("").await;
    b.until_event("attached", 5).await;
    a.input("echo both-$((2*21))\r").await;
    a.until_text("both-42", 5).await;
    b.until_text("both-42", 5).await;
}

#[tokio::test]
async fn watch_mode_cannot_type() {
    let d = Daemon::start().await;
    let mut learner = d.ws("").await;
    learner.until_event("attached", 5).await;
    let mut watcher = d.ws("?mode=watch").await;
    assert_eq!(watcher.until_event("attached", 5).await["mode"], "watch");
    watcher.input("touch hacked\r").await;
    let err = watcher.until_event("error", 5).await;
    assert_eq!(err["code"], "read_only");
    learner.input("echo seen-by-$((1+1))\r").await;
    watcher.until_text("seen-by-2", 5).await;
    assert!(!d.root.join("hacked").exists());
    assert!(!learner.text.contains("touch hacked"));
}

#[tokio::test]
async fn takeover_notifies_the_other_viewers() {
    let d = Daemon::start().await;
    let mut learner = d.ws("").await;
    learner.until_event("attached", 5).await;
    let mut instructor = d.ws("?mode=takeover").await;
    instructor.until_event("attached", 5).await;
    assert_eq!(learner.until_event("takeover", 5).await["active"], true);
    instructor.input("echo helped-$((3*3))\r").await;
    learner.until_text("helped-9", 5).await;
    drop(instructor);
    learner.events.clear();
    assert_eq!(learner.until_event("takeover", 5).await["active"], false);
}

#[tokio::test]
async fn a_flood_reaches_a_lone_viewer_whole() {
    // The shell is paced to its fastest viewer: output is delayed, never skipped.
    let d = Daemon::start().await;
    let mut t = d.ws("").await;
    t.until_event("attached", 5).await;
    t.input("head -c 20000000 /dev/zero | tr '\\0' a; echo; echo DO\"\"NE\r")
        .await;
    t.until_text("DONE", 60).await;
    assert!(
        !t.events.iter().any(|e| e["code"] == "resync"),
        "resynced: {:?}",
        t.events
    );
    assert!(t.text.matches('a').count() >= 20_000_000);
}

#[tokio::test]
async fn stalled_viewer_does_not_block_another() {
    let d = Daemon::start().await;
    let mut fast = d.ws("").await;
    fast.until_event("attached", 5).await;
    let mut stalled = d.ws("").await; // never read until the end
    fast.input("head -c 40000000 /dev/zero | tr '\\0' a; echo; echo DO\"\"NE\r")
        .await;
    let started = std::time::Instant::now();
    fast.until_text("DONE", 60).await;
    println!(
        "fast viewer got 40 MB in {:?} with a stalled viewer attached",
        started.elapsed()
    );
    // The stalled viewer, once it reads, learns it was resynced or dropped as too slow.
    let res = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if stalled
                .events
                .iter()
                .any(|e| e["code"] == "resync" || e["reason"] == "too_slow")
            {
                return true;
            }
            if stalled.next().await.is_none() {
                return false;
            }
        }
    })
    .await;
    assert!(
        matches!(res, Ok(true)),
        "stalled viewer events: {:?}",
        stalled.events
    );
}

#[tokio::test]
async fn shell_exit_is_reported_and_next_connect_starts_a_new_shell() {
    let d = Daemon::start().await;
    let mut t = d.ws("").await;
    t.until_event("attached", 5).await;
    t.input("exit 7\r").await;
    assert_eq!(
        t.until_event("exit", 5).await,
        json!({"type": "exit", "code": 7})
    );
    let mut again = d.ws("").await;
    assert_eq!(again.until_event("attached", 5).await["new"], true);
    again.input("echo fresh-$((5+5))\r").await;
    again.until_text("fresh-10", 5).await;
}

#[tokio::test]
async fn auth_and_bad_queries() {
    let d = Daemon::start().await;
    let r = reqwest::get(d.url("/health")).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::get(d.url("/files")).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["code"],
        "unauthorized"
    );
    let r = d
        .http()
        .get(d.url("/files"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = d.get("/terminal?session=a/b").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = d
        .get("/terminal?session=ok&mode=root")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn unix_socket_listener_serves_health() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("d.sock");
    let d = Daemon::start_with(|c| {
        c.listen
            .push(clarateach_workspace::Listen::Unix(sock.clone()))
    })
    .await;
    let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    drop(d);
}
