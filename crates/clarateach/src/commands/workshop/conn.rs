//! Where the control plane is and which instructor token to present: `--api-url` /
//! `CLARATEACH_API_URL`, then `--token` / `CLARATEACH_TOKEN`, else the `instructor.token` file a
//! local `clarateach serve` or `up` wrote into its data dir.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clarateach_client::Client;
use clarateach_server::{default_data_dir, INSTRUCTOR_TOKEN_FILE};

#[derive(clap::Args)]
pub struct ConnArgs {
    /// Control plane URL.
    #[arg(
        long,
        global = true,
        env = "CLARATEACH_API_URL",
        default_value = "http://127.0.0.1:8080",
        display_order = 100
    )]
    api_url: String,

    /// Instructor token [default: read from DATA_DIR/instructor.token].
    #[arg(
        long,
        global = true,
        env = "CLARATEACH_TOKEN",
        hide_env_values = true,
        display_order = 101
    )]
    token: Option<String>,

    /// Data dir of a local control plane, to read instructor.token from
    /// [default: $XDG_DATA_HOME/clarateach or ~/.local/share/clarateach].
    #[arg(long, global = true, env = "CLARATEACH_DATA_DIR", display_order = 102)]
    data_dir: Option<PathBuf>,
}

/// A resolved URL and token, and where the token came from (for error hints).
pub struct Session {
    api_url: String,
    token: String,
    pub token_source: String,
}

impl Session {
    pub fn client(&self) -> anyhow::Result<Client> {
        Client::new(&self.api_url, Some(self.token.clone())).map_err(|e| anyhow!(e.summary()))
    }
}

impl ConnArgs {
    pub fn resolve(self) -> anyhow::Result<Session> {
        if let Some(token) = self
            .token
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
        {
            return Ok(Session {
                api_url: self.api_url,
                token,
                token_source: "the token given by --token or CLARATEACH_TOKEN".into(),
            });
        }
        // The same default as `serve` and `up`, so a local control plane's token is found.
        let dir = self.data_dir.unwrap_or_else(default_data_dir);
        let path = dir.join(INSTRUCTOR_TOKEN_FILE);
        let token = read_token(&path)?;
        Ok(Session {
            api_url: self.api_url,
            token,
            token_source: format!("the token in {}", path.display()),
        })
    }
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!(
            "no instructor token: pass --token or set CLARATEACH_TOKEN ({} does not exist; `clarateach serve` writes it there on first start)",
            path.display()
        ),
        _ => anyhow!("cannot read the instructor token from {}: {e}", path.display()),
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(anyhow!(
            "the instructor token file {} is empty",
            path.display()
        ));
    }
    Ok(token.to_string())
}
