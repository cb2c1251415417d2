//! The live screen (`GET /screen`) of a real bash on a real PTY: the VT tail, and the last
//! commands, exit codes and cwd from the OSC 133 / OSC 7 marks the daemon asks bash for.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use clarateach_core::classroom::ScreenSnapshot;
use common::Daemon;

async fn screen_until(
    d: &Daemon,
    what: &str,
    ok: impl Fn(&ScreenSnapshot) -> bool,
) -> ScreenSnapshot {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resp = d.get("/screen").send().await.unwrap();
        if resp.status() == 200 {
            let snap: ScreenSnapshot = resp.json().await.unwrap();
            if ok(&snap) {
                return snap;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{what}: last screen {snap:#?}");
            }
        } else if tokio::time::Instant::now() > deadline {
            panic!("{what}: status {}", resp.status());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_screen_shows_the_tail_the_last_commands_and_the_cwd() {
    let d = Daemon::start().await;
    let none = d.get("/screen").send().await.unwrap();
    assert_eq!(none.status(), 404, "no session yet");
    let body: serde_json::Value = none.json().await.unwrap();
    assert_eq!(body["code"], "no_session");

    let mut t = d.ws("").await;
    t.until_event("attached", 5).await;
    t.input("cd /tmp && ls /does-not-exist\r").await;
    t.until_text("No such file", 5).await;
    t.input("\r").await; // an empty line is no command
    t.input("echo screen-$((6*7))\r").await;
    t.until_text("screen-42", 5).await;
    let snap = screen_until(&d, "two commands", |s| s.commands.len() >= 2).await;
    let cmds: Vec<(&str, Option<i32>)> = snap
        .commands
        .iter()
        .map(|c| (c.command.as_str(), c.exit_code))
        .collect();
    assert_eq!(
        cmds,
        vec![
            ("cd /tmp && ls /does-not-exist", Some(2)),
            ("echo screen-$((6*7))", Some(0)),
        ]
    );
    assert_eq!(snap.cwd.as_deref(), Some("/tmp"));
    assert!(
        snap.lines.iter().any(|l| l.contains("screen-42")),
        "{:?}",
        snap.lines
    );
    assert!(snap.lines.len() <= clarateach_core::classroom::SCREEN_LINES);
    assert!(snap.idle_s < 5);

    // Unchanged since the version we hold: 204 and no body.
    let again = d
        .get(&format!("/screen?since={}", snap.version))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 204);

    // A long command shows as running until it finishes.
    t.input("sleep 1\r").await;
    screen_until(&d, "sleep running", |s| {
        s.running.as_deref() == Some("sleep 1")
    })
    .await;
    screen_until(&d, "sleep done", |s| {
        s.running.is_none() && s.commands.last().is_some_and(|c| c.command == "sleep 1")
    })
    .await;

    // `help` prints the mark the learner's IDE turns into a help request.
    t.input("help my build fails\r").await;
    t.until_text("Asked the instructor for help", 5).await;
    assert!(
        t.text.contains("\u{1b}]7700;help;") && t.text.contains(";my build fails\u{7}"),
        "help mark missing: {}",
        common::tail(&t.text)
    );

    let bad = d.get("/screen?session=../x").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let unauth = d.http().get(d.url("/screen")).send().await.unwrap();
    assert_eq!(unauth.status(), 401);
}

/// The daemon brings the VT state up to date when the screen is asked for: after a flood of
/// 1.3 MB nobody looked at, it starts over from the scrollback's tail, and the command marks
/// are all counted, so the grid never shows a stale or torn screen.
#[tokio::test]
async fn a_screen_nobody_watched_is_whole_at_the_next_look() {
    let d = Daemon::start().await;
    let mut t = d.ws("").await;
    t.until_event("attached", 5).await;
    t.input("seq 1 200000; echo flood-$((6*7))\r").await;
    t.until_text("flood-42", 20).await;
    let snap = screen_until(&d, "the flood's end", |s| {
        s.lines.iter().any(|l| l.contains("flood-42"))
    })
    .await;
    let i = snap
        .lines
        .iter()
        .position(|l| l.contains("flood-42"))
        .unwrap();
    assert!(
        i > 0 && snap.lines[i - 1] == "200000",
        "the line before the end is the last number: {:?}",
        snap.lines
    );
    assert_eq!(
        snap.commands.last().map(|c| c.command.as_str()),
        Some("seq 1 200000; echo flood-$((6*7))")
    );
    // A little more output: caught up from where the last look ended; one command more.
    t.input("echo watched-$((6*7))\r").await;
    let after = screen_until(&d, "watched output", |s| {
        s.lines.iter().any(|l| l.contains("watched-42"))
    })
    .await;
    assert_eq!(after.commands.len(), snap.commands.len() + 1);
}
