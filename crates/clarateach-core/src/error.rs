//! The one error shape every HTTP route answers with: `{"code": "snake_case", "message": "..."}`,
//! and the one vocabulary of codes ([`ErrorCode`]) that the control plane, the agent and the
//! workspace daemon share, so the same mistake gets the same code from every service (a client
//! talking to `/api/workshops` and to `/api/session/files` through the gateway sees one
//! `invalid_request`, never a `bad_json` from one and an `invalid_request` from the other).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// JSON body of every failed request.
///
/// `code` stays a string on the wire so a client keeps working when a newer server adds a
/// code; producers build it from an [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `workshop_full` (one of [`ErrorCode`]).
    pub code: String,
    /// Human sentence explaining what went wrong.
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: code.as_str().to_string(),
            message: message.into(),
        }
    }
}

/// Declares [`ErrorCode`] with its wire names in one list, so `as_str`, serde and the list of
/// every code cannot disagree.
macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $wire:literal, )*) => {
        /// Every machine-readable error code an HTTP service of ClaraTeach answers with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The code as sent in [`ErrorBody::code`].
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( ErrorCode::$variant => $wire, )*
                }
            }

            /// The code named by a wire string, if it is one of ours.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $( $wire => Some(ErrorCode::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    // Malformed requests, the same for every service.
    /// The request cannot be read: not JSON, wrong content type, missing or malformed parts.
    InvalidRequest = "invalid_request",
    /// The request was read but a value is wrong (type, range, missing field).
    ValidationFailed = "validation_failed",
    /// The request body is over the route's limit.
    PayloadTooLarge = "payload_too_large",
    /// No such route or resource.
    NotFound = "not_found",
    /// The route exists but not with this method.
    MethodNotAllowed = "method_not_allowed",
    /// Missing or wrong credentials.
    Unauthorized = "unauthorized",
    /// Something failed inside the service; the cause is in its log, never in the answer.
    Internal = "internal",
    /// The service is stopping and takes no new work.
    ShuttingDown = "shutting_down",

    // Control plane.
    WorkshopNotFound = "workshop_not_found",
    WorkshopFull = "workshop_full",
    WorkshopRunning = "workshop_running",
    WorkshopStopping = "workshop_stopping",
    WorkshopNotRunning = "workshop_not_running",
    /// The seat was paused by the instructor (issue 12): it resumes where it was.
    SeatPaused = "seat_paused",
    /// No terminal session of that name runs in the seat (the screen of issue 10).
    NoSession = "no_session",
    /// A credential that is valid but may not do this.
    Forbidden = "forbidden",
    /// Templates and seat images (issue 11).
    TemplateExists = "template_exists",
    TemplateNotFound = "template_not_found",
    UnknownTemplate = "unknown_template",
    UnknownImage = "unknown_image",
    /// Standalone sandboxes (issue 14, `/api/sandboxes`).
    UnknownSandbox = "unknown_sandbox",
    SandboxStopped = "sandbox_stopped",
    NameTaken = "name_taken",
    BadName = "bad_name",
    BadNetwork = "bad_network",
    BadLimits = "bad_limits",
    BadCopy = "bad_copy",
    Refused = "refused",
    QuotaExceeded = "quota_exceeded",
    NetworkUnavailable = "network_unavailable",
    MissingInterpreter = "missing_interpreter",
    MissingFile = "missing_file",
    FileNotText = "file_not_text",
    CannotStart = "cannot_start",
    NoCapacity = "no_capacity",
    TooManyAttempts = "too_many_attempts",
    TooManyTickets = "too_many_tickets",
    TicketMismatch = "ticket_mismatch",
    SessionCannotMint = "session_cannot_mint",
    SeatNotJoined = "seat_not_joined",
    SeatUnavailable = "seat_unavailable",
    ReadOnly = "read_only",
    ForbiddenMode = "forbidden_mode",
    MetricsForbidden = "metrics_forbidden",
    ExportUnavailable = "export_unavailable",
    WorkspaceUnreachable = "workspace_unreachable",
    AgentUnavailable = "agent_unavailable",
    AgentAlreadyConnected = "agent_already_connected",
    AgentIdMismatch = "agent_id_mismatch",
    /// A check without a command, and the workshop has none stored (issue 10).
    NoCheckCommand = "no_check_command",

    // Host agent.
    /// The seat has no running workspace on this agent (yet).
    SeatNotReady = "seat_not_ready",
    /// The backend could not create the workspace.
    CreateFailed = "create_failed",

    // Workspace daemon: files.
    BadPath = "bad_path",
    OutsideWorkspace = "outside_workspace",
    PermissionDenied = "permission_denied",
    NotADirectory = "not_a_directory",
    IsADirectory = "is_a_directory",
    NotAFile = "not_a_file",
    AlreadyExists = "already_exists",
    NotEmpty = "not_empty",
    BadBase64 = "bad_base64",
    BadEncoding = "bad_encoding",
    /// A conditional write (`If-Match` / `If-None-Match`) found the file changed since it was read.
    FileChanged = "file_changed",

    // Workspace daemon: run and terminal.
    /// A daemon started ahead of its seat's Start serves nothing before its activation
    /// (`POST /activate`), and takes that only once.
    NotActivated = "not_activated",
    AlreadyActivated = "already_activated",
    BadCommand = "bad_command",
    BadEnv = "bad_env",
    BadTimeout = "bad_timeout",
    BadSession = "bad_session",
    BadMode = "bad_mode",
    BadFormat = "bad_format",
    WebsocketRequired = "websocket_required",

    /// A seat move (issue 13) found no other connected agent with room.
    NoOtherAgent = "no_other_agent",
    /// A seat move while the seat's last files are still being saved or placed elsewhere.
    SeatMoving = "seat_moving",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// `e` and every cause under it, joined by `": "`, for a log line (never for a client).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            let json = serde_json::to_value(code).expect("serialize");
            assert_eq!(json, serde_json::Value::String(code.as_str().into()));
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            assert!(seen.insert(code.as_str()), "duplicate {code}");
        }
        assert_eq!(ErrorCode::parse("bad_json"), None);
    }

    #[test]
    fn body_carries_the_wire_name() {
        let b = ErrorBody::new(ErrorCode::PayloadTooLarge, "too big");
        assert_eq!(b.code, "payload_too_large");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot start seat 3")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn error_chain_names_every_cause() {
        let e = Outer(std::io::Error::other("disk full"));
        assert_eq!(error_chain(&e), "cannot start seat 3: disk full");
    }
}
