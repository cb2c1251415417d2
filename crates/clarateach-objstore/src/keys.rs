//! Where a seat's files live in the bucket, and the rules that keep a key from ever naming a
//! place outside the seat when it is turned back into a path.
//!
//! Layout: `{prefix}/workshops/{workshop}/seats/{seat}/files/{path in /workspace}`, one object
//! per regular file, each path component one key part (percent-encoded by `object_store`, so a
//! learner's `%2F` or `..` in a file name stays a literal name). Turning a key back into a path
//! ([`SeatFiles::relative`]) decodes every part and refuses empty, `.`, `..` and parts holding
//! `/` or NUL, and keys outside the seat's prefix: a key written by anyone with bucket access
//! can name at worst a file below the seat's root. The restore writes by file descriptor below
//! that root anyway (`RESOLVE_BENEATH`, no symlinks), so these rules are the first of two walls.

use object_store::path::{Path, PathPart};
use percent_encoding::percent_decode_str;

/// Deepest path a key may name (the export walker's limit too).
pub const MAX_COMPONENTS: usize = 128;

/// The prefix of every seat of a workshop.
pub fn workshop_prefix(prefix: &str, workshop_id: &str) -> Path {
    let base = Path::from(prefix);
    let parts = base
        .parts()
        .chain([PathPart::from("workshops"), PathPart::from(workshop_id)]);
    Path::from_iter(parts)
}

/// One seat's place in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatFiles {
    files: Path,
}

impl SeatFiles {
    pub fn new(prefix: &str, workshop_id: &str, seat: u32) -> Self {
        let seat = seat.to_string();
        let base = workshop_prefix(prefix, workshop_id);
        let parts = base.parts().chain([
            PathPart::from("seats"),
            PathPart::from(seat.as_str()),
            PathPart::from("files"),
        ]);
        Self {
            files: Path::from_iter(parts),
        }
    }

    /// The prefix under which every file of the seat is an object.
    pub fn prefix(&self) -> &Path {
        &self.files
    }

    /// The key of a file at `rel` (`/`-separated bytes below the volume root, as the walker
    /// gives it); `None` for names that are not UTF-8 (not synced, and reported) or a path that
    /// is not plainly relative.
    pub fn key(&self, rel: &[u8]) -> Option<Path> {
        let rel = std::str::from_utf8(rel).ok()?;
        let mut parts: Vec<PathPart<'_>> = self.files.parts().collect();
        for c in rel.split('/') {
            if !component_ok(c) {
                return None;
            }
            parts.push(PathPart::from(c));
        }
        Some(Path::from_iter(parts))
    }

    /// The relative path (components, each checked) a key of this seat names; `None` when the
    /// key is not below the seat's prefix or any part could leave the seat's root.
    pub fn relative(&self, key: &Path) -> Option<Vec<String>> {
        let mut parts = key.prefix_match(&self.files)?;
        let mut out = Vec::new();
        for part in parts.by_ref() {
            let decoded = percent_decode_str(part.as_ref()).decode_utf8().ok()?;
            if !component_ok(&decoded) || out.len() >= MAX_COMPONENTS {
                return None;
            }
            out.push(decoded.into_owned());
        }
        (!out.is_empty()).then_some(out)
    }
}

/// A name that is one plain component: not empty, `.` or `..`, no `/` or NUL.
fn component_ok(c: &str) -> bool {
    !c.is_empty() && c != "." && c != ".." && !c.contains(['/', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_layout_and_round_trip() {
        let s = SeatFiles::new("ct/prod", "ws-abc123", 7);
        assert_eq!(
            s.prefix().as_ref(),
            "ct/prod/workshops/ws-abc123/seats/7/files"
        );
        let k = s.key(b"src/main.py").expect("key");
        assert_eq!(
            k.as_ref(),
            "ct/prod/workshops/ws-abc123/seats/7/files/src/main.py"
        );
        assert_eq!(s.relative(&k).expect("rel"), ["src", "main.py"]);
        // Odd but legal names stay literal names.
        for name in ["%2F..", "a%2Fb", "..x", "name with spaces", "ünï", "#?*"] {
            let k = s.key(name.as_bytes()).expect("key");
            assert_eq!(s.relative(&k).expect("rel"), [name], "{k}");
        }
        let bare = SeatFiles::new("", "ws-a", 1);
        assert_eq!(bare.prefix().as_ref(), "workshops/ws-a/seats/1/files");
    }

    #[test]
    fn no_key_names_a_place_outside_the_seat() {
        let s = SeatFiles::new("", "ws-a", 1);
        for rel in [
            &b"../x"[..],
            b"/etc/shadow",
            b"a//b",
            b"./x",
            b"a/..",
            b"",
            b"\xff",
        ] {
            assert!(s.key(rel).is_none(), "{:?}", String::from_utf8_lossy(rel));
        }
        // Keys someone else wrote into the bucket: percent-encoded dots and slashes, other
        // seats, the seat prefix itself.
        for raw in [
            "workshops/ws-a/seats/1/files/%2E%2E/x",
            "workshops/ws-a/seats/1/files/a/%2E",
            "workshops/ws-a/seats/1/files/a%2F..%2F..%2Fetc",
            "workshops/ws-a/seats/1/files/x%00y",
            "workshops/ws-a/seats/2/files/x",
            "workshops/ws-a/seats/1/files",
            "workshops/ws-a/seats/1/filesx/y",
            "other/x",
        ] {
            // A listing hands keys over as parsed paths; one that does not parse never arrives.
            if let Ok(key) = Path::parse(raw) {
                assert!(s.relative(&key).is_none(), "{raw}");
            }
        }
    }
}
