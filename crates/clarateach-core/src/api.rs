//! Request and response bodies of the control-plane API and the workspace daemon, with the
//! seed shapes (`Workshop`, `JoinRequest`, `TokenPayload`, `FileInfo`, ...).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Lifecycle of a workshop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkshopStatus {
    Created,
    Provisioning,
    Running,
    Stopping,
    Stopped,
    Failed,
}

impl WorkshopStatus {
    pub const ALL: [WorkshopStatus; 6] = [
        Self::Created,
        Self::Provisioning,
        Self::Running,
        Self::Stopping,
        Self::Stopped,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Provisioning => "provisioning",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// State of one seat's workspace as the control plane knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SeatState {
    /// Not provisioned (workshop not started, or stopped).
    Pending,
    /// The agent is creating the workspace.
    Creating,
    /// Workspace daemon answers.
    Ready,
    /// The agent hosting it missed its heartbeats.
    Lost,
    /// Creation failed.
    Failed,
    /// Destroyed after stop.
    Destroyed,
    /// Frozen (cgroup freezer or QMP `stop`) by the instructor or the idle policy: memory,
    /// processes and terminal sessions are kept; resume makes it `ready` again.
    Paused,
    /// The agent is preparing the seat's image (building it from its built-in recipe, or making
    /// its microVM root disk) before it creates the workspace; `creating` follows.
    Preparing,
}

impl SeatState {
    pub const ALL: [SeatState; 8] = [
        Self::Pending,
        Self::Creating,
        Self::Ready,
        Self::Lost,
        Self::Failed,
        Self::Destroyed,
        Self::Paused,
        Self::Preparing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Creating => "creating",
            Self::Ready => "ready",
            Self::Lost => "lost",
            Self::Failed => "failed",
            Self::Destroyed => "destroyed",
            Self::Paused => "paused",
            Self::Preparing => "preparing",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Who paused a seat: the instructor (the learner waits until resumed) or the workshop's idle
/// policy (the learner's next connection resumes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    Instructor,
    Idle,
}

impl PauseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Instructor => "instructor",
            Self::Idle => "idle",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Instructor, Self::Idle]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// What a seat may reach on the network. In every mode the host, its loopback, link-local and
/// metadata addresses, private ranges and other seats stay unreachable; the policy only decides
/// what of the public internet is.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", try_from = "NetworkWire")]
pub enum NetworkPolicy {
    /// Loopback only (the default).
    #[default]
    None,
    /// The public internet.
    Open,
    /// Only these host names (and their subdomains when written `*.example.com`), over TCP
    /// ports 80 and 443.
    #[serde(untagged)]
    Allow {
        /// 1-64 DNS names.
        allow: Vec<String>,
    },
}

/// The accepted wire forms: a word, or an object with exactly `allow`.
#[derive(Deserialize)]
#[serde(untagged)]
enum NetworkWire {
    Word(String),
    Allow(AllowWire),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowWire {
    allow: Vec<String>,
}

impl TryFrom<NetworkWire> for NetworkPolicy {
    type Error = String;

    fn try_from(w: NetworkWire) -> Result<Self, String> {
        match w {
            NetworkWire::Word(w) if w == "none" => Ok(Self::None),
            NetworkWire::Word(w) if w == "open" => Ok(Self::Open),
            NetworkWire::Word(w) => Err(format!(
                "limits.network must be \"none\", \"open\" or {{\"allow\": [hosts]}}, not {w:?}"
            )),
            NetworkWire::Allow(a) => Ok(Self::Allow { allow: a.allow }),
        }
    }
}

impl NetworkPolicy {
    /// True unless the seat has loopback only.
    pub fn reaches_out(&self) -> bool {
        !matches!(self, Self::None)
    }

    /// Returns a message naming the first bad host name.
    pub fn validate(&self) -> Result<(), String> {
        let Self::Allow { allow } = self else {
            return Ok(());
        };
        if allow.is_empty() || allow.len() > 64 {
            return Err("limits.network.allow must list 1 to 64 host names".into());
        }
        for host in allow {
            if !valid_allow_host(host) {
                return Err(format!(
                    "limits.network.allow: {host:?} is not a DNS host name"
                ));
            }
        }
        Ok(())
    }
}

/// A DNS name of letters, digits and hyphens (an optional leading `*.` for subdomains), at most
/// 253 characters, labels of 1-63, not an IP address.
fn valid_allow_host(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let labels: Vec<&str> = name.split('.').collect();
    !name.is_empty()
        && name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}

/// Resource limits of every seat of a workshop. Absent fields take the defaults.
///
/// `egress` is the deprecated spelling of `network`: `egress: true` without `network` means
/// `network: "open"`. Both are always sent, `egress` saying whether the seat reaches out at all,
/// so older readers keep working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, try_from = "LimitsWire")]
pub struct Limits {
    /// Memory limit in MiB (default 512, 64..=16384).
    pub memory_mb: u32,
    /// Maximum number of processes (default 256, 16..=4096).
    pub pids: u32,
    /// CPU quota in thousandths of a CPU (default 1000 = one CPU, 100..=16000).
    pub cpu_millis: u32,
    /// Disk quota in MiB for the seat's `/workspace`, home and tmpfs (default 2048, 64..=65536).
    pub disk_mb: u32,
    /// Network policy: `"none"` (default), `{"allow": [hosts]}` or `"open"`.
    pub network: NetworkPolicy,
    /// Deprecated: whether seats may reach the network beyond loopback. Reads as `network`
    /// `"open"` when `network` is absent; always written as `network != "none"`.
    #[schema(deprecated)]
    pub egress: bool,
}

/// The accepted wire form, normalised into [`Limits`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsWire {
    #[serde(default = "Limits::default_memory_mb")]
    memory_mb: u32,
    #[serde(default = "Limits::default_pids")]
    pids: u32,
    #[serde(default = "Limits::default_cpu_millis")]
    cpu_millis: u32,
    #[serde(default = "Limits::default_disk_mb")]
    disk_mb: u32,
    #[serde(default)]
    network: Option<NetworkPolicy>,
    #[serde(default)]
    egress: bool,
}

impl TryFrom<LimitsWire> for Limits {
    type Error = String;

    fn try_from(w: LimitsWire) -> Result<Self, String> {
        let network = match (w.network, w.egress) {
            (Some(NetworkPolicy::None), true) => {
                return Err("limits.egress contradicts limits.network (egress is deprecated: give network only)".into())
            }
            (Some(n), _) => n,
            (None, true) => NetworkPolicy::Open,
            (None, false) => NetworkPolicy::None,
        };
        Ok(Self {
            memory_mb: w.memory_mb,
            pids: w.pids,
            cpu_millis: w.cpu_millis,
            disk_mb: w.disk_mb,
            egress: network.reaches_out(),
            network,
        })
    }
}

impl Limits {
    fn default_memory_mb() -> u32 {
        512
    }
    fn default_pids() -> u32 {
        256
    }
    fn default_cpu_millis() -> u32 {
        1000
    }
    fn default_disk_mb() -> u32 {
        2048
    }

    /// Sets the network policy, keeping the deprecated `egress` flag in step.
    pub fn with_network(mut self, network: NetworkPolicy) -> Self {
        self.egress = network.reaches_out();
        self.network = network;
        self
    }

    /// Returns a message naming the first out-of-range field.
    pub fn validate(&self) -> Result<(), String> {
        if !(64..=16384).contains(&self.memory_mb) {
            return Err("limits.memory_mb must be between 64 and 16384".into());
        }
        if !(16..=4096).contains(&self.pids) {
            return Err("limits.pids must be between 16 and 4096".into());
        }
        if !(100..=16000).contains(&self.cpu_millis) {
            return Err("limits.cpu_millis must be between 100 and 16000".into());
        }
        if !(64..=65536).contains(&self.disk_mb) {
            return Err("limits.disk_mb must be between 64 and 65536".into());
        }
        if self.egress != self.network.reaches_out() {
            return Err("limits.egress contradicts limits.network (egress is deprecated: give network only)".into());
        }
        self.network.validate()
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mb: Self::default_memory_mb(),
            pids: Self::default_pids(),
            cpu_millis: Self::default_cpu_millis(),
            disk_mb: Self::default_disk_mb(),
            network: NetworkPolicy::None,
            egress: false,
        }
    }
}

/// A workshop as the API returns it. Never carries the api_key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Workshop {
    /// `ws-xxxxxx`
    pub id: String,
    pub name: String,
    /// Join code, e.g. `CLAUDE-XY9Z`.
    pub code: String,
    pub seats: u32,
    pub status: WorkshopStatus,
    pub created_at: DateTime<Utc>,
    /// Where learners' traffic goes (the control plane's session gateway).
    pub endpoint: Option<String>,
    /// Guest image name, when not the default.
    pub image: Option<String>,
    pub limits: Limits,
    /// Whether an api_key is stored (the key itself is never returned).
    pub has_api_key: bool,
    /// Seats whose workspace is ready.
    pub seats_ready: u32,
    /// Seats taken by a learner.
    pub seats_joined: u32,
    /// When the control plane starts the workshop by itself (`POST .../start {"at"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<DateTime<Utc>>,
    /// Idle policy: ready seats are paused after this many minutes without learner input or
    /// connection (`PUT .../idle-policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_pause_minutes: Option<u32>,
}

/// `POST /api/workshops/{id}/start` (optional body): `at` in the future schedules the start,
/// in the past (or absent) starts now.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartWorkshopRequest {
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}

/// `PUT /api/workshops/{id}/idle-policy`: pause ready seats after this many minutes (1-1440)
/// without learner input or connection; `null` turns the policy off.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdlePolicyRequest {
    pub pause_after_minutes: Option<u32>,
}

/// `POST /api/workshops`
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkshopRequest {
    /// 1-100 characters.
    pub name: String,
    /// 1-200.
    pub seats: u32,
    /// Optional secret for learners' tools, at least 10 characters; injected into seats only.
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub limits: Option<Limits>,
    /// A template (`GET /api/templates`) giving the image, limits, starter files and README;
    /// `image` and `limits` given here override the template's.
    #[serde(default)]
    pub template: Option<String>,
}

/// Shows every field but the api key, so a stray `{:?}` in a log cannot leak it.
impl CreateWorkshopRequest {
    /// A workshop of `seats` seats on the default image and limits, with no API key or
    /// template (benchmarks and tests).
    pub fn plain(name: impl Into<String>, seats: u32) -> Self {
        Self {
            name: name.into(),
            seats,
            api_key: None,
            image: None,
            limits: None,
            template: None,
        }
    }
}

impl std::fmt::Debug for CreateWorkshopRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateWorkshopRequest")
            .field("name", &self.name)
            .field("seats", &self.seats)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("image", &self.image)
            .field("limits", &self.limits)
            .field("template", &self.template)
            .finish()
    }
}

/// A guest image name is one path component under the image store: letters, digits, `-`, `_`,
/// `.`, starting with a letter or digit (no `.`/`..`, no hidden file, no option-like `-x`) and
/// with no `..` anywhere, so it can never name a parent directory or another path.
pub fn valid_image_name(image: &str) -> bool {
    !image.is_empty()
        && image.len() <= 64
        && image.as_bytes()[0].is_ascii_alphanumeric()
        && !image.contains("..")
        && image
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl CreateWorkshopRequest {
    /// Returns a message naming the first invalid field.
    pub fn validate(&self) -> Result<(), String> {
        if let Err(e) = crate::text::display_text(&self.name, 100) {
            return Err(format!("name {e}"));
        }
        if !(1..=200).contains(&self.seats) {
            return Err("seats must be between 1 and 200".into());
        }
        if let Some(key) = &self.api_key {
            if key.chars().count() < 10 {
                return Err("api_key must be at least 10 characters".into());
            }
        }
        if let Some(image) = &self.image {
            if !valid_image_name(image) {
                return Err(
                    "image must be 1-64 characters of letters, digits, '-', '_' or '.', \
                     starting with a letter or digit and without '..'"
                        .into(),
                );
            }
        }
        if let Some(limits) = &self.limits {
            limits.validate()?;
        }
        if let Some(t) = &self.template {
            if !valid_image_name(t) {
                return Err("template must be a valid template name".into());
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkshopResponse {
    pub workshop: Workshop,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListWorkshopsResponse {
    pub workshops: Vec<Workshop>,
}

/// One seat of a workshop, as the instructor sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Seat {
    pub seat: u32,
    pub state: SeatState,
    /// Whether a learner holds this seat.
    pub joined: bool,
    /// Learner's display name, if given.
    pub name: Option<String>,
    /// Agent hosting the workspace.
    pub agent_id: Option<String>,
    pub joined_at: Option<DateTime<Utc>>,
    /// Last terminal/file activity seen through the gateway.
    pub last_activity_at: Option<DateTime<Utc>>,
    /// When the seat last moved to another machine (host loss or an instructor's move).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListSeatsResponse {
    pub seats: Vec<Seat>,
}

/// `POST /api/join`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinRequest {
    /// Join code; case and spaces are forgiven.
    pub code: String,
    /// Reconnect code from an earlier join.
    #[serde(default)]
    pub odehash: Option<String>,
    /// Display name shown to the instructor: 1-64 characters after trimming, any script, no
    /// control or bidi-override characters (absent or blank: anonymous).
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinResponse {
    /// Learner token (JWT, EdDSA).
    pub token: String,
    /// Base URL of the session gateway.
    pub endpoint: String,
    /// Reconnect code for this seat.
    pub odehash: String,
    pub seat: u32,
    pub workshop_id: String,
    pub workshop_name: String,
}

/// Claims of the learner token (seed 001's TokenPayload with the agent id instead of vm_ip).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    pub workshop_id: String,
    pub container_id: String,
    pub seat: u32,
    pub odehash: String,
    pub agent_id: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// The seat's generation when the token was issued; a seat reset bumps it and every older
    /// token is refused. Tokens from before generations existed read as 0.
    #[serde(default)]
    pub generation: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    pub status: String,
    pub version: String,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FileInfo {
    pub name: String,
    /// Path relative to the workspace root, starting with `/`.
    pub path: String,
    pub is_directory: bool,
    pub size: u64,
    pub modified_at: DateTime<Utc>,
}

/// Header of the daemon's `PUT /files/{path}`: `later` leaves the flush to a `POST /files-sync`
/// that ends a batch of writes (a broadcast); absent or `now`, the write is on disk before it
/// answers.
pub const FILES_SYNC_HEADER: &str = "x-clarateach-sync";

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListFilesResponse {
    pub files: Vec<FileInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadFileResponse {
    pub content: String,
    /// `utf-8` or `base64`.
    pub encoding: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFileRequest {
    pub content: String,
    /// `utf-8` (default) or `base64`.
    #[serde(default)]
    pub encoding: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MkdirRequest {
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SuccessResponse {
    pub success: bool,
}

/// `POST /activate` on a seat daemon started ahead of its seat's Start (`--await-activation`):
/// the token the agent uses from now on (the start-up one stops working) and the workshop's
/// environment for every shell and command started afterwards. Accepted once.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    pub token: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl std::fmt::Debug for ActivateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivateRequest")
            .field("token", &"<hidden>")
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `POST /run`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    pub command: String,
    /// Files staged in a fresh directory before the command runs: relative path -> content.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Default 30, at most 600.
    #[serde(default)]
    pub timeout_s: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunResponse {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    pub truncated: bool,
}

/// Media type of a streamed run: `POST /run` with `Accept: application/x-ndjson` answers with
/// one [`RunEvent`] JSON object per line as the command writes, the last one `exit`.
pub const RUN_STREAM_MEDIA_TYPE: &str = "application/x-ndjson";

/// One line of a streamed run. Output chunks are cut at UTF-8 boundaries (invalid bytes are
/// replaced); each stream stops at the same cap as a buffered run (`truncated` says so).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunEvent {
    Stdout {
        data: String,
    },
    Stderr {
        data: String,
    },
    Exit {
        exit_code: Option<i32>,
        timed_out: bool,
        duration_ms: u64,
        truncated: bool,
    },
}

/// Control messages a terminal client sends as WebSocket text frames. In the OpenAPI document's
/// components (no route returns it) so the web app's types come from here too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TerminalClientMessage {
    Input { data: String },
    Resize { cols: u16, rows: u16 },
}

/// Control messages the daemon sends as WebSocket text frames (output is binary frames unless
/// the client asked for `?format=json`). In the OpenAPI document's components, like the client's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TerminalServerMessage {
    Output {
        data: String,
    },
    Exit {
        code: i32,
    },
    /// Sent to a viewer whose input was refused or who was dropped; `code` is machine-readable.
    Error {
        code: String,
        message: String,
    },
    /// Sent on attach: the session name and whether it was just started. `replay_bytes` output
    /// bytes of scrollback follow before live output, so a client knows when it has caught up.
    Attached {
        session: String,
        new: bool,
        mode: TerminalMode,
        #[serde(default)]
        replay_bytes: u64,
    },
    /// Sent to the other viewers when a `mode=takeover` viewer (the instructor) attaches/detaches.
    Takeover {
        active: bool,
    },
    /// A line for the viewer to show beside the terminal (api/ws-protocol.md).
    Notice {
        message: String,
    },
}

/// How a viewer attaches to a terminal (api/ws-protocol.md): the one definition the gateway, the
/// workspace daemon and the terminal protocol's `attached` message share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TerminalMode {
    /// Reads and types (a learner's own terminal).
    Interactive,
    /// Reads only.
    Watch,
    /// Types while the learner is shown a notice (the instructor).
    Takeover,
}

impl TerminalMode {
    /// The mode as written in a query string and on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Interactive => "interactive",
            Self::Watch => "watch",
            Self::Takeover => "takeover",
        }
    }

    /// The mode named by `s` (`interactive`, `watch` or `takeover`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "interactive" => Some(Self::Interactive),
            "watch" => Some(Self::Watch),
            "takeover" => Some(Self::Takeover),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_modes_match_their_wire_names() {
        for m in [
            TerminalMode::Interactive,
            TerminalMode::Watch,
            TerminalMode::Takeover,
        ] {
            assert_eq!(
                serde_json::to_value(m).expect("json"),
                serde_json::Value::String(m.as_str().into())
            );
            assert_eq!(TerminalMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(TerminalMode::parse("Watch"), None);
    }

    #[test]
    fn create_request_debug_hides_api_key() {
        let req = CreateWorkshopRequest {
            template: None,
            name: "Intro".into(),
            seats: 3,
            api_key: Some("sk-ant-very-secret".into()),
            image: None,
            limits: None,
        };
        let shown = format!("{req:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn validation_names_the_field() {
        let mut req = CreateWorkshopRequest {
            template: None,
            name: "x".into(),
            seats: 0,
            api_key: None,
            image: None,
            limits: None,
        };
        assert!(req.validate().unwrap_err().contains("seats"));
        req.seats = 201;
        assert!(req.validate().is_err());
        req.seats = 200;
        assert!(req.validate().is_ok());
        req.api_key = Some("short".into());
        assert!(req.validate().unwrap_err().contains("api_key"));
        req.api_key = None;
        req.name = " ".into();
        assert!(req.validate().unwrap_err().contains("name"));
        req.name = "Intro\u{1b}[2J".into();
        assert!(req.validate().unwrap_err().contains("name"));
        req.name = "Intro to the shell".into();
        assert!(req.validate().is_ok());
    }

    #[test]
    fn image_name_table() {
        for ok in ["python-3.12", "ubuntu_24.04", "a", "9base", &"x".repeat(64)] {
            assert!(valid_image_name(ok), "{ok:?} should pass");
        }
        for bad in [
            "",
            ".",
            "..",
            "...",
            "a..b",
            "../etc",
            "a/b",
            "/abs",
            "a\\b",
            ".hidden",
            "-rf",
            "_x",
            "a b",
            "a\0",
            "é",
            &"x".repeat(65),
        ] {
            assert!(!valid_image_name(bad), "{bad:?} should fail");
            let req = CreateWorkshopRequest {
                template: None,
                name: "x".into(),
                seats: 1,
                api_key: None,
                image: Some(bad.to_string()),
                limits: None,
            };
            assert!(req.validate().unwrap_err().contains("image"), "{bad:?}");
        }
    }

    fn limits(json: &str) -> Result<Limits, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn network_policy_shapes_and_the_egress_alias() {
        let l = limits("{}").expect("defaults");
        assert_eq!(
            (l.disk_mb, &l.network, l.egress),
            (2048, &NetworkPolicy::None, false)
        );
        assert_eq!(
            limits(r#"{"egress":true}"#).expect("alias").network,
            NetworkPolicy::Open
        );
        let open = limits(r#"{"network":"open"}"#).expect("open");
        assert!(open.egress, "egress follows network for old readers");
        let allow =
            limits(r#"{"network":{"allow":["api.anthropic.com","*.github.com"]}}"#).expect("allow");
        assert_eq!(
            allow.network,
            NetworkPolicy::Allow {
                allow: vec!["api.anthropic.com".into(), "*.github.com".into()]
            }
        );
        assert!(allow.validate().is_ok());
        assert!(limits(r#"{"network":"none","egress":true}"#).is_err());
        assert!(limits(r#"{"network":"sometimes"}"#).is_err());
        assert!(limits(r#"{"network":{"allow":["x"],"deny":[]}}"#).is_err());
        let back: Limits =
            serde_json::from_value(serde_json::to_value(&allow).expect("ser")).expect("round trip");
        assert_eq!(back, allow);
        assert_eq!(
            serde_json::to_value(Limits::default()).expect("ser")["network"],
            "none"
        );
    }

    #[test]
    fn limits_validation_covers_disk_and_allow_list() {
        let mut l = Limits {
            disk_mb: 63,
            ..Limits::default()
        };
        assert!(l.validate().unwrap_err().contains("disk_mb"));
        l.disk_mb = 65536;
        assert!(l.validate().is_ok());
        for bad in [
            "",
            "localhost",
            "10.0.0.1",
            "a..b",
            "-x.com",
            "x.com/evil",
            "../etc",
        ] {
            let l = Limits::default().with_network(NetworkPolicy::Allow {
                allow: vec![bad.into()],
            });
            assert!(l.validate().is_err(), "{bad:?} accepted");
        }
        let empty = Limits::default().with_network(NetworkPolicy::Allow { allow: vec![] });
        assert!(empty.validate().is_err());
    }
}
