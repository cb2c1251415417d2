//! Cgroup limits with real processes: a fork bomb hits the pids limit while the host goes on,
//! and a memory hog is killed inside its own cgroup while its daemon and another seat go on.

mod sandbox_support;

use std::time::Duration;

use clarateach_core::Limits;
use clarateach_isolation::sandbox::health;
use clarateach_isolation::{Backend, DaemonAddr};
use sandbox_support::{alive, ok, run, skipped, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_is_stopped_by_the_pids_limit() {
    if skipped("a_fork_bomb_is_stopped_by_the_pids_limit") {
        return;
    }
    let h = Harness::new();
    let limits = Limits {
        pids: 48,
        cpu_millis: 500,
        ..Limits::default()
    };
    let ep = h.seat(1, limits, &[]).await;
    // The bomb's processes outlive the command; they stay inside the seat.
    let t = std::time::Instant::now();
    run(&ep, "bash -c ':(){ :|:& };:' >/dev/null 2>&1; sleep 1").await;
    eprintln!("bomb ran for {:?}", t.elapsed());
    // The bomb's processes come and go (each fork that hits the limit ends its shell): sample for
    // a while, every sample within the limit, the busiest near it. One sample was flaky on a
    // loaded host.
    let mut most = 0;
    for _ in 0..40 {
        let n = h.backend.pids(&h.key(1)).len();
        assert!(n <= 48, "{n} processes escaped the limit");
        most = most.max(n);
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        most >= 30,
        "the bomb did not run ({most} processes at most)"
    );
    // The host can still start processes.
    let out = std::process::Command::new("true")
        .status()
        .expect("host can fork");
    assert!(out.success());
    // Stopping freezes and kills them all.
    let pids = h.backend.pids(&h.key(1));
    let t = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(15), h.backend.destroy(&h.key(1), true))
        .await
        .expect("destroy in time")
        .expect("destroy");
    eprintln!("destroy took {:?}", t.elapsed());
    assert!(pids.iter().all(|p| !alive(*p)), "a bomb process survived");
    assert!(h.backend.pids(&h.key(1)).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_is_killed_inside_its_cgroup_only() {
    if skipped("a_memory_hog_is_killed_inside_its_cgroup_only") {
        return;
    }
    let h = Harness::new();
    let small = Limits {
        memory_mb: 64,
        ..Limits::default()
    };
    let hog = h.seat(1, small, &[]).await;
    let other = h.seat(2, Limits::default(), &[]).await;
    let (status, out) = run(
        &hog,
        "perl -e '$x = \"a\" x (400 << 20); print \"survived\"'",
    )
    .await;
    assert!(
        !out.contains("survived"),
        "the hog got 400 MiB under a 64 MiB limit: {status}"
    );
    assert!(
        status.contains("signal=9") || status.contains("exit=137"),
        "{status}: {out}"
    );
    assert!(h.backend.oom_kills(&h.key(1)) >= 1);
    // The seat's daemon and the other seat go on.
    assert_eq!(ok(&hog, "echo alive").await, "alive");
    assert_eq!(ok(&other, "echo alive").await, "alive");
    let DaemonAddr::Unix(socket) = &other.addr else {
        panic!("unix")
    };
    assert!(health(socket, &other.token).await);
    h.backend.destroy(&h.key(1), true).await.expect("destroy");
    h.backend.destroy(&h.key(2), true).await.expect("destroy");
}
