//! A seat image as a microVM seat's root (issue 11: "the same image boots as a microVM seat
//! under TCG and runs `claude --version` there"): the `claude` seat image that sandbox seats
//! bind as `/` becomes an ext4 root disk (made once, cached beside the image by its digest), the
//! seat boots it with the backend's own kernel, and `claude`, `node` and `python3` run in the
//! guest from the image, not from the backend's fixed guest image (which has none of them).
//! One boot, under TCG unless `CLARATEACH_TEST_ACCEL` says otherwise: slow (minutes) but real.
//!
//! The seat images come from `CLARATEACH_SEAT_IMAGES` (default
//! /var/cache/clarateach/seat-images, which scripts/test.sh builds); skips with a printed reason
//! without qemu/debootstrap/root, or without a built `claude` image that has `ip` (iproute2,
//! in the built-in recipes since the microVM guest's init needs it).

mod microvm_support;

use std::path::PathBuf;
use std::time::Instant;

use clarateach_core::agent_proto::SeatKey;
use clarateach_core::Limits;
use clarateach_isolation::microvm::{AccelChoice, MicrovmBackend, MicrovmConfig};
use clarateach_isolation::{Backend, DaemonAddr, WorkspaceSpec};
use microvm_support::*;

fn seat_images() -> PathBuf {
    std::env::var_os("CLARATEACH_SEAT_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/clarateach/seat-images"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_image_boots_as_a_microvm_seat() {
    const TEST: &str = "claude_image_boots_as_a_microvm_seat";
    if let Some(why) = skip_reason() {
        clarateach_core::skip::report(TEST, &why);
        return;
    }
    let images = seat_images();
    let store = clarateach_image::ImageStore::new(&images);
    let Some(tree) = store.rootfs("claude") else {
        let why = format!("no built `claude` seat image in {}", images.display());
        clarateach_core::skip::report(TEST, &why);
        return;
    };
    if !tree.join("usr/sbin/ip").exists() {
        let why = format!(
            "the `claude` image in {} predates iproute2 in the built-in recipes: rebuild it",
            images.display()
        );
        clarateach_core::skip::report(TEST, &why);
        return;
    }
    let image_dir = guest_image();
    let data = tempfile::tempdir().expect("tempdir");
    let mut cfg = MicrovmConfig::new(data.path(), &image_dir);
    cfg.accel = match std::env::var("CLARATEACH_TEST_ACCEL").as_deref() {
        Ok("auto") => AccelChoice::Auto,
        Ok("kvm") => AccelChoice::Kvm,
        _ => AccelChoice::Tcg,
    };
    cfg.volume_mb = 256;
    cfg.boot_timeout = std::time::Duration::from_secs(300);
    cfg.seat_images = images.clone();
    cfg.guest_binary = Some(clarateach_binary());
    let backend = MicrovmBackend::new(cfg).expect("backend");
    let key = SeatKey {
        workshop_id: "ws-mvimage".into(),
        seat: 1,
    };
    let spec = WorkspaceSpec {
        key: key.clone(),
        limits: Limits {
            memory_mb: 1024,
            cpu_millis: 1000,
            ..Limits::default()
        },
        image: Some("claude".into()),
        env: Default::default(),
        daemon_token: "test-token-mvimage".into(),
    };

    let t = Instant::now();
    let fresh = backend.needs_prepare(&spec);
    backend.prepare(&spec).await.expect("prepare the root disk");
    eprintln!(
        "claude root disk {} in {:.1} s",
        if fresh { "made" } else { "reused" },
        t.elapsed().as_secs_f64()
    );
    assert!(
        !backend.needs_prepare(&spec),
        "nothing left to prepare once the disk is made"
    );
    backend.create(&spec).await.expect("create");
    let t = Instant::now();
    let ep = backend.start(&key).await.expect("start");
    eprintln!(
        "claude-image seat ready in {} ms ({:?})",
        t.elapsed().as_millis(),
        backend.accel().await
    );
    let DaemonAddr::Tcp(addr) = ep.addr else {
        panic!("expected a TCP endpoint, got {:?}", ep.addr)
    };
    let (uname, code) = run(addr, &ep.token, "uname -r").await;
    assert_eq!(code, 0);
    assert_eq!(uname.trim(), backend.kernel_release(), "runs in the guest");
    let t = Instant::now();
    let (version, code) = run(addr, &ep.token, "claude --version").await;
    eprintln!(
        "`claude --version` in the microVM: {:?} in {:.1} s",
        version.trim(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(code, 0, "claude --version: {version}");
    assert!(version.contains("Claude Code"), "{version}");
    let (py, code) = run(addr, &ep.token, "python3 -c 'print(6*7)'; id -un").await;
    assert_eq!(code, 0);
    assert_eq!(py.split_whitespace().collect::<Vec<_>>(), ["42", "learner"]);
    // The root is the image's: the `claude` recipe's node, not the fixed guest image (no node).
    let (node, code) = run(addr, &ep.token, "command -v node && node --version").await;
    assert_eq!(code, 0, "node: {node}");
    assert!(node.contains("v20."), "{node}");

    backend.destroy(&key, true).await.expect("destroy");
    assert!(
        qemu_pids_mentioning(&data.path().to_string_lossy()).is_empty(),
        "no qemu left"
    );
}
