//! Templates through `clarateach up` with real sandboxes (issue 11): a template with starter
//! files and a README made with the CLI gives every seat its files, on the `claude` seat image
//! (`claude --version` and python run there); unknown templates and images are 422 naming them;
//! a workshop stop/start never copies the starter over a learner's edit.
//! Needs root, bubblewrap and the `claude` image built in /var/cache/clarateach/seat-images
//! (scripts/test.sh builds it; `CLARATEACH_SEAT_IMAGES` points elsewhere).

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use clarateach_client::{Client, ClientError};
use clarateach_core::{JoinRequest, RunResponse, WorkshopStatus};
use support::*;

fn images_dir() -> PathBuf {
    std::env::var_os("CLARATEACH_SEAT_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/clarateach/seat-images"))
}

fn cli(base: &str, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["template", "--api-url", base, "--token", token])
        .args(args)
        .output()
        .expect("run clarateach")
}

async fn run(http: &reqwest::Client, base: &str, token: &str, command: &str) -> RunResponse {
    let resp = http
        .post(format!("{base}/api/session/run"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "command": command, "timeout_s": 60 }))
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

async fn read(http: &reqwest::Client, base: &str, token: &str, path: &str) -> Option<String> {
    let resp = http
        .get(format!("{base}/api/session/files/{path}"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let v: serde_json::Value = resp.json().await.ok()?;
    v["content"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_gives_every_seat_its_files_once() {
    if let Some(why) = skip_reason() {
        println!("SKIP a_template_gives_every_seat_its_files_once: {why}");
        eprintln!("SKIP a_template_gives_every_seat_its_files_once: {why}");
        return;
    }
    if !images_dir().join("claude/current/image.json").is_file() {
        let msg = format!(
            "SKIP a_template_gives_every_seat_its_files_once: image claude not built in {} \
             (clarateach image build claude --images-dir {0})",
            images_dir().display()
        );
        println!("{msg}");
        eprintln!("{msg}");
        return;
    }
    let (_guard, dir) = data_dir();
    // The agent of `up` uses DATA_DIR/images: point it at the shared, cached store.
    std::os::unix::fs::symlink(images_dir(), dir.join("images")).expect("images link");
    let port = free_port();
    let (_up, base, token) = start_up(&dir, port);
    let admin = Client::new(&base, Some(token.clone())).expect("client");
    let http = reqwest::Client::new();

    // Starter files and a README, packed by the CLI from a directory.
    let starter = tempfile::tempdir().expect("starter");
    std::fs::write(starter.path().join("hello.py"), "print('hello')\n").expect("write");
    std::fs::create_dir(starter.path().join("docs")).expect("mkdir");
    std::fs::write(starter.path().join("docs/notes.md"), "notes\n").expect("write");
    let readme = starter.path().join("README.learner.md");
    std::fs::write(&readme, "# Welcome\nRun `python3 hello.py`.\n").expect("readme");
    let files = starter.path().display().to_string();
    let readme_arg = readme.display().to_string();
    let out = eventually("template created", Duration::from_secs(20), || async {
        let out = cli(
            &base,
            &token,
            &[
                "create",
                "py-intro",
                "--image",
                "claude",
                "--files",
                &files,
                "--readme",
                &readme_arg,
                "--check",
                "python3 hello.py",
                "--memory-mb",
                "768",
            ],
        );
        // `unknown_image` until the local agent has registered with its images.
        out.status.success().then_some(out)
    })
    .await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("py-intro"));
    let t = admin.get_template("py-intro").await.expect("show");
    assert!(t.readme.contains("# Welcome"));
    assert!(t.files_bytes > 0);
    assert_eq!(t.limits.as_ref().map(|l| l.memory_mb), Some(768));

    // Unknown image and template: 422 naming them.
    let bad = cli(
        &base,
        &token,
        &["create", "bad", "--image", "no-such-image"],
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("no-such-image") && err.contains("unknown_image"),
        "{err}"
    );
    let mut req = workshop_request("tpl", 2);
    req.template = Some("no-such-template".into());
    match admin.create_workshop(&req).await {
        Err(ClientError::Api {
            status,
            code,
            message,
        }) => {
            assert_eq!((status, code.as_str()), (422, "unknown_template"));
            assert!(message.contains("no-such-template"), "{message}");
        }
        other => panic!("expected 422 unknown_template, got {other:?}"),
    }

    // A workshop from the template: its image and limits, its files in every seat.
    req.template = Some("py-intro".into());
    let ws = start_workshop(&admin, &req).await;
    assert_eq!(ws.image.as_deref(), Some("claude"));
    assert_eq!(ws.limits.memory_mb, 768);
    let one = join(&base, &ws.code).await;
    let two = join(&base, &ws.code).await;
    for j in [&one, &two] {
        assert_eq!(
            read(&http, &base, &j.token, "hello.py").await.as_deref(),
            Some("print('hello')\n"),
            "seat {}",
            j.seat
        );
        assert_eq!(
            read(&http, &base, &j.token, "docs/notes.md")
                .await
                .as_deref(),
            Some("notes\n")
        );
    }
    let r = run(
        &http,
        &base,
        &one.token,
        "claude --version && python3 /workspace/hello.py",
    )
    .await;
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    assert!(
        r.stdout.contains("Claude Code") && r.stdout.contains("hello"),
        "{r:?}"
    );

    // The learner edits and deletes; a stop/start does not bring the starter back.
    put_file(&http, &base, &one.token, "hello.py", "print('mine')\n").await;
    run(&http, &base, &one.token, "rm /workspace/docs/notes.md").await;
    admin.stop_workshop(&ws.id).await.expect("stop");
    eventually("stopped", Duration::from_secs(30), || async {
        let w = admin.get_workshop(&ws.id).await.ok()?;
        (w.status == WorkshopStatus::Stopped).then_some(())
    })
    .await;
    admin.start_workshop(&ws.id).await.expect("start again");
    eventually("running again", Duration::from_secs(60), || async {
        let w = admin.get_workshop(&ws.id).await.ok()?;
        (w.status == WorkshopStatus::Running && w.seats_ready == 2).then_some(())
    })
    .await;
    let back = Client::new(&base, None)
        .expect("client")
        .join(&JoinRequest {
            code: ws.code.clone(),
            odehash: Some(one.odehash.clone()),
            name: None,
        })
        .await
        .expect("rejoin");
    assert_eq!(back.seat, one.seat);
    assert_eq!(
        read(&http, &base, &back.token, "hello.py").await.as_deref(),
        Some("print('mine')\n"),
        "the learner's edit survives a stop/start"
    );
    assert_eq!(
        read(&http, &base, &back.token, "docs/notes.md").await,
        None,
        "a file the learner deleted stays deleted"
    );
    admin.stop_workshop(&ws.id).await.expect("stop");
}
