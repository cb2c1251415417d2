//! `clarateach guest-init`: PID 1 of a microVM guest, in two stages.
//!
//! 1. From the initramfs (`/clarateach-initramfs` exists): mount proc/sys/dev, load the virtio
//!    modules in `GUEST_MODULES` order, mount the root disk and switch to it, then exec itself
//!    from the real root. Booted with `clarateach.probe=1` it only prints `PROBE_MARKER` and
//!    powers off: that is how the host tests whether KVM really runs a guest.
//! 2. From the real root: devpts/tmpfs mounts, the config disk (token, env, network), eth0, the
//!    `/workspace` volume (formatted on first boot), then the workspace daemon as the learner;
//!    it reaps zombies and powers off cleanly on SIGTERM, SIGPWR or the ACPI power button.
//!
//! No tokio and no logging framework here: plain lines on the serial console.

mod boot;
pub mod config;
mod supervise;
mod system;

use std::path::Path;

use crate::rootfs::INITRAMFS_MARKER;

/// Errors of guest-init; printed on the console before the VM powers off.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("guest-init must run as PID 1")]
    NotPid1,
    #[error("{action} failed")]
    Sys {
        action: String,
        #[source]
        source: nix::Error,
    },
    #[error("{action} failed")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

impl GuestError {
    fn sys(action: impl Into<String>) -> impl FnOnce(nix::Error) -> Self {
        let action = action.into();
        move |source| Self::Sys { action, source }
    }
    fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let action = action.into();
        move |source| Self::Io { action, source }
    }
}

/// Prints one line on the console (PID 1's stdout is `/dev/console`, the serial port).
pub(crate) fn say(msg: impl std::fmt::Display) {
    println!("guest-init: {msg}");
}

/// Entry point of `clarateach guest-init`. Returns only on error; on success the VM powers off.
pub fn run() -> Result<(), GuestError> {
    if std::process::id() != 1 {
        return Err(GuestError::NotPid1);
    }
    let result = if Path::new("/").join(INITRAMFS_MARKER).exists() {
        boot::initramfs_stage()
    } else {
        system::root_stage()
    };
    if let Err(e) = &result {
        say(format!("fatal: {e}"));
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            say(format!("  caused by: {s}"));
            source = s.source();
        }
        supervise::power_off();
    }
    result
}
