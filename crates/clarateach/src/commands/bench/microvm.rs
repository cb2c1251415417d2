//! `clarateach bench microvm --image-dir DIR`: the microVM figures of BENCHMARKS.md, measured on
//! real VMs in a scratch data dir: image build time (cold is whatever the first build took; the
//! cached rebuild is timed here), seat ready time (create + start until `/health` answers), VMM
//! RSS per idle seat (stated against the guest memory actually touched as well as the configured
//! size), and graceful stop time.

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
    /// The seats' `limits.network`: `none` (QEMU user-mode, restricted) or `open` (a TAP of the
    /// seat network under the agent's nft rules; root only).
    #[arg(long, default_value = "none", value_parser = ["none", "open"])]
    network: String,
    /// Interface `open` seats would be masqueraded out of. Default `lo`: the benchmark's guests
    /// send nothing, and nothing they could send leaves the machine.
    #[arg(long, default_value = "lo")]
    egress_iface: String,
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
    // Its own nft table and subnet, so a running agent's seats are never touched.
    cfg.seat_net.egress_iface = Some(args.egress_iface.clone());
    cfg.seat_net.nft_table = format!("ct_bench_{}", std::process::id());
    cfg.seat_net.seat_subnet = "10.220.0.0/24".parse()?;
    let network = match args.network.as_str() {
        "open" => clarateach_core::NetworkPolicy::Open,
        _ => clarateach_core::NetworkPolicy::None,
    };
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
            }
            .with_network(network.clone()),
            image: None,
            env: Default::default(),
            daemon_token: format!("bench-{i}"),
        };
        let t = Instant::now();
        backend.create(&spec).await?;
        backend.start(&key).await?;
        let ready_in = t.elapsed();
        ready.push(ready_in);
        tokio::time::sleep(Duration::from_secs(3)).await; // let the idle guest settle
        let pid = std::fs::read_to_string(backend.paths(&key).pidfile())?
            .trim()
            .parse::<i32>()?;
        let rss = rss_mib(pid);
        let touched = guest_ram_rss_mib(pid, args.memory_mb);
        let overhead = match touched {
            Some(g) => format!(
                "guest touched {g} MiB of its {} MiB -> VMM overhead {} MiB over the touched memory, \
                 {} MiB over the configured size",
                args.memory_mb,
                rss.saturating_sub(g),
                i128::from(rss) - i128::from(args.memory_mb)
            ),
            None => format!(
                "guest RAM mapping not found in smaps; {} MiB over the configured {} MiB",
                i128::from(rss) - i128::from(args.memory_mb),
                args.memory_mb
            ),
        };
        println!(
            "seat {}: ready in {} ms, idle VMM RSS {rss} MiB: {overhead}",
            i + 1,
            ready_in.as_millis(),
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
        "seat ready median: {} ms over {} samples ({accel:?}, network {})",
        median.as_millis(),
        ready.len(),
        args.network
    );
    println!("graceful stop median: {} ms", stop_median.as_millis());
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

/// Resident MiB of the guest's RAM inside the VMM: the anonymous mapping of exactly the
/// configured size (QEMU allocates guest RAM as one mapping), i.e. the memory the guest touched.
fn guest_ram_rss_mib(pid: i32, memory_mb: u32) -> Option<u64> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let want_kib = u64::from(memory_mb) * 1024;
    let mut size = None;
    for line in smaps.lines() {
        if let Some(v) = line.strip_prefix("Size:") {
            size = v.split_whitespace().next()?.parse::<u64>().ok();
        } else if let Some(v) = line.strip_prefix("Rss:") {
            if size == Some(want_kib) {
                return Some(v.split_whitespace().next()?.parse::<u64>().ok()? / 1024);
            }
        }
    }
    None
}

fn rss_mib(pid: i32) -> u64 {
    u32::try_from(pid)
        .ok()
        .and_then(super::util::rss_kib)
        .unwrap_or(0)
        / 1024
}
