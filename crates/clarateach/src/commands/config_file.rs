//! `--config FILE` for `agent` and `serve`: the same settings as the command-line flags, in a
//! TOML file (so a systemd unit needs no long command line and no secret in argv). Flags and
//! their environment variables override the file; a key the file may not hold is an error
//! naming it, so a typo is not silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read the config file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Carries toml's message: it names the unknown key or the bad value and its line.
    #[error("the config file {path} is not valid: {message}")]
    Parse { path: String, message: String },
}

/// One URL or a list of them (`control_plane = "https://a"` or `["https://a", "https://b"]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `/etc/clarateach/agent.toml` (see deploy/agent.toml).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    pub control_plane: Option<OneOrMany>,
    /// File holding the agent token (first line); kept out of argv and the environment.
    pub token_file: Option<PathBuf>,
    pub id: Option<String>,
    pub ca: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub data_url: Option<String>,
    /// "sandbox" or "microvm".
    pub backend: Option<String>,
    pub capacity: Option<u32>,
    pub image_dir: Option<PathBuf>,
    pub microvm_bridge: Option<String>,
    pub microvm_subnet: Option<String>,
    pub export_cap_mb: Option<u64>,
    pub stop_on_exit: Option<bool>,
    /// `s3://BUCKET[/PREFIX]` seat volumes are synced to (credentials from the environment).
    pub object_store: Option<String>,
}

/// `/etc/clarateach/serve.toml` (see deploy/serve.toml).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub public_url: Option<String>,
    pub heartbeat_ms: Option<u64>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub trusted_proxies: Option<Vec<String>>,
    /// File holding the `postgres://` URL (it carries the database password).
    pub database_url_file: Option<PathBuf>,
    /// File holding the `/metrics` bearer token.
    pub metrics_token_file: Option<PathBuf>,
    pub header_timeout_secs: Option<u64>,
    pub stall_timeout_secs: Option<u64>,
    pub max_connections: Option<u64>,
    pub body_limit_kb: Option<u64>,
    pub file_body_limit_kb: Option<u64>,
    pub ws_max_message_kb: Option<u64>,
    /// Seats may reserve this many times an agent's memory (`--memory-overcommit`).
    pub memory_overcommit: Option<f64>,
    /// Seats may reserve this many times an agent's CPU (`--cpu-overcommit`).
    pub cpu_overcommit: Option<f64>,
    /// `s3://BUCKET[/PREFIX]`, as `--object-store`.
    pub object_store: Option<String>,
    /// As `--host-loss-grace`, e.g. "60s".
    pub host_loss_grace: Option<String>,
}

/// Reads and parses `path`.
pub fn load<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, path)
}

fn parse<T: for<'de> Deserialize<'de>>(text: &str, path: &Path) -> Result<T, ConfigFileError> {
    toml::from_str(text).map_err(|e| ConfigFileError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The first line of a secret file, trimmed.
pub fn read_secret(path: &Path) -> Result<String, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(text.lines().next().unwrap_or_default().trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_file_parses_every_key() {
        let f: AgentFile = parse(
            r#"
control_plane = ["https://cp-a:8443", "https://cp-b:8443"]
token_file = "/etc/clarateach/agent.token"
id = "host-1"
data_dir = "/var/lib/clarateach-agent"
listen = "0.0.0.0:9090"
data_url = "https://host-1:9090"
backend = "sandbox"
capacity = 120
image_dir = "/var/lib/clarateach-agent/images/default"
microvm_bridge = "ctbr0"
microvm_subnet = "10.77.0.0/16"
export_cap_mb = 512
stop_on_exit = false
"#,
            Path::new("agent.toml"),
        )
        .expect("valid");
        assert_eq!(
            f.control_plane.map(OneOrMany::into_vec),
            Some(vec!["https://cp-a:8443".into(), "https://cp-b:8443".into()])
        );
        assert_eq!(f.capacity, Some(120));
        assert_eq!(f.listen, Some("0.0.0.0:9090".parse().expect("addr")));
        let one: AgentFile =
            parse("control_plane = \"http://cp\"", Path::new("a.toml")).expect("valid");
        assert_eq!(
            one.control_plane.map(OneOrMany::into_vec),
            Some(vec!["http://cp".into()])
        );
    }

    #[test]
    fn object_store_keys_parse() {
        let a: AgentFile = parse(
            "object_store = \"s3://seats/prod\"",
            Path::new("agent.toml"),
        )
        .expect("valid");
        assert_eq!(a.object_store.as_deref(), Some("s3://seats/prod"));
        let s: ServeFile = parse(
            "object_store = \"s3://seats\"\nhost_loss_grace = \"90s\"",
            Path::new("serve.toml"),
        )
        .expect("valid");
        assert_eq!(s.object_store.as_deref(), Some("s3://seats"));
        assert_eq!(s.host_loss_grace.as_deref(), Some("90s"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = parse::<AgentFile>("capacty = 3", Path::new("/etc/a.toml"))
            .expect_err("typo refused")
            .to_string();
        assert!(e.contains("capacty") && e.contains("/etc/a.toml"), "{e}");
        let e = parse::<ServeFile>("listen = \"nowhere\"", Path::new("s.toml"))
            .expect_err("bad address")
            .to_string();
        assert!(e.contains("listen"), "{e}");
        let e = parse::<ServeFile>("database_url = \"postgres://x\"", Path::new("s.toml"))
            .expect_err("the URL goes in a file")
            .to_string();
        assert!(e.contains("database_url"), "{e}");
    }
}
