//! `clarateach bench join`: control-plane figures against a real `clarateach serve` child
//! process (so its memory is measured apart from the load generator) in a scratch data dir.
//! Seats become ready through `ProtocolAgent` (the real agent protocol, no workspaces), since
//! joins never touch a workspace.
//!
//! - join latency: rounds of N learners joining one N-seat workshop all at once; p50/p99.
//! - server RSS with W workshops x S seats, all started and every seat joined.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clarateach_client::Client;
use clarateach_core::{CreateWorkshopRequest, JoinRequest, WorkshopStatus};
use clarateach_server::testing::ProtocolAgent;

#[derive(clap::Args)]
pub struct Args {
    /// Concurrent learners per round (one workshop of that many seats per round).
    #[arg(long, default_value_t = 200)]
    learners: u32,
    /// Rounds of concurrent joins.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Workshops for the memory figure.
    #[arg(long, default_value_t = 50)]
    workshops: u32,
    /// Seats per workshop for the memory figure.
    #[arg(long, default_value_t = 20)]
    seats: u32,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let scratch = tempfile_dir()?;
    let data_dir = scratch.join("data");
    let port = free_port()?;
    let exe = std::env::current_exe().context("cannot find the clarateach binary")?;
    let mut child = tokio::process::Command::new(exe)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&data_dir)
        .env("CLARATEACH_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start `clarateach serve`")?;
    let pid = child.id().context("the server exited at once")?;
    let result = measure(&args, &data_dir, port, pid).await;
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn measure(args: &Args, data_dir: &Path, port: u16, pid: u32) -> anyhow::Result<()> {
    let base = format!("http://127.0.0.1:{port}");
    let anon = Client::new(&base, None)?;
    let mut up = false;
    for _ in 0..200 {
        if anon.health().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::ensure!(up, "the server did not come up on {base}");
    let token = std::fs::read_to_string(data_dir.join(clarateach_server::INSTRUCTOR_TOKEN_FILE))?
        .trim()
        .to_string();
    let instructor = Client::new(&base, Some(token))?;
    let store = clarateach_server::open_store(data_dir).await?;
    let agent_token = clarateach_server::issue_agent_token(store.as_ref()).await?;
    let capacity = (args.learners * args.rounds + args.workshops * args.seats).max(1);
    let _agent = ProtocolAgent::connect(&base, &agent_token, "bench-agent", capacity).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_idle = rss_kib(pid)?;

    // Join latency.
    let learners = Arc::new(Client::new(&base, None)?);
    let mut samples = Vec::new();
    let mut refused = 0;
    for round in 0..args.rounds {
        let code =
            running_workshop(&instructor, &format!("bench round {round}"), args.learners).await?;
        let started = Instant::now();
        let tasks: Vec<_> = (0..args.learners)
            .map(|i| {
                let c = learners.clone();
                let req = JoinRequest {
                    code: code.clone(),
                    odehash: None,
                    name: Some(format!("learner {i}")),
                };
                tokio::spawn(async move {
                    let t = Instant::now();
                    let ok = c.join(&req).await.is_ok();
                    (t.elapsed(), ok)
                })
            })
            .collect();
        for t in tasks {
            let (d, ok) = t.await?;
            if ok {
                samples.push(d);
            } else {
                refused += 1;
            }
        }
        println!(
            "round {round}: {} joins in {:.1} ms",
            args.learners,
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    samples.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "join latency, {} concurrent learners x {} rounds: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} ok, {refused} refused)",
        args.learners,
        args.rounds,
        ms(pct(&samples, 0.50)),
        ms(pct(&samples, 0.99)),
        ms(pct(&samples, 1.0)),
        samples.len(),
    );

    // Memory with many workshops, every seat joined.
    for w in 0..args.workshops {
        let code = running_workshop(&instructor, &format!("bench mem {w}"), args.seats).await?;
        for _ in 0..args.seats {
            learners
                .join(&JoinRequest {
                    code: code.clone(),
                    odehash: None,
                    name: None,
                })
                .await
                .context("join for the memory figure")?;
        }
    }
    let rss = rss_kib(pid)?;
    println!(
        "server RSS: {:.1} MiB idle with one agent; {:.1} MiB with {} more workshops x {} seats running and joined",
        rss_idle as f64 / 1024.0,
        rss as f64 / 1024.0,
        args.workshops,
        args.seats
    );
    Ok(())
}

async fn running_workshop(c: &Client, name: &str, seats: u32) -> anyhow::Result<String> {
    let req = CreateWorkshopRequest {
        name: name.into(),
        seats,
        api_key: None,
        image: None,
        limits: None,
    };
    let w = c.create_workshop(&req).await?;
    c.start_workshop(&w.id).await?;
    for _ in 0..500 {
        if c.get_workshop(&w.id).await?.status == WorkshopStatus::Running {
            return Ok(w.code);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("workshop {} never reached running", w.id)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("cannot read the server's status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc status")
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("clarateach-bench-join-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
