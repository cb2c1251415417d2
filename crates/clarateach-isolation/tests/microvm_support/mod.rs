//! Helpers for the microVM integration tests: skip reasons, the `clarateach` binary to put in
//! the guest, the cached guest image, and a tiny HTTP client for the workspace daemon.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clarateach_isolation::microvm::http;

/// Why this host cannot run the QEMU microvm test, if it cannot.
pub fn skip_reason() -> Option<String> {
    for tool in [
        "qemu-system-x86_64",
        "debootstrap",
        "mkfs.ext4",
        "apt-get",
        "dpkg-deb",
    ] {
        if which(tool).is_none() {
            return Some(format!(
                "{tool} is not installed (apt-get install qemu-system-x86 debootstrap e2fsprogs)"
            ));
        }
    }
    if !nix::unistd::Uid::effective().is_root() {
        return Some("debootstrap needs root".into());
    }
    None
}

pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The `clarateach` binary: `$CLARATEACH_BIN`, else built with cargo (fast when up to date).
pub fn clarateach_binary() -> PathBuf {
    if let Some(b) = std::env::var_os("CLARATEACH_BIN") {
        return PathBuf::from(b);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let status = std::process::Command::new(cargo)
        .args(["build", "-q", "-p", "clarateach", "--bin", "clarateach"])
        .current_dir(&root)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build -p clarateach failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("debug/clarateach")
}

/// Builds (or reuses) the guest image in `$CLARATEACH_IMAGE_CACHE` or
/// /var/cache/clarateach/images/ci, so CI on one machine pays for debootstrap once. The image is
/// keyed by the binary too, but a new binary only rewrites the initramfs (the guest runs that
/// copy), so a persistent runner does not repack the root disk on every change.
pub fn guest_image() -> PathBuf {
    let dir = std::env::var_os("CLARATEACH_IMAGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/clarateach/images/ci"));
    // A private copy of the binary: cargo may rewrite target/ while the image is built.
    let bin = std::env::temp_dir().join(format!("clarateach-guest-{}", std::process::id()));
    std::fs::copy(clarateach_binary(), &bin).expect("copy the binary");
    let mut opts = clarateach_image::BuildOptions::new(&dir, &bin);
    opts.show_progress = false;
    let outcome = clarateach_image::build(&opts).expect("build the guest image");
    let _ = std::fs::remove_file(&bin);
    eprintln!(
        "guest image {} in {:.1}s ({})",
        match (outcome.cached, outcome.rootfs_reused) {
            (true, _) => "reused",
            (false, true) => "reused with a new initramfs (new binary)",
            (false, false) => "built",
        },
        outcome.elapsed.as_secs_f64(),
        dir.display()
    );
    dir
}

/// `POST /run` on the daemon; returns (stdout, exit code).
pub async fn run(addr: SocketAddr, token: &str, command: &str) -> (String, i64) {
    let body = serde_json::json!({ "command": command, "timeout_s": 60 }).to_string();
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the daemon");
    let auth = format!("Bearer {token}");
    let resp = http::request(
        stream,
        "POST",
        "/run",
        &[("Authorization", &auth)],
        Some(&body),
        Duration::from_secs(90),
    )
    .await
    .expect("POST /run");
    assert_eq!(
        resp.status, 200,
        "POST /run answered {}: {}",
        resp.status, resp.body
    );
    let v: serde_json::Value = serde_json::from_str(&resp.body).expect("run response json");
    (
        v["stdout"].as_str().unwrap_or_default().to_string(),
        v["exit_code"].as_i64().unwrap_or(-1),
    )
}

/// Pids of running qemu processes whose command line mentions `needle`.
pub fn qemu_pids_mentioning(needle: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            cmd.contains("qemu-system") && cmd.contains(needle) && !zombie
        })
        .collect()
}

/// A seat with 256 MiB of memory, the default image and no environment.
pub fn seat_spec(
    key: &clarateach_core::agent_proto::SeatKey,
    daemon_token: &str,
) -> clarateach_isolation::WorkspaceSpec {
    clarateach_isolation::WorkspaceSpec {
        key: key.clone(),
        limits: clarateach_core::Limits {
            memory_mb: 256,
            ..clarateach_core::Limits::default()
        },
        image: None,
        env: Default::default(),
        daemon_token: daemon_token.into(),
    }
}

/// Resident set size of a process in MiB.
pub fn rss_mib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}
