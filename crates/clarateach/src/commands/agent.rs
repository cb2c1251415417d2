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
    /// Base URL of the control plane, e.g. http://10.0.0.1:8080.
    #[arg(long, env = "CLARATEACH_CONTROL_PLANE")]
    control_plane: Option<String>,
    /// Agent token from `clarateach agent token --id NAME`.
    #[arg(long, env = "CLARATEACH_AGENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
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
    /// Local API and data path.
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
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
    /// Seats this host may run.
    #[arg(long, default_value_t = 50)]
    capacity: u32,
    /// Most MiB one seat's export may archive (file data and entry headers); the rest of the
    /// seat is listed in its EXPORT-REPORT.json.
    #[arg(long, env = "CLARATEACH_EXPORT_CAP_MB", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    export_cap_mb: u64,
    /// On exit stop every workspace instead of leaving them for the next agent to re-adopt.
    #[arg(long)]
    stop_on_exit: bool,
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
    },
    /// Revoke every token of agent NAME: new connections are refused at once, a connected
    /// agent is cut off within one heartbeat interval.
    Revoke {
        name: String,
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
    /// Attach microVM seats to this host bridge, one TAP each, instead of QEMU user-mode
    /// networking (production hosts, as root; the bridge is created when missing).
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

/// Networks of sandbox seats whose `limits.network` is `open` or an allow-list, shared by `agent`
/// and `up`. Each such seat gets its own network namespace and a /30 of `--seat-subnet`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SeatNetArgs {
    /// IPv4 subnet for networked sandbox seats, one /30 each (default 10.214.0.0/16); must not
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
        let mut cfg = SandboxConfig::new(data_dir, &exe);
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
) -> anyhow::Result<Arc<dyn clarateach_store::Store>> {
    let dir = resolve_data_dir(data_dir)?;
    clarateach_server::open_store(&dir)
        .await
        .context("cannot open the control plane's store")
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Some(Sub::Token { id, data_dir }) => {
            let store = open_cp_store(data_dir).await?;
            let token = clarateach_server::issue_bound_agent_token(store.as_ref(), &id)
                .await
                .context("cannot issue an agent token")?;
            println!("{token}");
            eprintln!("start the agent with: clarateach agent --id {id} --token <token> --control-plane URL");
            return Ok(());
        }
        Some(Sub::Revoke { name, data_dir }) => {
            let store = open_cp_store(data_dir).await?;
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
    let control_plane = args.control_plane.context("--control-plane is required")?;
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
        listen: args.listen,
        data_url: args.data_url,
        capacity: args.capacity,
        export_cap_bytes: args.export_cap_mb << 20,
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
