//! Seats prepared ahead of Start (issue 12) through `clarateach up`, with real sandboxes: a
//! created workshop gets its seats made and run ahead on the agent, frozen, with none of the
//! workshop's secret anywhere (no file, no process environment); its Start thaws and activates
//! those very processes, the secret arriving then; a workshop deleted or stopped before it ever
//! started gives everything back (no process, no record, no mount beyond the usual spares).
//! Needs root and bubblewrap; prints why it skips otherwise.

mod support;

use std::path::Path;
use std::time::Duration;

use clarateach_client::Client;
use clarateach_core::WorkshopStatus;
use clarateach_isolation::cgroups::freezer_state_of;
use clarateach_isolation::sandbox::store::SPARES_PER_SIZE;
use support::*;

/// Mounted spare seat file systems of the agent process `pid`, by its own mount table.
fn spares_mounted(dir: &Path, pid: u32) -> usize {
    let spare_dir = dir
        .canonicalize()
        .expect("canonical data dir")
        .join("seats/.spare/");
    let needle = spare_dir.display().to_string();
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&needle))
        .count()
}

/// Spare images on disk (mounted or not).
fn spare_images(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("seat-images/.spare"))
        .map(|d| d.count())
        .unwrap_or(0)
}

async fn wait_spares(dir: &Path, pid: u32, want: usize, what: &str) {
    eventually(what, Duration::from_secs(60), || async {
        let (m, i) = (spares_mounted(dir, pid), spare_images(dir));
        (m == want && i == want).then_some(())
    })
    .await;
}

/// Every file under `root` whose bytes contain `needle`.
fn files_holding(root: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let bytes = std::fs::read(e.path()).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    out.push(e.path());
                }
            }
        }
    }
    out
}

/// Bwrap pids of the workshop's seats, by seat, from the agent's records.
fn seat_pids(dir: &Path, ws: &str) -> Vec<i32> {
    let mut seats: Vec<(String, i32)> = std::fs::read_dir(dir.join("sandboxes").join(ws))
        .into_iter()
        .flatten()
        .flatten()
        // Records only: the dir holds each seat's log FIFO too, and reading it would block.
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                v["pid"].as_i64()? as i32,
            ))
        })
        .collect();
    seats.sort();
    seats.into_iter().map(|(_, p)| p).collect()
}

/// Waits until `n` seats of `ws` run ahead, frozen; their bwrap pids.
async fn wait_run_ahead(dir: &Path, ws: &str, n: usize) -> Vec<i32> {
    eventually(
        &format!("{n} seats of {ws} run ahead"),
        Duration::from_secs(60),
        || async {
            let pids = seat_pids(dir, ws);
            (pids.len() == n
                && pids
                    .iter()
                    .all(|p| freezer_state_of(*p).as_deref() == Some("FROZEN")))
            .then_some(pids)
        },
    )
    .await
}

/// Waits until nothing is left of the seats of `ws` run ahead: processes, records, file systems.
async fn wait_given_back(dir: &Path, ws: &str, pids: &[i32], what: &str) {
    eventually(what, Duration::from_secs(60), || async {
        let gone = pids
            .iter()
            .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
            && seat_pids(dir, ws).is_empty()
            && !dir.join("seats").join(ws).exists();
        gone.then_some(())
    })
    .await
}

/// The environments of the seats' processes (each bwrap and everything below it).
fn environments(bwraps: &[i32]) -> String {
    let mut out = String::new();
    let mut todo: Vec<i32> = bwraps.to_vec();
    while let Some(p) = todo.pop() {
        out.push_str(&String::from_utf8_lossy(
            &std::fs::read(format!("/proc/{p}/environ")).unwrap_or_default(),
        ));
        for task in std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let kids = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            todo.extend(
                kids.split_whitespace()
                    .filter_map(|k| k.parse::<i32>().ok()),
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_seats_are_taken_by_the_start_or_given_back() {
    if let Some(why) = skip_reason() {
        clarateach_core::skip::report("prepared_seats_are_taken_by_the_start_or_given_back", &why);
        return;
    }
    let (_tmp, dir) = data_dir();
    let (up, base, token) = start_up(&dir, free_port());
    let pid = up.child.id();
    let admin = Client::new(&base, Some(token.clone())).expect("client");
    let http = reqwest::Client::new();
    // Preparing asks a connected agent: wait for it.
    eventually("agent registered", Duration::from_secs(20), || async {
        let v: serde_json::Value = http
            .get(format!("{base}/api/agents"))
            .bearer_auth(&token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["agents"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
            .then_some(())
    })
    .await;

    // Created: 3 seats run ahead, frozen; the spares they took are made again.
    let mut req = workshop_request("prepared", 3);
    req.api_key = Some("sk-ant-prepared-secret-4242".into());
    let a = admin.create_workshop(&req).await.expect("create a");
    let warm = wait_run_ahead(&dir, &a.id, 3).await;
    wait_spares(&dir, pid, SPARES_PER_SIZE, "the usual spares").await;
    for p in &warm {
        assert_eq!(
            freezer_state_of(*p).as_deref(),
            Some("FROZEN"),
            "seat process {p} frozen before Start"
        );
    }
    assert!(
        files_holding(&dir.join("seats"), b"prepared-secret-4242").is_empty()
            && files_holding(&dir.join("sandboxes"), b"prepared-secret-4242").is_empty(),
        "nothing made ahead holds the workshop's secret"
    );
    assert!(
        !environments(&warm).contains("prepared-secret-4242"),
        "no process run ahead holds the workshop's secret"
    );

    // Another workshop prepared, then deleted: its seats are given back.
    let b = admin
        .create_workshop(&workshop_request("deleted", 2))
        .await
        .expect("create b");
    let warm_b = wait_run_ahead(&dir, &b.id, 2).await;
    admin.delete_workshop(&b.id).await.expect("delete b");
    wait_given_back(&dir, &b.id, &warm_b, "b's seats given back").await;

    // A third, stopped before it ever started: given back too.
    let c = admin
        .create_workshop(&workshop_request("never started", 2))
        .await
        .expect("create c");
    let warm_c = wait_run_ahead(&dir, &c.id, 2).await;
    admin.stop_workshop(&c.id).await.expect("stop c");
    wait_given_back(&dir, &c.id, &warm_c, "c's seats given back").await;
    wait_spares(&dir, pid, SPARES_PER_SIZE, "only the usual spares").await;

    // The prepared workshop starts: the processes run ahead are its seats, thawed.
    admin.start_workshop(&a.id).await.expect("start a");
    eventually("a running", Duration::from_secs(60), || async {
        let w = admin.get_workshop(&a.id).await.ok()?;
        (w.status == WorkshopStatus::Running && w.seats_ready == 3).then_some(())
    })
    .await;
    assert_eq!(seat_pids(&dir, &a.id), warm, "the Start ran no new sandbox");
    for p in &warm {
        assert_eq!(freezer_state_of(*p).as_deref(), Some("THAWED"));
    }
    let learner = join(&base, &a.code).await;
    let out = http
        .post(format!("{base}/api/session/run"))
        .bearer_auth(&learner.token)
        .json(&serde_json::json!({
            "command": "df --output=target /workspace | tail -1; printenv ANTHROPIC_API_KEY",
            "timeout_s": 30
        }))
        .send()
        .await
        .expect("run");
    let out: serde_json::Value = out.json().await.expect("run json");
    let stdout = out["stdout"].as_str().unwrap_or_default();
    // The secret reached the seat at Start, and its /workspace is a file system of its own.
    assert!(stdout.contains("sk-ant-prepared-secret-4242"), "{out}");
    assert!(stdout.contains("/workspace"), "{out}");
    // The learner's terminal, opened after the Start, has it too.
    let mut term = clarateach_client::Client::new(&base, Some(learner.token.clone()))
        .expect("client")
        .terminal(&Default::default())
        .await
        .expect("terminal");
    term.send_input("echo K=$ANTHROPIC_API_KEY\r")
        .await
        .expect("input");
    let seen = term
        .read_until(b"K=sk-ant-prepared-secret-4242", Duration::from_secs(20))
        .await
        .is_ok();
    assert!(seen, "the terminal's shell sees the workshop's key");

    admin.stop_workshop(&a.id).await.expect("stop a");
    admin.delete_workshop(&a.id).await.ok();
    assert!(up.stop("-INT").success(), "up exits cleanly after Ctrl-C");
}
