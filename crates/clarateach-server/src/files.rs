//! Secret files in the data dir (signing key, AEAD key, first instructor token): created once
//! with mode 0600 and never rewritten.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why a secret file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Reads `path`, or creates it (0600) with the bytes `make` returns when it does not exist.
pub fn read_or_create_secret_file<E>(
    path: &Path,
    make: impl FnOnce() -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, E>
where
    E: From<FileError>,
{
    match std::fs::read(path) {
        Ok(bytes) => return Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(FileError::Read {
                path: path.into(),
                source,
            }
            .into())
        }
    }
    let bytes = make()?;
    write_secret_file(path, &bytes)?;
    Ok(bytes)
}

/// Writes a new file readable only by its owner; fails if it already exists.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    clarateach_core::private_file::create_private(path, bytes).map_err(|source| FileError::Write {
        path: path.into(),
        source,
    })
}

/// Creates the data dir (0700) if needed.
pub fn ensure_dir(path: &Path) -> Result<(), FileError> {
    let write_err = |source| FileError::Write {
        path: path.into(),
        source,
    };
    if !path.exists() {
        std::fs::create_dir_all(path).map_err(write_err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(write_err)?;
    }
    Ok(())
}

/// Makes an existing file readable only by its owner (the database: its rows are not all
/// secret, but learners' names and reconnect codes are nobody else's business).
pub fn restrict(path: &Path) -> Result<(), FileError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        FileError::Write {
            path: path.into(),
            source,
        }
    })
}
