//! Running the host tools the builder relies on (debootstrap, apt-get, dpkg-deb, mkfs.ext4),
//! turning a non-zero exit into an `ImageError::Tool` that carries the tail of stderr.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::ImageError;

/// Runs `cmd` to completion and returns its stdout; fails with the tail of its stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<String, ImageError> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ImageError::Spawn {
            tool: tool.clone(),
            source,
        })?;
    check(&tool, &out)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn check(tool: &str, out: &Output) -> Result<(), ImageError> {
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
    Err(ImageError::Tool {
        tool: tool.to_string(),
        status: out.status.to_string(),
        stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}

/// Whether an executable named `name` is on PATH (or in the sbin dirs root tools live in).
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(std::path::PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Recursive size of a tree in bytes (files rounded up to 4 KiB blocks), without following links.
pub(crate) fn tree_size(dir: &Path) -> Result<u64, ImageError> {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(ImageError::io("reading a directory", &d))?;
        for entry in entries {
            let entry = entry.map_err(ImageError::io("reading a directory", &d))?;
            let meta = entry
                .path()
                .symlink_metadata()
                .map_err(ImageError::io("stat", entry.path()))?;
            total += meta.len().div_ceil(4096) * 4096 + 256;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(total)
}

/// SHA-256 of a file, hex encoded.
pub(crate) fn sha256_file(path: &Path) -> Result<String, ImageError> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path).map_err(ImageError::io("opening", path))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(ImageError::io("hashing", path))?;
    Ok(hex(&hasher.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
