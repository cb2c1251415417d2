//! A write interrupted by `kill -9` leaves the old or the new content, never a torn file.
//! The daemon runs in a child process (this test binary re-executed as `daemon_child`).
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const ROOT_ENV: &str = "CLARATEACH_TEST_DAEMON_ROOT";

/// Not a test on its own: the daemon process for `atomic_write_survives_kill_9`.
#[test]
fn daemon_child() {
    let Ok(root) = std::env::var(ROOT_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cfg = clarateach_workspace::Config::new(
            vec![clarateach_workspace::Listen::Tcp(
                "127.0.0.1:0".parse().unwrap(),
            )],
            root.into(),
            "t".into(),
        );
        let server = clarateach_workspace::serve::Server::bind(&cfg)
            .await
            .unwrap();
        println!("ADDR {}", server.tcp_addrs()[0]);
        server.run(std::future::pending()).await.unwrap();
    });
}

#[tokio::test]
async fn atomic_write_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let size = 8 << 20;
    let (old, new) = ("A".repeat(size), "B".repeat(size));
    let mut torn_possible = 0;
    for round in 0..6u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "daemon_child", "--nocapture", "--test-threads=1"])
            .env(ROOT_ENV, dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().unwrap().unwrap();
            if let Some(i) = line.find("ADDR ") {
                break line[i + 5..].trim().to_string();
            }
        };
        let url = format!("http://{addr}/files/f.txt");
        let client = reqwest::Client::new();
        let put = |content: &str| {
            client
                .put(&url)
                .bearer_auth("t")
                .json(&serde_json::json!({ "content": content }))
        };
        if round == 0 {
            assert_eq!(put(&old).send().await.unwrap().status(), 200);
        }
        let before = std::fs::read(dir.path().join("f.txt")).unwrap();
        let writing = tokio::spawn(put(if before[0] == b'A' { &new } else { &old }).send());
        tokio::time::sleep(Duration::from_millis(10 + round * 15)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let _ = writing.await;
        let after = std::fs::read(dir.path().join("f.txt")).unwrap();
        assert_eq!(
            after.len(),
            size,
            "round {round}: torn file of {} bytes",
            after.len()
        );
        assert!(
            after.iter().all(|&b| b == after[0]),
            "round {round}: mixed content"
        );
        if after != before {
            torn_possible += 1;
        }
    }
    println!("{torn_possible} of 6 kills landed after the rename; the rest before it");
}
