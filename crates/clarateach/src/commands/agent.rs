//! `clarateach agent`: runs a host agent against a control plane; `clarateach agent token`
//! issues an agent token from the control plane's store in the data dir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clarateach_agent::{Agent, AgentConfig};
use clarateach_isolation::factory::BackendConfig;
use clarateach_isolation::{Backend, BackendKind};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Base URL of the control plane, e.g. http://10.0.0.1:8080.
    #[arg(long, env = "CLARATEACH_CONTROL_PLANE")]
    control_plane: Option<String>,
    /// Agent token from `clarateach agent token`.
    #[arg(long, env = "CLARATEACH_AGENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Holds seat volumes, sandbox state and the agent's identity.
    #[arg(long, env = "CLARATEACH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Local API and data path.
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// URL the control plane uses to reach this agent's data path (default http://LISTEN).
    #[arg(long)]
    data_url: Option<String>,
    /// Isolation backend (default: the first this host can run).
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    /// Seats this host may run.
    #[arg(long, default_value_t = 50)]
    capacity: u32,
    /// On exit stop every workspace instead of leaving them for the next agent to re-adopt.
    #[arg(long)]
    stop_on_exit: bool,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Issue an agent token (written to the control plane's store in DATA_DIR).
    Token {
        #[arg(long, env = "CLARATEACH_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum BackendArg {
    Sandbox,
    Microvm,
}

impl From<BackendArg> for BackendKind {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Sandbox => BackendKind::Sandbox,
            BackendArg::Microvm => BackendKind::Microvm,
        }
    }
}

/// `--data-dir`, else `CLARATEACH_DATA_DIR` (clap reads it), else the XDG data dir; created
/// and made absolute (the sandbox bind-mounts paths inside it).
pub fn resolve_data_dir(arg: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = arg.unwrap_or_else(clarateach_server::default_data_dir);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the data dir {}", dir.display()))?;
    std::path::absolute(&dir).with_context(|| format!("cannot resolve {}", dir.display()))
}

/// Builds the isolation backend for `kind`, or the first one the host can run.
pub fn build_backend(
    kind: Option<BackendArg>,
    data_dir: &std::path::Path,
) -> anyhow::Result<Arc<dyn Backend>> {
    let kind = match kind {
        Some(k) => k.into(),
        None => *clarateach_isolation::factory::probe()
            .first()
            .context("no isolation backend works on this host (is bubblewrap installed?)")?,
    };
    let exe = std::env::current_exe()
        .context("cannot locate the clarateach binary for the workspace daemon")?;
    clarateach_isolation::factory::build(kind, &BackendConfig::new(data_dir, exe))
        .with_context(|| format!("cannot start the {} backend", kind.as_str()))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(Sub::Token { data_dir }) = args.command {
        let dir = resolve_data_dir(data_dir)?;
        let store = clarateach_server::open_store(&dir)
            .await
            .context("cannot open the control plane's store")?;
        let token = clarateach_server::issue_agent_token(store.as_ref())
            .await
            .context("cannot issue an agent token")?;
        println!("{token}");
        return Ok(());
    }
    let control_plane = args.control_plane.context("--control-plane is required")?;
    let token = args
        .token
        .context("--token is required (see `clarateach agent token`)")?;
    let data_dir = resolve_data_dir(args.data_dir)?;
    let backend = build_backend(args.backend, &data_dir)?;
    let config = AgentConfig {
        control_plane,
        agent_token: token,
        data_dir,
        listen: args.listen,
        data_url: args.data_url,
        capacity: args.capacity,
    };
    let agent = Agent::start(config, backend)
        .await
        .context("cannot start the agent")?;
    println!(
        "agent {} listening on http://{}",
        agent.agent_id, agent.local_addr
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    agent.shutdown(args.stop_on_exit).await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
