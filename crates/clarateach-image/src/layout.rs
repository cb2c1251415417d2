//! The files of a built image directory and its manifest: the one place the builder, the
//! backends and the tests agree on names.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ImageError;

/// Kernel modules the guest loads, in this order (dependencies first). The cloud kernel builds
/// virtio as modules; `button` and `evdev` let guest-init see the ACPI power button that QMP's
/// `system_powerdown` presses, for a clean shutdown.
pub const GUEST_MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_mmio",
    "failover",
    "net_failover",
    "virtio_net",
    "virtio_blk",
    "button",
    "evdev",
];

/// Where the modules live inside the initramfs and the rootfs.
pub const GUEST_MODULE_DIR: &str = "lib/clarateach/modules";

/// Line guest-init prints on the serial console when booted with `clarateach.probe=1`.
pub const PROBE_MARKER: &str = "CLARATEACH-PROBE-OK";

/// Line guest-init prints once the workspace daemon has been started.
pub const READY_MARKER: &str = "CLARATEACH-GUEST-READY";

/// Paths of one image directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLayout {
    pub dir: PathBuf,
}

impl ImageLayout {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    /// Compressed kernel (bzImage), for QEMU `-kernel`.
    pub fn bzimage(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }
    /// Uncompressed ELF kernel, for Firecracker.
    pub fn vmlinux(&self) -> PathBuf {
        self.dir.join("vmlinux")
    }
    pub fn initrd(&self) -> PathBuf {
        self.dir.join("initrd.cpio")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs.ext4")
    }
    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }
    /// Intermediate artefacts (debootstrap tree, extracted kernel package) reused across builds.
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.join(".cache")
    }

    /// Reads the manifest and checks every file is there.
    pub fn load(&self) -> Result<Manifest, ImageError> {
        let path = self.manifest_path();
        let text =
            std::fs::read_to_string(&path).map_err(|_| ImageError::Incomplete(self.dir.clone()))?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|source| ImageError::Manifest {
                path: path.clone(),
                source,
            })?;
        for file in [self.bzimage(), self.vmlinux(), self.initrd(), self.rootfs()] {
            if !file.is_file() {
                return Err(ImageError::Incomplete(self.dir.clone()));
            }
        }
        Ok(manifest)
    }

    pub(crate) fn save(&self, manifest: &Manifest) -> Result<(), ImageError> {
        let path = self.manifest_path();
        let text =
            serde_json::to_string_pretty(manifest).map_err(|source| ImageError::Manifest {
                path: path.clone(),
                source,
            })?;
        write_atomic(&path, text.as_bytes())
    }
}

/// What an image was built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// SHA-256 of every input: equal keys mean the build can be skipped.
    pub key: String,
    /// SHA-256 of the root disk's inputs (everything but the binary): equal keys mean only the
    /// initramfs has to be rewritten. Empty in manifests of older builders.
    #[serde(default)]
    pub rootfs_key: String,
    pub suite: String,
    pub mirror: String,
    pub packages: Vec<String>,
    /// e.g. `linux-image-6.1.0-56-cloud-amd64 6.1.192-2`.
    pub kernel_package: String,
    /// `uname -r` inside the guest, e.g. `6.1.0-56-cloud-amd64`.
    pub kernel_release: String,
    pub binary_sha256: String,
    /// SHA-256 of the binary the guest runs (the initramfs's `/init`, without debug info), what
    /// `sha256sum /usr/local/bin/clarateach` prints inside a booted guest. Empty in manifests of
    /// older builders.
    #[serde(default)]
    pub guest_binary_sha256: String,
    pub modules: Vec<String>,
    pub build_seconds: f64,
}

/// Writes `bytes` to `path` through a temp file and a rename, so readers never see half a file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(ImageError::io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(ImageError::io("renaming", path))
}
