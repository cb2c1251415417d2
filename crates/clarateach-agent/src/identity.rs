//! What the agent remembers across restarts, kept under `{data_dir}/agent/`: its id (so the
//! control plane recognises it after a restart) and the bearer token of every seat's workspace
//! daemon (so a re-adopted workspace can still be reached). Secrets are written 0600.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clarateach_core::agent_proto::SeatKey;

/// Errors reading or writing the agent's own files.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot create the agent state directory {0}")]
    CreateDir(PathBuf, #[source] std::io::Error),
    #[error("cannot read {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("cannot write {0}")]
    Write(PathBuf, #[source] std::io::Error),
    #[error("{0} is not valid JSON")]
    Parse(PathBuf, #[source] serde_json::Error),
}

/// A random secret of 256 bits (64 hex digits).
pub fn random_token() -> String {
    clarateach_core::secret::random_token("")
}

/// Writes `contents` to `path` atomically with mode 0600 (synced: these secrets cannot be made
/// again without re-adopting every seat).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), IdentityError> {
    clarateach_core::private_file::write_private(path, contents, true)
        .map_err(|e| IdentityError::Write(path.to_path_buf(), e))
}

/// The agent's directory inside the data dir, created on first use.
pub fn state_dir(data_dir: &Path) -> Result<PathBuf, IdentityError> {
    let dir = data_dir.join("agent");
    std::fs::create_dir_all(&dir).map_err(|e| IdentityError::CreateDir(dir.clone(), e))?;
    Ok(dir)
}

/// Loads the agent id, creating `agent-<hostname>-<random>` on first start.
pub fn load_or_create_agent_id(data_dir: &Path, hostname: &str) -> Result<String, IdentityError> {
    let path = state_dir(data_dir)?.join("agent-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(IdentityError::Read(path, e)),
    }
    let host: String = hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(32)
        .collect();
    let suffix: String = random_token()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(6)
        .collect();
    let id = format!(
        "agent-{}-{}",
        if host.is_empty() { "host" } else { &host },
        suffix.to_lowercase()
    );
    write_private(&path, id.as_bytes())?;
    Ok(id)
}

/// Records `id` as the agent's id (given with `--id`, the id its token is bound to), so a later
/// start without the flag registers under the same id; returns it.
pub fn store_agent_id(data_dir: &Path, id: &str) -> Result<String, IdentityError> {
    let path = state_dir(data_dir)?.join("agent-id");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current.trim() != id {
        write_private(&path, id.as_bytes())?;
    }
    Ok(id.to_string())
}

/// The host name, for registration and display.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Per-seat daemon tokens, persisted so re-adopted workspaces stay reachable after a restart.
#[derive(Debug)]
pub struct DaemonTokens {
    path: PathBuf,
    tokens: BTreeMap<String, String>,
    /// Changed since the last save ([`Self::mint`], [`Self::forget`]).
    dirty: bool,
}

fn file_key(key: &SeatKey) -> String {
    format!("{}/{}", key.workshop_id, key.seat)
}

impl DaemonTokens {
    /// Loads `{data_dir}/agent/daemon-tokens.json` (empty when missing).
    pub fn load(data_dir: &Path) -> Result<Self, IdentityError> {
        let path = state_dir(data_dir)?.join("daemon-tokens.json");
        let tokens = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| IdentityError::Parse(path.clone(), e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(IdentityError::Read(path, e)),
        };
        Ok(Self {
            path,
            tokens,
            dirty: false,
        })
    }

    pub fn get(&self, key: &SeatKey) -> Option<&str> {
        self.tokens.get(&file_key(key)).map(String::as_str)
    }

    /// The seat's token, minted and persisted when it has none yet.
    pub fn get_or_create(&mut self, key: &SeatKey) -> Result<String, IdentityError> {
        if let Some(t) = self.get(key) {
            return Ok(t.to_string());
        }
        let token = random_token();
        self.tokens.insert(file_key(key), token.clone());
        self.save()?;
        Ok(token)
    }

    /// The seat's token, minted in memory when it has none yet; [`Self::flush`] persists it.
    /// A class start mints hundreds at once: one save for all of them instead of one each
    /// (every save rewrites the whole file and syncs it).
    pub fn mint(&mut self, key: &SeatKey) -> String {
        if let Some(t) = self.get(key) {
            return t.to_string();
        }
        let token = random_token();
        self.tokens.insert(file_key(key), token.clone());
        self.dirty = true;
        token
    }

    /// Forgets the seat's token in memory; [`Self::flush`] persists that.
    pub fn forget(&mut self, key: &SeatKey) {
        if self.tokens.remove(&file_key(key)).is_some() {
            self.dirty = true;
        }
    }

    /// Saves the tokens if [`Self::mint`] or [`Self::forget`] changed them.
    pub fn flush(&mut self) -> Result<(), IdentityError> {
        if self.dirty {
            self.save()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Forgets the seat's token (its workspace is gone).
    pub fn remove(&mut self, key: &SeatKey) -> Result<(), IdentityError> {
        if self.tokens.remove(&file_key(key)).is_some() {
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> Result<(), IdentityError> {
        let json = serde_json::to_vec(&self.tokens)
            .map_err(|e| IdentityError::Parse(self.path.clone(), e))?;
        write_private(&self.path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn minted_tokens_reach_the_disk_on_flush_only_and_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut tokens = DaemonTokens::load(dir.path()).expect("load");
        let keys: Vec<SeatKey> = (1..=3)
            .map(|seat| SeatKey {
                workshop_id: "ws-batch1".into(),
                seat,
            })
            .collect();
        let minted: Vec<String> = keys.iter().map(|k| tokens.mint(k)).collect();
        assert_eq!(tokens.mint(&keys[0]), minted[0], "a seat keeps its token");
        let on_disk = || DaemonTokens::load(dir.path()).expect("reload");
        assert!(on_disk().get(&keys[0]).is_none(), "not saved before flush");
        tokens.flush().expect("flush");
        let saved = on_disk();
        for (k, t) in keys.iter().zip(&minted) {
            assert_eq!(saved.get(k), Some(t.as_str()));
        }
        tokens.forget(&keys[1]);
        tokens.flush().expect("flush");
        assert!(
            on_disk().get(&keys[1]).is_none(),
            "forgotten on disk after flush"
        );
        assert_eq!(on_disk().get(&keys[2]), Some(minted[2].as_str()));
    }

    #[test]
    fn agent_id_is_stable_and_tokens_persist_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create_agent_id(dir.path(), "my host!").expect("id");
        assert!(a.starts_with("agent-myhost-"), "{a}");
        assert_eq!(load_or_create_agent_id(dir.path(), "other").expect("id"), a);
        assert_eq!(store_agent_id(dir.path(), "gpu-1").expect("set"), "gpu-1");
        assert_eq!(
            load_or_create_agent_id(dir.path(), "x").expect("id"),
            "gpu-1"
        );

        let key = SeatKey {
            workshop_id: "ws-abc123".into(),
            seat: 3,
        };
        let mut tokens = DaemonTokens::load(dir.path()).expect("load");
        let t = tokens.get_or_create(&key).expect("create");
        assert_eq!(t.len(), 64);
        let again = DaemonTokens::load(dir.path()).expect("reload");
        assert_eq!(again.get(&key), Some(t.as_str()));
        let mode = std::fs::metadata(dir.path().join("agent/daemon-tokens.json"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        tokens.remove(&key).expect("remove");
        assert_eq!(
            DaemonTokens::load(dir.path()).expect("reload").get(&key),
            None
        );
    }
}
