//! Where standalone sandboxes keep their state, resolved as ERA does so a script finds the same
//! sandboxes from any shell: `CLARATEACH_STATE_DIR`, else `/var/lib/clarateach` when writable,
//! else the XDG data dir, else `~/.clarateach`.
//!
//! Layout inside the state dir (0711: sandboxes pass through it to the backend's generated
//! `/etc`, nobody but root lists it):
//! - `sandbox.db`: the embedded store of sandbox records (`db`);
//! - `sandbox.lock`: the lock every state-changing command holds (`lock`);
//! - `sandbox/<id>/out/{stdout,stderr}.log`: the last run's output;
//! - `persist/<id>.img`: the file system (`/workspace` and home) of a cleaned `--persist`
//!   sandbox, unmounted, until `create --persist --name <id>` takes it back or `clean --purge`
//!   drops it (root-only);
//! - `sandbox-backend/`: the isolation backend's data dir (volumes, sockets, seat store). It is
//!   its own directory so a control plane whose data dir is the same `/var/lib/clarateach` never
//!   shares volumes, uids or sockets with it.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Environment variable naming the state dir.
pub const STATE_DIR_ENV: &str = "CLARATEACH_STATE_DIR";
const SYSTEM_DIR: &str = "/var/lib/clarateach";

/// The resolved state directory and the paths inside it.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state dir at `root` (made 0700 by [`StateDir::prepare`]).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Resolves the state dir from the environment (see the module header).
    pub fn resolve() -> Self {
        if let Some(dir) = std::env::var_os(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
            return Self::at(dir);
        }
        if writable_or_creatable(Path::new(SYSTEM_DIR)) {
            return Self::at(SYSTEM_DIR);
        }
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let xdg = std::env::var_os("XDG_DATA_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".local/share")));
        if let Some(xdg) = xdg.filter(|d| writable_or_creatable(d)) {
            return Self::at(xdg.join("clarateach"));
        }
        match home {
            Some(h) => Self::at(h.join(".clarateach")),
            None => Self::at(std::env::temp_dir().join("clarateach")),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the state dir (0711), the root-only `sandbox/` dir and the store file (0600;
    /// SQLite gives its WAL files the same mode) if missing.
    pub fn prepare(&self) -> std::io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.root)?;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o711))?;
        let own = self.root.join("sandbox");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&own)?;
        std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o700))?;
        let db = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(self.db())?;
        db.set_permissions(std::fs::Permissions::from_mode(0o600))
    }

    pub fn db(&self) -> PathBuf {
        self.root.join("sandbox.db")
    }

    pub fn lock(&self) -> PathBuf {
        self.root.join("sandbox.lock")
    }

    /// Directory of one sandbox's own files (its `out/`).
    pub fn sandbox(&self, id: &str) -> PathBuf {
        self.root.join("sandbox").join(id)
    }

    /// Where the last run's stdout and stderr are kept.
    pub fn out(&self, id: &str) -> PathBuf {
        self.sandbox(id).join("out")
    }

    /// Where the file systems of cleaned `--persist` sandboxes wait (root-only).
    pub fn persist_dir(&self) -> PathBuf {
        self.root.join("persist")
    }

    /// The kept file system of the cleaned `--persist` sandbox `id`.
    pub fn persisted(&self, id: &str) -> PathBuf {
        self.persist_dir().join(format!("{id}.img"))
    }

    /// The isolation backend's data dir.
    pub fn backend(&self) -> PathBuf {
        self.root.join("sandbox-backend")
    }
}

/// True when `dir` is writable, or does not exist and its nearest existing parent is.
fn writable_or_creatable(dir: &Path) -> bool {
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.exists() {
            return rustix::fs::access(d, rustix::fs::Access::WRITE_OK).is_ok();
        }
        cur = d.parent();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_dir_under_a_writable_parent_is_creatable() {
        let tmp = tempfile::tempdir().expect("tmp");
        assert!(writable_or_creatable(&tmp.path().join("a/b/c")));
    }

    #[test]
    fn the_store_is_root_only_and_the_root_only_traversable() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().expect("tmp");
        let s = StateDir::at(tmp.path().join("state"));
        s.prepare().expect("prepare");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").mode() & 0o777;
        assert_eq!(mode(s.root()), 0o711);
        assert_eq!(mode(&s.db()), 0o600);
        assert_eq!(mode(&s.root().join("sandbox")), 0o700);
    }

    #[test]
    fn paths_live_under_the_root() {
        let s = StateDir::at("/x");
        assert_eq!(s.db(), Path::new("/x/sandbox.db"));
        assert_eq!(s.out("py-1"), Path::new("/x/sandbox/py-1/out"));
        assert_eq!(s.backend(), Path::new("/x/sandbox-backend"));
    }
}
