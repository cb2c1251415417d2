//! The one 0600 file write: secrets and records that name secrets (tokens, keys, seat records)
//! are written through a temporary file in the same directory, created 0600 (the umask can only
//! narrow it), synced, then renamed over the target, so a reader sees the old file or the whole
//! new one and never a file anyone else could read. This is the only IO in this crate: four roles
//! had their own copy, with and without the fsync and the rename.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `contents` to `path` atomically, readable by its owner only (mode 0600).
///
/// `sync` fsyncs the file before the rename: secrets that cannot be made again (keys, tokens)
/// want it; records that are rebuilt after a crash can skip its cost.
pub fn write_private(path: &Path, contents: &[u8], sync: bool) -> std::io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // A pre-existing temporary file keeps its old mode through `open`: set it again.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(contents)?;
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates `path` with `contents`, readable by its owner only (0600), synced; fails with
/// `AlreadyExists` when the file exists, so two processes racing to make a secret cannot both
/// believe theirs is the one on disk. For secrets made once and never rewritten.
pub fn create_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()?;
    // The umask cannot widen 0600, but an inherited default ACL could: set it again.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_0600_and_replaces_whole() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("secret.json");
        write_private(&p, b"one", true).expect("write");
        write_private(&p, b"two", false).expect("rewrite");
        assert_eq!(std::fs::read(&p).expect("read"), b"two");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("secret.json.tmp").exists());
    }

    #[test]
    fn create_private_refuses_an_existing_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("key");
        create_private(&p, b"k1").expect("create");
        let e = create_private(&p, b"k2").expect_err("exists");
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).expect("read"), b"k1");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_stale_wide_temp_file_does_not_widen_the_result() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("k");
        let tmp = dir.path().join("k.tmp");
        std::fs::write(&tmp, b"old").expect("stale");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_private(&p, b"new", true).expect("write");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
