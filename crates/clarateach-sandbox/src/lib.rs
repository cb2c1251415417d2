//! Standalone sandboxes (`clarateach sandbox ...`, issue 14): a seat's isolation without a
//! workshop or a server. The CLI (and the control plane's `/api/sandboxes`) drive the isolation
//! backends directly through this crate, with the state in an embedded SQLite store in the
//! state dir (`statedir`), one lock serialising changes (`lock`), and each sandbox's own
//! workspace daemon doing the runs, files and terminals (`daemon`).
//!
//! Its own crate, not a module of the agent: the agent owns workshop seats for a control plane
//! (reconciler, heartbeats, relay); a sandbox has none of that, and the binary and the server use
//! this crate without pulling the agent's state machine in.

#![forbid(unsafe_code)]

pub mod daemon;
pub mod db;
pub mod lock;
pub mod manager;
pub mod net;
pub mod record;
pub mod spec;
pub mod statedir;
mod teardown;

pub use daemon::{Daemon, DaemonError};
pub use manager::{CreateRequest, RunOptions, RunOutcome, Sandboxes};
pub use record::{BackendChoice, SandboxInfo, SandboxRecord, SandboxState};
pub use statedir::StateDir;

/// Exit statuses of `clarateach sandbox` for its own errors (documented in the README). A `run`
/// otherwise exits with the command's own status, 124 on a timeout.
pub mod exit {
    /// A flag or name is not acceptable (bad `--network`, `--mem`, a taken or bad `--name`).
    pub const BAD_INPUT: u8 = 64;
    /// A `--file` (or `cp` source) cannot be read.
    pub const MISSING_FILE: u8 = 65;
    /// No sandbox with this id.
    pub const UNKNOWN_SANDBOX: u8 = 66;
    /// The sandbox is stopped (or its daemon is gone).
    pub const NOT_RUNNING: u8 = 69;
    /// The backend, the store or the daemon failed.
    pub const INTERNAL: u8 = 70;
    /// The run hit its `--timeout`.
    pub const TIMEOUT: u8 = 124;
    /// The command cannot start (as `sh` says for a file that is not executable; `sh` itself
    /// exits 127 for a command that is not found).
    pub const CANNOT_START: u8 = 126;
}

/// Errors of sandbox operations; each names what went wrong for the user.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("no sandbox {0:?} (see `clarateach sandbox list`)")]
    Unknown(String),
    #[error("sandbox {0:?} is stopped (run `clarateach sandbox start {0}`)")]
    NotRunning(String),
    #[error("a sandbox named {0:?} exists already")]
    NameTaken(String),
    #[error("{0:?} is not a usable sandbox name (letters, digits, - and _, at most 40, starting with a letter or digit)")]
    BadName(String),
    #[error("--network {0:?}: use none, open or allow:HOST,...")]
    BadNetwork(String),
    #[error("the sandbox refused: {message} ({code})")]
    Refused { code: String, message: String },
    #[error("the sandbox quota of {0} is used up: clean one first")]
    QuotaExceeded(usize),
    #[error("cp needs one side ID:PATH and the other a host file")]
    BadCopy,
    #[error("bad limits: {0}")]
    BadLimits(String),
    #[error("--network {0} is not available on the microvm backend of standalone sandboxes; use --backend sandbox")]
    NetworkNeedsServer(String),
    #[error("the sandbox's network keeper failed: {0}")]
    Keeper(String),
    #[error("bad network setting {0}")]
    NetSetting(String),
    #[error("language {language} needs {program}, which is not installed on this host")]
    MissingInterpreter { language: String, program: String },
    #[error("no language or image {0:?} (built in: base, python, node, claude)")]
    UnknownImage(String),
    #[error("cannot read {path}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not UTF-8 text; stage binary files with `clarateach sandbox cp`")]
    FileNotText(String),
    #[error("the command cannot start: {0}")]
    CannotStart(String),
    #[error("the state directory {path} cannot be used")]
    StateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the sandbox store failed")]
    Db(#[from] db::DbError),
    #[error("the isolation backend failed")]
    Backend(#[from] clarateach_isolation::BackendError),
    #[error("talking to the sandbox's daemon failed")]
    Daemon(#[from] DaemonError),
    #[error("writing the run output to {path}")]
    Output {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl SandboxError {
    /// What a failed daemon request of sandbox `id` means for the user: a daemon that does not
    /// answer is a sandbox not running, a 4xx is the request's fault, `spawn_failed` a command
    /// that cannot start.
    pub fn from_daemon(id: &str, e: DaemonError) -> Self {
        match e {
            DaemonError::Connect(_) => Self::NotRunning(id.to_string()),
            DaemonError::Refused { code, message, .. } if code == "spawn_failed" => {
                Self::CannotStart(message)
            }
            DaemonError::Refused {
                status,
                code,
                message,
            } if (400..500).contains(&status) => Self::Refused { code, message },
            other => Self::Daemon(other),
        }
    }

    /// The documented exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Unknown(_) => exit::UNKNOWN_SANDBOX,
            Self::NotRunning(_) => exit::NOT_RUNNING,
            Self::NameTaken(_)
            | Self::BadName(_)
            | Self::BadNetwork(_)
            | Self::NetSetting(_)
            | Self::BadLimits(_)
            | Self::BadCopy
            | Self::Refused { .. }
            | Self::QuotaExceeded(_)
            | Self::NetworkNeedsServer(_)
            | Self::MissingInterpreter { .. }
            | Self::UnknownImage(_) => exit::BAD_INPUT,
            Self::File { .. } | Self::FileNotText(_) => exit::MISSING_FILE,
            Self::CannotStart(_) => exit::CANNOT_START,
            Self::StateDir { .. }
            | Self::Db(_)
            | Self::Backend(_)
            | Self::Daemon(_)
            | Self::Keeper(_)
            | Self::Output { .. } => exit::INTERNAL,
        }
    }

    /// A stable snake_case code for JSON output and the HTTP API.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unknown(_) => "unknown_sandbox",
            Self::NotRunning(_) => "sandbox_stopped",
            Self::NameTaken(_) => "name_taken",
            Self::BadName(_) => "bad_name",
            Self::BadNetwork(_) | Self::NetSetting(_) => "bad_network",
            Self::BadLimits(_) => "bad_limits",
            Self::BadCopy => "bad_copy",
            Self::Refused { .. } => "refused",
            Self::QuotaExceeded(_) => "quota_exceeded",
            Self::NetworkNeedsServer(_) => "network_unavailable",
            Self::Keeper(_) => "backend_failed",
            Self::MissingInterpreter { .. } => "missing_interpreter",
            Self::UnknownImage(_) => "unknown_image",
            Self::File { .. } => "missing_file",
            Self::FileNotText(_) => "file_not_text",
            Self::CannotStart(_) => "cannot_start",
            Self::StateDir { .. } => "state_dir",
            Self::Db(_) => "store_failed",
            Self::Backend(_) => "backend_failed",
            Self::Daemon(_) => "daemon_failed",
            Self::Output { .. } => "output_failed",
        }
    }
}
