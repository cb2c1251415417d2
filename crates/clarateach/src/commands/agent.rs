//! `clarateach agent`: runs a host agent against a control plane; `clarateach agent token --id
//! NAME` issues a token that may register only as agent NAME, and `clarateach agent revoke NAME`
//! revokes NAME's tokens, both on the control plane's store in the data dir.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clarateach_agent::{Agent, AgentConfig};
use clarateach_image::{ImageError, ImageLayout};
use clarateach_isolation::factory::BackendConfig;
use clarateach_isolation::microvm::{Ipv4Subnet, MicrovmConfig, Net};
use clarateach_isolation::netpolicy::{NetConfig, Resolver, SeatSubnet};
use clarateach_isolation::sandbox::{SandboxConfig, StoreSize, UidRange};
use clarateach_isolation::{Backend, BackendKind};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    /// TOML file with these settings (deploy/agent.toml); flags and environment override it.
    #[arg(long, env = "CLARATEACH_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Base URL of the control plane, e.g. https://10.0.0.1:8443; repeat it (or give a
    /// comma-separated list) for several replicas: the agent fails over between them.
    #[arg(long, env = "CLARATEACH_CONTROL_PLANE", value_delimiter = ',')]
    control_plane: Vec<String>,
    /// Agent token from `clarateach agent token --id NAME`.
    #[arg(long, env = "CLARATEACH_AGENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File whose first line is the agent token (keeps it out of argv).
    #[arg(long, env = "CLARATEACH_AGENT_TOKEN_FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Agent id to register as: the NAME the token was issued for (default: the id kept in
    /// DATA_DIR/agent/agent-id, generated on first start).
    #[arg(long, env = "CLARATEACH_AGENT_ID")]
    id: Option<String>,
    /// Trust only the CA certificate(s) in this PEM file for a wss:// / https:// control plane
    /// (default: the Mozilla root set).
    #[arg(long, env = "CLARATEACH_CA")]
    ca: Option<PathBuf>,
    /// Holds seat volumes, sandbox state and the agent's identity.
    #[arg(long, env = "CLARATEACH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Local API and data path [default: 127.0.0.1:9090].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// URL the control plane uses to reach this agent's data path (default http://LISTEN).
    /// `https://HOST:PORT` serves it over TLS with a certificate the control plane's CA issues
    /// at registration (for HOST and this agent's id).
    #[arg(long)]
    data_url: Option<String>,
    /// Isolation backend (default: the first this host can run).
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    #[command(flatten)]
    microvm: MicrovmArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
    /// Seats this host may run [default: 50].
    #[arg(long)]
    capacity: Option<u32>,
    /// Most MiB one seat's export may archive (file data and entry headers); the rest of the
    /// seat is listed in its EXPORT-REPORT.json [default: 1024].
    #[arg(long, env = "CLARATEACH_EXPORT_CAP_MB",
          value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    export_cap_mb: Option<u64>,
    /// On exit stop every workspace instead of leaving them for the next agent to re-adopt.
    #[arg(long)]
    stop_on_exit: bool,
    /// `s3://BUCKET[/PREFIX]`: sync every running seat's files there (endpoint and credentials
    /// from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; see `serve`).
    #[arg(long, env = clarateach_objstore::OBJECT_STORE_ENV)]
    object_store: Option<String>,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Issue a token for agent NAME (its hash is written to the control plane's store in
    /// DATA_DIR); registering under any other id with it is refused.
    Token {
        /// The agent id the token is for (letters, digits, '-', '_', '.'; up to 64).
        #[arg(long)]
        id: String,
        #[arg(long, env = "CLARATEACH_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The control plane's PostgreSQL database, when it has one (`serve --database-url`).
        #[arg(long, env = "CLARATEACH_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
    /// Revoke every token of agent NAME: new connections are refused at once, a connected
    /// agent is cut off within one heartbeat interval.
    Revoke {
        name: String,
        #[arg(long, env = "CLARATEACH_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The control plane's PostgreSQL database, when it has one (`serve --database-url`).
        #[arg(long, env = "CLARATEACH_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
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

/// Options of the backends, shared by `agent` and `up`: the microvm guest and network, and the
/// sandbox's seat store.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct MicrovmArgs {
    /// Sandbox backend: how big all seats' disks (one sparse ext4 image of limits.disk_mb each,
    /// in DATA_DIR) may be together, e.g. 500G (not checked against the free space: overcommit
    /// is your call); `auto` makes a seat only while all seats' growth fits in 90% of the free
    /// space; `off` gives seats plain dirs and no disk limit (a seat can fill the data dir's disk).
    #[arg(long, env = "CLARATEACH_SEAT_STORE_SIZE", default_value = "auto")]
    pub seat_store_size: StoreSize,
    /// Guest image for the microvm backend, built by `clarateach image build --out DIR`
    /// (default DATA_DIR/images/default).
    #[arg(long, env = "CLARATEACH_IMAGE_DIR")]
    pub image_dir: Option<PathBuf>,
    /// Attach microVM seats without network (`limits.network` "none") to this host bridge, one
    /// isolated TAP each, instead of QEMU user-mode networking (as root; the bridge is created
    /// when missing). Seats with a network never use it: they get a TAP of --seat-subnet.
    #[arg(long, env = "CLARATEACH_MICROVM_BRIDGE", requires = "microvm_subnet")]
    pub microvm_bridge: Option<String>,
    /// IPv4 subnet of that bridge, e.g. 10.213.0.0/24: the bridge takes the first address,
    /// seats the next free ones.
    #[arg(long, env = "CLARATEACH_MICROVM_SUBNET", requires = "microvm_bridge")]
    pub microvm_subnet: Option<Ipv4Subnet>,
}

/// Options of the sandbox backend, shared by `agent` and `up`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SandboxArgs {
    /// Host uids given out one per seat, START-END (default 200000-265535). A uid is reused only
    /// after its seat's volume is deleted.
    #[arg(long, env = "CLARATEACH_SEAT_UID_RANGE", value_parser = parse_uid_range)]
    pub seat_uid_range: Option<UidRange>,
    /// Networks of open/allow seats.
    #[command(flatten)]
    pub net: SeatNetArgs,
}

fn parse_uid_range(s: &str) -> Result<UidRange, String> {
    s.parse()
        .map_err(|e: clarateach_isolation::sandbox::UidRangeError| e.to_string())
}

/// Networks of seats whose `limits.network` is `open` or an allow-list, shared by `agent` and
/// `up`. Each such seat gets a /30 of `--seat-subnet`: a sandbox seat its own network namespace
/// and veth, a microVM seat a TAP (Firecracker seats always get one).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SeatNetArgs {
    /// IPv4 subnet for networked seats (sandbox and microVM), one /30 each (default 10.214.0.0/16); must not
    /// overlap any network the host uses.
    #[arg(long, env = "CLARATEACH_SEAT_SUBNET")]
    pub seat_subnet: Option<SeatSubnet>,
    /// Interface that `open` seats' traffic leaves by, masqueraded (default: the interface of
    /// the host's IPv4 default route). It and each seat's veth get IPv4 forwarding turned on.
    #[arg(long, env = "CLARATEACH_EGRESS_IFACE")]
    pub egress_iface: Option<String>,
    /// Resolve allow-listed names from this file (lines `NAME IP`) instead of the system
    /// resolver: air-gapped sites and tests.
    #[arg(long, env = "CLARATEACH_EGRESS_HOSTS")]
    pub egress_hosts: Option<PathBuf>,
}

impl SeatNetArgs {
    fn config(&self) -> anyhow::Result<NetConfig> {
        let mut cfg = NetConfig::default();
        if let Some(subnet) = self.seat_subnet {
            cfg.seat_subnet = subnet;
        }
        cfg.egress_iface = self.egress_iface.clone();
        if let Some(file) = &self.egress_hosts {
            cfg.resolver = Resolver::from_file(file).context("cannot use --egress-hosts")?;
        }
        Ok(cfg)
    }
}

/// Builds the isolation backend for `kind`, or the first one the host can run. `image_dir` is
/// the microvm guest image (`--image-dir`, else `$CLARATEACH_IMAGE_DIR`, else
/// DATA_DIR/images/default); the other backends ignore it.
pub fn build_backend(
    kind: Option<BackendArg>,
    data_dir: &Path,
    microvm: &MicrovmArgs,
    sandbox: &SandboxArgs,
) -> anyhow::Result<Arc<dyn Backend>> {
    let kind = match kind {
        Some(k) => k.into(),
        None => *clarateach_isolation::factory::probe()
            .first()
            .context("no isolation backend works on this host (is bubblewrap installed?)")?,
    };
    let exe = std::env::current_exe()
        .context("cannot locate the clarateach binary for the workspace daemon")?;
    let mut config = BackendConfig::new(data_dir, &exe);
    if kind == BackendKind::Sandbox {
        let daemon = clarateach_isolation::factory::seat_daemon_binary(&exe);
        let mut cfg = SandboxConfig::new(data_dir, daemon);
        if let Some(range) = sandbox.seat_uid_range {
            cfg.uid_range = range;
        }
        cfg.net = sandbox.net.config()?;
        cfg.seat_store = microvm.seat_store_size;
        // Seat images (`clarateach image build NAME`): DATA_DIR/images unless elsewhere.
        if let Some(dir) = std::env::var_os("CLARATEACH_IMAGES_DIR") {
            cfg.images_dir = dir.into();
        }
        config.sandbox = Some(cfg);
    }
    if kind == BackendKind::Microvm {
        let image = microvm_image_dir(data_dir, microvm.image_dir.as_deref());
        let image = std::path::absolute(&image)
            .with_context(|| format!("cannot resolve {}", image.display()))?;
        check_image(&image)?;
        let mut cfg = MicrovmConfig::new(data_dir, image);
        // Seat images become microVM root disks too (DATA_DIR/images unless elsewhere).
        if let Some(dir) = std::env::var_os("CLARATEACH_IMAGES_DIR") {
            cfg.seat_images = dir.into();
        }
        // open/allow-list microVM seats (and every Firecracker seat) get a TAP of the same seat
        // network as sandbox seats: one allocator, one nft table, the same flags.
        cfg.seat_net = sandbox.net.config()?;
        if let (Some(bridge), Some(subnet)) = (&microvm.microvm_bridge, microvm.microvm_subnet) {
            cfg.net = Net::Bridge {
                bridge: bridge.clone(),
                subnet,
            };
        }
        config.microvm = Some(cfg);
    }
    clarateach_isolation::factory::build(kind, &config)
        .with_context(|| format!("cannot start the {} backend", kind.as_str()))
}

/// `--image-dir` (clap also reads `CLARATEACH_IMAGE_DIR` into it), else the variable itself
/// (callers without the flag, like `bench seats`), else DATA_DIR/images/default.
fn microvm_image_dir(data_dir: &Path, arg: Option<&Path>) -> PathBuf {
    arg.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("CLARATEACH_IMAGE_DIR").map(PathBuf::from))
        .unwrap_or_else(|| data_dir.join("images/default"))
}

/// Refuses an image dir without a complete built image, saying how to build one.
fn check_image(dir: &Path) -> anyhow::Result<()> {
    let hint = format!(
        "build one with `clarateach image build --out {dir}`, then pass --image-dir {dir} \
         (or set CLARATEACH_IMAGE_DIR)",
        dir = dir.display()
    );
    match ImageLayout::new(dir).load() {
        Ok(_) => Ok(()),
        Err(ImageError::Incomplete(_)) => {
            anyhow::bail!("no built guest image in {}; {hint}", dir.display())
        }
        Err(e) => Err(e)
            .with_context(|| format!("the guest image in {} is unusable; {hint}", dir.display())),
    }
}

async fn open_cp_store(
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
) -> anyhow::Result<Arc<dyn clarateach_store::Store>> {
    let dir = resolve_data_dir(data_dir)?;
    clarateach_server::open_database(&dir, database_url.as_deref())
        .await
        .context("cannot open the control plane's store")
}

/// Fills every setting the command line (or environment) left unset from the config file.
fn apply_agent_file(args: &mut Args, f: super::config_file::AgentFile) -> anyhow::Result<()> {
    if args.control_plane.is_empty() {
        args.control_plane = f.control_plane.map(|c| c.into_vec()).unwrap_or_default();
    }
    if args.token.is_none() && args.token_file.is_none() {
        args.token_file = f.token_file;
    }
    args.id = args.id.take().or(f.id);
    args.ca = args.ca.take().or(f.ca);
    args.data_dir = args.data_dir.take().or(f.data_dir);
    args.listen = args.listen.or(f.listen);
    args.data_url = args.data_url.take().or(f.data_url);
    if args.backend.is_none() {
        if let Some(b) = f.backend {
            args.backend = Some(<BackendArg as clap::ValueEnum>::from_str(&b, true).map_err(
                |_| anyhow::anyhow!("config key backend: {b:?} is neither sandbox nor microvm"),
            )?);
        }
    }
    args.capacity = args.capacity.or(f.capacity);
    args.microvm.image_dir = args.microvm.image_dir.take().or(f.image_dir);
    if args.microvm.microvm_bridge.is_none() && args.microvm.microvm_subnet.is_none() {
        args.microvm.microvm_bridge = f.microvm_bridge;
        args.microvm.microvm_subnet = match f.microvm_subnet {
            Some(s) => Some(
                s.parse()
                    .map_err(|e| anyhow::anyhow!("config key microvm_subnet: {e}"))?,
            ),
            None => None,
        };
        anyhow::ensure!(
            args.microvm.microvm_bridge.is_some() == args.microvm.microvm_subnet.is_some(),
            "config keys microvm_bridge and microvm_subnet go together"
        );
    }
    if let Some(mb) = f.export_cap_mb {
        anyhow::ensure!(
            (1..=1 << 20).contains(&mb),
            "config key export_cap_mb: {mb} is not in 1..=1048576"
        );
    }
    args.export_cap_mb = args.export_cap_mb.or(f.export_cap_mb);
    args.stop_on_exit = args.stop_on_exit || f.stop_on_exit.unwrap_or(false);
    args.object_store = args.object_store.take().or(f.object_store);
    Ok(())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Some(Sub::Token {
            id,
            data_dir,
            database_url,
        }) => {
            let store = open_cp_store(data_dir, database_url).await?;
            let token = clarateach_server::issue_bound_agent_token(store.as_ref(), &id)
                .await
                .context("cannot issue an agent token")?;
            println!("{token}");
            eprintln!("start the agent with: clarateach agent --id {id} --token <token> --control-plane URL");
            return Ok(());
        }
        Some(Sub::Revoke {
            name,
            data_dir,
            database_url,
        }) => {
            let store = open_cp_store(data_dir, database_url).await?;
            let n = clarateach_server::revoke_agent(store.as_ref(), &name)
                .await
                .context("cannot revoke the agent's tokens")?;
            if n == 0 {
                anyhow::bail!("agent {name} has no live token");
            }
            println!("revoked {n} token(s) of agent {name}");
            return Ok(());
        }
        None => {}
    }
    let mut args = args;
    if let Some(path) = args.config.clone() {
        let file: super::config_file::AgentFile = super::config_file::load(&path)?;
        apply_agent_file(&mut args, file)?;
    }
    if let Some(path) = &args.token_file {
        args.token = Some(super::config_file::read_secret(path)?).filter(|t| !t.is_empty());
    }
    let urls: Vec<String> = args
        .control_plane
        .iter()
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect();
    anyhow::ensure!(!urls.is_empty(), "--control-plane is required");
    for url in &urls {
        clarateach_agent::connection::connect_url(url)
            .with_context(|| format!("--control-plane {url}"))?;
    }
    let control_plane = urls.join(",");
    let token = args
        .token
        .context("--token is required (see `clarateach agent token`)")?;
    let data_dir = resolve_data_dir(args.data_dir)?;
    let backend = build_backend(args.backend, &data_dir, &args.microvm, &args.sandbox)?;
    let config = AgentConfig {
        control_plane,
        agent_token: token,
        agent_id: args.id,
        ca: args.ca,
        data_dir,
        listen: args
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9090))),
        data_url: args.data_url,
        capacity: args.capacity.unwrap_or(50),
        export_cap_bytes: args.export_cap_mb.unwrap_or(1024) << 20,
        object_store: super::serve::object_store(args.object_store.as_deref())?,
    };
    let agent = Agent::start(config, backend)
        .await
        .context("cannot start the agent")?;
    println!(
        "agent {} listening on http://{}",
        agent.agent_id, agent.local_addr
    );
    super::shutdown_signal().await;
    tracing::info!("shutting down");
    agent.shutdown(args.stop_on_exit).await;
    Ok(())
}
