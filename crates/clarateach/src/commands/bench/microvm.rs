//! `clarateach bench microvm --image-dir DIR`: the microVM figures of BENCHMARKS.md, measured on
//! real VMs in a scratch data dir: image build time (cold is whatever the first build took; the
//! cached rebuild is timed here), seat ready time (create + start until `/health` answers), VMM
//! RSS per idle seat, and graceful stop time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clarateach_core::agent_proto::SeatKey;
use clarateach_core::Limits;
use clarateach_isolation::microvm::{AccelChoice, MicrovmBackend, MicrovmConfig};
use clarateach_isolation::{Backend, WorkspaceSpec};

#[derive(clap::Args)]
pub struct Args {
    /// Image directory (built first if needed, with this binary).
    #[arg(long, env = "CLARATEACH_IMAGE_DIR")]
    image_dir: PathBuf,
    /// Accelerator: auto (probe KVM by booting), kvm or tcg.
    #[arg(long, default_value = "auto")]
    accel: String,
    /// Seats started one after another.
    #[arg(long, default_value_t = 3)]
    samples: u32,
    /// Guest memory (MiB) per seat.
    #[arg(long, default_value_t = 256)]
    memory_mb: u32,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the clarateach binary")?;
    let mut opts = clarateach_image::BuildOptions::new(&args.image_dir, exe);
    opts.show_progress = true;
    let built = tokio::task::spawn_blocking(move || clarateach_image::build(&opts)).await??;
    println!(
        "image: {} in {:.2}s (a cold build of this image took {:.1}s)",
        if built.cached { "cached" } else { "built" },
        built.elapsed.as_secs_f64(),
        built.manifest.build_seconds
    );

    let data =
        std::env::temp_dir().join(format!("clarateach-bench-microvm-{}", std::process::id()));
    let mut cfg = MicrovmConfig::new(&data, &args.image_dir);
    cfg.accel = match args.accel.as_str() {
        "kvm" => AccelChoice::Kvm,
        "tcg" => AccelChoice::Tcg,
        _ => AccelChoice::Auto,
    };
    cfg.volume_mb = 512;
    let backend = MicrovmBackend::new(cfg)?;
    let probe_start = Instant::now();
    let accel = backend.accel().await;
    println!(
        "accelerator: {accel:?} (decided in {:.2}s)",
        probe_start.elapsed().as_secs_f64()
    );

    let mut ready = Vec::new();
    let mut stops = Vec::new();
    for i in 0..args.samples {
        let key = SeatKey {
            workshop_id: "ws-bench".into(),
            seat: i + 1,
        };
        let spec = WorkspaceSpec {
            key: key.clone(),
            limits: Limits {
                memory_mb: args.memory_mb,
                ..Limits::default()
            },
            image: None,
            env: Default::default(),
            daemon_token: format!("bench-{i}"),
        };
        let t = Instant::now();
        backend.create(&spec).await?;
        backend.start(&key).await?;
        ready.push(t.elapsed());
        tokio::time::sleep(Duration::from_secs(3)).await; // let the idle guest settle
        let pid = std::fs::read_to_string(backend.paths(&key).pidfile())?
            .trim()
            .parse::<i32>()?;
        let rss = rss_mib(pid);
        println!(
            "seat {}: ready in {} ms, idle VMM RSS {rss} MiB (guest RAM {} MiB)",
            i + 1,
            t.elapsed().as_millis(),
            args.memory_mb
        );
        let t = Instant::now();
        backend.destroy(&key, true).await?;
        stops.push(t.elapsed());
    }
    ready.sort();
    let median = ready.get(ready.len() / 2).copied().unwrap_or_default();
    let stop_median = {
        stops.sort();
        stops.get(stops.len() / 2).copied().unwrap_or_default()
    };
    println!(
        "seat ready median: {} ms over {} samples ({accel:?})",
        median.as_millis(),
        ready.len()
    );
    println!("graceful stop median: {} ms", stop_median.as_millis());
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

fn rss_mib(pid: i32) -> u64 {
    u32::try_from(pid)
        .ok()
        .and_then(super::util::rss_kib)
        .unwrap_or(0)
        / 1024
}
