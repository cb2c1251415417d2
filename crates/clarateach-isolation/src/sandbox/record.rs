//! The per-seat state file that lets a restarted agent find its sandboxes again: the spec's limits
//! and image, the seat's host uid, the daemon token (a secret the seat knows anyway, it is in its
//! environment; needed to health-check an adopted seat), and the pid of the sandbox with its
//! start time, so a recycled pid is never mistaken for the seat. Mode 0600 in a root-only dir.
//!
//! The workshop's environment (the API key) is never written: it lives in memory only, and the
//! agent passes the spec again (`create`) before every start, after a restart too, because the
//! control plane re-sends every desired seat when the agent reconnects. A record written by an
//! older version with `env` in it is read (so the seat still adopts) and rewritten without it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clarateach_core::agent_proto::SeatKey;
use clarateach_core::Limits;
use serde::{Deserialize, Serialize};

use crate::WorkspaceSpec;

/// What the agent remembers about one seat's sandbox.
#[derive(Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub key: SeatKey,
    pub limits: Limits,
    pub image: Option<String>,
    /// Memory only: skipped when saving.
    #[serde(default, skip_serializing)]
    pub env: BTreeMap<String, String>,
    pub daemon_token: String,
    /// Host uid (and gid) the seat runs as; absent in records of the old shared-uid layout.
    #[serde(default)]
    pub host_uid: Option<u32>,
    /// Host pid of the outer bwrap process while running.
    pub pid: Option<i32>,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time: Option<u64>,
    pub socket: PathBuf,
    /// Relative cgroup name, e.g. `clarateach/ws-abc123/seat-01`.
    pub cgroup: String,
    /// Run ahead of its workshop's Start and not activated yet (`warm`): an agent that finds
    /// one after a restart gives it back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warm: bool,
}

impl std::fmt::Debug for SandboxRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxRecord")
            .field("key", &self.key)
            .field("pid", &self.pid)
            .field("socket", &self.socket)
            .field("cgroup", &self.cgroup)
            .finish_non_exhaustive()
    }
}

impl SandboxRecord {
    pub fn from_spec(spec: &WorkspaceSpec, socket: PathBuf, cgroup: String, host_uid: u32) -> Self {
        Self {
            host_uid: Some(host_uid),
            key: spec.key.clone(),
            limits: spec.limits.clone(),
            image: spec.image.clone(),
            env: spec.env.clone(),
            daemon_token: spec.daemon_token.clone(),
            pid: None,
            start_time: None,
            socket,
            cgroup,
            warm: false,
        }
    }

    /// Writes the record atomically with mode 0600. No fsync: it costs milliseconds per seat
    /// start, and a record lost in a host crash only means its seat is recreated, as after any
    /// reboot.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        clarateach_core::private_file::write_private(path, &bytes, false)
    }

    /// Rewrites an existing record in place: one `pwrite` of the new JSON, padded with spaces
    /// to the old length (whitespace after JSON is valid), so a reader never sees a torn or
    /// shortened record, even if the agent dies mid-way. No new inode, unlike [`Self::save`]:
    /// on a data dir on an unjournaled ext4 every new inode scans past the inodes freed in the
    /// last 30 s, and a class start that saved 200 records by rename paid ~2 ms of kernel time
    /// per seat for it. Falls back to `save` when the record is missing or the write fails.
    pub fn update(&self, path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let rewritten = (|| {
            let file = std::fs::OpenOptions::new().write(true).open(path)?;
            let old_len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
            let mut bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
            if bytes.len() < old_len {
                bytes.resize(old_len, b' ');
            }
            // One page: a single copy into the page cache, never seen half-written.
            if bytes.len() > 4096 {
                return Err(std::io::Error::other("record larger than a page"));
            }
            file.write_all_at(&bytes, 0)
        })();
        match rewritten {
            Ok(()) => Ok(()),
            Err(_) => self.save(path),
        }
    }

    pub fn load(path: &Path) -> std::io::Result<Self> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// True when the recorded process still runs (not a zombie) and is the same process.
    pub fn process_alive(&self) -> bool {
        match (self.pid, self.start_time) {
            (Some(pid), Some(start)) => start_time(pid) == Some(start),
            _ => false,
        }
    }
}

/// Start time of a live (non-zombie) process, from `/proc/<pid>/stat`.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 of a stat line; the command name (field 2) may hold spaces and parentheses, so the
/// fields are counted from the last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn spec_of(env: BTreeMap<String, String>, token: &str) -> WorkspaceSpec {
        WorkspaceSpec {
            key: SeatKey {
                workshop_id: "ws-a".into(),
                seat: 1,
            },
            limits: Limits::default(),
            image: None,
            env,
            daemon_token: token.into(),
        }
    }

    #[test]
    fn parses_start_time_past_odd_command_names() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(line), Some(987654));
        let zombie = "42 (sh) Z 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 0 0";
        assert_eq!(parse_start_time(zombie), None);
        assert!(start_time(std::process::id() as i32).is_some());
    }

    #[test]
    fn saves_private_and_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("seat-01.json");
        let spec = spec_of(
            [("ANTHROPIC_API_KEY".to_string(), "sk-1".to_string())].into(),
            "tok",
        );
        let mut rec =
            SandboxRecord::from_spec(&spec, "/s".into(), "ct/ws-a/seat-01".into(), 200_001);
        rec.pid = Some(std::process::id() as i32);
        rec.start_time = start_time(std::process::id() as i32);
        rec.save(&path).expect("save");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            !text.contains("sk-1"),
            "the API key never reaches the disk: {text}"
        );
        assert!(!text.contains("ANTHROPIC_API_KEY"));
        let back = SandboxRecord::load(&path).expect("load");
        assert!(back.env.is_empty());
        assert_eq!(back.host_uid, Some(200_001));
        assert_eq!(back.daemon_token, "tok");
        assert!(back.process_alive());
        assert!(!format!("{rec:?}").contains("sk-1"));
    }

    #[test]
    fn an_update_in_place_keeps_the_inode_and_always_parses() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("seat-01.json");
        let spec = spec_of(Default::default(), "ahead_a-long-start-up-token-0123456789");
        let mut rec = SandboxRecord::from_spec(&spec, "/s".into(), "c".into(), 200_001);
        rec.warm = true;
        // Missing: written the usual way.
        rec.update(&path).expect("first update saves");
        let inode = std::fs::metadata(&path).expect("meta").ino();
        // Shorter (no `warm`, a shorter token): padded, same inode, loads.
        rec.warm = false;
        rec.daemon_token = "short".into();
        rec.update(&path).expect("update");
        assert_eq!(std::fs::metadata(&path).expect("meta").ino(), inode);
        let back = SandboxRecord::load(&path).expect("a padded record loads");
        assert_eq!((back.daemon_token.as_str(), back.warm), ("short", false));
        // Longer: grows in place.
        rec.daemon_token = "x".repeat(300);
        rec.update(&path).expect("update");
        assert_eq!(std::fs::metadata(&path).expect("meta").ino(), inode);
        assert_eq!(
            SandboxRecord::load(&path).expect("load").daemon_token.len(),
            300
        );
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn old_records_with_env_and_no_uid_still_load() {
        let old = r#"{"key":{"workshop_id":"ws-a","seat":1},"limits":{},"image":null,"env":{"ANTHROPIC_API_KEY":"sk-old"},
            "daemon_token":"t","pid":null,"start_time":null,"socket":"/d/run/ws-a/seat-01/daemon.sock",
            "cgroup":"c"}"#;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("seat-01.json");
        std::fs::write(&path, old).expect("write");
        let rec = SandboxRecord::load(&path).expect("load");
        assert_eq!(rec.host_uid, None);
        rec.save(&path).expect("save");
        assert!(!std::fs::read_to_string(&path)
            .expect("read")
            .contains("sk-old"));
    }
}
