//! `ServerConfig`: everything `serve` and `up` can set, with the defaults in code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The workspace daemon's default body limit: 10 MiB files, base64 in JSON, plus 1 MiB.
pub const DEFAULT_FILE_BODY_LIMIT: usize = (10 << 20) * 4 / 3 + (1 << 20);

/// Control-plane settings.
#[derive(Clone)]
pub struct ServerConfig {
    /// Address `clarateach serve` binds (callers of [`crate::Server::serve`] bind themselves).
    pub listen: SocketAddr,
    /// Holds the store, keys and secrets.
    pub data_dir: PathBuf,
    /// `postgres://...`: the store is this PostgreSQL database (shared by every replica)
    /// instead of the SQLite file in the data dir.
    pub database_url: Option<String>,
    /// Public base URL (e.g. `https://teach.example.org`); derived from the Host header if unset.
    pub public_url: Option<String>,
    /// Agents heartbeat this often; three missed intervals make an agent lost.
    pub heartbeat_interval: Duration,
    /// How long stop waits for agents to report seats destroyed.
    pub stop_timeout: Duration,
    /// Failed joins per client address per minute before 429.
    pub join_failures_per_minute: u32,
    /// Failed joins per minute for an address that has joined a workshop, charged to that
    /// workshop and address (a class behind one NAT shares this larger budget instead of the
    /// address's own).
    pub workshop_join_failures_per_minute: u32,
    /// Unknown reconnect codes per client address per minute, and per workshop.
    pub reconnect_failures_per_minute: u32,
    pub workshop_reconnect_failures_per_minute: u32,
    /// Peers whose `X-Forwarded-For` is believed (`--trusted-proxy CIDR`).
    pub trusted_proxies: Vec<crate::ip::Cidr>,
    /// Learner token lifetime.
    pub token_ttl: Duration,
    /// Instructor browser session lifetime.
    pub session_ttl: Duration,
    /// Largest accepted request body on the control plane's own (JSON) routes.
    pub body_limit: usize,
    /// Largest request body the gateway streams to a seat (file uploads); the workspace daemon
    /// enforces its own limit behind it.
    pub file_body_limit: usize,
    /// A request head must be complete this long after the connection starts waiting for it
    /// (from accept, and from the end of the previous answer: also the keep-alive idle timeout).
    pub header_read_timeout: Duration,
    /// A request body chunk, or a write to a client that does not read, may wait this long.
    pub stall_timeout: Duration,
    /// Open connections at most (WebSockets included); more are accepted and closed at once.
    pub max_connections: usize,
    /// Largest WebSocket message (and frame) on WebSockets the control plane terminates
    /// (the agent channel); the gateway's spliced WebSockets are bounded by the seat's daemon.
    pub ws_max_message: usize,
    /// Bearer token for `GET /metrics`; without one `/metrics` answers loopback clients only.
    pub metrics_token: Option<String>,
    /// The web UI, served for every path the API does not match.
    pub web: Option<axum::Router>,
    /// Serve HTTPS and WSS on the listener with this config (`serve --tls-cert/--tls-key`);
    /// `None` serves plain HTTP, which `serve` allows quietly only on loopback.
    pub tls: Option<std::sync::Arc<clarateach_tls::ServerConfig>>,
    /// How often the control plane looks for scheduled starts and idle seats.
    pub schedule_tick: Duration,
    /// Domain of preview hosts, `p{port}-{seat handle}.{domain}` (`--preview-domain`, may carry a
    /// port); `None`: `localhost` with the port the browser reached the control plane on.
    pub preview_domain: Option<String>,
    /// Seats may reserve this many times an agent's reported memory (a seat's `memory_mb` is
    /// its cgroup ceiling; an idle seat uses ~1 MiB of it, a learner's program tens): by default
    /// a 24 GiB host takes a class of 200 seats at the default 512 MiB (4x, the first default,
    /// refused the 200-seat class of issue 12 on such a host at 188).
    pub memory_overcommit: f64,
    /// Seats may reserve this many times an agent's reported CPU (`cpu_millis` is a quota
    /// ceiling; a class mostly reads and types): by default a 2-CPU host takes one workshop of
    /// the largest size (200 seats of one CPU each), memory permitting.
    pub cpu_overcommit: f64,
    /// Where the agents sync seat volumes (`--object-store`); with it, seats of an agent gone
    /// longer than [`Self::host_loss_grace`] are recreated on other agents from their files.
    pub object_store: Option<clarateach_objstore::VolumeStore>,
    /// How long an agent may stay disconnected before its seats move (`--host-loss-grace`).
    pub host_loss_grace: Duration,
}

impl ServerConfig {
    /// Defaults for a data dir: listen on 127.0.0.1:8080, 2 s heartbeats, 10 s stop timeout,
    /// 10 failed joins a minute per address (100 per workshop), 10 unknown reconnect codes a
    /// minute per address (60 per workshop), 24 h learner tokens, 12 h instructor sessions, no
    /// trusted proxy, 1 MiB bodies (files: the daemon's 10 MiB limit, base64-encoded, plus
    /// slack), 10 s to send headers, 30 s stalls, 4096 connections, 1 MiB WebSocket messages,
    /// `/metrics` for loopback only.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: data_dir.into(),
            database_url: None,
            public_url: None,
            heartbeat_interval: Duration::from_secs(2),
            stop_timeout: Duration::from_secs(10),
            join_failures_per_minute: 10,
            workshop_join_failures_per_minute: 100,
            reconnect_failures_per_minute: 10,
            workshop_reconnect_failures_per_minute: 60,
            trusted_proxies: Vec::new(),
            token_ttl: Duration::from_secs(24 * 3600),
            session_ttl: Duration::from_secs(12 * 3600),
            body_limit: 1024 * 1024,
            file_body_limit: DEFAULT_FILE_BODY_LIMIT,
            header_read_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            max_connections: 4096,
            ws_max_message: 1024 * 1024,
            metrics_token: None,
            web: None,
            tls: None,
            schedule_tick: Duration::from_secs(5),
            preview_domain: None,
            memory_overcommit: 8.0,
            cpu_overcommit: 100.0,
            object_store: None,
            host_loss_grace: Duration::from_secs(60),
        }
    }
}

/// The data dir when neither `--data-dir` nor `CLARATEACH_DATA_DIR` is given:
/// `$XDG_DATA_HOME/clarateach`, else `$HOME/.local/share/clarateach`, else `./clarateach-data`.
pub fn default_data_dir() -> PathBuf {
    let xdg = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".local/share"));
    match xdg.or(home) {
        Some(base) => base.join("clarateach"),
        None => PathBuf::from("clarateach-data"),
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self
                    .database_url
                    .as_deref()
                    .map(clarateach_store::redact_database_url),
            )
            .field("public_url", &self.public_url)
            .field("preview_domain", &self.preview_domain)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("stop_timeout", &self.stop_timeout)
            .field("join_failures_per_minute", &self.join_failures_per_minute)
            .field("body_limit", &self.body_limit)
            .field("file_body_limit", &self.file_body_limit)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("stall_timeout", &self.stall_timeout)
            .field("max_connections", &self.max_connections)
            .field("ws_max_message", &self.ws_max_message)
            .field("memory_overcommit", &self.memory_overcommit)
            .field("cpu_overcommit", &self.cpu_overcommit)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<hidden>"),
            )
            .field("trusted_proxies", &self.trusted_proxies)
            .field("web", &self.web.is_some())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::ServerConfig;

    /// The config is logged at startup; the database password must not be.
    #[test]
    fn debug_hides_the_database_password() {
        let mut c = ServerConfig::new("/tmp/x");
        c.database_url = Some("postgres://ct:hunter2-secret@db:5432/ct".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(shown.contains("postgres://ct:***@db:5432/ct"), "{shown}");
    }

    /// Issue 12's class: 200 seats at the default limits (512 MiB, 1 CPU) on this project's
    /// 2-core, 24 GiB host fit in what the defaults let seats reserve.
    #[test]
    fn the_defaults_take_a_class_of_200_on_a_2_core_24_gib_host() {
        let c = ServerConfig::new("/tmp/x");
        let limits = clarateach_core::Limits::default();
        let memory = 24.0 * 1024.0 * c.memory_overcommit;
        let cpu = 2000.0 * c.cpu_overcommit;
        assert!(
            memory / f64::from(limits.memory_mb) >= 200.0,
            "memory for {memory} MiB"
        );
        assert!(
            cpu / f64::from(limits.cpu_millis) >= 200.0,
            "cpu for {cpu} millis"
        );
    }
}
