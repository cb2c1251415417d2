//! Export throughput and memory: 30 seat volumes of 50 MiB each (50 files of 1 MiB, random
//! bytes so nothing compresses away) exported one after another as tar fragments, the way the
//! gateway gathers a class, through the real `export::stream` (fd walk, cap, report, channel).
//! Prints wall time, MiB/s and the process's peak RSS (VmHWM) before and after.
//!
//! `cargo bench -p clarateach-agent --bench export` (add `--profile dev` for a debug build);
//! `EXPORT_BENCH_SEATS` / `EXPORT_BENCH_MIB` change the sizes. Volumes are made under
//! `EXPORT_BENCH_DIR` (default: the system temp dir).

use std::io::Write;
use std::time::Instant;

use clarateach_agent::export::{self, archive, ExportFormat, ExportJob};
use clarateach_isolation::export::ExportSource;
use futures::StreamExt;

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let seats = env_or("EXPORT_BENCH_SEATS", 30);
    let mib = env_or("EXPORT_BENCH_MIB", 50);
    let base = std::env::var("EXPORT_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let mut chunk = vec![0u8; 1 << 20];
    for seat in 0..seats {
        let v = dir.path().join(format!("seat-{seat:02}"));
        std::fs::create_dir_all(&v).expect("mkdir");
        for f in 0..mib {
            rand::Rng::fill(&mut rand::thread_rng(), &mut chunk[..]);
            let mut file = std::fs::File::create(v.join(format!("f{f:02}.bin"))).expect("create");
            file.write_all(&chunk).expect("write");
        }
    }
    let rss_before = vm_hwm_kib();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let total: u64 = rt.block_on(async {
        let mut total = 0u64;
        for seat in 0..seats {
            let s = export::stream(ExportJob {
                source: ExportSource::Dir(dir.path().join(format!("seat-{seat:02}"))),
                owner: None,
                prefix: Some(format!("seat-{seat:02}")),
                format: ExportFormat::TarFragment,
                cap_bytes: archive::DEFAULT_CAP_BYTES,
            });
            futures::pin_mut!(s);
            while let Some(chunk) = s.next().await {
                total += chunk.expect("chunk").len() as u64;
            }
        }
        total
    });
    let took = started.elapsed();
    println!(
        "export bench: {seats} seats x {mib} MiB: {:.0} MiB archived in {:.2} s ({:.0} MiB/s); \
         peak RSS {} KiB before the exports, {} KiB after",
        total as f64 / f64::from(1 << 20),
        took.as_secs_f64(),
        total as f64 / f64::from(1 << 20) / took.as_secs_f64(),
        rss_before,
        vm_hwm_kib()
    );
}
