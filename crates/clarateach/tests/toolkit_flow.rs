//! Broadcast, checks and audit end to end with `clarateach up` and real sandboxes (issue 10):
//! three learners, one edits the handed-out file elsewhere (merged), one on the same line
//! (kept, `name.new` beside it), one not at all (replaced); a learner who plants symlinks to
//! get the broadcast written outside the workspace gets nothing written there; a check passes
//! where the learner did the exercise and fails elsewhere; the audit lists it all and the
//! learner sees an instructor watching. Needs root and bubblewrap.

mod support;

use clarateach_client::{Client, TerminalOptions};
use clarateach_core::toolkit::{
    AuditAction, BroadcastFile, BroadcastOutcome, BroadcastRequest, CheckRequest, FileEncoding,
};
use serde_json::Value;
use support::*;

const V1: &str = "def f():\n    return 1\n\n\n\ndef g():\n    pass\n";
const V2: &str = "def f():\n    return 1\n\n\n\ndef g():\n    return 'step 2'\n";

fn files(list: &[(&str, &str)]) -> BroadcastRequest {
    BroadcastRequest {
        files: list
            .iter()
            .map(|(p, c)| BroadcastFile {
                path: (*p).into(),
                content: (*c).into(),
                encoding: FileEncoding::Utf8,
            })
            .collect(),
        from_seat: None,
        dir: None,
    }
}

/// Runs `cmd` in the learner's seat; (exit code, stdout).
async fn run(http: &reqwest::Client, base: &str, token: &str, cmd: &str) -> (i64, String) {
    let v: Value = http
        .post(format!("{base}/api/session/run"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "command": cmd }))
        .send()
        .await
        .expect("run")
        .json()
        .await
        .expect("json");
    (
        v["exit_code"].as_i64().unwrap_or(-1),
        v["stdout"].as_str().unwrap_or("").to_string(),
    )
}

async fn read(http: &reqwest::Client, base: &str, token: &str, path: &str) -> Option<String> {
    let r = http
        .get(format!("{base}/api/session/files/{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("read");
    if !r.status().is_success() {
        return None;
    }
    let v: Value = r.json().await.expect("json");
    v["content"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_merges_check_colours_and_audit_records() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED broadcast_merges_check_colours_and_audit_records: {why}");
        println!("SKIPPED broadcast_merges_check_colours_and_audit_records: {why}");
        return;
    }
    let (_tmp, dir) = data_dir();
    let (_up, base, token) = start_up(&dir, free_port());
    let admin = Client::new(&base, Some(token)).expect("client");
    let ws = start_workshop(&admin, &workshop_request("toolkit", 3)).await;
    let mut learners = Vec::new();
    for _ in 0..3 {
        learners.push(join(&base, &ws.code).await);
    }
    learners.sort_by_key(|j| j.seat);
    let tok = |i: usize| learners[i].token.clone();
    let http = reqwest::Client::new();

    let r = admin
        .broadcast(&ws.id, &files(&[("ex/step.py", V1)]))
        .await
        .expect("v1");
    assert_eq!(r.seats.len(), 3, "{r:?}");
    assert!(
        r.seats
            .iter()
            .all(|s| s.files[0].outcome == BroadcastOutcome::Written),
        "{r:?}"
    );
    assert_eq!(
        read(&http, &base, &tok(2), "ex/step.py").await.as_deref(),
        Some(V1)
    );

    // Seat 1 edits elsewhere, seat 2 the line v2 changes; seat 3 plants links out of the workspace.
    put_file(
        &http,
        &base,
        &tok(0),
        "ex/step.py",
        &V1.replace("return 1", "return 42  # mine"),
    )
    .await;
    put_file(
        &http,
        &base,
        &tok(1),
        "ex/step.py",
        &V1.replace("    pass", "    return 'my own'"),
    )
    .await;
    let (code, _) = run(
        &http,
        &base,
        &tok(2),
        "cd /workspace && ln -s /tmp lesson && ln -s /tmp/planted.txt notes.txt && echo ok",
    )
    .await;
    assert_eq!(code, 0, "the learner planted the links");

    let r = admin
        .broadcast(
            &ws.id,
            &files(&[
                ("ex/step.py", V2),
                ("lesson/a.py", "print(1)\n"),
                ("notes.txt", "handout\n"),
            ]),
        )
        .await
        .expect("v2");
    let outcome = |seat: u32, path: &str| {
        r.seats
            .iter()
            .find(|s| s.seat == seat)
            .and_then(|s| s.files.iter().find(|f| f.path == path))
            .map(|f| f.outcome)
    };
    let (s1, s2, s3) = (learners[0].seat, learners[1].seat, learners[2].seat);
    assert_eq!(
        outcome(s1, "ex/step.py"),
        Some(BroadcastOutcome::Merged),
        "{r:?}"
    );
    assert_eq!(
        outcome(s2, "ex/step.py"),
        Some(BroadcastOutcome::Conflicted),
        "{r:?}"
    );
    assert_eq!(
        outcome(s3, "ex/step.py"),
        Some(BroadcastOutcome::Written),
        "{r:?}"
    );
    let merged = read(&http, &base, &tok(0), "ex/step.py")
        .await
        .expect("merged");
    assert!(
        merged.contains("return 42  # mine") && merged.contains("step 2"),
        "{merged}"
    );
    assert!(read(&http, &base, &tok(1), "ex/step.py")
        .await
        .expect("kept")
        .contains("my own"));
    assert_eq!(
        read(&http, &base, &tok(1), "ex/step.py.new")
            .await
            .as_deref(),
        Some(V2)
    );
    // The planted links: nothing was written through them.
    assert_eq!(
        outcome(s3, "lesson/a.py"),
        Some(BroadcastOutcome::Failed),
        "{r:?}"
    );
    assert_eq!(
        outcome(s3, "notes.txt"),
        Some(BroadcastOutcome::Failed),
        "{r:?}"
    );
    let (code, out) = run(
        &http,
        &base,
        &tok(2),
        "test ! -e /tmp/a.py && test ! -e /tmp/planted.txt && readlink /workspace/notes.txt",
    )
    .await;
    assert_eq!(
        (code, out.trim()),
        (0, "/tmp/planted.txt"),
        "the link is left as it was"
    );
    // Seats without the links got them.
    assert_eq!(
        read(&http, &base, &tok(0), "lesson/a.py").await.as_deref(),
        Some("print(1)\n")
    );

    // A check: passes where the exercise is done.
    for i in [0, 2] {
        put_file(&http, &base, &tok(i), "done.txt", "yes").await;
    }
    let run_ = admin
        .run_check(
            &ws.id,
            &CheckRequest {
                command: Some("test -f done.txt && echo passed-$(whoami | wc -c)".into()),
                timeout_s: Some(10),
                save: true,
            },
        )
        .await
        .expect("check");
    let passed: Vec<(u32, bool)> = run_.results.iter().map(|r| (r.seat, r.passed)).collect();
    assert_eq!(passed, [(s1, true), (s2, false), (s3, true)], "{run_:?}");
    assert!(run_.results[0].stdout.starts_with("passed-"), "{run_:?}");
    assert_eq!(run_.results[1].exit_code, Some(1));
    eprintln!("check across 3 real seats: {} ms", run_.duration_ms);
    let latest = admin.checks(&ws.id).await.expect("latest");
    assert_eq!(latest.saved.map(|s| s.command), Some(run_.command.clone()));

    // The instructor watches seat 1: the learner sees it, the audit records it.
    let learner1 = Client::new(&base, Some(tok(0))).expect("client");
    let _term = admin
        .terminal(&TerminalOptions {
            workshop_id: Some(ws.id.clone()),
            seat: Some(s1),
            ..TerminalOptions::default()
        })
        .await
        .expect("watch");
    let presence: Value = eventually("presence", std::time::Duration::from_secs(5), || async {
        let v: Value = http
            .get(format!("{base}/api/session/presence"))
            .bearer_auth(learner1.token().unwrap_or_default())
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (v["watching"] == true).then_some(v)
    })
    .await;
    assert_eq!(presence["typing"], false);
    let audit = admin.audit(&ws.id).await.expect("audit");
    let actions: Vec<AuditAction> = audit.events.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [
            AuditAction::Watch,
            AuditAction::Check,
            AuditAction::Broadcast,
            AuditAction::Broadcast
        ],
        "{audit:?}"
    );
    assert_eq!(audit.events[0].seat, Some(s1));
}

/// In the seat: waits until something has read `ex/race.py` to the end and closed it (the
/// broadcast's read of the learner's file), then at once appends the learner's line, once. Drops
/// `.armed` when watching and `.fired` after the edit.
const EDIT_AFTER_READ: &str = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0)
assert fd >= 0 and libc.inotify_add_watch(fd, b"ex/race.py", 0x10) >= 0  # IN_CLOSE_NOWRITE
open(".armed", "w").write("1")
os.read(fd, 4096)
with open("ex/race.py", "a") as f:
    f.write("learner line\n")
open(".fired", "w").write("1")
"#;

/// The race the conditional write closes: the learner's edit lands after the broadcast read
/// their file and before it writes. Without the precondition the broadcast decided "untouched,
/// replace" and wrote over the edit; now the daemon refuses that write (412), the broadcast
/// reads again and merges, and the learner's line survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_between_the_broadcasts_read_and_write_survives() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED an_edit_between_the_broadcasts_read_and_write_survives: {why}");
        println!("SKIPPED an_edit_between_the_broadcasts_read_and_write_survives: {why}");
        return;
    }
    let (_tmp, dir) = data_dir();
    let (_up, base, token) = start_up(&dir, free_port());
    let admin = Client::new(&base, Some(token)).expect("client");
    let ws = start_workshop(&admin, &workshop_request("race", 1)).await;
    let learner = join(&base, &ws.code).await;
    let http = reqwest::Client::new();
    let v1 = "a\nb\nc\nd\ne\nf\ng\n";
    let v2 = v1.replacen('a', "A", 1);
    let r = admin
        .broadcast(&ws.id, &files(&[("ex/race.py", v1)]))
        .await
        .expect("v1");
    assert_eq!(
        r.seats[0].files[0].outcome,
        BroadcastOutcome::Written,
        "{r:?}"
    );

    // `run` kills its process group when the command ends: the watcher leaves it (setsid)
    // before the command returns, which waits until it watches.
    let script = format!(
        "cd /workspace && (setsid python3 -c '{EDIT_AFTER_READ}' </dev/null >.watch.log 2>&1 &) \
         && for i in $(seq 100); do [ -e .armed ] && break; sleep 0.1; done && echo ok"
    );
    let (code, _) = run(&http, &base, &learner.token, &script).await;
    assert_eq!(code, 0);
    let t = std::time::Instant::now();
    while read(&http, &base, &learner.token, ".armed").await.is_none() {
        if t.elapsed() > std::time::Duration::from_secs(10) {
            let (_, log) = run(&http, &base, &learner.token, "cat /workspace/.watch.log").await;
            panic!("the learner's watcher did not start: {log}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let r = admin
        .broadcast(&ws.id, &files(&[("ex/race.py", v2.as_str())]))
        .await
        .expect("v2");
    let f = &r.seats[0].files[0];
    let now = read(&http, &base, &learner.token, "ex/race.py")
        .await
        .expect("the file");
    assert_eq!(
        read(&http, &base, &learner.token, ".fired")
            .await
            .as_deref(),
        Some("1"),
        "the learner edited during the broadcast"
    );
    assert!(
        now.contains("learner line"),
        "the learner's edit was lost: {now:?} ({r:?})"
    );
    assert_eq!(f.outcome, BroadcastOutcome::Merged, "{r:?}");
    assert_eq!(now, format!("{v2}learner line\n"), "merged");
    let log = std::fs::read_to_string(dir.join("up.log")).unwrap_or_default();
    assert!(
        log.contains("changed between read and write"),
        "the edit landed inside the window (the write was refused and decided again)"
    );
}

/// Figures for BENCHMARKS.md (not a timed test): a broadcast of 20 files to every seat and a
/// check across every seat, on real sandboxes. Seats from `CLARATEACH_BENCH_SEATS` (default 50).
/// `cargo test -p clarateach --test toolkit_flow -- --ignored --nocapture toolkit_figures`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: starts many real seats"]
async fn toolkit_figures() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED toolkit_figures: {why}");
        println!("SKIPPED toolkit_figures: {why}");
        return;
    }
    let seats: u32 = std::env::var("CLARATEACH_BENCH_SEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let (_tmp, dir) = data_dir();
    let (_up, base, token) = start_up(&dir, free_port());
    let admin = Client::new(&base, Some(token)).expect("client");
    // Many seats on a loaded machine take longer than `start_workshop`'s 30 s.
    let ws = eventually(
        "bench workshop started",
        std::time::Duration::from_secs(30),
        || async {
            let ws = admin
                .create_workshop(&workshop_request("bench", seats))
                .await
                .ok()?;
            admin.start_workshop(&ws.id).await.ok()?;
            Some(ws)
        },
    )
    .await;
    eventually(
        "bench seats ready",
        std::time::Duration::from_secs(400),
        || async {
            let w = admin.get_workshop(&ws.id).await.ok()?;
            (w.seats_ready == seats).then_some(())
        },
    )
    .await;
    let body: String = (0..40)
        .map(|i| format!("line {i} of the handout\n"))
        .collect();
    let names: Vec<String> = (0..20).map(|i| format!("ex/file{i:02}.py")).collect();
    let list: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), body.as_str())).collect();
    for (round, what) in ["first (all new)", "again (unchanged)", "edited upstream"]
        .iter()
        .enumerate()
    {
        let content = if round == 2 {
            body.replace("line 3 ", "line three ")
        } else {
            body.clone()
        };
        let list: Vec<(&str, &str)> = list.iter().map(|(p, _)| (*p, content.as_str())).collect();
        let t = std::time::Instant::now();
        let r = admin
            .broadcast(&ws.id, &files(&list))
            .await
            .expect("broadcast");
        let wall = t.elapsed().as_millis();
        let failed = r
            .seats
            .iter()
            .flat_map(|s| &s.files)
            .filter(|f| f.outcome == BroadcastOutcome::Failed)
            .count();
        println!(
            "FIGURE broadcast 20 files x {} seats, {what}: {wall} ms wall ({} ms server), {failed} failed",
            r.seats.len(),
            r.duration_ms
        );
    }
    for cmd in ["true", "sleep 1"] {
        let t = std::time::Instant::now();
        let run = admin
            .run_check(
                &ws.id,
                &CheckRequest {
                    command: Some(cmd.into()),
                    timeout_s: Some(10),
                    save: false,
                },
            )
            .await
            .expect("check");
        let passed = run.results.iter().filter(|r| r.passed).count();
        println!(
            "FIGURE check `{cmd}` across {} seats: {} ms wall ({} ms server), {passed} passed",
            run.results.len(),
            t.elapsed().as_millis(),
            run.duration_ms
        );
    }
}
