//! Wire shapes of the instructor's workshop-day toolkit (issue 10): the live screen of a seat's
//! terminal (what the daemon answers on `GET /screen` and the control plane multiplexes on
//! `GET /api/workshops/{id}/screens`) and the shell facts that come with it (cwd, last commands
//! with exit codes, idle time), which the help queue also carries.
//!
//! Everything in a [`ScreenSnapshot`] comes from inside a seat and is data: the learner can print
//! any text and any shell-integration mark. Clients render it as text, never as markup.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Lines of screen a snapshot carries (the tail ending at the cursor or the last text).
pub const SCREEN_LINES: usize = 8;
/// Characters kept per screen line.
pub const SCREEN_LINE_CHARS: usize = 160;
/// Finished commands a snapshot remembers, newest last.
pub const COMMAND_HISTORY: usize = 10;
/// Characters kept of one command line.
pub const COMMAND_CHARS: usize = 300;

/// Where the cursor is, relative to [`ScreenSnapshot::lines`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScreenCursor {
    /// Index into `lines`; may equal `lines.len()` when the cursor is below them.
    pub row: u16,
    pub col: u16,
    pub visible: bool,
}

/// A command the shell finished (from OSC 133 marks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CommandRecord {
    /// The command line as the shell reported it (control characters replaced, bounded).
    pub command: String,
    /// Its exit status; `None` when the shell did not report one.
    pub exit_code: Option<i32>,
    pub finished_at: DateTime<Utc>,
}

/// The live state of one terminal session of a seat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScreenSnapshot {
    /// Session name (`main` unless asked otherwise).
    pub session: String,
    /// Bumped on every change of the screen or the shell facts; `?since=` with the current
    /// value answers 204.
    pub version: u64,
    pub rows: u16,
    pub cols: u16,
    /// The last lines of the screen, without trailing blanks, at most [`SCREEN_LINES`].
    pub lines: Vec<String>,
    pub cursor: ScreenCursor,
    /// The shell's working directory (OSC 7), when it reported one.
    #[serde(default)]
    pub cwd: Option<String>,
    /// The command running now (between the OSC 133 C and D marks).
    #[serde(default)]
    pub running: Option<String>,
    /// Finished commands, oldest first, at most [`COMMAND_HISTORY`].
    #[serde(default)]
    pub commands: Vec<CommandRecord>,
    /// Seconds since the last keystroke reached the shell (or since the session started).
    pub idle_s: u64,
    /// Whether the shell has exited.
    #[serde(default)]
    pub exited: bool,
}

/// One frame of `GET /api/workshops/{id}/screens` (text, JSON): a seat's screen, sent when it
/// changed, at most once a second per seat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScreenFrame {
    pub seat: u32,
    #[serde(flatten)]
    pub screen: ScreenSnapshot,
}

/// Longest help message kept.
pub const HELP_MESSAGE_CHARS: usize = 500;

/// Where a help request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HelpStatus {
    /// Waiting in the queue.
    Open,
    /// An instructor is on the way.
    Claimed,
    Resolved,
}

impl HelpStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Claimed => "claimed",
            Self::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => Self::Open,
            "claimed" => Self::Claimed,
            "resolved" => Self::Resolved,
            _ => return None,
        })
    }
}

/// `POST /api/session/help`: a learner asks for help. The context (cwd, last commands) is
/// gathered by the control plane from the seat's terminal; the UI adds the open file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AskHelpRequest {
    #[serde(default)]
    pub message: Option<String>,
    /// Path of the file open in the learner's editor.
    #[serde(default)]
    pub open_file: Option<String>,
}

/// A help request as the instructor's queue shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HelpRequest {
    /// `help-...`.
    pub id: String,
    pub workshop_id: String,
    pub seat: u32,
    /// The learner's name, when they gave one.
    pub name: Option<String>,
    pub message: Option<String>,
    pub cwd: Option<String>,
    /// The seat's last commands with exit codes, oldest first.
    pub commands: Vec<CommandRecord>,
    pub open_file: Option<String>,
    pub status: HelpStatus,
    pub created_at: DateTime<Utc>,
    /// Name of the instructor who claimed it.
    pub claimed_by: Option<String>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// `GET /api/workshops/{id}/help`: open and claimed requests, longest waiting first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListHelpResponse {
    pub requests: Vec<HelpRequest>,
}

/// `GET|POST /api/session/help` for the learner: their request (if any) and their place.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HelpStatusResponse {
    /// The learner's open or claimed request; `None` when they have none.
    pub request: Option<HelpRequest>,
    /// 1-based place among open requests (claimed ones are no longer waiting); `None` when
    /// not waiting.
    pub position: Option<u32>,
}

/// Bounds a text from a seat: control characters become spaces, at most `max` characters.
pub fn bounded_text(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_flat_json() {
        let frame = ScreenFrame {
            seat: 3,
            screen: ScreenSnapshot {
                session: "main".into(),
                version: 7,
                rows: 24,
                cols: 80,
                lines: vec!["$ ls".into()],
                cursor: ScreenCursor::default(),
                cwd: None,
                running: None,
                commands: vec![],
                idle_s: 0,
                exited: false,
            },
        };
        let v = serde_json::to_value(&frame).expect("json");
        assert_eq!(v["seat"], 3);
        assert_eq!(v["lines"][0], "$ ls");
        assert!(v.get("cursor").is_some());
        let back: ScreenFrame = serde_json::from_value(v).expect("back");
        assert_eq!(back, frame);
    }

    #[test]
    fn seat_text_is_bounded_and_has_no_controls() {
        assert_eq!(bounded_text("a\u{1b}[31mb\u{7}", 100), "a [31mb ");
        assert_eq!(bounded_text("éééé", 2), "éé");
    }
}
