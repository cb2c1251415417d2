//! The in-workspace daemon (`clarateach workspace-server`): persistent PTY sessions over a
//! WebSocket, a file API confined to the workspace root by the kernel, a change feed, and a
//! run-a-command API. The binary and the tests share [`router`] and [`serve`].

pub mod activate;
pub mod error;
pub mod files;
pub mod fsroot;
pub mod preview;
pub mod pty;
pub mod run;
pub mod screen;
pub mod serve;
pub mod session;
pub mod terminal;
pub mod watch;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use serve::{router, serve, Error, Listen};

/// The environment variable the daemon's token may come from; never passed to shells.
pub const TOKEN_ENV: &str = "CLARATEACH_DAEMON_TOKEN";

/// How the daemon runs. Secrets are hidden from `Debug`.
#[derive(Clone)]
pub struct Config {
    pub listen: Vec<Listen>,
    /// The workspace directory: the shells' cwd and the file API's root.
    pub root: PathBuf,
    /// Bearer token required on every route but `/health`.
    pub token: String,
    /// Shell command; default: `bash -l` if bash exists, else `sh -l`.
    pub shell: Option<Vec<String>>,
    /// Largest file the file API reads or writes (413 past it).
    pub max_file_bytes: u64,
    /// Scrollback kept per terminal session.
    pub scrollback_bytes: usize,
    /// Started ahead of its seat's Start: nothing is served before `POST /activate`
    /// (`activate`).
    pub await_activation: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("root", &self.root)
            .field("token", &"<hidden>")
            .field("shell", &self.shell)
            .field("max_file_bytes", &self.max_file_bytes)
            .field("scrollback_bytes", &self.scrollback_bytes)
            .field("await_activation", &self.await_activation)
            .finish()
    }
}

impl Config {
    pub const DEFAULT_MAX_FILE_BYTES: u64 = 10 << 20;
    pub const DEFAULT_SCROLLBACK_BYTES: usize = 2 << 20;

    pub fn new(listen: Vec<Listen>, root: PathBuf, token: String) -> Self {
        Self {
            listen,
            root,
            token,
            shell: None,
            max_file_bytes: Self::DEFAULT_MAX_FILE_BYTES,
            scrollback_bytes: Self::DEFAULT_SCROLLBACK_BYTES,
            await_activation: false,
        }
    }

    fn shell_argv(&self) -> Vec<String> {
        if let Some(s) = self.shell.as_ref().filter(|s| !s.is_empty()) {
            return s.clone();
        }
        let bash = ["/bin/bash", "/usr/bin/bash"]
            .iter()
            .any(|p| std::path::Path::new(p).exists());
        vec![
            if bash { "bash" } else { "sh" }.to_string(),
            "-l".to_string(),
        ]
    }
}

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub root: Arc<fsroot::Root>,
    pub sessions: Arc<session::SessionManager>,
    pub watches: Arc<watch::Watches>,
    pub token: Arc<str>,
    pub max_file_bytes: u64,
    pub env_remove: Arc<Vec<OsString>>,
    pub run_slots: Arc<tokio::sync::Semaphore>,
    /// The daemon's own TCP listen ports, left out of the previewable ports.
    pub own_tcp_ports: Arc<Vec<u16>>,
    /// Cancelled when the daemon stops: open WebSockets close.
    pub cancel: CancellationToken,
    /// The token and environment of a daemon started ahead of its seat's Start.
    pub activation: Arc<activate::Activation>,
}

impl AppState {
    /// Opens the root and prepares the session manager (no shell starts until a viewer comes).
    pub fn new(cfg: &Config, cancel: CancellationToken) -> Result<Self, Error> {
        let root_path =
            std::fs::canonicalize(&cfg.root).map_err(|e| Error::Root(cfg.root.clone(), e))?;
        let root = Arc::new(
            fsroot::Root::open(&root_path)
                .map_err(|e| Error::Root(root_path.clone(), std::io::Error::other(e)))?,
        );
        let env_remove: Vec<OsString> = vec![TOKEN_ENV.into()];
        let activation = Arc::new(activate::Activation::new(cfg.await_activation));
        let shell = session::ShellConfig {
            argv: cfg.shell_argv(),
            cwd: root_path.clone(),
            env_remove: env_remove.clone(),
            scrollback_bytes: cfg.scrollback_bytes,
            activation: activation.clone(),
        };
        Ok(Self {
            watches: Arc::new(watch::Watches::new(root_path, root.clone())),
            root,
            sessions: Arc::new(session::SessionManager::new(shell)),
            token: cfg.token.as_str().into(),
            max_file_bytes: cfg.max_file_bytes,
            env_remove: Arc::new(env_remove),
            run_slots: Arc::new(tokio::sync::Semaphore::new(4)),
            own_tcp_ports: Arc::new(
                cfg.listen
                    .iter()
                    .filter_map(|l| match l {
                        Listen::Tcp(a) => Some(a.port()),
                        _ => None,
                    })
                    .collect(),
            ),
            cancel,
            activation,
        })
    }
}
