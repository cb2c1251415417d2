//! Seats prepared ahead of Start (issue 12) through `clarateach up`, with real sandboxes: a
//! created workshop gets one mounted spare seat file system per seat on the agent, its Start
//! takes them, and a workshop deleted or stopped before it ever started gives them back (no
//! mount, no image left beyond the usual spares). What is made ahead holds nothing of the
//! workshop's secret. Needs root and bubblewrap; prints why it skips otherwise.

mod support;

use std::path::Path;
use std::time::Duration;

use clarateach_client::Client;
use clarateach_core::WorkshopStatus;
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

    // Created: 3 seats made ahead, on top of the usual spares.
    let mut req = workshop_request("prepared", 3);
    req.api_key = Some("sk-ant-prepared-secret-4242".into());
    let a = admin.create_workshop(&req).await.expect("create a");
    wait_spares(&dir, pid, SPARES_PER_SIZE + 3, "3 seats prepared").await;
    assert!(
        files_holding(&dir.join("seats"), b"prepared-secret-4242").is_empty()
            && files_holding(&dir.join("sandboxes"), b"prepared-secret-4242").is_empty(),
        "nothing made ahead holds the workshop's secret"
    );

    // Another workshop prepared, then deleted: its seats are given back.
    let b = admin
        .create_workshop(&workshop_request("deleted", 2))
        .await
        .expect("create b");
    wait_spares(&dir, pid, SPARES_PER_SIZE + 5, "5 seats prepared").await;
    admin.delete_workshop(&b.id).await.expect("delete b");
    wait_spares(&dir, pid, SPARES_PER_SIZE + 3, "b's seats given back").await;

    // A third, stopped before it ever started: given back too.
    let c = admin
        .create_workshop(&workshop_request("never started", 2))
        .await
        .expect("create c");
    wait_spares(&dir, pid, SPARES_PER_SIZE + 5, "c prepared").await;
    admin.stop_workshop(&c.id).await.expect("stop c");
    wait_spares(&dir, pid, SPARES_PER_SIZE + 3, "c's seats given back").await;

    // The prepared workshop starts: its seats take the spares made for them and run.
    admin.start_workshop(&a.id).await.expect("start a");
    eventually("a running", Duration::from_secs(60), || async {
        let w = admin.get_workshop(&a.id).await.ok()?;
        (w.status == WorkshopStatus::Running && w.seats_ready == 3).then_some(())
    })
    .await;
    wait_spares(&dir, pid, SPARES_PER_SIZE, "a's spares taken").await;
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

    admin.stop_workshop(&a.id).await.expect("stop a");
    admin.delete_workshop(&a.id).await.ok();
    assert!(up.stop("-INT").success(), "up exits cleanly after Ctrl-C");
}
