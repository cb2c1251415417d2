//! Wire shapes of the instructor's broadcast, checks and audit (issue 10): files handed out to
//! every seat without clobbering what learners changed, one command run in every seat at once
//! with the latest results kept, and the record of every time an instructor looked into, typed
//! in, wrote to, ran in, reset or exported a seat.
//!
//! Results carry text from inside seats (a check's stdout, a file path a seat reported): clients
//! render it as text, never as markup.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Files one broadcast may carry.
pub const BROADCAST_MAX_FILES: usize = 200;
/// Bytes of all files of one broadcast together (decoded).
pub const BROADCAST_MAX_BYTES: usize = 4 << 20;
/// Bytes of stdout and of stderr kept per seat of a check.
pub const CHECK_OUTPUT_BYTES: usize = 16 * 1024;
/// Longest check command.
pub const CHECK_COMMAND_CHARS: usize = 1000;
/// Default and largest check timeout, seconds.
pub const CHECK_DEFAULT_TIMEOUT_S: u64 = 30;
pub const CHECK_MAX_TIMEOUT_S: u64 = 300;
/// Audit events one `GET .../audit` lists at most (newest first).
pub const AUDIT_PAGE: u32 = 500;

/// How a broadcast file's `content` is spelled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileEncoding {
    #[default]
    #[serde(alias = "utf-8")]
    Utf8,
    Base64,
}

/// One file to hand out: a path relative to the seat's workspace.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BroadcastFile {
    pub path: String,
    pub content: String,
    #[serde(default)]
    pub encoding: FileEncoding,
}

/// `POST /api/workshops/{id}/broadcast` as JSON: either `files`, or `from_seat` + `dir` (every
/// file under that directory of that seat, as it is now). A tar.gz body
/// (`Content-Type: application/gzip`) is the third form.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastRequest {
    #[serde(default)]
    pub files: Vec<BroadcastFile>,
    #[serde(default)]
    pub from_seat: Option<u32>,
    /// Directory of `from_seat` to hand out (relative; empty or absent: the whole workspace).
    #[serde(default)]
    pub dir: Option<String>,
}

/// What happened to one file in one seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BroadcastOutcome {
    /// The seat had no such file, or had not changed it since the last broadcast: replaced.
    Written,
    /// The learner had changed it: the new version was merged into theirs.
    Merged,
    /// The learner's changes and the new version overlap: their file is kept and the new one
    /// is beside it as `new_path` (`name.new`).
    Conflicted,
    /// Not delivered (seat unreachable, path is a directory or a link out of the workspace...).
    Failed,
}

/// One file's outcome in one seat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BroadcastFileResult {
    pub path: String,
    pub outcome: BroadcastOutcome,
    /// Where the new version went when it `conflicted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_path: Option<String>,
    /// Why it `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One seat's part of a broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SeatBroadcast {
    pub seat: u32,
    pub files: Vec<BroadcastFileResult>,
}

/// The answer to a broadcast, kept as the workshop's latest one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BroadcastReport {
    pub id: String,
    pub at: DateTime<Utc>,
    /// Paths handed out.
    pub files: Vec<String>,
    pub seats: Vec<SeatBroadcast>,
    pub duration_ms: u64,
}

/// `GET /api/workshops/{id}/broadcast`: the latest report, `null` before the first broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LatestBroadcastResponse {
    pub report: Option<BroadcastReport>,
}

/// `GET /api/session/broadcast`: what the latest broadcast brought the learner's seat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LearnerBroadcast {
    pub id: Option<String>,
    pub at: Option<DateTime<Utc>>,
    pub files: Vec<BroadcastFileResult>,
}

/// `POST /api/workshops/{id}/checks`. Without `command`, the workshop's stored check command
/// (or its template's) runs; `save` stores this one as the workshop's.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    #[serde(default)]
    pub command: Option<String>,
    /// Default 30, at most 300.
    #[serde(default)]
    pub timeout_s: Option<u64>,
    #[serde(default)]
    pub save: bool,
}

/// One seat's result: the command's exit status and bounded output, or why it did not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckResult {
    pub seat: u32,
    /// `None` when it did not finish (timeout, unreachable seat).
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u64,
    #[serde(default)]
    pub timed_out: bool,
    /// stdout or stderr was cut at [`CHECK_OUTPUT_BYTES`].
    #[serde(default)]
    pub truncated: bool,
    /// `exit_code == 0`.
    pub passed: bool,
    /// Why the seat gave no result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A check run across every running seat: the answer to `POST .../checks`, kept as the latest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckRun {
    pub command: String,
    pub timeout_s: u64,
    pub ran_at: DateTime<Utc>,
    /// Wall time of the whole run, all seats.
    pub duration_ms: u64,
    pub results: Vec<CheckResult>,
}

/// A workshop's stored check command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SavedCheck {
    pub command: String,
    pub timeout_s: u64,
}

/// `GET /api/workshops/{id}/checks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChecksResponse {
    /// The command a run without `command` uses (stored, else the template's check).
    pub saved: Option<SavedCheck>,
    pub latest: Option<CheckRun>,
}

/// What an instructor did to a seat (or to every seat).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Watch,
    TakeOver,
    Broadcast,
    Check,
    Reset,
    Export,
}

impl AuditAction {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Watch => "watch",
            Self::TakeOver => "take_over",
            Self::Broadcast => "broadcast",
            Self::Check => "check",
            Self::Reset => "reset",
            Self::Export => "export",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Watch,
            Self::TakeOver,
            Self::Broadcast,
            Self::Check,
            Self::Reset,
            Self::Export,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    pub at: DateTime<Utc>,
    /// The instructor's id.
    pub actor: String,
    /// The instructor's name, when the account still exists.
    #[serde(default)]
    pub actor_name: Option<String>,
    pub action: AuditAction,
    /// The seat, or `None` for every seat of the workshop.
    pub seat: Option<u32>,
    /// A short summary (command run, files handed out).
    #[serde(default)]
    pub detail: Option<String>,
}

/// `GET /api/workshops/{id}/audit`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditResponse {
    pub events: Vec<AuditEvent>,
}

/// `GET /api/session/presence`: whether an instructor is watching the learner's terminal or
/// typing in it right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Presence {
    pub watching: bool,
    pub typing: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_and_actions_spell_as_documented() {
        let f: BroadcastFile =
            serde_json::from_str(r#"{"path":"a","content":"x","encoding":"utf-8"}"#).expect("f");
        assert_eq!(f.encoding, FileEncoding::Utf8);
        let f: BroadcastFile = serde_json::from_str(r#"{"path":"a","content":"eA=="}"#).expect("f");
        assert_eq!(f.encoding, FileEncoding::Utf8, "utf8 by default");
        assert!(serde_json::from_str::<BroadcastRequest>(r#"{"file":[]}"#).is_err());
        for a in [AuditAction::TakeOver, AuditAction::Export] {
            let wire = serde_json::to_value(a).expect("json");
            assert_eq!(wire, a.as_str());
            assert_eq!(AuditAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(AuditAction::parse("root"), None);
    }
}
