//! `clarateach serve`: the control plane alone (agents connect to it over WebSocket).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::shutdown_signal;
use anyhow::Context;
use clarateach_server::{default_data_dir, Server, ServerConfig, INSTRUCTOR_TOKEN_FILE};

#[derive(clap::Args)]
pub struct Args {
    /// TOML file with these settings (deploy/serve.toml); flags and environment override it.
    #[arg(long, env = "CLARATEACH_SERVE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "CLARATEACH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data dir (store, keys, secrets); defaults to the XDG data dir.
    #[arg(long, env = "CLARATEACH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Public base URL learners and agents reach (default: from each request's Host header).
    #[arg(long, env = "CLARATEACH_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Domain of preview URLs, `p{port}-{seat}.{domain}` (may carry a port) [default:
    /// `localhost` with the port the browser reached the control plane on].
    #[arg(long, env = "CLARATEACH_PREVIEW_DOMAIN")]
    pub preview_domain: Option<String>,
    /// Agent heartbeat interval in milliseconds; 3 missed heartbeats make an agent lost
    /// [default: 2000].
    #[arg(long, env = "CLARATEACH_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Serve HTTPS and WSS with this certificate chain (PEM); needs --tls-key. Without TLS the
    /// control plane should listen on loopback only (behind a TLS-terminating proxy).
    #[arg(long, env = "CLARATEACH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "CLARATEACH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A reverse proxy (address or CIDR, repeatable) whose X-Forwarded-For is believed when
    /// counting failed joins per client; the rightmost hop it did not add counts.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub trusted_proxies: Vec<clarateach_server::extract::Cidr>,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub web: WebArgs,
}

/// Where the web UI comes from, shared by `serve` and `up`: the build embedded in the binary, or
/// a directory (`npm run build:e2e` for the end-to-end tests, or a UI developer's own build).
#[derive(clap::Args, Clone, Default)]
pub struct WebArgs {
    /// Serve the web UI from this build directory (read once at start) instead of the one
    /// embedded in the binary.
    #[arg(long, env = "CLARATEACH_WEB_DIR", value_name = "DIR")]
    pub web_dir: Option<PathBuf>,
}

impl WebArgs {
    /// The UI router these arguments name.
    pub fn router(&self) -> anyhow::Result<axum::Router> {
        match &self.web_dir {
            None => Ok(clarateach_web::router()),
            Some(dir) => clarateach_web::router_from_dir(dir)
                .with_context(|| format!("cannot serve the web UI from {}", dir.display())),
        }
    }
}

/// Connection, body and WebSocket limits, `/metrics` access and the store's database, shared
/// by `serve` and `up`. Unset values keep the server's defaults.
#[derive(clap::Args, Clone, Default)]
pub struct LimitArgs {
    /// Seconds a client has to send a request's headers (also the keep-alive idle timeout)
    /// [default: 10].
    #[arg(long, env = "CLARATEACH_HEADER_TIMEOUT_SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: Option<u64>,
    /// Seconds a request body chunk, or a write to a client that does not read, may wait
    /// [default: 30].
    #[arg(long, env = "CLARATEACH_STALL_TIMEOUT_SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub stall_timeout_secs: Option<u64>,
    /// Open connections at most; beyond it new ones are closed at once [default: 4096].
    #[arg(long, env = "CLARATEACH_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
    /// Largest JSON request body in KiB [default: 1024].
    #[arg(long, env = "CLARATEACH_BODY_LIMIT_KB", value_parser = clap::value_parser!(u64).range(1..))]
    pub body_limit_kb: Option<u64>,
    /// Largest body the gateway streams to a seat (file uploads) in KiB [default: 14677, the
    /// workspace daemon's own limit].
    #[arg(long, env = "CLARATEACH_FILE_BODY_LIMIT_KB", value_parser = clap::value_parser!(u64).range(1..))]
    pub file_body_limit_kb: Option<u64>,
    /// Largest WebSocket message on the agent channel in KiB [default: 1024].
    #[arg(long, env = "CLARATEACH_WS_MAX_MESSAGE_KB", value_parser = clap::value_parser!(u64).range(1..))]
    pub ws_max_message_kb: Option<u64>,
    /// Bearer token `GET /metrics` requires; without it `/metrics` answers loopback clients only.
    #[arg(long, env = "CLARATEACH_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// `postgres://USER:PASSWORD@HOST:PORT/DB`: keep the store in this PostgreSQL database,
    /// which several `serve` replicas may share [default: the SQLite file in the data dir].
    #[arg(long, env = "CLARATEACH_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Seats may reserve this many times an agent's reported memory (a seat's memory limit is
    /// a ceiling, not what an idle learner uses); 1 = no overcommit [default: 8].
    #[arg(long, env = "CLARATEACH_MEMORY_OVERCOMMIT", value_name = "FACTOR",
          value_parser = overcommit_factor)]
    pub memory_overcommit: Option<f64>,
    /// Seats may reserve this many times an agent's reported CPU [default: 100].
    #[arg(long, env = "CLARATEACH_CPU_OVERCOMMIT", value_name = "FACTOR",
          value_parser = overcommit_factor)]
    pub cpu_overcommit: Option<f64>,
    /// `s3://BUCKET[/PREFIX]`: seat volumes are synced there by the agents, seats of a lost
    /// host are recreated elsewhere from it, exports of such seats read it. Endpoint, region and
    /// credentials come from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY (AWS_ALLOW_HTTP=true for a plain-HTTP server) [default: none].
    #[arg(long, env = clarateach_objstore::OBJECT_STORE_ENV)]
    pub object_store: Option<String>,
    /// How long an agent may stay disconnected before its seats are recreated on other agents
    /// (with --object-store), e.g. `60s`, `2s`, `1500ms`, `2m` [default: 60s].
    #[arg(long, env = "CLARATEACH_HOST_LOSS_GRACE", value_parser = parse_duration)]
    pub host_loss_grace: Option<Duration>,
}

/// The largest overcommit factor accepted (beyond it a typo, not a policy).
const MAX_OVERCOMMIT: f64 = 1000.0;

/// Why an overcommit factor was refused.
#[derive(Debug, thiserror::Error)]
pub enum OvercommitError {
    #[error("{0:?} is not a number (an overcommit factor such as 8 or 1.5)")]
    NotANumber(String),
    #[error(
        "{0} is out of range: an overcommit factor is greater than 0 and at most {MAX_OVERCOMMIT} \
         (1 = seats reserve no more than the agent has)"
    )]
    OutOfRange(f64),
}

/// A factor greater than 0 and at most [`MAX_OVERCOMMIT`] (finite).
pub fn check_overcommit(v: f64) -> Result<f64, OvercommitError> {
    if v.is_finite() && v > 0.0 && v <= MAX_OVERCOMMIT {
        Ok(v)
    } else {
        Err(OvercommitError::OutOfRange(v))
    }
}

/// `--memory-overcommit` / `--cpu-overcommit`.
fn overcommit_factor(s: &str) -> Result<f64, OvercommitError> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| OvercommitError::NotANumber(s.to_string()))?;
    check_overcommit(v)
}

/// `60s`, `1500ms`, `2m` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 60s, 1500ms or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: the unit must be ms, s or m")),
    };
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{s:?} is out of range (up to a day)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The object store `--object-store` names, connected with the environment's credentials.
pub fn object_store(url: Option<&str>) -> anyhow::Result<Option<clarateach_objstore::VolumeStore>> {
    let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let url: clarateach_objstore::ObjectStoreUrl = url.parse().context("--object-store")?;
    let store = clarateach_objstore::VolumeStore::from_env(url).context("--object-store")?;
    tracing::info!(object_store = %store.url, "seat volumes are synced to object storage");
    Ok(Some(store))
}

impl LimitArgs {
    /// Writes the values given into `config`.
    pub fn apply(&self, config: &mut ServerConfig) {
        let kib = |n: u64| usize::try_from(n.saturating_mul(1024)).unwrap_or(usize::MAX);
        if let Some(s) = self.header_timeout_secs {
            config.header_read_timeout = Duration::from_secs(s);
        }
        if let Some(s) = self.stall_timeout_secs {
            config.stall_timeout = Duration::from_secs(s);
        }
        if let Some(n) = self.max_connections {
            config.max_connections = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = self.body_limit_kb {
            config.body_limit = kib(n);
        }
        if let Some(n) = self.file_body_limit_kb {
            config.file_body_limit = kib(n);
        }
        if let Some(n) = self.ws_max_message_kb {
            config.ws_max_message = kib(n);
        }
        if let Some(t) = self.metrics_token.as_ref().filter(|t| !t.is_empty()) {
            config.metrics_token = Some(t.clone());
        }
        if let Some(u) = self.database_url.as_ref().filter(|u| !u.trim().is_empty()) {
            config.database_url = Some(u.clone());
        }
        if let Some(f) = self.memory_overcommit {
            config.memory_overcommit = f;
        }
        if let Some(f) = self.cpu_overcommit {
            config.cpu_overcommit = f;
        }
        if let Some(g) = self.host_loss_grace {
            config.host_loss_grace = g;
        }
    }
}

/// Fills every setting the command line (or environment) left unset from the config file.
fn apply_serve_file(args: &mut Args, f: super::config_file::ServeFile) -> anyhow::Result<()> {
    use super::config_file::read_secret;
    args.listen = args.listen.or(f.listen);
    args.data_dir = args.data_dir.take().or(f.data_dir);
    args.public_url = args.public_url.take().or(f.public_url);
    args.heartbeat_ms = args.heartbeat_ms.or(f.heartbeat_ms);
    if args.tls_cert.is_none() && args.tls_key.is_none() {
        anyhow::ensure!(
            f.tls_cert.is_some() == f.tls_key.is_some(),
            "config keys tls_cert and tls_key go together"
        );
        args.tls_cert = f.tls_cert;
        args.tls_key = f.tls_key;
    }
    if args.trusted_proxies.is_empty() {
        for p in f.trusted_proxies.unwrap_or_default() {
            args.trusted_proxies.push(
                p.parse()
                    .map_err(|e| anyhow::anyhow!("config key trusted_proxies: {p:?}: {e}"))?,
            );
        }
    }
    let l = &mut args.limits;
    if l.database_url.is_none() {
        if let Some(path) = f.database_url_file {
            l.database_url = Some(read_secret(&path)?);
        }
    }
    if l.metrics_token.is_none() {
        if let Some(path) = f.metrics_token_file {
            l.metrics_token = Some(read_secret(&path)?);
        }
    }
    for (key, v) in [
        ("header_timeout_secs", f.header_timeout_secs),
        ("stall_timeout_secs", f.stall_timeout_secs),
        ("max_connections", f.max_connections),
        ("body_limit_kb", f.body_limit_kb),
        ("file_body_limit_kb", f.file_body_limit_kb),
        ("ws_max_message_kb", f.ws_max_message_kb),
    ] {
        anyhow::ensure!(v != Some(0), "config key {key} must be at least 1");
    }
    l.header_timeout_secs = l.header_timeout_secs.or(f.header_timeout_secs);
    l.stall_timeout_secs = l.stall_timeout_secs.or(f.stall_timeout_secs);
    l.max_connections = l.max_connections.or(f.max_connections);
    l.body_limit_kb = l.body_limit_kb.or(f.body_limit_kb);
    l.file_body_limit_kb = l.file_body_limit_kb.or(f.file_body_limit_kb);
    l.ws_max_message_kb = l.ws_max_message_kb.or(f.ws_max_message_kb);
    for (key, v) in [
        ("memory_overcommit", f.memory_overcommit),
        ("cpu_overcommit", f.cpu_overcommit),
    ] {
        if let Some(v) = v {
            check_overcommit(v).with_context(|| format!("config key {key}"))?;
        }
    }
    l.memory_overcommit = l.memory_overcommit.or(f.memory_overcommit);
    l.cpu_overcommit = l.cpu_overcommit.or(f.cpu_overcommit);
    l.object_store = l.object_store.take().or(f.object_store);
    if l.host_loss_grace.is_none() {
        if let Some(g) = f.host_loss_grace {
            l.host_loss_grace = Some(
                parse_duration(&g)
                    .map_err(|e| anyhow::anyhow!("config key host_loss_grace: {e}"))?,
            );
        }
    }
    Ok(())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut args = args;
    if let Some(path) = args.config.clone() {
        let file: super::config_file::ServeFile = super::config_file::load(&path)?;
        apply_serve_file(&mut args, file)?;
    }
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let listen = args
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let mut config = ServerConfig::new(&data_dir);
    config.listen = listen;
    config.public_url = args.public_url.clone();
    config.preview_domain = args.preview_domain.clone();
    config.trusted_proxies = args.trusted_proxies.clone();
    config.heartbeat_interval = Duration::from_millis(args.heartbeat_ms.unwrap_or(2000).max(100));
    config.web = Some(args.web.router()?);
    args.limits.apply(&mut config);
    config.object_store = object_store(args.limits.object_store.as_deref())?;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(
            clarateach_tls::server_config(cert, key)
                .with_context(|| format!("cannot load the TLS certificate {}", cert.display()))?,
        );
    } else if !listen.ip().is_loopback() {
        let why = "serving plain HTTP on a non-loopback address: agent tokens, learner tokens and \
                   keystrokes cross the network in clear; pass --tls-cert/--tls-key or put a TLS \
                   proxy in front";
        tracing::warn!(listen = %listen, "{why}");
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
    let listener =
        clarateach_server::listen(listen).with_context(|| format!("cannot listen on {listen}"))?;
    println!(
        "ClaraTeach control plane on {scheme}://{}",
        listener.local_addr().unwrap_or(listen)
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        limits: LimitArgs,
    }

    fn parse(args: &[&str]) -> Result<LimitArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).map(|c| c.limits)
    }

    #[test]
    fn overcommit_flags_reach_the_config_and_bad_factors_are_refused() {
        let l = parse(&["--memory-overcommit", "1.5", "--cpu-overcommit", "4"]).expect("valid");
        let mut c = ServerConfig::new("/tmp/x");
        l.apply(&mut c);
        assert_eq!((c.memory_overcommit, c.cpu_overcommit), (1.5, 4.0));
        // Unset: the defaults stay.
        let mut d = ServerConfig::new("/tmp/x");
        parse(&[]).expect("valid").apply(&mut d);
        assert_eq!((d.memory_overcommit, d.cpu_overcommit), (8.0, 100.0));
        for bad in ["0", "-2", "abc", "NaN", "inf", "1001", ""] {
            let e = parse(&[&format!("--memory-overcommit={bad}")])
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"))
                .to_string();
            assert!(
                e.contains("--memory-overcommit") && e.contains("overcommit factor"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn overcommit_keys_of_the_config_file_are_checked_and_flags_win() {
        let file = |text: &str| -> super::super::config_file::ServeFile {
            toml::from_str(text).expect("valid toml")
        };
        let mut args = Args {
            config: None,
            listen: None,
            data_dir: None,
            public_url: None,
            preview_domain: None,
            heartbeat_ms: None,
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
            limits: parse(&["--cpu-overcommit", "2"]).expect("valid"),
            web: WebArgs::default(),
        };
        apply_serve_file(
            &mut args,
            file("memory_overcommit = 3\ncpu_overcommit = 50"),
        )
        .expect("valid file");
        assert_eq!(args.limits.memory_overcommit, Some(3.0));
        assert_eq!(args.limits.cpu_overcommit, Some(2.0), "the flag wins");
        for bad in [
            "memory_overcommit = 0",
            "cpu_overcommit = -1.5",
            "memory_overcommit = 5000",
        ] {
            let e = apply_serve_file(&mut args, file(bad)).expect_err(bad);
            let e = format!("{e:#}");
            assert!(
                e.contains("overcommit") && e.contains("out of range"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn durations_parse_with_units_and_refuse_the_rest() {
        for (s, ms) in [
            ("60s", 60_000),
            ("2s", 2000),
            ("1500ms", 1500),
            ("2m", 120_000),
            ("5", 5000),
            ("0.5s", 500),
        ] {
            assert_eq!(parse_duration(s).map(|d| d.as_millis()), Ok(ms), "{s}");
        }
        for bad in ["", "x", "5h", "-1s", "1e9s", "s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn object_store_urls_are_checked_before_connecting() {
        assert!(matches!(object_store(None), Ok(None)));
        assert!(matches!(object_store(Some("  ")), Ok(None)));
        assert!(object_store(Some("http://not-s3")).is_err());
    }
}
