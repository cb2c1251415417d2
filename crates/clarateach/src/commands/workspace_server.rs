//! `clarateach workspace-server`: the in-workspace daemon (terminal, files, run).

use std::path::PathBuf;

use anyhow::Context;
use clarateach_workspace::{Config, Listen};

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on: `127.0.0.1:7681`, `unix:/run/clarateach.sock`, or `fd:N` (a listening
    /// Unix socket inherited from the sandbox creator); repeatable.
    #[arg(long, required = true, value_parser = parse_listen)]
    listen: Vec<Listen>,
    /// Workspace directory: the shells' working directory and the file API's root.
    #[arg(long)]
    root: PathBuf,
    /// Bearer token every route but /health requires. Prefer the environment variable, which
    /// does not show in `ps`.
    #[arg(long, env = clarateach_workspace::TOKEN_ENV, hide_env_values = true)]
    token: String,
    /// Shell command line for terminal sessions (default: `bash -l`, or `sh -l` without bash).
    #[arg(long)]
    shell: Option<String>,
    /// Largest file the file API reads or writes, in MiB.
    #[arg(long, default_value_t = 10)]
    max_file_mb: u64,
    /// Started ahead of the seat's Start: serve nothing but `POST /activate` (the token used
    /// from then on and the workshop's environment) until it comes.
    #[arg(long)]
    await_activation: bool,
}

fn parse_listen(s: &str) -> Result<Listen, String> {
    s.parse()
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = Config::new(args.listen, args.root, args.token);
    cfg.shell = args
        .shell
        .map(|s| s.split_whitespace().map(String::from).collect());
    cfg.max_file_bytes = args.max_file_mb << 20;
    cfg.await_activation = args.await_activation;
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    clarateach_workspace::serve(cfg, shutdown)
        .await
        .context("workspace daemon failed")
}
