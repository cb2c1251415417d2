//! `clarateach bench seats`: the figures of the agent, sandbox and gateway, measured on a real
//! in-process stack (control plane + local agent + sandboxes) in a scratch data dir: seat ready
//! time, start -> N seats running, extra memory per idle seat, keystroke echo and output
//! throughput through the gateway (with the daemon reached directly, and a host PTY, as references).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use clarateach_client::{Client, Terminal, TerminalEvent, TerminalOptions};
use clarateach_core::agent_proto::SeatKey;
use clarateach_core::{CreateWorkshopRequest, JoinRequest, TerminalServerMessage, WorkshopStatus};
use clarateach_isolation::DaemonAddr;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::commands::up::{Stack, StackOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Seats started at once for the start-to-running and memory figures.
    #[arg(long, default_value_t = 30)]
    seats: u32,
    /// Seats created one after another for the seat-ready percentiles.
    #[arg(long, default_value_t = 30)]
    ready_samples: u32,
    /// Keystrokes timed for the echo percentiles.
    #[arg(long, default_value_t = 500)]
    keystrokes: usize,
    /// MiB of terminal output for the throughput figures.
    #[arg(long, default_value_t = 32)]
    output_mib: u64,
    /// Rounds of the recording on/off comparison (each round: one fresh gateway terminal with
    /// the agent's recorder on, one with it off, same output).
    #[arg(long, default_value_t = 3)]
    recording_rounds: u32,
}

use super::util::percentile;

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn meminfo_available_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn ppid_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields start after the last ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Every process id in `/proc` right now.
fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

/// Proportional set size (KiB) of every process whose command line mentions `dir`, and of all
/// their descendants (the daemons inside the sandboxes), with how many processes that is.
fn pss_kib_of(dir: &Path) -> (u64, usize) {
    let needle = dir.display().to_string();
    let pids = all_pids();
    let roots: std::collections::HashSet<u32> = pids
        .iter()
        .copied()
        .filter(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmd).contains(&needle)
        })
        .collect();
    let (mut total, mut count) = (0, 0);
    for pid in pids {
        let mut cur = Some(pid);
        let mut inside = false;
        for _ in 0..64 {
            match cur {
                Some(p) if roots.contains(&p) => {
                    inside = true;
                    break;
                }
                Some(p) if p > 1 => cur = ppid_of(p),
                _ => break,
            }
        }
        if !inside {
            continue;
        }
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        if let Some(kib) = rollup
            .lines()
            .find(|l| l.starts_with("Pss:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        {
            total += kib;
            count += 1;
        }
    }
    (total, count)
}

/// utime + stime + cutime + cstime of a process, in ms (`proc(5)` fields 14-17, clock ticks).
fn cpu_ms_of(stat_path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(stat_path) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    // After the command name: state is field 3, utime field 14.
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    // USER_HZ, the unit of these fields, is 100 on Linux whatever the kernel's own HZ.
    ticks as f64 * 10.0
}

/// This process's CPU time so far (every thread), in ms.
fn own_cpu_ms() -> f64 {
    cpu_ms_of("/proc/self/stat")
}

/// CPU time (ns, from `/proc/PID/task/TID/schedstat`) of every live descendant of this
/// process, every thread, by pid: the seats' own processes (bwrap, the sandbox's pid 1, the
/// daemon). Processes that already exited are not in it (bwrap's short-lived helpers), so it
/// is a lower bound of what the seats cost.
fn descendants_cpu() -> std::collections::HashMap<u32, u64> {
    let me = std::process::id();
    let pids = all_pids();
    let parent: std::collections::HashMap<u32, u32> = pids
        .iter()
        .filter_map(|&p| Some((p, ppid_of(p)?)))
        .collect();
    let mut out = std::collections::HashMap::new();
    for &pid in &pids {
        let (mut cur, mut inside) = (parent.get(&pid).copied(), false);
        for _ in 0..64 {
            match cur {
                Some(p) if p == me => {
                    inside = true;
                    break;
                }
                Some(p) if p > 1 => cur = parent.get(&p).copied(),
                _ => break,
            }
        }
        if !inside {
            continue;
        }
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter();
        let ns: u64 = tasks
            .flatten()
            .flatten()
            .filter_map(|task| {
                let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
                stat.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum();
        out.insert(pid, ns);
    }
    out
}

/// CPU (ms) the live descendants used since `before` (processes new since then count whole),
/// and how many there are.
fn descendants_cpu_ms_since(before: &std::collections::HashMap<u32, u64>) -> (f64, usize) {
    let now = descendants_cpu();
    let ns: u64 = now
        .iter()
        .map(|(pid, ns)| ns.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum();
    (ns as f64 / 1e6, now.len())
}

/// What a viewer received until a needle: bytes (replays included) and resyncs.
struct Received {
    bytes: usize,
    resyncs: usize,
}

async fn wait_output<S: AsyncRead + AsyncWrite + Unpin>(
    t: &mut Terminal<S>,
    needle: &[u8],
) -> anyhow::Result<Received> {
    let mut window: Vec<u8> = Vec::new();
    let (mut bytes, mut resyncs) = (0, 0);
    loop {
        match tokio::time::timeout(Duration::from_secs(60), t.next_event())
            .await
            .context("terminal went quiet")??
        {
            Some(TerminalEvent::Output(b)) => {
                bytes += b.len();
                window.extend_from_slice(&b);
                // `contains` is a memchr: the window scan only runs where the needle may start.
                if window.contains(&needle[0]) && window.windows(needle.len()).any(|w| w == needle)
                {
                    return Ok(Received { bytes, resyncs });
                }
                let keep = window.len().saturating_sub(needle.len());
                window.drain(..keep);
            }
            Some(TerminalEvent::Control(TerminalServerMessage::Error { code, .. }))
                if code == "resync" =>
            {
                resyncs += 1
            }
            Some(TerminalEvent::Closed { code, reason }) => {
                anyhow::bail!("the daemon closed the terminal ({code:?} {reason:?})")
            }
            Some(_) => {}
            None => anyhow::bail!("terminal closed"),
        }
    }
}

/// Echo latency of single keystrokes into `cat` (echoed by the PTY line discipline).
async fn echo_latencies<S: AsyncRead + AsyncWrite + Unpin>(
    t: &mut Terminal<S>,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    t.send_input("stty -echoctl; cat > /dev/null\r").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if i % 100 == 99 {
            t.send_input("\r").await?;
            wait_output(t, b"\n").await?;
        }
        let start = Instant::now();
        t.send_input("q").await?;
        wait_output(t, b"q").await?;
        out.push(start.elapsed());
    }
    t.send_input("\r\x04").await?;
    out.sort();
    Ok(out)
}

/// MiB/s of `head -c N /dev/zero | tr` output arriving on `t`: N over the time until a marker
/// printed after it arrives. A viewer that was resynced skipped output, so this errs out rather
/// than count replayed scrollback as delivered.
async fn throughput<S: AsyncRead + AsyncWrite + Unpin>(
    t: &mut Terminal<S>,
    mib: u64,
) -> anyhow::Result<f64> {
    let cmd = format!(
        "head -c {} /dev/zero | tr '\\0' x; echo; echo EN''D\r",
        mib << 20
    );
    let start = Instant::now();
    t.send_input(&cmd).await?;
    let got = wait_output(t, b"END\r\n").await?;
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        got.resyncs == 0,
        "the viewer fell behind and was resynced {} times: output was skipped",
        got.resyncs
    );
    anyhow::ensure!(
        got.bytes as u64 >= mib << 20,
        "the viewer got {} of {mib} MiB",
        got.bytes
    );
    Ok(mib as f64 / secs)
}

/// Pause then resume every seat through the API (cgroup freezer behind it); each call returns
/// once the agent reported every seat changed.
async fn pause_resume(admin: &Client, id: &str, seats: u32) -> anyhow::Result<()> {
    use clarateach_core::SeatState;
    let t = Instant::now();
    let paused = admin.pause(id, None, true).await?;
    let pause_took = t.elapsed();
    anyhow::ensure!(
        paused.iter().all(|s| s.state == SeatState::Paused),
        "not every seat paused"
    );
    let t = Instant::now();
    let resumed = admin.pause(id, None, false).await?;
    let resume_took = t.elapsed();
    anyhow::ensure!(
        resumed.iter().all(|s| s.state == SeatState::Ready),
        "not every seat resumed"
    );
    println!(
        "pause {seats} seats: {}, resume {seats} seats: {} (API call until every seat reported)",
        ms(pause_took),
        ms(resume_took)
    );
    Ok(())
}

/// Rounds of the output figures (gateway, daemon direct, host PTY), interleaved.
const OUTPUT_ROUNDS: usize = 3;

/// The physical limit of the same output: a host PTY running the same pipeline, drained by this
/// process with 1 MiB reads and nothing else in the way (no relay, no framing). A `script(1)`
/// baseline would copy through its own small buffers and understate the limit.
async fn host_pty_throughput(mib: u64) -> anyhow::Result<f64> {
    let want = mib << 20;
    let (total, secs) = super::pty::drain(vec![
        "sh".into(),
        "-c".into(),
        format!("head -c {want} /dev/zero | tr '\\0' x"),
    ])
    .await?;
    anyhow::ensure!(total >= want, "the host PTY gave {total} of {want} bytes");
    Ok(total as f64 / (1 << 20) as f64 / secs)
}

/// Waits until the agent prepared the workshop's seats ahead of its start; the number ready,
/// or None when nothing is being prepared.
async fn wait_prepared(stack: &Stack, id: &str) -> anyhow::Result<Option<u32>> {
    use clarateach_agent::Prepared;
    let t = Instant::now();
    loop {
        match stack.agent.state.prepared(id).await? {
            Some(Prepared::Ready { ready, .. }) => return Ok(Some(ready)),
            Some(Prepared::Failed(e)) => anyhow::bail!("preparing the seats ahead failed: {e}"),
            Some(Prepared::Making { .. }) => {}
            // The create's message may still be on its way: a short grace before "none".
            None if t.elapsed() > Duration::from_millis(500) => return Ok(None),
            None => {}
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(600),
            "seats of {id} not prepared after 600 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Starts a workshop over the API and polls every `poll` until it runs with every seat ready.
async fn start_and_wait(
    admin: &Client,
    id: &str,
    poll: Duration,
    limit: Duration,
) -> anyhow::Result<()> {
    let t = Instant::now();
    admin.start_workshop(id).await?;
    loop {
        let w = admin.get_workshop(id).await?;
        if w.status == WorkshopStatus::Running && w.seats_ready == w.seats {
            return Ok(());
        }
        anyhow::ensure!(
            t.elapsed() < limit,
            "workshop {id} not running with every seat ready after {} s",
            limit.as_secs()
        );
        tokio::time::sleep(poll).await;
    }
}

/// Seat ready as a learner lives it: a one-seat workshop is started over the API, and the clock
/// stops at the first byte of the joined learner's terminal through the gateway. The status is
/// polled every millisecond, so up to 1 ms of each sample is the poll.
async fn learner_path_ready(
    admin: &Client,
    url: &str,
    samples: u32,
) -> anyhow::Result<Vec<Duration>> {
    let mut out = Vec::new();
    for i in 0..samples {
        let ws = admin
            .create_workshop(&CreateWorkshopRequest::plain(format!("bench path {i}"), 1))
            .await?;
        let t = Instant::now();
        start_and_wait(
            admin,
            &ws.id,
            Duration::from_millis(1),
            Duration::from_secs(60),
        )
        .await?;
        let join = Client::new(url, None)?
            .join(&JoinRequest {
                code: ws.code.clone(),
                odehash: None,
                name: None,
            })
            .await?;
        let learner = Client::new(url, Some(join.token))?;
        let mut term = learner.terminal(&TerminalOptions::default()).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(30), term.next_event())
                .await
                .context("the learner's terminal sent nothing")??
            {
                Some(TerminalEvent::Output(b)) if !b.is_empty() => break,
                Some(TerminalEvent::Closed { .. }) | None => {
                    anyhow::bail!("the learner's terminal closed before its first byte")
                }
                Some(_) => {}
            }
        }
        out.push(t.elapsed());
        drop(term);
        admin.stop_workshop(&ws.id).await?;
    }
    out.sort();
    Ok(out)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("clarateach-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = bench(&args, &dir).await;
    // The seat file systems stay mounted after their seats stop (files are kept by design):
    // unmounted first, or the bench leaves a loop device and a mount per seat behind.
    if let Err(e) = clarateach_isolation::sandbox::store::unmount_under(&dir) {
        eprintln!(
            "unmounting the bench's seat file systems under {}: {e}",
            dir.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn bench(args: &Args, dir: &Path) -> anyhow::Result<()> {
    let mem_before = meminfo_available_kib();
    let stack = Stack::start(StackOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.to_path_buf(),
        backend: None,
        microvm: Default::default(),
        sandbox: Default::default(),
        capacity: args.seats + args.ready_samples + 1,
        heartbeat: Duration::from_millis(500),
        limits: Default::default(),
        export_cap_bytes: clarateach_agent::export::archive::DEFAULT_CAP_BYTES,
        trusted_proxies: Vec::new(),
        preview_domain: None,
        web: Default::default(),
    })
    .await?;
    let result = measure(args, &stack, dir, mem_before).await;
    stack.shutdown().await;
    result
}

async fn measure(args: &Args, stack: &Stack, dir: &Path, mem_before: u64) -> anyhow::Result<()> {
    println!(
        "clarateach bench seats: {} seats, {} keystrokes, {} MiB output",
        args.seats, args.keystrokes, args.output_mib
    );
    // Seat ready: create + start one workspace at a time through the agent, until its daemon answers.
    let mut ready = Vec::new();
    for seat in 1..=args.ready_samples {
        let key = SeatKey {
            workshop_id: "bench-ready".into(),
            seat,
        };
        let t = Instant::now();
        stack
            .agent
            .state
            .create_local(key.clone())
            .await
            .context("seat create")?;
        ready.push(t.elapsed());
        stack.agent.state.destroy_local(key).await?;
    }
    ready.sort();
    println!(
        "seat ready, backend only (agent create -> daemon answering): p50 {}  p99 {}  (goal <= 25 ms / 100 ms)",
        ms(percentile(&ready, 0.5)),
        ms(percentile(&ready, 0.99))
    );

    let token = stack.instructor_token().context("no instructor token")?;
    let admin = Client::new(&stack.url, Some(token))?;
    let path = learner_path_ready(&admin, &stack.url, args.ready_samples.min(20)).await?;
    println!(
        "seat ready, the learner's whole path (POST /start -> store -> agent protocol -> seat ready -> join -> first terminal byte through the gateway): p50 {}  p99 {}  ({} samples)",
        ms(percentile(&path, 0.5)),
        ms(percentile(&path, 0.99)),
        path.len()
    );
    let req = CreateWorkshopRequest::plain("bench", args.seats);
    let (own_at_create, children_at_create) = (own_cpu_ms(), descendants_cpu());
    let created = Instant::now();
    let ws = admin.create_workshop(&req).await?;
    let prepared = wait_prepared(stack, &ws.id).await?;
    match prepared {
        Some(ready) => {
            let took = created.elapsed();
            let (children, _) = descendants_cpu_ms_since(&children_at_create);
            let own = own_cpu_ms() - own_at_create;
            println!(
                "create -> {} seats prepared ahead (API create until the agent made every seat's file system and, unless CLARATEACH_PREPARE=fs, ran the seat frozen without the workshop's environment): {}  ({ready} ready); CPU per seat {:.2} ms in this process + {:.2} ms in the seats' processes",
                args.seats,
                ms(took),
                own / f64::from(args.seats),
                children / f64::from(args.seats),
            )
        }
        None => {
            println!("nothing prepared ahead (CLARATEACH_PREPARE=off or no agent): a cold start")
        }
    }
    let children_before = descendants_cpu();
    let cpu_before = own_cpu_ms();
    let t = Instant::now();
    start_and_wait(
        &admin,
        &ws.id,
        Duration::from_millis(5),
        Duration::from_secs(120),
    )
    .await?;
    let took = t.elapsed();
    let own = own_cpu_ms() - cpu_before;
    println!(
        "start -> {} seats running ({}): {}  (goal <= 1 s)",
        args.seats,
        match (
            prepared.is_some(),
            std::env::var("CLARATEACH_PREPARE").is_ok_and(|v| v == "fs"),
        ) {
            (false, _) => "cold",
            (true, true) => "file systems made ahead (CLARATEACH_PREPARE=fs)",
            (true, false) => "seats run ahead, frozen, activated at Start",
        },
        ms(took)
    );
    // The seats' own processes (bwrap, pid 1, daemon) are not in `own` (tick accounting of
    // children counts only reaped ones): their schedstat, read right after, is.
    let (children, procs) = descendants_cpu_ms_since(&children_before);
    let per_seat = |v: f64| v / f64::from(args.seats);
    println!(
        "CPU of that start per seat in this process (control plane + agent + bench, every thread): {:.2} ms",
        per_seat(own)
    );
    println!(
        "CPU of that start per seat in the seats' own processes ({procs} live: bwrap, pid 1, daemon): {:.2} ms; together {:.2} ms per seat, {:.0} ms for {} seats",
        per_seat(children),
        per_seat(own + children),
        own + children,
        args.seats
    );

    pause_resume(&admin, &ws.id, args.seats).await?;

    tokio::time::sleep(Duration::from_secs(2)).await;
    let (pss, procs) = pss_kib_of(dir);
    let avail_delta = mem_before.saturating_sub(meminfo_available_kib());
    println!(
        "memory per idle seat: {:.2} MiB PSS ({} processes), {:.2} MiB by MemAvailable  (goal <= 8 MiB)",
        pss as f64 / 1024.0 / f64::from(args.seats),
        procs,
        avail_delta as f64 / 1024.0 / f64::from(args.seats)
    );

    let join = Client::new(&stack.url, None)?
        .join(&JoinRequest {
            code: ws.code.clone(),
            odehash: None,
            name: None,
        })
        .await?;
    let learner = Client::new(&stack.url, Some(join.token.clone()))?;
    let mut gw = learner
        .terminal(&TerminalOptions {
            session: Some("bench".into()),
            ..Default::default()
        })
        .await?;
    let ep = stack
        .agent
        .state
        .route(&SeatKey {
            workshop_id: ws.id.clone(),
            seat: join.seat,
        })
        .context("no route to the joined seat")?;
    let DaemonAddr::Unix(socket) = &ep.addr else {
        anyhow::bail!("the seat's daemon is not on a Unix socket")
    };
    let mut direct =
        Terminal::connect_unix(socket, "/terminal?session=direct", Some(&ep.token)).await?;

    let via_gw = echo_latencies(&mut gw, args.keystrokes).await?;
    let via_daemon = echo_latencies(&mut direct, args.keystrokes).await?;
    println!(
        "keystroke echo through the gateway: p50 {}  p99 {}  (goal <= 1 ms / 3 ms); daemon direct: p50 {}  p99 {}",
        ms(percentile(&via_gw, 0.5)),
        ms(percentile(&via_gw, 0.99)),
        ms(percentile(&via_daemon, 0.5)),
        ms(percentile(&via_daemon, 0.99))
    );

    // Three interleaved rounds: the host PTY's rate moves by half between runs of a quiet
    // machine, so one sample of each would make the share a coin toss. The limit is the best
    // host run; the gateway and the daemon are their medians.
    let (mut gw_rates, mut direct_rates, mut host_rates) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..OUTPUT_ROUNDS {
        gw_rates.push(throughput(&mut gw, args.output_mib).await?);
        direct_rates.push(throughput(&mut direct, args.output_mib).await?);
        host_rates.push(host_pty_throughput(args.output_mib).await?);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (gw_rate, direct_rate) = (median(&mut gw_rates), median(&mut direct_rates));
    let host_rate = host_rates.iter().copied().fold(0.0, f64::max);
    println!(
        "output ({OUTPUT_ROUNDS} interleaved rounds): gateway {gw_rate:.1} MiB/s (median of {gw_rates:.1?}), daemon direct {direct_rate:.1} MiB/s (median of {direct_rates:.1?}), host PTY drained with 1 MiB reads (the physical limit, best of {host_rates:.1?}) {host_rate:.1} MiB/s -> gateway = {:.0}% of raw PTY (goal >= 70%)",
        100.0 * gw_rate / host_rate
    );
    recording_overhead(&learner, stack, args).await?;
    admin.stop_workshop(&ws.id).await?;
    at_once(&admin, &ws.id, args.seats).await
}

/// A class created and started at once (Start right after Create, or a `start_at` already
/// past): the Start meets the preparation still going, which then makes no more seats; its
/// seats in flight finish and the rest start the usual way.
async fn at_once(admin: &Client, before: &str, seats: u32) -> anyhow::Result<()> {
    // The capacity the class needs comes back once the previous one's seats are gone.
    let t = Instant::now();
    while admin.get_workshop(before).await?.status != WorkshopStatus::Stopped {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(60),
            "workshop {before} did not stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let req = CreateWorkshopRequest::plain("bench at once", seats);
    let t = Instant::now();
    let ws = admin.create_workshop(&req).await?;
    start_and_wait(
        admin,
        &ws.id,
        Duration::from_millis(5),
        Duration::from_secs(120),
    )
    .await?;
    let how = match std::env::var("CLARATEACH_PREPARE").as_deref() {
        Ok("off") => "nothing prepared: a cold start",
        _ => "the Start cuts the preparation short",
    };
    println!(
        "create + start at once -> {seats} seats running ({how}): {}",
        ms(t.elapsed())
    );
    admin.stop_workshop(&ws.id).await?;
    Ok(())
}

/// Gateway output throughput with the agent's terminal recorder on and off, alternating, each
/// on a fresh connection (the recorder is chosen when a connection opens) and a fresh shell.
async fn recording_overhead(learner: &Client, stack: &Stack, args: &Args) -> anyhow::Result<()> {
    if args.recording_rounds == 0 {
        println!("recording overhead on gateway output: not measured (--recording-rounds 0)");
        return Ok(());
    }
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 0..args.recording_rounds {
        for recording in [true, false] {
            stack.agent.recorder.set_enabled(recording);
            let mut t = learner
                .terminal(&TerminalOptions {
                    session: Some(format!("rec-{round}-{recording}")),
                    ..Default::default()
                })
                .await?;
            t.send_input("echo READY-$((1+1))\r").await?;
            wait_output(&mut t, b"READY-2").await?;
            let rate = throughput(&mut t, args.output_mib).await?;
            if recording {
                on.push(rate)
            } else {
                off.push(rate)
            }
            t.close().await.ok();
        }
    }
    stack.agent.recorder.set_enabled(true);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (m_on, m_off) = (mean(&on), mean(&off));
    println!(
        "recording overhead on gateway output ({} rounds, {} MiB each): recording on {m_on:.1} MiB/s {on:.1?}, off {m_off:.1} MiB/s {off:.1?} -> {:+.1}% (goal: at most 10% slower)",
        args.recording_rounds,
        args.output_mib,
        100.0 * (m_on - m_off) / m_off
    );
    Ok(())
}
