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
    /// Serve HTTPS and WSS with this certificate chain (PEM); needs --tls-key. Without TLS the
    /// control plane should listen on loopback only (behind a TLS-terminating proxy).
    #[arg(long, env = "CLARATEACH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "CLARATEACH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let mut config = ServerConfig::new(&data_dir);
    config.listen = args.listen;
    config.public_url = args.public_url;
    config.heartbeat_interval = Duration::from_millis(args.heartbeat_ms.max(100));
    config.web = Some(clarateach_web::router());
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(
            clarateach_tls::server_config(cert, key)
                .with_context(|| format!("cannot load the TLS certificate {}", cert.display()))?,
        );
    } else if !args.listen.ip().is_loopback() {
        let why = "serving plain HTTP on a non-loopback address: agent tokens, learner tokens and \
                   keystrokes cross the network in clear; pass --tls-cert/--tls-key or put a TLS \
                   proxy in front";
        tracing::warn!(listen = %args.listen, "{why}");
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
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
        "ClaraTeach control plane on {scheme}://{}",
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
