//! Figures for BENCHMARKS.md (`## Sandbox backend`), not a timed test: ignored by default.
//!
//! cargo test -p clarateach-isolation --release --test sandbox_bench -- --ignored --nocapture
//!
//! Uses the real `clarateach workspace-server` (CLARATEACH_BIN, else target/debug/clarateach).

mod sandbox_support;

use std::path::PathBuf;
use std::time::Instant;

use clarateach_core::agent_proto::SeatKey;
use clarateach_core::Limits;
use clarateach_isolation::sandbox::SandboxBackend;
use clarateach_isolation::{Backend, WorkspaceSpec};
use sandbox_support::{config, skipped};

const SEATS: u32 = 30;

fn daemon() -> Option<PathBuf> {
    let path = std::env::var_os("CLARATEACH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/clarateach")
        });
    path.exists().then_some(path)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Proportional set size of a process in KiB (shared pages split among their users).
fn pss_kib(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn spec(ws: &str, seat: u32) -> WorkspaceSpec {
    WorkspaceSpec {
        key: SeatKey {
            workshop_id: ws.into(),
            seat,
        },
        limits: Limits::default(),
        image: None,
        env: [("ANTHROPIC_API_KEY".to_string(), "sk-bench".to_string())].into(),
        daemon_token: format!("tok-{seat}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints figures"]
async fn bench_seat_start_and_memory() {
    if skipped("bench_seat_start_and_memory") {
        return;
    }
    let Some(bin) = daemon() else {
        eprintln!("SKIPPED bench: no clarateach binary (set CLARATEACH_BIN)");
        return;
    };
    let dir = sandbox_support::data_dir();
    let backend = SandboxBackend::new(config(dir.path(), bin.clone())).expect("backend");
    let ws = format!("ws-bench-{}", std::process::id());

    // One at a time: start() returns once the daemon answers /health.
    let mut ready = Vec::new();
    for seat in 1..=SEATS {
        let s = spec(&ws, seat);
        backend.create(&s).await.expect("create");
        let t = Instant::now();
        backend.start(&s.key).await.expect("start");
        ready.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ready.sort_by(|a, b| a.total_cmp(b));
    let mut pss = Vec::new();
    for seat in 1..=SEATS {
        let pids = backend.pids(&spec(&ws, seat).key);
        pss.push(pids.iter().map(|p| pss_kib(*p)).sum::<u64>());
    }
    let mem_mib = pss.iter().sum::<u64>() as f64 / f64::from(SEATS) / 1024.0;
    for seat in 1..=SEATS {
        backend.stop(&spec(&ws, seat).key).await.expect("stop");
    }

    // All at once, as when a workshop starts.
    let t = Instant::now();
    let starts = (1..=SEATS).map(|seat| {
        let backend = &backend;
        let ws = &ws;
        async move { backend.start(&spec(ws, seat).key).await }
    });
    for r in futures_join(starts).await {
        r.expect("start");
    }
    let all_ms = t.elapsed().as_secs_f64() * 1e3;
    for seat in 1..=SEATS {
        backend
            .destroy(&spec(&ws, seat).key, true)
            .await
            .expect("destroy");
    }
    println!("sandbox bench: daemon {}", bin.display());
    println!(
        "seat ready, one at a time ({SEATS} seats): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&ready, 0.5),
        percentile(&ready, 0.99),
        ready[ready.len() - 1]
    );
    println!("{SEATS} seats started concurrently, all answering: {all_ms:.0} ms");
    println!("memory per idle seat (PSS of bwrap + init + daemon): {mem_mib:.2} MiB");
}

/// Runs the futures concurrently on this task (no extra dependency for join_all).
async fn futures_join<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futs.map(Box::pin).collect();
    let mut outs = Vec::new();
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outs.extend(results.into_iter().flatten());
    outs
}
