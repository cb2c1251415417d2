//! What the object-store sync costs per seat (issue 13): object-store requests per minute and
//! agent CPU per seat, idle and while a learner saves a file every second, against a real S3
//! server (s3s-fs from scripts/s3.sh). Each seat is a volume of 200 files (4 KiB each, in 10
//! directories) synced by the agent's real [`VolumeSync`] (2 s scans by fd). A benchmark, not a
//! timed test: run with
//!
//! ```text
//! eval "$(scripts/s3.sh start /tmp/s3-bench)"
//! cargo test --release -p clarateach-agent --test volume_sync_bench -- --ignored --nocapture
//! ```

use std::time::{Duration, Instant};

use clarateach_agent::volume::{SyncSettings, VolumeSync};
use clarateach_core::agent_proto::SeatKey;
use clarateach_objstore::{ObjectStoreUrl, VolumeStore};

const SEATS: u32 = 20;
const FILES: usize = 200;
const WINDOW: Duration = Duration::from_secs(30);

/// CPU seconds this process has used (user + system).
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat (utime, stime), 0-based 11 and 12 after the command name.
    (tick(11) + tick(12)) / 100.0
}

fn make_seat(root: &std::path::Path) {
    for i in 0..FILES {
        let d = root.join(format!("dir{}", i % 10));
        std::fs::create_dir_all(&d).expect("dir");
        std::fs::write(d.join(format!("file{i}.txt")), vec![b'x'; 4096]).expect("file");
    }
}

/// Requests and CPU over `WINDOW`, per seat per minute; `edit` saves one file a second.
async fn measure(sync: &VolumeSync, dirs: &[std::path::PathBuf], edit: bool) -> (f64, f64) {
    let (req0, cpu0, t0) = (sync.request_counts().total(), cpu_s(), Instant::now());
    let mut n = 0u64;
    while t0.elapsed() < WINDOW {
        if edit {
            for d in dirs {
                std::fs::write(d.join("dir0/file0.txt"), format!("save {n}")).expect("save");
            }
            n += 1;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let minutes = t0.elapsed().as_secs_f64() / 60.0;
    let per_seat = f64::from(SEATS) * minutes;
    let reqs = (sync.request_counts().total() - req0) as f64 / per_seat;
    let cpu_ms = (cpu_s() - cpu0) * 1000.0 / per_seat;
    (reqs, cpu_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: needs an S3 server (scripts/s3.sh) and takes ~2 minutes"]
async fn sync_cost_per_seat() {
    let Some(url) = std::env::var("CLARATEACH_TEST_OBJECT_STORE")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        clarateach_core::skip::report(
            "sync_cost_per_seat",
            "needs CLARATEACH_TEST_OBJECT_STORE and AWS_* (scripts/s3.sh start DIR)",
        );
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let unique = format!("{}/bench-{}", url.trim_end_matches('/'), std::process::id());
    let store = VolumeStore::from_env(unique.parse::<ObjectStoreUrl>().expect("url")).expect("s3");
    let sync = VolumeSync::new(store, SyncSettings::default());
    let mut dirs = Vec::new();
    for seat in 1..=SEATS {
        let d = tmp.path().join(format!("seat-{seat}"));
        make_seat(&d);
        dirs.push(d.clone());
        let key = SeatKey {
            workshop_id: "ws-bench".into(),
            seat,
        };
        sync.start(&key, d, None);
    }
    // First upload of every seat's 200 files.
    let t0 = Instant::now();
    let want = u64::from(SEATS) * FILES as u64;
    while sync.request_counts().puts < want {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "initial upload too slow"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "initial upload: {SEATS} seats x {FILES} files of 4 KiB in {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle_req, idle_cpu) = measure(&sync, &dirs, false).await;
    let (edit_req, edit_cpu) = measure(&sync, &dirs, true).await;
    println!(
        "object-store sync per seat ({FILES} files, 2 s scans, {SEATS} seats, {} s windows):\n  \
         idle: {idle_req:.1} requests/min (goal ~0), {idle_cpu:.0} ms CPU/min ({:.2}% of a core)\n  \
         one save/s: {edit_req:.1} requests/min, {edit_cpu:.0} ms CPU/min ({:.2}% of a core)",
        WINDOW.as_secs(),
        idle_cpu / 600.0,
        edit_cpu / 600.0
    );
    for seat in 1..=SEATS {
        let key = SeatKey {
            workshop_id: "ws-bench".into(),
            seat,
        };
        sync.finish(&key, Duration::from_secs(10)).await;
    }
}
