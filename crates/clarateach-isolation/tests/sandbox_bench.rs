//! Figures for BENCHMARKS.md (`## Sandbox backend`), not a timed test: ignored by default.
//!
//! cargo test -p clarateach-isolation --release --test sandbox_bench -- --ignored --nocapture
//!
//! Uses the real `clarateach workspace-server` (CLARATEACH_BIN, else target/debug/clarateach).

mod sandbox_support;

use std::path::{Path, PathBuf};
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
        clarateach_core::skip::report("bench", "no clarateach binary (set CLARATEACH_BIN)");
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

/// Issue 11's figures: seat ready and PSS per idle seat of a `claude`-image seat next to a
/// host-root seat, in one run (they alternate, so load changes hit both alike).
///
/// CLARATEACH_SEAT_IMAGES=/var/cache/clarateach/seat-images \
///   cargo test -p clarateach-isolation --release --test sandbox_bench image -- --ignored --nocapture
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints figures"]
async fn bench_image_root_vs_host_root() {
    const TEST: &str = "bench_image_root_vs_host_root";
    if skipped(TEST) {
        return;
    }
    let Some(bin) = daemon() else {
        clarateach_core::skip::report(TEST, "no clarateach binary (set CLARATEACH_BIN)");
        return;
    };
    let images = std::env::var_os("CLARATEACH_SEAT_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/clarateach/seat-images"));
    if clarateach_image::ImageStore::new(&images)
        .rootfs("claude")
        .is_none()
    {
        let why = format!("no built `claude` image in {}", images.display());
        clarateach_core::skip::report(TEST, &why);
        return;
    }
    let dir = sandbox_support::data_dir();
    let mut cfg = config(dir.path(), bin.clone());
    cfg.images_dir = images;
    let backend = SandboxBackend::new(cfg).expect("backend");
    let ws = format!("ws-imgb-{}", std::process::id());
    let of = |seat: u32| {
        let mut s = spec(&ws, seat);
        // Odd seats: the claude image; even seats: the host's root.
        if seat % 2 == 1 {
            s.image = Some("claude".into());
        }
        s
    };
    let (mut image_ms, mut host_ms) = (Vec::new(), Vec::new());
    // CPU of the seat's processes (bwrap x2 + daemon) until ready: what a start costs the host,
    // far less sensitive to other load than the wall time.
    let (mut image_cpu, mut host_cpu) = (Vec::new(), Vec::new());
    for seat in 1..=2 * SEATS {
        let s = of(seat);
        backend.create(&s).await.expect("create");
        let t = Instant::now();
        backend.start(&s.key).await.expect("start");
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let cpu: f64 = backend.pids(&s.key).iter().map(|p| cpu_ms(*p)).sum();
        if seat % 2 == 1 {
            image_ms.push(ms);
            image_cpu.push(cpu);
        } else {
            host_ms.push(ms);
            host_cpu.push(cpu);
        }
    }
    let (mut image_pss, mut host_pss) = (0u64, 0u64);
    for seat in 1..=2 * SEATS {
        let kib: u64 = backend
            .pids(&of(seat).key)
            .iter()
            .map(|p| pss_kib(*p))
            .sum();
        if seat % 2 == 1 {
            image_pss += kib
        } else {
            host_pss += kib
        }
    }
    for seat in 1..=2 * SEATS {
        backend.destroy(&of(seat).key, true).await.expect("destroy");
    }
    for v in [&mut image_ms, &mut host_ms, &mut image_cpu, &mut host_cpu] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    let per = |kib: u64| kib as f64 / f64::from(SEATS) / 1024.0;
    println!(
        "image bench: daemon {}, {SEATS} seats of each, alternating",
        bin.display()
    );
    for (what, v, cpu, kib) in [
        ("claude image", &image_ms, &image_cpu, image_pss),
        ("host root", &host_ms, &host_cpu, host_pss),
    ] {
        println!(
            "{what}: seat ready p50 {:.1} ms, p99 {:.1} ms; CPU of the seat's processes until ready p50 {:.2} ms; PSS per idle seat {:.2} MiB",
            percentile(v, 0.5),
            percentile(v, 0.99),
            percentile(cpu, 0.5),
            per(kib)
        );
    }
}

/// Time `pid` has spent on a CPU so far (`/proc/PID/schedstat`, ns), in ms; 0 when gone.
fn cpu_ms(pid: i32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 / 1e6)
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

/// What the hardening costs bwrap itself, measured without the daemon and the agent so the
/// machine's load hits both variants alike: the same sandbox (`/usr/bin/true` as its program)
/// with the old flags (host /etc, unbounded /tmp, no seccomp, nested user namespaces allowed)
/// and with the new ones (generated /etc, --size tmpfs, two seccomp programs, --disable-userns),
/// interleaved run by run.
#[test]
#[ignore = "benchmark: prints figures"]
fn bench_hardening_cost_in_bwrap() {
    use clarateach_isolation::sandbox::{
        bwrap_args, root_entries, tmpfs_sizes, ArgsInput, Etc, SeccompPrograms, SECCOMP_FDS,
    };
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    if skipped("bench_hardening_cost_in_bwrap") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let uid = 239_999u32;
    for d in ["vol", "home", "etc"] {
        std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        std::os::unix::fs::chown(dir.path().join(d), Some(uid), Some(uid)).expect("chown");
    }
    // The mount point the generated /etc has for the CA certificates.
    std::fs::create_dir_all(dir.path().join("etc/ssl/certs")).expect("mkdir");
    let root = root_entries(Path::new("/")).expect("root");
    let binds = vec![PathBuf::from("/etc/ssl/certs")];
    let (tmp, shm) = tmpfs_sizes(2048);
    let (vol, home, etc) = (
        dir.path().join("vol"),
        dir.path().join("home"),
        dir.path().join("etc"),
    );
    let new_args = |hardened: bool| {
        let input = ArgsInput {
            hostname: "seat-01",
            root: &root,
            etc: Etc::Generated {
                dir: &etc,
                host_binds: &binds,
            },
            resolv_conf: None,
            daemon_binary: Path::new("/usr/bin/true"),
            volume: &vol,
            home: &home,
            tmp_bytes: tmp,
            shm_bytes: shm,
            egress: false,
            await_activation: false,
        };
        let mut args: Vec<String> = bwrap_args(&input)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let end = args.iter().position(|a| a == "--").expect("--");
        args.truncate(end);
        if !hardened {
            // The old command line: drop the new flags, bind the host's /etc.
            let mut old = Vec::new();
            let mut i = 0;
            while i < args.len() {
                match args[i].as_str() {
                    "--disable-userns" => i += 1,
                    "--add-seccomp-fd" | "--size" => i += 2,
                    "--ro-bind" if args[i + 2] == "/etc" => {
                        old.extend(["--ro-bind".into(), "/etc".into(), "/etc".into()]);
                        i += 3
                    }
                    "--ro-bind" if args[i + 2].starts_with("/etc/") => i += 3,
                    _ => {
                        old.push(args[i].clone());
                        i += 1
                    }
                }
            }
            args = old;
        }
        args.extend(["--".into(), "/usr/bin/true".into()]);
        args
    };
    let seccomp = SeccompPrograms::build().expect("seccomp");
    let (old, new) = (new_args(false), new_args(true));
    // CPU time (user + system) of all reaped children so far, in ms: unlike wall time, the
    // other jobs on the machine barely move it.
    fn children_cpu_ms() -> f64 {
        #[allow(unsafe_code)]
        // SAFETY: getrusage writes one plain struct we own.
        let ru = unsafe {
            let mut ru: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
            ru
        };
        let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
        ms(ru.ru_utime) + ms(ru.ru_stime)
    }
    let run = |args: &[String], hardened: bool| -> (f64, f64) {
        let cpu = children_cpu_ms();
        let t = Instant::now();
        let pipes = hardened.then(|| seccomp.pipes().expect("pipes"));
        let fds: Vec<i32> = pipes
            .iter()
            .flat_map(|p| p.iter().map(|f| f.as_raw_fd()))
            .collect();
        let mut cmd = std::process::Command::new("/usr/bin/bwrap");
        cmd.args(args).uid(uid).gid(uid);
        #[allow(unsafe_code)]
        // SAFETY: only fcntl and dup2 (async-signal-safe) on fds open in the parent until spawn
        // returns; copied above 10 first so that no dup2 overwrites a source (as `spawn` does).
        unsafe {
            cmd.pre_exec(move || {
                let mut high = [0i32; 2];
                for (slot, &fd) in high.iter_mut().zip(fds.iter()) {
                    *slot = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
                    if *slot < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for (i, &h) in high.iter().take(fds.len()).enumerate() {
                    if libc::dup2(h, SECCOMP_FDS[i]) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let out = cmd.output().expect("bwrap");
        assert!(
            out.status.success(),
            "bwrap failed: {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (t.elapsed().as_secs_f64() * 1e3, children_cpu_ms() - cpu)
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (mut cpu_a, mut cpu_b) = (0.0, 0.0);
    for _ in 0..100 {
        let (wall, cpu) = run(&old, false);
        a.push(wall);
        cpu_a += cpu;
        let (wall, cpu) = run(&new, true);
        b.push(wall);
        cpu_b += cpu;
    }
    a.sort_by(|x, y| x.total_cmp(y));
    b.sort_by(|x, y| x.total_cmp(y));
    println!(
        "bwrap to exit, old flags: p50 {:.2} ms, p99 {:.2} ms; hardened: p50 {:.2} ms, p99 {:.2} ms; p50 delta {:+.2} ms (100 runs each, interleaved)",
        percentile(&a, 0.5),
        percentile(&a, 0.99),
        percentile(&b, 0.5),
        percentile(&b, 0.99),
        percentile(&b, 0.5) - percentile(&a, 0.5)
    );
    println!(
        "bwrap CPU time (user + system, all its processes) per sandbox: old {:.2} ms, hardened {:.2} ms, delta {:+.2} ms",
        cpu_a / 100.0,
        cpu_b / 100.0,
        (cpu_b - cpu_a) / 100.0
    );
}
