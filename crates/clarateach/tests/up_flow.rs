//! The whole system through `clarateach up`, with real sandboxes: 10 seats, 30 racing joins,
//! terminal echo and files through the gateway, isolation checked from inside a seat, the
//! instructor's read-only view, export, `kill -9` and restart (files and seats back), stop and
//! Ctrl-C leaving no process behind. Needs root and bubblewrap; prints why it skips otherwise.

mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use clarateach_client::{Client, TerminalEvent, TerminalOptions};
use clarateach_core::{
    CreateWorkshopRequest, JoinRequest, JoinResponse, Limits, RunResponse, TerminalServerMessage,
    WorkshopStatus,
};
use support::*;

async fn wait_running(c: &Client, id: &str) {
    eventually("workshop running", Duration::from_secs(60), || async {
        let w = c.get_workshop(id).await.ok()?;
        (w.status == WorkshopStatus::Running && w.seats_ready == w.seats).then_some(())
    })
    .await;
}

async fn run(http: &reqwest::Client, base: &str, token: &str, command: &str) -> RunResponse {
    let resp = http
        .post(format!("{base}/api/session/run"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "command": command, "timeout_s": 30 }))
        .send()
        .await
        .expect("run");
    assert!(
        resp.status().is_success(),
        "run {command}: {}",
        resp.status()
    );
    resp.json().await.expect("run json")
}

/// Echo through the gateway: types a command whose output differs from its echo.
async fn terminal_echo(base: &str, token: &str) {
    let learner = Client::new(base, Some(token.to_string())).expect("client");
    let mut term = learner
        .terminal(&TerminalOptions::default())
        .await
        .expect("terminal");
    term.send_input("echo hello-$((6*7))\r")
        .await
        .expect("input");
    term.read_until(b"hello-42", Duration::from_secs(10))
        .await
        .expect("echo through the gateway");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_through_up() {
    if let Some(why) = skip_reason() {
        clarateach_core::skip::report("full_flow_through_up", &why);
        return;
    }
    let (_tmp, dir) = data_dir();
    let port = free_port();
    let (up, base, token) = start_up(&dir, port);
    let admin = Client::new(&base, Some(token.clone())).expect("client");
    let http = reqwest::Client::new();

    let limits = Limits {
        memory_mb: 128,
        pids: 64,
        ..Limits::default()
    };
    let req = CreateWorkshopRequest {
        template: None,
        name: "e2e".into(),
        seats: 10,
        api_key: None,
        image: None,
        limits: Some(limits),
    };
    let ws = admin.create_workshop(&req).await.expect("create");
    let started = Instant::now();
    admin.start_workshop(&ws.id).await.expect("start");
    wait_running(&admin, &ws.id).await;
    eprintln!("10 seats running after {:?}", started.elapsed());

    // 30 racing joins for 10 seats: exactly 10 distinct seats, the rest refused as full.
    let joins = (0..30).map(|i| {
        let c = Client::new(&base, None).expect("client");
        let code = ws.code.clone();
        tokio::spawn(async move {
            c.join(&JoinRequest {
                code,
                odehash: None,
                name: Some(format!("learner {i}")),
            })
            .await
        })
    });
    let mut seats: Vec<JoinResponse> = Vec::new();
    for j in futures::future::join_all(joins).await {
        match j.expect("task") {
            Ok(r) => seats.push(r),
            Err(e) => assert_eq!(e.status(), Some(409), "{e:?}"),
        }
    }
    seats.sort_by_key(|s| s.seat);
    assert_eq!(
        seats.iter().map(|s| s.seat).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    let (one, two) = (&seats[0], &seats[1]);

    terminal_echo(&base, &one.token).await;

    // A file written through the API is read by `cat` in the seat, and back.
    let put = http
        .put(format!("{base}/api/session/files/note.txt"))
        .bearer_auth(&one.token)
        .json(&serde_json::json!({ "content": "written by the API\n" }))
        .send()
        .await
        .expect("put");
    assert!(put.status().is_success(), "{}", put.status());
    let cat = run(
        &http,
        &base,
        &one.token,
        "cat /workspace/note.txt && echo from-shell > /workspace/back.txt",
    )
    .await;
    assert_eq!(cat.stdout, "written by the API\n");
    let back: serde_json::Value = http
        .get(format!("{base}/api/session/files/back.txt"))
        .bearer_auth(&one.token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(back["content"], "from-shell\n");

    // Isolation, from inside seat 1.
    let put2 = http
        .put(format!("{base}/api/session/files/secret-of-seat-2.txt"))
        .bearer_auth(&two.token)
        .json(&serde_json::json!({ "content": "seat two only" }))
        .send()
        .await
        .expect("put");
    assert!(put2.status().is_success());
    let checks = format!(
        "id -u; ls /proc | grep -c '^[0-9]'; \
         grep -rs 'seat two only' /workspace /tmp /home {dir} && echo LEAK; \
         for p in /etc/x /usr/x /x; do touch $p 2>/dev/null && echo WROTE-$p; done; \
         bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' 2>/dev/null && echo REACHED-HOST; true",
        dir = dir.display()
    );
    let out = run(&http, &base, &one.token, &checks).await;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_ne!(lines[0], "0", "learner is not root");
    let procs: u32 = lines[1].parse().expect("process count");
    assert!(procs < 15, "sees only its own processes, saw {procs}");
    assert!(
        !out.stdout.contains("LEAK")
            && !out.stdout.contains("WROTE")
            && !out.stdout.contains("REACHED"),
        "{}",
        out.stdout
    );

    // Pids limit stops a fork bomb; a memory hog dies in its cgroup; the seat and others go on.
    let bomb = run(
        &http,
        &base,
        &one.token,
        // Sleeps long enough that none exits before the limit is hit, even on a loaded
        // machine (with `sleep 3` a slow loop stayed under 64 live processes); then freed.
        "(for i in $(seq 200); do sleep 60 & done) 2>&1 | head -1; pkill -x sleep; true",
    )
    .await;
    assert!(
        bomb.stdout.contains("fork") || bomb.stdout.contains("Resource"),
        "pids limit: {bomb:?}"
    );
    let hog = run(
        &http,
        &base,
        &one.token,
        "head -c 400M /dev/zero | tail > /dev/null; echo status=$?",
    )
    .await;
    assert!(
        !hog.stdout.contains("status=0"),
        "memory hog survived: {hog:?}"
    );
    terminal_echo(&base, &two.token).await;

    // The instructor watches seat 1 read-only; learners cannot take over.
    let opts = TerminalOptions {
        workshop_id: Some(ws.id.clone()),
        seat: Some(1),
        ..TerminalOptions::default()
    };
    let mut watch = admin.terminal(&opts).await.expect("instructor watch");
    watch.send_input("echo nope\r").await.expect("send");
    watch
        .read_until(b"hello-42", Duration::from_secs(10))
        .await
        .expect("watcher sees the scrollback");
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match watch.next_event().await.expect("event") {
                Some(TerminalEvent::Control(TerminalServerMessage::Error { code, .. })) => {
                    return code
                }
                Some(_) => {}
                None => return "closed".to_string(),
            }
        }
    })
    .await
    .expect("an answer to the watcher's input");
    assert_eq!(refused, "read_only");
    let takeover = TerminalOptions {
        mode: Some("takeover".into()),
        ..TerminalOptions::default()
    };
    let learner = Client::new(&base, Some(one.token.clone())).expect("client");
    assert!(
        learner.terminal(&takeover).await.is_err(),
        "learner takeover refused"
    );
    let w = http
        .put(format!(
            "{base}/api/session/files/x.txt?workshop_id={}&seat=1",
            ws.id
        ))
        .bearer_auth(&token)
        .json(&serde_json::json!({"content": "x"}))
        .send()
        .await
        .expect("put");
    assert_eq!(w.status(), 403, "watching instructor cannot write");

    // Export: one archive with seat-NN/ entries.
    let archive = http
        .get(format!("{base}/api/workshops/{}/export", ws.id))
        .bearer_auth(&token)
        .send()
        .await
        .expect("export");
    assert!(archive.status().is_success(), "{}", archive.status());
    let bytes = archive.bytes().await.expect("body");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut note = None;
    let mut names = Vec::new();
    for e in tar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let path = e.path().expect("path").display().to_string();
        if path == "seat-01/note.txt" {
            let mut s = String::new();
            e.read_to_string(&mut s).expect("read");
            note = Some(s);
        }
        names.push(path);
    }
    assert_eq!(note.as_deref(), Some("written by the API\n"), "{names:?}");
    assert!(
        names.iter().any(|n| n == "seat-02/secret-of-seat-2.txt"),
        "{names:?}"
    );

    // kill -9 of the whole process, then restart: seats come back with their files.
    let up_pid = up.child.id();
    let _ = up.stop("-KILL");
    let (up, _, _) = start_up(&dir, port);
    wait_running(&admin, &ws.id).await;
    eventually(
        "seat 1 reachable again",
        Duration::from_secs(30),
        || async {
            let r = http
                .get(format!("{base}/api/session/files/note.txt"))
                .bearer_auth(&one.token)
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;
    let cat = run(&http, &base, &one.token, "cat /workspace/note.txt").await;
    assert_eq!(cat.stdout, "written by the API\n");
    terminal_echo(&base, &one.token).await;

    // Stop destroys every workspace: no seat process left.
    admin.stop_workshop(&ws.id).await.expect("stop");
    let me = [up.child.id(), up_pid];
    eventually(
        "no seat process after stop",
        Duration::from_secs(20),
        || async { processes_using(&dir, &me).is_empty().then_some(()) },
    )
    .await;

    // Ctrl-C ends `up` cleanly.
    let status = up.stop("-INT");
    assert!(status.success(), "up exited with {status}");
    assert!(
        processes_using(&dir, &[]).is_empty(),
        "left: {:?}",
        processes_using(&dir, &[])
    );
}
