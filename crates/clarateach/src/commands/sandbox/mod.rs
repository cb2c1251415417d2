//! `clarateach sandbox ...`: standalone sandboxes without a server (issue 14), a thin shell over
//! `clarateach-sandbox`. Output is human text, or with `--json` one JSON object per line as ERA
//! prints. Errors are one line on stderr and a documented exit status
//! (`clarateach_sandbox::exit`); `run` exits with the command's own status.

mod cp;
mod exec;
mod output;
mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use clarateach_sandbox::spec::{self, LimitArgs};
use clarateach_sandbox::{BackendChoice, CreateRequest, SandboxError, Sandboxes, StateDir};

use output::Out;

#[derive(Parser)]
pub struct Args {
    /// State directory (default: $CLARATEACH_STATE_DIR, /var/lib/clarateach when writable, the
    /// XDG data dir, ~/.clarateach).
    #[arg(long, global = true, env = "CLARATEACH_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// One JSON object per line instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create and start a sandbox; prints its id and details.
    Create(CreateArgs),
    /// Run a command in a fresh directory of the sandbox with files staged; exits with its status.
    Run(run::RunArgs),
    /// Open an interactive terminal in the sandbox (detach with Ctrl-]).
    Exec(exec::ExecArgs),
    /// List sandboxes.
    List,
    /// Show one sandbox.
    Status { id: String },
    /// Stop a sandbox (its /workspace is kept only with --persist).
    Stop { id: String },
    /// Start a stopped sandbox.
    Start { id: String },
    /// Remove a sandbox and everything of it (processes, mounts, cgroup, files, state); a
    /// --persist sandbox's /workspace is kept for `create --persist --name ID` unless --purge.
    Clean {
        /// The sandbox; omit with --all.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Remove every sandbox.
        #[arg(long)]
        all: bool,
        /// Also drop the kept /workspace of --persist sandboxes.
        #[arg(long)]
        purge: bool,
    },
    /// Copy a file in or out: `cp FILE ID:PATH` or `cp ID:PATH FILE` (PATH under /workspace).
    Cp(cp::CpArgs),
    /// Internal: the keeper of a networked sandbox (started by create/start, ended by
    /// stop/clean); starts it and serves its proxy or DNS forwarder.
    #[command(hide = true)]
    Keep { id: String },
}

#[derive(clap::Args)]
struct CreateArgs {
    /// python, node, claude, base, or an image name.
    #[arg(long, default_value = "python")]
    language: String,
    /// CPUs (fractions allowed).
    #[arg(long)]
    cpu: Option<f64>,
    /// Memory limit in MiB.
    #[arg(long)]
    mem: Option<u32>,
    /// Disk limit in MiB (/workspace, home and /tmp together).
    #[arg(long)]
    disk: Option<u32>,
    /// none (loopback only), open (out through NAT, DNS forwarder; never the host, metadata or
    /// private ranges) or allow:HOST,... (only these names, through an HTTP(S) proxy). Uses
    /// $CLARATEACH_EGRESS_IFACE, $CLARATEACH_EGRESS_HOSTS, $CLARATEACH_SANDBOX_SUBNET and
    /// $CLARATEACH_SANDBOX_DNS_UPSTREAM when set, fixed at create.
    #[arg(long, default_value = "none")]
    network: String,
    /// Keep /workspace across stop and start.
    #[arg(long)]
    persist: bool,
    #[arg(long, value_enum, default_value = "sandbox")]
    backend: BackendArg,
    /// Use this as the id instead of LANGUAGE-ULID.
    #[arg(long)]
    name: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BackendArg {
    Sandbox,
    Microvm,
}

/// Ends the process with this status; what there was to say is said already.
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let out = Out::new(args.json);
    let dir = args
        .state_dir
        .map(StateDir::at)
        .unwrap_or_else(StateDir::resolve);
    let result = async {
        let sbx = Sandboxes::open(dir).await?;
        let r = dispatch(&sbx, args.command, &out).await;
        // Not closed, not even dropped (a dropped pool closes its connection on its worker
        // thread): closing the store's last connection checkpoints the WAL into the store, two
        // fsyncs on every changing command. Ending without it is what SQLite's WAL is made for:
        // every commit is in the WAL already, the next open reads it, and the periodic
        // auto-checkpoint folds it in now and then. The process ends right after this.
        std::mem::forget(sbx);
        r
    }
    .await;
    match result {
        Ok(0) => Ok(()),
        Ok(code) => Err(Exit(code).into()),
        Err(e) => {
            out.error(&e);
            Err(Exit(e.exit_code()).into())
        }
    }
}

/// Runs one subcommand; the exit status on success (a run's own status).
async fn dispatch(sbx: &Sandboxes, command: Command, out: &Out) -> Result<u8, SandboxError> {
    match command {
        Command::Create(a) => {
            let req = CreateRequest {
                name: a.name,
                language: a.language,
                limits: LimitArgs {
                    cpu: a.cpu,
                    mem_mib: a.mem,
                    disk_mib: a.disk,
                    network: spec::parse_network(&a.network)?,
                },
                persist: a.persist,
                backend: match a.backend {
                    BackendArg::Sandbox => BackendChoice::Sandbox,
                    BackendArg::Microvm => BackendChoice::Microvm,
                },
                owner: None,
                quota: None,
            };
            out.info("sandbox created", &sbx.create(req).await?);
        }
        Command::Run(a) => return run::run(sbx, a, out).await,
        Command::Exec(a) => return exec::exec(sbx, a).await,
        Command::List => out.list(&sbx.list().await?),
        Command::Status { id } => out.info("sandbox", &sbx.status(&id).await?),
        Command::Stop { id } => out.info("sandbox stopped", &sbx.stop(&id).await?),
        Command::Start { id } => out.info("sandbox started", &sbx.start(&id).await?),
        Command::Clean {
            id: Some(id),
            purge,
            ..
        } => {
            let kept = sbx.clean(&id, purge).await?;
            out.cleaned(std::slice::from_ref(&id));
            if let Some(path) = kept {
                out.kept(&id, &path);
            }
        }
        Command::Clean {
            id: None, purge, ..
        } => out.cleaned(&sbx.clean_all(purge).await?),
        Command::Cp(a) => cp::cp(sbx, a, out).await?,
        Command::Keep { id } => return Ok(clarateach_sandbox::net::keeper_main(sbx, &id).await),
    }
    Ok(0)
}
