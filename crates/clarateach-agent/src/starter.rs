//! Starter files of a workshop's template (issue 11), copied into a seat's volume once: when the
//! seat is created and before anything of the learner runs in it. A marker next to the volume
//! (root-owned, outside the seat's view) records the archive's SHA-256, so a workshop stop/start
//! or an agent restart never copies again, and even a first copy never overwrites a file that is
//! already there (files are created with `create_new`).
//!
//! The archive comes from the control plane but is treated as hostile anyway: only plain
//! directories and regular files with relative, `..`-free paths are taken (no links, devices or
//! setuid bits), an existing symlink on the way is never followed, and the total size and entry
//! count are capped. Files are owned by the seat's uid.

use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Caps on what one archive may unpack to.
const MAX_BYTES: u64 = 64 << 20;
const MAX_ENTRIES: usize = 10_000;

/// Why the starter could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum StarterError {
    #[error("the starter archive is not base64")]
    Base64,
    #[error("the starter archive's SHA-256 does not match")]
    Digest,
    #[error("the starter archive is not a valid gzipped tar")]
    Archive(#[source] std::io::Error),
    #[error("the starter archive unpacks to more than {MAX_BYTES} bytes or {MAX_ENTRIES} entries")]
    TooBig,
    #[error("writing starter file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The marker of `volume`: `<volume>.starter`, beside the mount point, never inside it.
pub fn marker(volume: &Path) -> PathBuf {
    let mut m = volume.as_os_str().to_owned();
    m.push(".starter");
    PathBuf::from(m)
}

/// Copies the starter into `volume` unless its marker says it was; returns how many files were
/// written (0 when already applied). Blocking.
pub fn apply(
    volume: &Path,
    owner: Option<(u32, u32)>,
    sha256: &str,
    tar_gz_b64: &str,
) -> Result<usize, StarterError> {
    let mark = marker(volume);
    if mark.exists() {
        return Ok(0);
    }
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(tar_gz_b64)
        .map_err(|_| StarterError::Base64)?;
    if hex_sha256(&bytes) != sha256 {
        return Err(StarterError::Digest);
    }
    let n = unpack(&bytes, volume, owner)?;
    std::fs::write(&mark, sha256).map_err(|source| StarterError::Write {
        path: mark.clone(),
        source,
    })?;
    Ok(n)
}

fn unpack(bytes: &[u8], volume: &Path, owner: Option<(u32, u32)>) -> Result<usize, StarterError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let (mut total, mut count, mut files) = (0u64, 0usize, 0usize);
    let entries = archive.entries().map_err(StarterError::Archive)?;
    for entry in entries {
        let mut entry = entry.map_err(StarterError::Archive)?;
        count += 1;
        if count > MAX_ENTRIES {
            return Err(StarterError::TooBig);
        }
        let Some(rel) = safe_path(&entry.path().map_err(StarterError::Archive)?) else {
            continue;
        };
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        let dest = volume.join(&rel);
        if !ensure_parents(volume, &rel, owner) {
            continue;
        }
        let werr = |source| StarterError::Write {
            path: dest.clone(),
            source,
        };
        if kind.is_dir() {
            match std::fs::symlink_metadata(&dest) {
                Ok(_) => continue,
                Err(_) => {
                    std::fs::create_dir(&dest).map_err(werr)?;
                    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode | 0o700))
                        .map_err(werr)?;
                }
            }
        } else if kind.is_file() {
            total += entry.size();
            if total > MAX_BYTES {
                return Err(StarterError::TooBig);
            }
            // create_new never follows a symlink and never overwrites a learner's file.
            let mut file = match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode | 0o600)
                .open(&dest)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(werr(e)),
            };
            let mut limited = (&mut entry).take(MAX_BYTES);
            std::io::copy(&mut limited, &mut file).map_err(werr)?;
            files += 1;
        } else {
            continue;
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(&dest, Some(uid), Some(gid)).map_err(werr)?;
        }
    }
    Ok(files)
}

/// `p` with a leading `./` dropped, when it has only normal components.
fn safe_path(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Makes the missing ancestors of `volume/rel` below `volume` (owned by `owner`); false when one
/// exists but is not a real directory (a symlink is never followed).
fn ensure_parents(volume: &Path, rel: &Path, owner: Option<(u32, u32)>) -> bool {
    let mut at = volume.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for c in &parts[..parts.len().saturating_sub(1)] {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => return false,
            Err(_) => {
                if std::fs::create_dir(&at).is_err() {
                    return false;
                }
                if let Some((uid, gid)) = owner {
                    let _ = std::os::unix::fs::lchown(&at, Some(uid), Some(gid));
                }
            }
        }
    }
    true
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> (String, String) {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let tar = b.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).expect("gz");
        let bytes = gz.finish().expect("gz");
        (
            hex_sha256(&bytes),
            base64::engine::general_purpose::STANDARD.encode(bytes),
        )
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o4755);
        h.set_entry_type(tar::EntryType::Regular);
        // Raw name bytes, so hostile paths (`../x`, `/etc/x`) reach the unpacker as they are.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, data).expect("append");
    }

    #[test]
    fn copies_once_and_never_over_learner_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vol = dir.path().join("seat-01");
        std::fs::create_dir(&vol).expect("vol");
        let (sha, b64) = archive(|b| {
            file(b, "README.md", b"hello");
            file(b, "src/main.py", b"print(1)");
        });
        std::fs::write(vol.join("README.md"), "learner's own").expect("learner file");
        assert_eq!(apply(&vol, None, &sha, &b64).expect("apply"), 1);
        assert_eq!(
            std::fs::read_to_string(vol.join("README.md")).expect("read"),
            "learner's own"
        );
        assert_eq!(
            std::fs::read_to_string(vol.join("src/main.py")).expect("read"),
            "print(1)"
        );
        let mode = std::fs::metadata(vol.join("src/main.py"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7000, 0, "no setuid from an archive");
        // Second time (workshop stop/start): the marker says done.
        std::fs::remove_file(vol.join("src/main.py")).expect("learner deletes");
        assert_eq!(apply(&vol, None, &sha, &b64).expect("again"), 0);
        assert!(!vol.join("src/main.py").exists());
        assert!(marker(&vol).is_file());
    }

    #[test]
    fn hostile_archives_write_nothing_outside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vol = dir.path().join("v");
        std::fs::create_dir(&vol).expect("vol");
        std::os::unix::fs::symlink(dir.path(), vol.join("link")).expect("symlink");
        let (sha, b64) = archive(|b| {
            file(b, "../escape", b"x");
            file(b, "/abs-escape", b"x");
            file(b, "link/through-symlink", b"x");
            file(b, "ok.txt", b"ok");
        });
        assert_eq!(apply(&vol, None, &sha, &b64).expect("apply"), 1);
        assert!(!dir.path().join("escape").exists());
        assert!(!dir.path().join("through-symlink").exists());
        assert!(!Path::new("/abs-escape").exists());
        assert!(vol.join("ok.txt").is_file());
        // A wrong digest or garbage is refused.
        let other = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            apply(other.path(), None, "00", &b64),
            Err(StarterError::Digest)
        ));
        assert!(matches!(
            apply(other.path(), None, "00", "!!"),
            Err(StarterError::Base64)
        ));
    }
}
