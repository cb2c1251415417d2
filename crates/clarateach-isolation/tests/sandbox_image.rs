//! Seats on a seat image (`clarateach image build NAME`): the image's tree is the read-only `/`,
//! with the generated users, hosts and resolver over its `/etc`; a `claude` seat runs
//! `claude --version` and python; an image that is not built refuses the seat instead of
//! falling back to the host's root; moving the image's `current` (a rebuild) never changes the
//! root of a running seat, and `image rm` is refused while a seat runs on it.
//!
//! The built images come from `CLARATEACH_SEAT_IMAGES` (default
//! /var/cache/clarateach/seat-images, where scripts/test.sh builds `base` and `claude`).

mod sandbox_support;

use std::path::{Path, PathBuf};

use clarateach_core::agent_proto::SeatKey;
use clarateach_core::Limits;
use clarateach_image::ImageStore;
use clarateach_isolation::sandbox::SandboxBackend;
use clarateach_isolation::{Backend, BackendError, WorkspaceSpec};
use sandbox_support::{config, data_dir, fake_daemon, ok, run, skipped};

fn images_dir() -> PathBuf {
    std::env::var_os("CLARATEACH_SEAT_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/clarateach/seat-images"))
}

/// The built image `name`, or a printed SKIP saying how to build it.
fn built(test: &str, name: &str) -> Option<ImageStore> {
    let store = ImageStore::new(images_dir());
    if store.rootfs(name).is_some() {
        return Some(store);
    }
    let msg = format!(
        "SKIP {test}: image {name:?} not built in {} (clarateach image build {name} --images-dir {0})",
        images_dir().display()
    );
    eprintln!("{msg}");
    println!("{msg}");
    None
}

fn backend(data: &Path, images: &Path) -> SandboxBackend {
    let mut cfg = config(data, data.join("fake-daemon"));
    cfg.images_dir = images.to_path_buf();
    let b = SandboxBackend::new(cfg).expect("backend");
    fake_daemon(data);
    b
}

fn spec(ws: &str, seat: u32, image: &str, env: &[(&str, &str)]) -> WorkspaceSpec {
    WorkspaceSpec {
        key: SeatKey {
            workshop_id: ws.to_string(),
            seat,
        },
        limits: Limits::default(),
        image: Some(image.to_string()),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        daemon_token: format!("tok-{seat}"),
    }
}

fn ws_id(tag: &str) -> String {
    format!("ws-img{tag}-{}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_image_seat_runs_claude_and_python() {
    let test = "a_claude_image_seat_runs_claude_and_python";
    if skipped(test) {
        return;
    }
    let Some(_) = built(test, "claude") else {
        return;
    };
    let dir = data_dir();
    let b = backend(dir.path(), &images_dir());
    let s = spec(
        &ws_id("c"),
        1,
        "claude",
        &[("ANTHROPIC_API_KEY", "sk-ant-test-123")],
    );
    b.create(&s).await.expect("create");
    let ep = b.start(&s.key).await.expect("start");

    // A login shell, as the learner's terminal is.
    let v = ok(&ep, "bash -lc 'claude --version'").await;
    assert!(v.contains("Claude Code"), "claude --version said {v:?}");
    assert_eq!(ok(&ep, "bash -lc \"python3 -c 'print(1)'\"").await, "1");
    assert!(ok(&ep, "bash -lc 'node --version'")
        .await
        .starts_with("v20."));
    assert_eq!(
        ok(&ep, "bash -lc 'echo $ANTHROPIC_API_KEY'").await,
        "sk-ant-test-123"
    );
    // The image's own /etc (Debian's os-release, its profile.d), our users and hosts over it.
    assert!(ok(&ep, "cat /etc/os-release").await.contains("bookworm"));
    assert!(ok(&ep, "getent passwd learner")
        .await
        .contains("/home/learner"));
    assert!(ok(&ep, "cat /etc/hosts").await.contains("ip6-localhost"));
    // A real machine's shell: the locale, TERM, PATH with the home's npm globals and
    // ~/.local/bin, npm's prefix in the home.
    let env = ok(
        &ep,
        "bash -lc 'echo $LANG; echo $TERM; echo $PATH; npm config get prefix'",
    )
    .await;
    let lines: Vec<&str> = env.lines().collect();
    assert_eq!(lines[0], "C.UTF-8", "{env}");
    assert_eq!(lines[1], "xterm-256color", "{env}");
    assert!(lines[2].contains("/home/learner/.local/bin"), "{env}");
    assert!(lines[2].contains("/home/learner/.npm-global/bin"), "{env}");
    assert_eq!(lines[3], "/home/learner/.npm-global", "{env}");
    // The root is read-only; the home and /workspace are the seat's.
    let (status, _) = run(&ep, "touch /usr/local/bin/evil").await;
    assert_ne!(
        status, "exit=0 signal=0",
        "the image root must be read-only"
    );
    // The image's empty directories are made on bwrap's root, not bound: as read-only.
    for dir in ["/mnt", "/srv", "/opt", "/media", "/boot"] {
        let (status, _) = run(&ep, &format!("test -d {dir} && touch {dir}/evil")).await;
        assert_ne!(status, "exit=0 signal=0", "{dir} must be read-only");
    }
    ok(&ep, "touch /workspace/a /home/learner/b /tmp/c").await;
    b.destroy(&s.key, true).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_is_not_built_refuses_the_seat() {
    if skipped("an_image_that_is_not_built_refuses_the_seat") {
        return;
    }
    let dir = data_dir();
    let images = tempfile::tempdir().expect("tempdir");
    let b = backend(dir.path(), images.path());
    let s = spec(&ws_id("n"), 1, "no-such-image", &[]);
    b.create(&s).await.expect("create");
    match b.start(&s.key).await {
        Err(BackendError::ImageMissing(_, name)) => assert_eq!(name, "no-such-image"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a seat must not start on the host root when its image is missing"),
    }
    let _ = b.destroy(&s.key, true).await;
}

/// Makes image `name` digest `digest` in `store` from the built `base` tree (hard links: cheap),
/// with `marker` as `/etc/clarateach-marker`, and points `current` at it.
fn fake_digest(store: &Path, name: &str, digest: &str, built: &ImageStore, marker: &str) {
    let base = built.rootfs("base").expect("base rootfs");
    let dir = store.join(name).join(digest);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let out = std::process::Command::new("cp")
        .arg("-al")
        .arg(&base)
        .arg(dir.join("rootfs"))
        .output()
        .expect("cp");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = dir.join("rootfs/etc/clarateach-marker");
    let _ = std::fs::remove_file(&m);
    std::fs::write(&m, marker).expect("marker");
    let mut info = built.inspect("base").expect("base info");
    info.name = name.to_string();
    info.digest = digest.to_string();
    std::fs::write(
        dir.join("image.json"),
        serde_json::to_vec(&info).expect("json"),
    )
    .expect("image.json");
    let tmp = store.join(name).join(".current-test");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(digest, &tmp).expect("symlink");
    std::fs::rename(&tmp, store.join(name).join("current")).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_never_changes_a_running_seats_root() {
    let test = "a_rebuild_never_changes_a_running_seats_root";
    if skipped(test) {
        return;
    }
    let Some(built) = built(test, "base") else {
        return;
    };
    // The test's own store on the same file system as the built image (hard links).
    let images = tempfile::tempdir_in(images_dir()).expect("tempdir");
    fake_digest(images.path(), "mini", "d1", &built, "one");
    let dir = data_dir();
    let b = backend(dir.path(), images.path());
    let s1 = spec(&ws_id("r"), 1, "mini", &[]);
    b.create(&s1).await.expect("create");
    let ep1 = b.start(&s1.key).await.expect("start");
    assert_eq!(ok(&ep1, "cat /etc/clarateach-marker").await, "one");

    // A rebuild lands as a new digest and moves `current`.
    fake_digest(images.path(), "mini", "d2", &built, "two");
    assert_eq!(
        ok(&ep1, "cat /etc/clarateach-marker").await,
        "one",
        "the running seat keeps its root"
    );
    let s2 = spec(&s1.key.workshop_id, 2, "mini", &[]);
    b.create(&s2).await.expect("create 2");
    let ep2 = b.start(&s2.key).await.expect("start 2");
    assert_eq!(ok(&ep2, "cat /etc/clarateach-marker").await, "two");

    // `image rm` refuses while a seat runs on the image, then works.
    let store = ImageStore::new(images.path());
    match store.remove("mini") {
        Err(clarateach_image::ImageError::InUse { .. }) => {}
        other => panic!("rm of an image in use must be refused, got {other:?}"),
    }
    b.destroy(&s1.key, true).await.expect("destroy");
    b.destroy(&s2.key, true).await.expect("destroy 2");
    store.remove("mini").expect("rm after the seats are gone");
    assert!(store.rootfs("mini").is_none());
}
