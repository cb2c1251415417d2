//! Picks the isolation backends this host can run, as cloud-hypervisor probes for KVM/MSHV, and
//! builds one behind `Arc<dyn Backend>` for the agent.

use std::path::PathBuf;
use std::sync::Arc;

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
