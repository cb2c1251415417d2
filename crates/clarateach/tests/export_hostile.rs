//! Issue 16, export: the attacks a learner makes from inside a real seat of `clarateach up`
//! (sandbox backend) against the class export. Seat 1 races `ln -sfn SECRET x; rm x; echo hi > x`
//! in a tight loop against 50 class exports, where SECRET is a root-only 0600 host file outside
//! every volume holding a random marker, and leaves a FIFO, a Unix socket and a 100 GiB sparse
//! file in its volume. No archive may hold the marker, every export must complete, seat 1's
//! EXPORT-REPORT.json lists the specials and the truncation, and seat 2's files are all there.
//! Needs root and bubblewrap.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use clarateach_client::Client;
use support::*;

async fn run(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    cmd: &str,
    timeout_s: u64,
) -> serde_json::Value {
    let r = http
        .post(format!("{base}/api/session/run"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "command": cmd, "timeout_s": timeout_s }))
        .send()
        .await
        .expect("run");
    assert!(r.status().is_success(), "run: {}", r.status());
    r.json().await.expect("run json")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.iter()
        .enumerate()
        .filter(|(_, b)| **b == needle[0])
        .any(|(at, _)| hay[at..].starts_with(needle))
}

/// Path -> contents of every regular file in a tar.gz.
fn files(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for e in tar.entries().expect("entries") {
        let mut e = e.expect("entry");
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = e.path().expect("path").display().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read entry");
        out.insert(path, data);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_seat_cannot_leak_hang_or_empty_the_class_export() {
    if let Some(why) = skip_reason() {
        clarateach_core::skip::report(
            "a_hostile_seat_cannot_leak_hang_or_empty_the_class_export",
            &why,
        );
        return;
    }
    let (_tmp, dir) = data_dir();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let marker = format!("ROOTONLY-{nanos:x}-{}", std::process::id());
    let secret = dir.join("host-secret.key");
    std::fs::write(&secret, &marker).expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // A small cap keeps 50 archives of the 100 GiB sparse file quick to check; the cap itself
    // is what bounds it (1 GiB by default).
    std::env::set_var("CLARATEACH_EXPORT_CAP_MB", "16");
    let port = free_port();
    let (up, base, instructor) = start_up(&dir, port);
    let admin = Client::new(&base, Some(instructor.clone())).expect("client");
    let http = reqwest::Client::new();
    let ws = start_workshop(&admin, &workshop_request("export-hostile", 2)).await;
    let learner = join(&base, &ws.code).await;
    let other = join(&base, &ws.code).await;
    let (bad, good) = if learner.seat == 1 {
        (learner, other)
    } else {
        (other, learner)
    };
    for i in 0..20 {
        put_file(
            &http,
            &base,
            &good.token,
            &format!("proj/f{i:02}.txt"),
            &format!("file {i}\n"),
        )
        .await;
    }

    let setup = run(
        &http,
        &base,
        &bad.token,
        "cd /workspace && mkfifo pipe && truncate -s 100G huge.sparse && \
         python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"sock\")' && \
         for i in $(seq 1 200); do echo filler > fill$i; done && ls",
        30,
    )
    .await;
    assert_eq!(setup["exit_code"], 0, "{setup}");

    // The racer runs as a learner's command until the test drops /workspace/stop.
    let racer = {
        let (http, base, token) = (http.clone(), base.clone(), bad.token.clone());
        let cmd = format!(
            "cd /workspace; n=0; while [ ! -e stop ]; do ln -sfn {s} x; rm -f x; echo hi > x; \
             n=$((n+1)); done; echo $n",
            s = secret.display()
        );
        tokio::spawn(async move { run(&http, &base, &token, &cmd, 600).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..50 {
        let started = std::time::Instant::now();
        let body = tokio::time::timeout(Duration::from_secs(60), async {
            let r = http
                .get(format!("{base}/api/workshops/{}/export", ws.id))
                .bearer_auth(&instructor)
                .send()
                .await
                .expect("export");
            assert_eq!(r.status().as_u16(), 200, "export {i}");
            r.bytes().await.expect("body")
        })
        .await
        .expect("export hung");
        if i == 0 {
            println!(
                "first export: {} bytes in {:?}",
                body.len(),
                started.elapsed()
            );
        }
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut raw)
            .expect("gunzip");
        assert!(
            !contains(&raw, marker.as_bytes()),
            "export {i} carries the root-only host file"
        );
        assert!(raw.len() < 20 << 20, "export {i}: {} bytes", raw.len());
        let f = files(&body);
        for n in 0..20 {
            assert_eq!(
                f.get(&format!("seat-02/proj/f{n:02}.txt"))
                    .map(Vec::as_slice),
                Some(format!("file {n}\n").as_bytes()),
                "export {i}: seat 2 lost a file"
            );
        }
        let report: serde_json::Value =
            serde_json::from_slice(f.get("seat-01/EXPORT-REPORT.json").expect("seat 1 report"))
                .expect("report json");
        let kinds: Vec<(String, String)> = report["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .map(|p| {
                (
                    p["path"].as_str().unwrap_or("").into(),
                    p["kind"].as_str().unwrap_or("").into(),
                )
            })
            .collect();
        for want in [
            ("pipe", "fifo"),
            ("sock", "socket"),
            ("huge.sparse", "file"),
        ] {
            assert!(
                kinds.contains(&(want.0.to_string(), want.1.to_string())),
                "export {i}: {want:?} not reported: {report}"
            );
        }
        assert!(f.contains_key("seat-02/EXPORT-REPORT.json"));
    }
    put_file(&http, &base, &good.token, "done", "").await;
    put_file(&http, &base, &bad.token, "stop", "").await;
    let raced = racer.await.expect("racer");
    println!("the learner's racer swapped x {} times", raced["stdout"]);
    drop(up);
}
