//! Picks the isolation backends this host can run, as cloud-hypervisor probes for KVM/MSHV, and
//! builds one behind `Arc<dyn Backend>` for the agent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::sandbox::{self, SandboxBackend, SandboxConfig};
use crate::{Backend, BackendError, BackendKind};

/// What any backend may need; each backend takes the fields it uses.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// The agent's data dir (volumes, run dirs, state).
    pub data_dir: PathBuf,
    /// The `clarateach` binary, run inside each workspace as `clarateach workspace-server`.
    pub daemon_binary: PathBuf,
    /// Sandbox settings; `None` means `SandboxConfig::new(data_dir, daemon_binary)`.
    pub sandbox: Option<SandboxConfig>,
    /// MicroVM settings; `None` means `MicrovmConfig::new(data_dir, image_dir)` with the image
    /// dir from `$CLARATEACH_IMAGE_DIR`, else `<data_dir>/images/default`.
    pub microvm: Option<crate::microvm::MicrovmConfig>,
}

impl BackendConfig {
    pub fn new(data_dir: impl Into<PathBuf>, daemon_binary: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            daemon_binary: daemon_binary.into(),
            sandbox: None,
            microvm: None,
        }
    }

    fn sandbox_config(&self) -> SandboxConfig {
        self.sandbox
            .clone()
            .unwrap_or_else(|| SandboxConfig::new(&self.data_dir, &self.daemon_binary))
    }
}

/// The daemon-only binary that `cargo build -p clarateach` links beside `clarateach`.
pub const SEAT_DAEMON_BINARY: &str = "clarateach-workspace-server";
/// Largest gap between the two binaries' modification times for them to count as one build.
const SAME_BUILD: Duration = Duration::from_secs(300);

/// The binary a sandbox seat runs as its daemon: [`SEAT_DAEMON_BINARY`] beside `exe` when it
/// was built with it (a seat then dirties ~130 KiB of relocated pages instead of the full
/// binary's ~740 KiB, and maps less), else `exe` itself. A daemon built at another time than its
/// agent could speak another protocol, so a sibling whose modification time is more than
/// `SAME_BUILD` away from `exe`'s is not used.
pub fn seat_daemon_binary(exe: &Path) -> PathBuf {
    let sibling = exe.with_file_name(SEAT_DAEMON_BINARY);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let same_build = match (modified(exe), modified(&sibling)) {
        (Some(a), Some(b)) => {
            let gap = a.duration_since(b).or_else(|_| b.duration_since(a));
            gap.is_ok_and(|g| g <= SAME_BUILD)
        }
        _ => false,
    };
    if same_build && sibling.is_file() {
        sibling
    } else {
        exe.to_path_buf()
    }
}

/// Backends this host can run, the default first.
pub fn probe() -> Vec<BackendKind> {
    let mut kinds = Vec::new();
    match sandbox::available(std::path::Path::new(sandbox::BWRAP)) {
        Ok(()) => kinds.push(BackendKind::Sandbox),
        Err(why) => tracing::info!(%why, "sandbox backend unavailable"),
    }
    match crate::microvm::available() {
        Ok(()) => kinds.push(BackendKind::Microvm),
        Err(why) => tracing::info!(%why, "microvm backend unavailable"),
    }
    kinds
}

/// Builds a backend of `kind`.
pub fn build(kind: BackendKind, cfg: &BackendConfig) -> Result<Arc<dyn Backend>, BackendError> {
    match kind {
        BackendKind::Sandbox => Ok(Arc::new(SandboxBackend::new(cfg.sandbox_config())?)),
        BackendKind::Microvm => {
            let mcfg = cfg.microvm.clone().unwrap_or_else(|| {
                let image = std::env::var_os("CLARATEACH_IMAGE_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| cfg.data_dir.join("images/default"));
                crate::microvm::MicrovmConfig::new(&cfg.data_dir, image)
            });
            Ok(Arc::new(crate::microvm::MicrovmBackend::new(mcfg)?))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_seat_daemon_is_the_sibling_of_the_same_build_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = dir.path().join("clarateach");
        std::fs::write(&exe, "").expect("write");
        assert_eq!(super::seat_daemon_binary(&exe), exe, "no sibling");
        let sibling = dir.path().join(super::SEAT_DAEMON_BINARY);
        let file = std::fs::File::create(&sibling).expect("create");
        assert_eq!(super::seat_daemon_binary(&exe), sibling, "built together");
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        file.set_modified(old).expect("set mtime");
        assert_eq!(super::seat_daemon_binary(&exe), exe, "a stale sibling");
    }
}
