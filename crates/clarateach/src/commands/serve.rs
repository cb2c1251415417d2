//! `clarateach serve`: the control plane alone (agents connect to it over WebSocket).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::shutdown_signal;
use anyhow::Context;
use clarateach_server::{default_data_dir, Server, ServerConfig, INSTRUCTOR_TOKEN_FILE};

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "CLARATEACH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Data dir (store, keys, secrets); defaults to the XDG data dir.
    #[arg(long, env = "CLARATEACH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Public base URL learners and agents reach (default: from each request's Host header).
    #[arg(long, env = "CLARATEACH_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Agent heartbeat interval in milliseconds; 3 missed heartbeats make an agent lost.
    #[arg(long, env = "CLARATEACH_HEARTBEAT_MS", default_value_t = 2000)]
    pub heartbeat_ms: u64,
    /// A reverse proxy (address or CIDR, repeatable) whose X-Forwarded-For is believed when
    /// counting failed joins per client; the rightmost hop it did not add counts.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub trusted_proxies: Vec<clarateach_server::extract::Cidr>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let mut config = ServerConfig::new(&data_dir);
    config.listen = args.listen;
    config.public_url = args.public_url;
    config.trusted_proxies = args.trusted_proxies;
    config.heartbeat_interval = Duration::from_millis(args.heartbeat_ms.max(100));
    config.web = Some(clarateach_web::router());
    let server = Server::open(config)
        .await
        .with_context(|| format!("cannot open the data dir {}", data_dir.display()))?;
    if let Some(token) = server.first_instructor_token() {
        println!(
            "Instructor token (shown once; also in {}):",
            data_dir.join(INSTRUCTOR_TOKEN_FILE).display()
        );
        println!("{token}");
    }
    let listener = clarateach_server::listen(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!(
        "ClaraTeach control plane on http://{}",
        listener.local_addr().unwrap_or(args.listen)
    );
    server
        .serve(listener, async {
            shutdown_signal().await;
            tracing::info!("shutting down");
        })
        .await
        .context("the control plane stopped with an error")?;
    Ok(())
}
