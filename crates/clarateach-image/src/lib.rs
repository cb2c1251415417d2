//! Guest images for the microVM backend, built from Debian's own packages without Docker and
//! without mounting anything, plus the guest's PID 1 (`clarateach guest-init`).
//!
//! An image directory holds:
//! - `vmlinuz`: the bzImage of `linux-image-cloud-amd64` (QEMU `-kernel`);
//! - `vmlinux`: the same kernel uncompressed (ELF, for PVH/Firecracker boot);
//! - `initrd.cpio`: a tiny initramfs (the `clarateach` binary, its libraries and the virtio
//!   modules) because that kernel has virtio-blk as a module and cannot mount its root alone;
//! - `rootfs.ext4`: `debootstrap --variant=minbase` plus packages, packed by `mkfs.ext4 -d`;
//! - `manifest.json`: what went in, and the hash of the inputs that makes a rebuild instant.
//!
//! Seat images (`recipe`, `store`) are named root trees built from a TOML recipe (Debian packages,
//! Node.js, npm and pip packages): a sandbox seat binds one read-only as `/`.

#![deny(unsafe_code)]

pub mod build;
mod cpio;
mod debootstrap;
pub mod guest;
mod kernel;
pub mod layout;
pub mod microvm_root;
pub mod prepare;
pub mod recipe;
mod rootfs;
pub mod store;
mod tools;
mod vmlinux;

use std::path::PathBuf;

pub use build::{build, BuildOptions, BuildOutcome};
pub use guest::config::{GuestConfig, GuestNet};
pub use layout::{ImageLayout, Manifest, GUEST_MODULES};
pub use microvm_root::{microvm_root, MicrovmRoot};
pub use recipe::{Recipe, RecipeError};
pub use store::{ImageInfo, ImageStore, SeatBuildOptions, SeatBuildOutcome};

/// Errors while building or reading an image; each variant names the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot run {tool} (is it installed?)")]
    Spawn {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        tool: String,
        status: String,
        stderr: String,
    },
    #[error("io error while {action} ({path})")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel package: {0}")]
    Kernel(String),
    #[error("no LZ4-compressed vmlinux found in {0}")]
    Vmlinux(PathBuf),
    #[error("image in {0} is incomplete or missing (run `clarateach image build --out DIR`)")]
    Incomplete(PathBuf),
    #[error("invalid image name {0:?} (1-64 of letters, digits, '-', '_', '.')")]
    BadName(String),
    #[error("no image named {0:?} is built")]
    NotFound(String),
    #[error("image {name} ({digest}) is in use by a running seat (pid {pid}); stop it first")]
    InUse {
        name: String,
        digest: String,
        pid: u32,
    },
    #[error("smoke command `{command}` failed ({status}):\n{output}")]
    Smoke {
        command: String,
        status: String,
        output: String,
    },
    #[error(
        "image {name} cannot be a microVM root: it has no {missing} (add {package:?} to its \
         recipe's apt packages and rebuild it)"
    )]
    NotForMicrovm {
        name: String,
        missing: String,
        package: String,
    },
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error("manifest {path} is invalid")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl ImageError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}
