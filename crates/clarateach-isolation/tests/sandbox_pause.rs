//! Pause and resume of real sandboxes through the cgroup freezer: a counting loop inside the
//! seat stops advancing while paused (read from the host, since the seat's daemon is frozen
//! too) and goes on after resume in the same process; a second seat runs on meanwhile; pausing
//! a seat that does not run is refused; and 30 seats pause and resume, timed.

mod sandbox_support;

use std::time::{Duration, Instant};

use clarateach_core::Limits;
use clarateach_isolation::sandbox::health;
use clarateach_isolation::{Backend, DaemonAddr};
use sandbox_support::{ok, skipped, Harness};

/// A loop in the seat counting into `count` and naming its pid in `pid`, each file replaced by a
/// rename (a read between a truncate and a write would see it empty).
const COUNTER: &str = "nohup sh -c 'i=0; while :; do i=$((i+1)); echo $i > /workspace/count.tmp; \
     mv /workspace/count.tmp /workspace/count; echo $$ > /workspace/pid.tmp; \
     mv /workspace/pid.tmp /workspace/pid; sleep 0.01; done' \
     >/dev/null 2>&1 & sleep 0.3";

fn count(h: &Harness, seat: u32) -> u64 {
    std::fs::read_to_string(h.backend.volume_dir(&h.key(seat)).join("count"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn pid_of_loop(h: &Harness, seat: u32) -> String {
    std::fs::read_to_string(h.backend.volume_dir(&h.key(seat)).join("pid")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_seat_stops_counting_and_resumes_where_it_was() {
    if skipped("a_paused_seat_stops_counting_and_resumes_where_it_was") {
        return;
    }
    let h = Harness::new();
    let ep = h.seat(1, Limits::default(), &[]).await;
    let other = h.seat(2, Limits::default(), &[]).await;
    ok(&ep, COUNTER).await;
    ok(&other, COUNTER).await;
    let before_pid = pid_of_loop(&h, 1);
    assert!(count(&h, 1) > 0, "the loop did not start");

    let t = Instant::now();
    h.backend.pause(&h.key(1)).await.expect("pause");
    eprintln!("pause took {:?}", t.elapsed());
    let frozen_at = count(&h, 1);
    let other_at = count(&h, 2);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(count(&h, 1), frozen_at, "a paused seat went on counting");
    assert!(
        count(&h, 2) > other_at,
        "the seat next to a paused one must go on"
    );
    // The daemon is frozen too: it does not answer, so nobody mistakes a paused seat for a
    // live one. (The stand-in daemon dies of SIGPIPE answering this abandoned probe after the
    // thaw, so the rest of the test reads the seat's files from the host.)
    let DaemonAddr::Unix(sock) = &ep.addr else {
        panic!("unix endpoint")
    };
    let answered = tokio::time::timeout(Duration::from_millis(300), health(sock, &ep.token)).await;
    assert!(
        !matches!(answered, Ok(true)),
        "a frozen daemon answered /health"
    );
    // Pausing twice is fine.
    h.backend.pause(&h.key(1)).await.expect("pause again");

    let t = Instant::now();
    h.backend.resume(&h.key(1)).await.expect("resume");
    eprintln!("resume took {:?}", t.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        count(&h, 1) > frozen_at,
        "the loop did not go on after resume"
    );
    // The same process goes on: nothing was restarted.
    assert_eq!(pid_of_loop(&h, 1), before_pid);

    h.backend.destroy(&h.key(1), true).await.expect("destroy");
    h.backend.destroy(&h.key(2), true).await.expect("destroy");
    assert!(
        h.backend.pause(&h.key(1)).await.is_err(),
        "a seat that does not run cannot be paused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_seat_is_destroyed_cleanly() {
    if skipped("a_paused_seat_is_destroyed_cleanly") {
        return;
    }
    let h = Harness::new();
    let ep = h.seat(1, Limits::default(), &[]).await;
    ok(&ep, COUNTER).await;
    h.backend.pause(&h.key(1)).await.expect("pause");
    let pids = h.backend.pids(&h.key(1));
    assert!(!pids.is_empty());
    tokio::time::timeout(Duration::from_secs(15), h.backend.destroy(&h.key(1), true))
        .await
        .expect("destroy in time")
        .expect("destroy");
    assert!(
        pids.iter().all(|p| !sandbox_support::alive(*p)),
        "a frozen process survived destroy"
    );
}

/// Figures for BENCHMARKS.md: `--nocapture` prints them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_seats_pause_and_resume_timed() {
    if skipped("thirty_seats_pause_and_resume_timed") {
        return;
    }
    let h = Harness::new();
    let n = 30u32;
    let eps = futures_all(&h, n).await;
    for ep in &eps {
        ok(ep, COUNTER).await;
    }
    let keys: Vec<_> = (1..=n).map(|s| h.key(s)).collect();
    let t = Instant::now();
    let paused = futures::future::join_all(keys.iter().map(|k| h.backend.pause(k))).await;
    let pause_all = t.elapsed();
    assert!(paused.iter().all(Result::is_ok), "{paused:?}");
    let at: Vec<u64> = (1..=n).map(|s| count(&h, s)).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(at, (1..=n).map(|s| count(&h, s)).collect::<Vec<_>>());
    let t = Instant::now();
    let resumed = futures::future::join_all(keys.iter().map(|k| h.backend.resume(k))).await;
    let resume_all = t.elapsed();
    assert!(resumed.iter().all(Result::is_ok), "{resumed:?}");
    // Resuming a running seat is fine.
    h.backend.resume(&keys[0]).await.expect("resume again");
    println!(
        "FIGURE pause {n} seats: {:.1} ms, resume {n} seats: {:.1} ms",
        pause_all.as_secs_f64() * 1e3,
        resume_all.as_secs_f64() * 1e3
    );
    eprintln!(
        "FIGURE pause {n} seats: {:.1} ms, resume {n} seats: {:.1} ms",
        pause_all.as_secs_f64() * 1e3,
        resume_all.as_secs_f64() * 1e3
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (i, before) in at.iter().enumerate() {
        assert!(
            count(&h, i as u32 + 1) > *before,
            "seat {} did not go on",
            i + 1
        );
    }
    for k in &keys {
        h.backend.destroy(k, true).await.expect("destroy");
    }
}

async fn futures_all(h: &Harness, n: u32) -> Vec<clarateach_isolation::DaemonEndpoint> {
    let mut out = Vec::new();
    for s in 1..=n {
        out.push(h.seat(s, Limits::default(), &[]).await);
    }
    out
}
