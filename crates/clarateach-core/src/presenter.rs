//! API types of the instructor's presenting tools (issue 10): announcements shown as a banner in
//! every learner's UI, the spotlight (one terminal shared read-only to every learner as a
//! "Presenter" tab), the learner event stream that carries both live, and the terminal
//! recordings (asciicast v2) the agent keeps per seat.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most characters an announcement may have.
pub const MAX_ANNOUNCEMENT_CHARS: usize = 500;

/// `POST /api/workshops/{id}/announcements`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnounceRequest {
    pub message: String,
}

/// One announcement of a workshop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Announcement {
    /// `an-` and random characters.
    pub id: String,
    pub message: String,
    /// RFC 3339.
    pub created_at: String,
}

/// The workshop's live announcements, newest last.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AnnouncementList {
    pub announcements: Vec<Announcement>,
}

/// `PUT /api/workshops/{id}/spotlight`: which terminal to share with every learner.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpotlightRequest {
    pub seat: u32,
    /// Terminal session name; `main` when absent.
    #[serde(default)]
    pub session: Option<String>,
}

/// The terminal currently shared with every learner of a workshop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Spotlight {
    pub seat: u32,
    pub session: String,
    /// RFC 3339.
    pub since: String,
}

/// `GET /api/workshops/{id}/spotlight` and `GET /api/session/spotlight`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpotlightState {
    pub spotlight: Option<Spotlight>,
}

/// A frame of the learner event stream (`GET /api/session/events`, WebSocket): a full snapshot
/// of one topic whenever it changes (and once at connect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LearnerEvent {
    Announcements { announcements: Vec<Announcement> },
    Spotlight { spotlight: Option<Spotlight> },
}

/// One recorded terminal connection of a seat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordingInfo {
    /// File name, e.g. `main-1764590000123.cast`: `[a-z0-9_-]+-<unix ms>.cast`.
    pub name: String,
    pub session: String,
    /// Unix time in milliseconds when the recording started.
    pub started_ms: u64,
    pub bytes: u64,
}

/// `GET /api/workshops/{id}/seats/{seat}/recordings`, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecordingList {
    pub recordings: Vec<RecordingInfo>,
}

/// Whether `name` is a recording file name as the agent writes them (and nothing that could
/// name another file).
pub fn valid_recording_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".cast") else {
        return false;
    };
    let Some((session, ms)) = stem.rsplit_once('-') else {
        return false;
    };
    valid_session(session)
        && !ms.is_empty()
        && ms.len() <= 20
        && ms.bytes().all(|b| b.is_ascii_digit())
}

/// Terminal session names the recorder accepts in file names: 1-32 of `[A-Za-z0-9_-]`.
pub fn valid_session(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_names() {
        assert!(valid_recording_name("main-1764590000123.cast"));
        assert!(valid_recording_name("my-tab-1.cast"));
        for bad in [
            "",
            ".cast",
            "main.cast",
            "main-.cast",
            "../x-1.cast",
            "main-12a.cast",
            "main-1.cast/",
            "main-1.txt",
            "a/b-1.cast",
        ] {
            assert!(!valid_recording_name(bad), "{bad}");
        }
    }

    #[test]
    fn event_frames() {
        let e = LearnerEvent::Spotlight { spotlight: None };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"spotlight","spotlight":null}"#
        );
    }
}
