//! `clarateach up`: the whole system in one process. The control plane (API, gateway, web UI,
//! embedded store) and one local agent, which dials the control plane over loopback like any
//! remote agent would, with an agent token `up` issues for itself. Ctrl-C stops every workspace
//! (no seat process is left; volumes stay) and then the server.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clarateach_agent::{Agent, AgentConfig};
use clarateach_server::{Server, ServerConfig, INSTRUCTOR_TOKEN_FILE};
use clarateach_store::Store;

use super::agent::{build_backend, resolve_data_dir, BackendArg, MicrovmArgs, SandboxArgs};
use super::serve::{LimitArgs, WebArgs};
use super::shutdown_signal;

#[derive(clap::Args)]
pub struct Args {
    /// Address of the web UI, API and gateway.
    #[arg(long, env = "CLARATEACH_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Store, keys, secrets, seat volumes.
    #[arg(long, env = "CLARATEACH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Isolation backend (default: the first this host can run).
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    #[command(flatten)]
    microvm: MicrovmArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
    /// Seats the local agent may run.
    #[arg(long, default_value_t = 200)]
    capacity: u32,
    /// Agent heartbeat interval in milliseconds.
    #[arg(long, env = "CLARATEACH_HEARTBEAT_MS", default_value_t = 2000)]
    heartbeat_ms: u64,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    web: WebArgs,
    /// Most MiB one seat's export may archive (file data and entry headers); the rest of the
    /// seat is listed in its EXPORT-REPORT.json.
    #[arg(long, env = "CLARATEACH_EXPORT_CAP_MB", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    export_cap_mb: u64,
    /// A reverse proxy (address or CIDR, repeatable) whose X-Forwarded-For is believed when
    /// counting failed joins per client; the rightmost hop it did not add counts.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    trusted_proxies: Vec<clarateach_server::extract::Cidr>,
    /// Domain of preview URLs, `p{port}-{seat}.{domain}` (may carry a port) [default:
    /// `localhost` with the port the browser reached the control plane on].
    #[arg(long, env = "CLARATEACH_PREVIEW_DOMAIN")]
    preview_domain: Option<String>,
}

/// The local agent's id and token, the token kept in `DATA_DIR/agent/up-agent.token` (0600) and
/// reissued, bound to that id, when the store no longer accepts it for the id. (A token from
/// before tokens were bound is unbound; it binds to this id on its first registration.)
async fn local_agent_credential(
    store: &dyn Store,
    data_dir: &Path,
) -> anyhow::Result<(String, String)> {
    let agent_id = clarateach_agent::identity::load_or_create_agent_id(
        data_dir,
        &clarateach_agent::identity::hostname(),
    )?;
    let path = clarateach_agent::identity::state_dir(data_dir)?.join("up-agent.token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        let record = store
            .agent_token_by_hash(&clarateach_server::accounts::hash_token(&t))
            .await?;
        if record.is_some_and(|r| !r.revoked && r.agent_id.is_none_or(|id| id == agent_id)) {
            return Ok((agent_id, t));
        }
    }
    let token = clarateach_server::issue_bound_agent_token(store, &agent_id)
        .await
        .context("cannot issue the local agent's token")?;
    clarateach_agent::identity::write_private(&path, token.as_bytes())?;
    Ok((agent_id, token))
}

/// A running control plane plus its in-process agent (used by `up` and `bench seats`).
pub struct Stack {
    /// Base URL of the API, gateway and UI.
    pub url: String,
    pub data_dir: PathBuf,
    pub agent: Agent,
    stop_server: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<Result<(), clarateach_server::ServerError>>,
}

/// What [`Stack::start`] needs.
pub struct StackOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub backend: Option<BackendArg>,
    /// The microvm guest image and network (see [`build_backend`]).
    pub microvm: MicrovmArgs,
    /// The sandbox's seat uid range (see [`SandboxArgs`]).
    pub sandbox: SandboxArgs,
    pub capacity: u32,
    pub heartbeat: Duration,
    /// Connection, body and WebSocket limits; the default keeps the server's.
    pub limits: LimitArgs,
    /// Per-seat export cap in bytes (`AgentConfig::export_cap_bytes`).
    pub export_cap_bytes: u64,
    /// Reverse proxies whose X-Forwarded-For counts (`--trusted-proxy`).
    pub trusted_proxies: Vec<clarateach_server::extract::Cidr>,
    pub preview_domain: Option<String>,
    /// Where the web UI comes from (`--web-dir`).
    pub web: WebArgs,
}

impl Stack {
    /// Opens the data dir, serves the control plane and connects a local agent to it.
    pub async fn start(opts: StackOptions) -> anyhow::Result<Self> {
        let data_dir = opts.data_dir;
        // First, so a missing guest image fails before anything listens.
        let backend = build_backend(opts.backend, &data_dir, &opts.microvm, &opts.sandbox)?;
        let mut config = ServerConfig::new(&data_dir);
        config.listen = opts.listen;
        config.heartbeat_interval = opts.heartbeat;
        config.trusted_proxies = opts.trusted_proxies;
        config.preview_domain = opts.preview_domain;
        config.web = Some(opts.web.router()?);
        opts.limits.apply(&mut config);
        let object_store = super::serve::object_store(opts.limits.object_store.as_deref())?;
        config.object_store = object_store.clone();
        let server = Server::open(config)
            .await
            .with_context(|| format!("cannot open the data dir {}", data_dir.display()))?;
        let (agent_id, agent_token) =
            local_agent_credential(server.state().store(), &data_dir).await?;
        let listener = clarateach_server::listen(opts.listen)
            .with_context(|| format!("cannot listen on {}", opts.listen))?;
        let addr = listener
            .local_addr()
            .context("cannot read the listen address")?;
        let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(listener, async move {
            let _ = server_stopped.await;
        }));
        let loopback = if addr.ip().is_unspecified() {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        } else {
            addr
        };
        let agent = Agent::start(
            AgentConfig {
                control_plane: format!("http://{loopback}"),
                agent_token,
                agent_id: Some(agent_id),
                ca: None,
                data_dir: data_dir.clone(),
                listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                data_url: None,
                capacity: opts.capacity,
                export_cap_bytes: opts.export_cap_bytes,
                object_store,
            },
            backend,
        )
        .await
        .context("cannot start the local agent")?;
        if !agent.wait_registered(Duration::from_secs(10)).await {
            anyhow::bail!("the local agent could not register with the control plane");
        }
        Ok(Self {
            url: format!("http://{loopback}"),
            data_dir,
            agent,
            stop_server,
            serving,
        })
    }

    /// The first instructor's token, from `DATA_DIR/instructor.token`.
    pub fn instructor_token(&self) -> Option<String> {
        std::fs::read_to_string(self.data_dir.join(INSTRUCTOR_TOKEN_FILE))
            .map(|t| t.trim().to_string())
            .ok()
    }

    /// Stops every workspace (volumes stay), then the control plane.
    pub async fn shutdown(self) {
        self.agent.shutdown(true).await;
        let _ = self.stop_server.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.serving).await;
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let data_dir = resolve_data_dir(args.data_dir)?;
    let mut stack = Stack::start(StackOptions {
        listen: args.listen,
        data_dir: data_dir.clone(),
        backend: args.backend,
        microvm: args.microvm,
        sandbox: args.sandbox,
        capacity: args.capacity,
        heartbeat: Duration::from_millis(args.heartbeat_ms.max(100)),
        limits: args.limits,
        export_cap_bytes: args.export_cap_mb << 20,
        trusted_proxies: args.trusted_proxies,
        preview_domain: args.preview_domain,
        web: args.web,
    })
    .await?;
    let token_file = data_dir.join(INSTRUCTOR_TOKEN_FILE);
    println!("ClaraTeach is up: {}", stack.url);
    match stack.instructor_token() {
        Some(t) => println!("Instructor token: {t}  (saved in {})", token_file.display()),
        None => println!(
            "Instructor token: see {} (or `clarateach instructor add`)",
            token_file.display()
        ),
    }
    println!("Press Ctrl-C to stop; every workspace is stopped, files are kept.");
    tokio::select! {
        _ = shutdown_signal() => {}
        r = &mut stack.serving => {
            r.context("the control plane task failed")?.context("the control plane stopped")?;
            anyhow::bail!("the control plane stopped unexpectedly");
        }
    }
    tracing::info!("stopping every workspace");
    stack.shutdown().await;
    Ok(())
}
