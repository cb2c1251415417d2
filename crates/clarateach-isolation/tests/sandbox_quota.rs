//! The disk quota of a seat, tried as a learner would from inside real sandboxes: filling
//! `/workspace` or the home past `limits.disk_mb` fails with ENOSPC for that seat only, while
//! another seat and the host's data dir keep working; files survive an agent restart and a
//! remount of the seat store (as after a host reboot); an old-style volume dir from before the
//! store migrates with its files. Needs root, bubblewrap and loop devices.

mod sandbox_support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Instant;

use clarateach_core::Limits;
use clarateach_isolation::sandbox::store::{self, SeatStore, StoreSize};
use clarateach_isolation::sandbox::{seatfs, SandboxBackend};
use clarateach_isolation::{Backend, WorkspaceSpec};
use sandbox_support::{config, ok, run, skipped, Harness};

fn limits(disk_mb: u32) -> Limits {
    Limits {
        disk_mb,
        ..Limits::default()
    }
}

fn no_space(out: &str) -> bool {
    out.contains("No space left on device") || out.contains("Disk quota exceeded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filling_the_quota_gives_enospc_to_that_seat_only() {
    if skipped("filling_the_quota_gives_enospc_to_that_seat_only") {
        return;
    }
    let h = Harness::new();
    assert!(h.backend.seat_store().enforced(), "quotas are enforced");
    let small = h.seat(1, limits(64), &[]).await;
    let other = h.seat(2, limits(256), &[]).await;

    // One fallocate far past the quota: refused by the kernel, nothing allocated.
    let (status, out) = run(&small, "fallocate -l 100G /workspace/huge").await;
    println!("fallocate past the quota: {status}: {out}");
    assert_ne!(
        status, "exit=0 signal=0",
        "fallocate past the quota must fail"
    );
    assert!(no_space(&out), "{out}");
    // ext4 keeps what a failed fallocate got; the learner deletes it.
    ok(&small, "rm -f /workspace/huge").await;

    // dd writes up to the quota and then gets the error.
    let (status, out) = run(
        &small,
        "dd if=/dev/zero of=/workspace/fill bs=1M count=100 conv=fsync",
    )
    .await;
    println!("dd past the quota: {status}: {out}");
    assert_ne!(status, "exit=0 signal=0");
    assert!(
        out.contains("No space left on device"),
        "a full ext4 returns ENOSPC: {out}"
    );
    // The home shares the quota with /workspace.
    let (status, out) = run(
        &small,
        "dd if=/dev/zero of=/home/learner/more bs=1M count=8",
    )
    .await;
    assert_ne!(status, "exit=0 signal=0", "the home counts too: {out}");
    assert!(no_space(&out), "{out}");
    // The learner sees the limit as the size of the file system.
    let df = ok(&small, "df -k --output=size /workspace | tail -1").await;
    println!("df size inside the seat: {df} KiB");
    let df_kib: u64 = df.trim().parse().expect("df size");
    assert!(df_kib <= 64 * 1024 && df_kib > 48 * 1024, "{df}");

    let usage = h
        .backend
        .disk_usage(&h.key(1))
        .expect("usage")
        .expect("measured");
    println!("usage of the full seat: {usage:?}");
    assert!(usage.bytes_limit <= 64 << 20 && usage.bytes_limit > 48 << 20);
    assert!(
        usage.bytes_used + (2 << 20) >= usage.bytes_limit,
        "full: {usage:?}"
    );

    // Deleting frees it again.
    ok(&small, "rm /workspace/fill && echo fine > /workspace/after").await;
    // The other seat still writes more than the first one's quota.
    ok(
        &other,
        "dd if=/dev/zero of=/workspace/big bs=1M count=100 2>&1",
    )
    .await;
    // The host's data dir (state files, keys) is untouched and writable.
    let probe = h.dir.path().join("host-probe");
    std::fs::write(&probe, vec![0u8; 1 << 20]).expect("the host can still write its data dir");
    // The seat's image is its limit; on the host it takes what the seat wrote.
    let image = h
        .dir
        .path()
        .join(store::IMAGES_DIR)
        .join(&h.ws)
        .join("seat-01.img");
    let img = std::fs::metadata(&image).expect("image");
    println!(
        "seat image: nominal {} MiB, allocated {} MiB",
        img.len() >> 20,
        (img.blocks() * 512) >> 20
    );
    assert_eq!(img.len(), 64 << 20);
    assert!(img.blocks() * 512 <= 65 << 20);

    // Destroy with the volume removes the dirs and the limit.
    h.backend.destroy(&h.key(1), true).await.expect("destroy");
    assert!(!h.backend.volume_dir(&h.key(1)).exists());
    assert_eq!(
        h.backend
            .disk_usage(&h.key(1))
            .expect("usage")
            .expect("measured")
            .bytes_limit,
        0
    );
    assert!(!image.exists(), "the image is deleted with the volume");
    h.backend.destroy(&h.key(2), true).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_survive_an_agent_restart_and_a_remount() {
    if skipped("files_survive_an_agent_restart_and_a_remount") {
        return;
    }
    let h = Harness::new();
    let ep = h.seat(1, limits(64), &[]).await;
    ok(
        &ep,
        "echo kept > /workspace/f && echo home > /home/learner/h",
    )
    .await;
    h.backend.stop(&h.key(1)).await.expect("stop");
    let daemon = h.dir.path().join("fake-daemon");
    let Harness { dir, backend, ws } = h;
    // The agent goes away; the store stays mounted and is reused.
    drop(backend);
    let again = SandboxBackend::new(config(dir.path(), daemon.clone())).expect("reuse");
    drop(again);
    // A host reboot: the mount is gone, the image is mounted again.
    store::unmount_all(dir.path()).expect("unmount");
    assert!(!dir
        .path()
        .join("seats")
        .join(&ws)
        .join("seat-01/workspace")
        .exists());
    let backend = SandboxBackend::new(config(dir.path(), daemon)).expect("remount");
    assert!(backend.seat_store().enforced());
    let key = clarateach_core::agent_proto::SeatKey {
        workshop_id: ws,
        seat: 1,
    };
    let ep = backend.start(&key).await.expect("start again");
    assert_eq!(
        ok(&ep, "cat /workspace/f /home/learner/h").await,
        "kept\nhome"
    );
    // The limit is still there after the remount.
    let (status, out) = run(&ep, "fallocate -l 1G /workspace/huge").await;
    assert_ne!(status, "exit=0 signal=0");
    assert!(no_space(&out), "{out}");
    backend.destroy(&key, true).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_style_volume_migrates_into_the_store_with_its_files() {
    if skipped("an_old_style_volume_migrates_into_the_store_with_its_files") {
        return;
    }
    let h = Harness::new();
    // Old-layout volumes belong to the shared uid every seat had before (61000).
    let uid: u32 = 61000;
    let old_vol = h.dir.path().join("volumes").join(&h.ws).join("seat-01");
    let old_home = h.dir.path().join("homes").join(&h.ws).join("seat-01");
    std::fs::create_dir_all(old_vol.join("src/deep")).expect("mkdir");
    std::fs::create_dir_all(&old_home).expect("mkdir");
    std::fs::write(old_vol.join("src/deep/main.rs"), "fn main() {}\n").expect("write");
    std::fs::write(old_vol.join("run.sh"), "#!/bin/sh\necho ran\n").expect("write");
    std::fs::set_permissions(
        old_vol.join("run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    // A learner's planted link to a root-only host file: copied as a link, never followed.
    std::os::unix::fs::symlink("/etc/shadow", old_vol.join("shadow")).expect("symlink");
    std::fs::write(old_home.join(".bashrc"), "alias ll='ls -l'\n").expect("write");
    // A FIFO is never opened by the copy: the old dir is kept aside with it, not lost.
    nix::unistd::mkfifo(
        &old_vol.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    for p in [
        &old_vol,
        &old_vol.join("src"),
        &old_vol.join("src/deep"),
        &old_vol.join("src/deep/main.rs"),
        &old_vol.join("run.sh"),
        &old_home,
        &old_home.join(".bashrc"),
    ] {
        nix::unistd::chown(p.as_path(), Some(uid.into()), Some(uid.into())).expect("chown");
    }

    let ep = h.seat(1, limits(64), &[]).await;
    assert_eq!(
        ok(
            &ep,
            "cat /workspace/src/deep/main.rs; /workspace/run.sh; cat ~/.bashrc"
        )
        .await,
        "fn main() {}\nran\nalias ll='ls -l'"
    );
    assert_eq!(ok(&ep, "readlink /workspace/shadow").await, "/etc/shadow");
    let (_, out) = run(&ep, "cat /workspace/shadow").await;
    assert!(
        !out.contains("root:"),
        "the link must not reach the host's file: {out}"
    );
    // The learner owns the copies, and they count against the quota.
    ok(&ep, "touch /workspace/src/deep/main.rs ~/.bashrc").await;
    let vol = h.backend.volume_dir(&h.key(1));
    // ... under the seat's own uid now, not the old shared one.
    let seat_uid = std::fs::metadata(&vol).expect("stat").uid();
    assert_ne!(seat_uid, uid, "the volume moved to the seat's own uid");
    assert_eq!(
        std::fs::metadata(vol.join("src/deep/main.rs"))
            .expect("stat")
            .uid(),
        seat_uid
    );
    let usage = h
        .backend
        .disk_usage(&h.key(1))
        .expect("usage")
        .expect("measured");
    assert!(usage.inodes_used >= 6, "{usage:?}");
    let (_, out) = run(&ep, "fallocate -l 1G /workspace/src/deep/huge").await;
    assert!(
        no_space(&out),
        "migrated files live in the bounded file system: {out}"
    );
    assert!(
        !old_vol.exists() && !old_home.exists(),
        "old dirs moved away"
    );
    let kept = h
        .dir
        .path()
        .join("migration-leftovers/volumes")
        .join(&h.ws)
        .join("seat-01.migrated");
    assert!(
        std::fs::symlink_metadata(kept.join("pipe")).is_ok(),
        "the volume with an uncopied FIFO is kept for the operator"
    );
    assert!(kept.join("run.sh").exists());
    assert!(
        !h.dir.path().join("migration-leftovers/homes").exists(),
        "the home copied fully"
    );
    let (_, out) = run(&ep, "ls /workspace").await;
    assert!(!out.contains("pipe"), "{out}");
    h.backend.destroy(&h.key(1), true).await.expect("destroy");
}

/// The figures for BENCHMARKS.md: one-time store creation and the per-seat quota set-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_cost_figures() {
    if skipped("quota_cost_figures") {
        return;
    }
    let dir = sandbox_support::data_dir();
    let began = Instant::now();
    let store = SeatStore::open(dir.path(), StoreSize::Auto).expect("store");
    // Opening makes only dirs now (images are per seat).
    let create_ms = began.elapsed().as_secs_f64() * 1e3;
    drop(store);
    let began = Instant::now();
    let store = std::sync::Arc::new(SeatStore::open(dir.path(), StoreSize::Auto).expect("store"));
    let reuse_ms = began.elapsed().as_secs_f64() * 1e3;
    let key = |seat| clarateach_core::agent_proto::SeatKey {
        workshop_id: "ws-cost".into(),
        seat,
    };
    let mut first = Vec::new();
    let mut again = Vec::new();
    for seat in 1..=20 {
        let d = store.dirs(&key(seat));
        let t = Instant::now();
        store
            .prepare_seat(&d, 256, 61000, 61000, true)
            .expect("prepare");
        first.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        store
            .prepare_seat(&d, 256, 61000, 61000, true)
            .expect("prepare");
        again.push(t.elapsed().as_secs_f64() * 1e6);
        assert!(seatfs::is_mount_point(&d.root).expect("stat"));
    }
    // New seats that find a spare ready (the refill after each seat has had time to finish).
    let mut spare = Vec::new();
    for seat in 21..=30 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let d = store.dirs(&key(seat));
        let t = Instant::now();
        store
            .prepare_seat(&d, 256, 61000, 61000, true)
            .expect("prepare");
        spare.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(seatfs::is_mount_point(&d.root).expect("stat"));
        std::fs::write(d.volume.join("f"), "x").expect("the taken spare is writable");
    }
    // The two steps of a new seat, apart: the image from the template and the loop mount, for
    // the default 2 GiB.
    let template = dir.path().join("seat-images/.templates/2048.img");
    seatfs::mkfs(&template, 2 << 30, "t", &[]).expect("mkfs");
    let (mut copy_ms, mut mount_ms) = (Vec::new(), Vec::new());
    for n in 0..5 {
        let image = dir.path().join(format!("seat-images/extra-{n}.img"));
        let mnt = dir.path().join(format!("seats/extra-{n}"));
        std::fs::create_dir_all(&mnt).expect("mkdir");
        let t = Instant::now();
        seatfs::image_from_template(&template, &image).expect("copy");
        copy_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        seatfs::mount(&image, &mnt).expect("mount");
        mount_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let p50 = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let first_seat = first[0];
    println!(
        "FIGURES store open {create_ms:.1} ms, reopen {reuse_ms:.2} ms; new 256 MiB seat \
         (first one, with the template mkfs) {first_seat:.1} ms, new seat p50 {:.1} ms \
         (20 back to back: spares run out), on start p50 {:.0} us",
        p50(&mut first),
        p50(&mut again)
    );
    println!(
        "FIGURES new 256 MiB seat taking a ready spare: p50 {:.2} ms (10 seats, 300 ms apart)",
        p50(&mut spare)
    );
    println!(
        "FIGURES new 2 GiB seat steps: image from the template p50 {:.1} ms, loop mount p50 {:.1} ms",
        p50(&mut copy_ms),
        p50(&mut mount_ms)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seat_past_the_disk_budget_is_refused_clearly() {
    if skipped("a_seat_past_the_disk_budget_is_refused_clearly") {
        return;
    }
    let dir = sandbox_support::data_dir();
    let daemon = sandbox_support::fake_daemon(dir.path());
    let mut cfg = config(dir.path(), daemon);
    cfg.seat_store = StoreSize::Bytes(300 << 20);
    let backend = SandboxBackend::new(cfg).expect("backend");
    let spec = |seat: u32, disk_mb| WorkspaceSpec {
        key: clarateach_core::agent_proto::SeatKey {
            workshop_id: format!("ws-budget-{}", std::process::id()),
            seat,
        },
        limits: limits(disk_mb),
        image: None,
        env: Default::default(),
        daemon_token: "t".into(),
    };
    backend.create(&spec(1, 256)).await.expect("fits");
    let err = backend
        .create(&spec(2, 64))
        .await
        .expect_err("past the budget");
    let text = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    println!("refused: {text}");
    assert!(
        text.contains("no disk space for another seat of 64 MiB"),
        "{text}"
    );
    // Deleting the first seat frees its reservation.
    backend
        .destroy(&spec(1, 256).key, true)
        .await
        .expect("destroy");
    backend.create(&spec(2, 64)).await.expect("fits now");
    backend
        .destroy(&spec(2, 64).key, true)
        .await
        .expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_volume_bigger_than_the_limit_is_kept_aside_whole() {
    if skipped("an_old_volume_bigger_than_the_limit_is_kept_aside_whole") {
        return;
    }
    let h = Harness::new();
    let old_vol = h.dir.path().join("volumes").join(&h.ws).join("seat-01");
    std::fs::create_dir_all(&old_vol).expect("mkdir");
    std::fs::write(old_vol.join("small.txt"), "fits").expect("write");
    std::fs::write(old_vol.join("big.bin"), vec![7u8; 80 << 20]).expect("write");
    let ep = h.seat(1, limits(64), &[]).await;
    // What fits is there; the seat works.
    assert_eq!(ok(&ep, "cat /workspace/small.txt").await, "fits");
    let (_, out) = run(&ep, "ls /workspace").await;
    assert!(
        !out.contains("big.bin"),
        "no partial copy takes the seat's space: {out}"
    );
    ok(&ep, "dd if=/dev/zero of=/workspace/room bs=1M count=32").await;
    // Nothing is lost: the whole old dir waits for the operator.
    let kept = h
        .dir
        .path()
        .join("migration-leftovers/volumes")
        .join(&h.ws)
        .join("seat-01.migrated");
    assert_eq!(
        std::fs::metadata(kept.join("big.bin")).expect("kept").len(),
        80 << 20
    );
    assert!(!old_vol.exists());
    h.backend.destroy(&h.key(1), true).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_store_off_seats_run_on_plain_dirs() {
    if skipped("with_the_store_off_seats_run_on_plain_dirs") {
        return;
    }
    let dir = sandbox_support::data_dir();
    let daemon = sandbox_support::fake_daemon(dir.path());
    let mut cfg = config(dir.path(), daemon);
    cfg.seat_store = StoreSize::Off;
    let backend = SandboxBackend::new(cfg).expect("backend");
    assert!(!backend.seat_store().enforced());
    let key = clarateach_core::agent_proto::SeatKey {
        workshop_id: format!("ws-off-{}", std::process::id()),
        seat: 1,
    };
    let spec = WorkspaceSpec {
        key: key.clone(),
        limits: limits(64),
        image: None,
        env: Default::default(),
        daemon_token: "t".into(),
    };
    backend.create(&spec).await.expect("create");
    let ep = backend.start(&key).await.expect("start");
    ok(&ep, "echo plain > /workspace/f").await;
    let vol = backend.volume_dir(&key);
    assert_eq!(
        std::fs::read_to_string(vol.join("f")).expect("read"),
        "plain\n"
    );
    assert!(!seatfs::is_mount_point(vol.parent().expect("root")).expect("stat"));
    assert_eq!(
        backend.disk_usage(&key).expect("usage"),
        Some(Default::default()),
        "nothing measured when limits are off"
    );
    backend.destroy(&key, true).await.expect("destroy");
    assert!(!vol.exists());
}
