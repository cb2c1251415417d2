//! `clarateach bench join`: control-plane figures against a real `clarateach serve` child
//! process (so its memory and CPU are measured apart from the load generator) in a scratch data
//! dir. Seats become ready through `ProtocolAgent` (the real agent protocol, no workspaces),
//! since joins never touch a workspace.
//!
//! - join latency: rounds of N learners joining one N-seat workshop; p50/p99, in three
//!   scenarios: all N at the same instant on fresh TCP connections (connect is in the time), all
//!   N at the same instant on warm keep-alive connections (the server's own latency), and N
//!   arriving evenly over `--spread-ms` (open loop: a learner never waits for another's answer).
//!   Each learner is its own client with its own connection, like one browser each. The load
//!   generator shares the machine's cores with the server, so the server's CPU time per join
//!   (from `/proc`) is printed too.
//! - server RSS with W workshops x S seats, all started and every seat joined.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use clarateach_client::Client;
use clarateach_core::{CreateWorkshopRequest, JoinRequest, WorkshopStatus};
use clarateach_server::testing::ProtocolAgent;

/// Linux reports process CPU time in `USER_HZ` ticks, fixed at 100 per second by the ABI.
const USER_HZ: f64 = 100.0;

#[derive(clap::Args)]
pub struct Args {
    /// Learners per round (one workshop of that many seats per round and scenario).
    #[arg(long, default_value_t = 200)]
    learners: u32,
    /// Rounds of each join scenario.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Window over which the learners of the open-loop scenario arrive, evenly spaced.
    #[arg(long, default_value_t = 1000)]
    spread_ms: u64,
    /// Workshops for the memory figure.
    #[arg(long, default_value_t = 50)]
    workshops: u32,
    /// Seats per workshop for the memory figure.
    #[arg(long, default_value_t = 20)]
    seats: u32,
    /// Serve HTTPS (`serve --tls-cert/--tls-key` with a CA made for the run) and join over it.
    #[arg(long)]
    tls: bool,
    /// `serve` replicas on one database (more than one needs `CLARATEACH_DATABASE_URL`, a
    /// PostgreSQL they share); learner `i` joins through replica `i mod N`, the server CPU and
    /// RSS figures are their sums.
    #[arg(long, default_value_t = 1)]
    replicas: u32,
}

/// Where the learners go: the base URL and, over TLS, the CA they trust.
struct Endpoint {
    base: String,
    ca: Option<Vec<u8>>,
}

impl Endpoint {
    fn client(&self, token: Option<String>) -> anyhow::Result<Client> {
        Ok(match &self.ca {
            Some(pem) => Client::with_ca(&self.base, token, pem)?,
            None => Client::new(&self.base, token)?,
        })
    }
}

/// A CA and a certificate it signs for `localhost` and 127.0.0.1, written to `dir`; returns the CA's PEM.
fn make_tls_files(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "clarateach bench CA");
    let ca = ca.self_signed(&ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let cert =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?
            .signed_by(&key, &ca, &ca_key)?;
    std::fs::write(dir.join("tls.pem"), cert.pem())?;
    std::fs::write(dir.join("tls.key"), key.serialize_pem())?;
    Ok(ca.pem().into_bytes())
}

/// How the learners of one round reach the server.
#[derive(Clone, Copy)]
struct Scenario {
    label: &'static str,
    /// Open a keep-alive connection per learner (one `GET /api/health`) before the clock starts.
    warm: bool,
    /// `None`: everyone at the same instant; otherwise arrivals spread evenly over it.
    spread: Option<Duration>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.replicas >= 1, "--replicas must be at least 1");
    anyhow::ensure!(
        args.replicas == 1 || std::env::var_os("CLARATEACH_DATABASE_URL").is_some(),
        "--replicas {} needs CLARATEACH_DATABASE_URL: one PostgreSQL database the replicas share",
        args.replicas
    );
    let scratch = tempfile_dir()?;
    let data_dir = scratch.join("data");
    let exe = std::env::current_exe().context("cannot find the clarateach binary")?;
    let ca = if args.tls {
        Some(make_tls_files(&scratch)?)
    } else {
        None
    };
    let mut children = Vec::new();
    let mut eps = Vec::new();
    // One after another: the first creates the data dir's keys and the first instructor, which
    // the others then load (as an operator copies one data dir's keys to every replica).
    for _ in 0..args.replicas {
        let port = free_port()?;
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&data_dir);
        if args.tls {
            cmd.arg("--tls-cert")
                .arg(scratch.join("tls.pem"))
                .arg("--tls-key")
                .arg(scratch.join("tls.key"));
        }
        let ep = Endpoint {
            base: format!(
                "{}://127.0.0.1:{port}",
                if args.tls { "https" } else { "http" }
            ),
            ca: ca.clone(),
        };
        let child = cmd
            .env("CLARATEACH_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start `clarateach serve`")?;
        children.push(child);
        wait_up(&ep).await?;
        eps.push(ep);
    }
    let pids = children
        .iter()
        .map(|c| c.id())
        .collect::<Option<Vec<u32>>>()
        .context("a server exited at once")?;
    let result = measure(&args, &data_dir, &eps, &pids).await;
    for c in &mut children {
        let _ = c.kill().await;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn wait_up(ep: &Endpoint) -> anyhow::Result<()> {
    let anon = ep.client(None)?;
    for _ in 0..400 {
        if anon.health().await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("the server did not come up on {}", ep.base)
}

/// Summed over every replica's process.
fn cpu_secs_all(pids: &[u32]) -> anyhow::Result<f64> {
    pids.iter().map(|p| cpu_secs(*p)).sum()
}

fn rss_kib_all(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter().map(|p| rss_kib(*p)).sum()
}

async fn measure(
    args: &Args,
    data_dir: &Path,
    eps: &[Endpoint],
    pids: &[u32],
) -> anyhow::Result<()> {
    let ep = eps.first().context("no replica")?;
    let base = ep.base.clone();
    if eps.len() > 1 {
        println!(
            "{} replicas on one database; learners alternate between {}",
            eps.len(),
            eps.iter()
                .map(|e| e.base.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let token = std::fs::read_to_string(data_dir.join(clarateach_server::INSTRUCTOR_TOKEN_FILE))?
        .trim()
        .to_string();
    let instructor = ep.client(Some(token))?;
    // The `serve` child reads CLARATEACH_DATABASE_URL from the environment too, so a run with
    // it set measures the PostgreSQL store.
    let database_url = std::env::var("CLARATEACH_DATABASE_URL").ok();
    let store = clarateach_server::open_database(data_dir, database_url.as_deref()).await?;
    let agent_token = clarateach_server::issue_agent_token(store.as_ref()).await?;
    let scenarios = [
        Scenario {
            label: "burst, fresh connections",
            warm: false,
            spread: None,
        },
        Scenario {
            label: "burst, warm connections",
            warm: true,
            spread: None,
        },
        Scenario {
            label: "open loop, warm connections",
            warm: true,
            spread: Some(Duration::from_millis(args.spread_ms)),
        },
    ];
    let capacity =
        (args.learners * args.rounds * scenarios.len() as u32 + args.workshops * args.seats).max(1);
    let tls = match &ep.ca {
        Some(pem) => {
            let path = data_dir.join("bench-ca.pem");
            std::fs::write(&path, pem)?;
            Some(clarateach_tls::client_config(Some(&path))?)
        }
        None => None,
    };
    let _agent =
        ProtocolAgent::connect_tls(&base, &agent_token, "bench-agent", capacity, tls).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_idle = rss_kib_all(pids)?;

    for (n, scenario) in scenarios.iter().enumerate() {
        join_latency(args, eps, &instructor, pids, n, *scenario).await?;
    }

    // Memory with many workshops, every seat joined.
    let learner = ep.client(None)?;
    for w in 0..args.workshops {
        let code = running_workshop(&instructor, &format!("bench mem {w}"), args.seats).await?;
        for _ in 0..args.seats {
            learner
                .join(&JoinRequest {
                    code: code.clone(),
                    odehash: None,
                    name: None,
                })
                .await
                .context("join for the memory figure")?;
        }
    }
    let rss = rss_kib_all(pids)?;
    println!(
        "server RSS: {:.1} MiB idle with one agent; {:.1} MiB with {} more workshops x {} seats running and joined",
        rss_idle as f64 / 1024.0,
        rss as f64 / 1024.0,
        args.workshops,
        args.seats
    );
    Ok(())
}

/// Runs `args.rounds` rounds of one scenario and prints its figures.
async fn join_latency(
    args: &Args,
    eps: &[Endpoint],
    instructor: &Client,
    pids: &[u32],
    n: usize,
    scenario: Scenario,
) -> anyhow::Result<()> {
    // Latency is timed from each learner's scheduled arrival, not from when this load generator
    // got around to sending (that would hide queueing: coordinated omission). A failed join
    // counts as an infinitely slow one, so failures show in the percentiles, not only beside them.
    let mut from_arrival = Vec::new();
    let mut service = Vec::new();
    let mut failed = 0;
    let mut server_cpu = 0.0;
    let mut late = Duration::ZERO;
    for round in 0..args.rounds {
        let name = format!("bench join {n}.{round}");
        let code = running_workshop(instructor, &name, args.learners).await?;
        let clients = (0..args.learners as usize)
            .map(|i| eps[i % eps.len()].client(None))
            .collect::<Result<Vec<_>, _>>()?;
        if scenario.warm {
            futures::future::try_join_all(clients.iter().map(Client::health))
                .await
                .context("warming the learners' connections")?;
        }
        let cpu_before = cpu_secs_all(pids)?;
        let started = tokio::time::Instant::now();
        let step = scenario.spread.unwrap_or(Duration::ZERO) / args.learners.max(1);
        let tasks: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let req = JoinRequest {
                    code: code.clone(),
                    odehash: None,
                    name: Some(format!("learner {i}")),
                };
                let at = started + step * i as u32;
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    let sent = tokio::time::Instant::now();
                    let ok = c.join(&req).await.is_ok();
                    (
                        at.elapsed(),
                        sent.elapsed(),
                        sent.saturating_duration_since(at),
                        ok,
                    )
                })
            })
            .collect();
        for t in tasks {
            let (since_arrival, since_send, lag, ok) = t.await?;
            late = late.max(lag);
            if ok {
                from_arrival.push(since_arrival);
                service.push(since_send);
            } else {
                failed += 1;
                from_arrival.push(Duration::MAX);
                service.push(Duration::MAX);
            }
        }
        let took = started.elapsed();
        server_cpu += cpu_secs_all(pids)? - cpu_before;
        println!(
            "  {}, round {round}: {} joins in {:.1} ms",
            scenario.label,
            args.learners,
            took.as_secs_f64() * 1e3
        );
    }
    from_arrival.sort_unstable();
    service.sort_unstable();
    let ms = |d: Duration| {
        if d == Duration::MAX {
            "failed".to_string()
        } else {
            format!("{:.2} ms", d.as_secs_f64() * 1e3)
        }
    };
    let arrival = match scenario.spread {
        None => "at the same instant".to_string(),
        Some(s) => format!(
            "over {} ms (latest send {} behind schedule)",
            s.as_millis(),
            ms(late)
        ),
    };
    println!(
        "join latency from scheduled arrival, {} ({} learners {arrival}, x {} rounds): p50 {}, p99 {}, max {} \
         ({} ok, {failed} failed, counted as infinitely slow); service time from send: p50 {}, p99 {}; \
         server CPU {:.3} ms per join",
        scenario.label,
        args.learners,
        args.rounds,
        ms(pct(&from_arrival, 0.50)),
        ms(pct(&from_arrival, 0.99)),
        ms(pct(&from_arrival, 1.0)),
        from_arrival.len() - failed,
        ms(pct(&service, 0.50)),
        ms(pct(&service, 0.99)),
        server_cpu * 1e3 / f64::from((args.learners * args.rounds).max(1)),
    );
    Ok(())
}

async fn running_workshop(c: &Client, name: &str, seats: u32) -> anyhow::Result<String> {
    let req = CreateWorkshopRequest::plain(name, seats);
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

/// User plus system CPU time of every thread of `pid`, in seconds.
fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .context("cannot read the server's stat")?;
    // Fields after the parenthesised command name: state is the 3rd field, utime the 14th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .context("malformed /proc stat")
    };
    Ok((ticks(11)? + ticks(12)?) / USER_HZ)
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    super::util::rss_kib(pid).context("cannot read the server's VmRSS")
}

use super::util::free_port;

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("clarateach-bench-join-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
