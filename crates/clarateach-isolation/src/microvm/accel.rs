//! KVM or TCG. Opening /dev/kvm proves little: on PVM hosts (kvm_pvm, no VMX) it opens but stock
//! guest kernels hang. So the probe boots the image's own kernel and initramfs under KVM with
//! `clarateach.probe=1` and waits for guest-init's marker on the serial console. The verdict is
//! cached in the data dir per (kernel, host kernel, qemu), so only the first start pays for it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use clarateach_image::layout::PROBE_MARKER;
use clarateach_image::ImageLayout;
use serde::{Deserialize, Serialize};

/// How guests are executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Verdict {
    key: String,
    kvm_works: bool,
    reason: String,
}

/// Long enough for a working KVM guest (well under a second) on a loaded host.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// Probes (or reads the cached verdict) and returns the accelerator to use. Warns once, clearly,
/// when /dev/kvm exists but does not run the guest.
pub async fn detect(qemu: &Path, image: &ImageLayout, cache_dir: &Path) -> Accel {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        tracing::info!("no usable /dev/kvm: guests run under TCG (emulation, slower)");
        return Accel::Tcg;
    }
    let key = cache_key(qemu, image);
    let path = cache_dir.join("kvm-probe.json");
    let cached = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Verdict>(&t).ok());
    let verdict = match cached {
        Some(v) if v.key == key => v,
        _ => {
            let (kvm_works, reason) = boot_probe(qemu, image, cache_dir).await;
            let v = Verdict {
                key,
                kvm_works,
                reason,
            };
            let _ = std::fs::create_dir_all(cache_dir);
            if let Ok(text) = serde_json::to_string_pretty(&v) {
                let _ = std::fs::write(&path, text);
            }
            v
        }
    };
    if verdict.kvm_works {
        Accel::Kvm
    } else {
        tracing::warn!(
            reason = %verdict.reason,
            cache = %path.display(),
            "/dev/kvm exists but a guest does not boot under it (e.g. a PVM host): falling back to \
             TCG emulation, seats will start in seconds instead of milliseconds"
        );
        Accel::Tcg
    }
}

fn cache_key(qemu: &Path, image: &ImageLayout) -> String {
    let mtime = |p: PathBuf| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "host={} qemu={}:{} kernel={}",
        host.trim(),
        qemu.display(),
        mtime(qemu.to_path_buf()),
        mtime(image.bzimage())
    )
}

/// Boots kernel + initramfs under KVM; true when the marker shows up before the timeout.
async fn boot_probe(qemu: &Path, image: &ImageLayout, dir: &Path) -> (bool, String) {
    let _ = std::fs::create_dir_all(dir);
    let log = dir.join("kvm-probe.log");
    let _ = std::fs::remove_file(&log);
    let append = "console=ttyS0 tsc_early_khz=2500000 panic=-1 clarateach.probe=1 -- guest-init";
    let child = tokio::process::Command::new(qemu)
        .args([
            "-M",
            "microvm,acpi=on",
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-m",
            "256",
            "-smp",
            "1",
        ])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(image.bzimage())
        .arg("-initrd")
        .arg(image.initrd())
        .args(["-append", append])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return (false, format!("cannot run {}: {e}", qemu.display())),
    };
    let start = Instant::now();
    loop {
        let seen = std::fs::read_to_string(&log).unwrap_or_default();
        if seen.contains(PROBE_MARKER) {
            let _ = child.kill().await;
            return (
                true,
                format!(
                    "guest booted under KVM in {} ms",
                    start.elapsed().as_millis()
                ),
            );
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut err).await;
            }
            return (
                false,
                format!(
                    "qemu -accel kvm exited ({status}) before the guest answered: {}",
                    err.trim()
                ),
            );
        }
        if start.elapsed() > PROBE_TIMEOUT {
            let _ = child.kill().await;
            return (
                false,
                format!(
                    "guest did not boot under KVM within {}s",
                    PROBE_TIMEOUT.as_secs()
                ),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
