//! What both VMMs share around one seat's VMM process: waiting for the daemon's `/health`,
//! recording where it answers, then graceful power-down (QMP `system_powerdown` or Firecracker's Ctrl-Alt-Del) with a hard kill
//! as the last resort, so a stop never leaves a VMM process behind.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Child;

use super::firecracker;
use super::seat::{live_pid, VmPaths, VmRecord};
use super::{http, qmp as qmp_client};
use crate::{DaemonAddr, DaemonEndpoint};

pub(super) fn endpoint_of(record: &VmRecord) -> Option<DaemonEndpoint> {
    record.addr.map(|a| tcp_endpoint(a, &record.token))
}

pub(super) async fn qmp(paths: &VmPaths, cmd: &str) -> std::io::Result<()> {
    qmp_client::command(&paths.qmp(), cmd).await.map(|_| ())
}

/// Records where the seat's daemon answers (for adoption after a restart).
pub(super) fn save_addr(
    record: &VmRecord,
    paths: &VmPaths,
    addr: SocketAddr,
) -> std::io::Result<DaemonEndpoint> {
    let mut r = record.clone();
    r.addr = Some(addr);
    r.save(&paths.record())?;
    Ok(tcp_endpoint(addr, &r.token))
}

/// Why a VM's daemon never answered, with the tail of its serial console.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(
        "the VM exited ({status}) before its daemon answered: {stderr}\nconsole tail:\n{console}"
    )]
    Exited {
        status: std::process::ExitStatus,
        stderr: String,
        console: String,
    },
    #[error("the daemon did not answer within {secs}s\nconsole tail:\n{console}")]
    Timeout { secs: u64, console: String },
}

/// Waits for `/health` to answer 200; on timeout or early exit kills the VMM and returns why,
/// with the tail of the serial console. On success a task keeps reaping the child.
pub(super) async fn wait_ready(
    mut child: Child,
    addr: SocketAddr,
    limit: Duration,
    paths: &VmPaths,
) -> Result<(), BootError> {
    let start = Instant::now();
    let tail = || {
        let console = std::fs::read_to_string(paths.console()).unwrap_or_default();
        let tail: Vec<&str> = console.lines().rev().take(12).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    };
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let err = std::fs::read_to_string(paths.dir.join("qemu.stderr")).unwrap_or_default();
            return Err(BootError::Exited {
                status,
                stderr: err.trim().to_string(),
                console: tail(),
            });
        }
        if start.elapsed() > limit {
            let _ = child.kill().await;
            return Err(BootError::Timeout {
                secs: limit.as_secs(),
                console: tail(),
            });
        }
        if health(addr).await {
            tracing::info!(ms = start.elapsed().as_millis() as u64, %addr, "microvm seat ready");
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// True when `GET /health` answers 200 (QEMU's forward accepts before the guest listens).
pub async fn health(addr: SocketAddr) -> bool {
    let Ok(Ok(stream)) =
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await
    else {
        return false;
    };
    matches!(http::request(stream, "GET", "/health", &[], None, Duration::from_secs(2)).await, Ok(r) if r.status == 200)
}

/// Why a microVM could not be stopped.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("the VMM process {0} survived SIGKILL")]
    Survived(i32),
}

/// Graceful power-down, then quit, then SIGKILL; removes the runtime files.
pub(super) async fn stop_vm(paths: &VmPaths) -> Result<(), StopError> {
    if let Some(pid) = live_pid(&paths.pidfile()) {
        let asked = if paths.qmp().exists() {
            qmp(paths, "system_powerdown").await
        } else {
            firecracker::send_ctrl_alt_del(&paths.api_socket()).await
        };
        if asked.is_err() || !exits(pid, Duration::from_secs(15)).await {
            tracing::warn!(pid, "the guest did not power off in time: quitting the VMM");
            let _ = qmp(paths, "quit").await;
            if !exits(pid, Duration::from_secs(3)).await {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                if !exits(pid, Duration::from_secs(5)).await {
                    return Err(StopError::Survived(pid));
                }
            }
        }
    }
    for f in [paths.pidfile(), paths.qmp(), paths.api_socket()] {
        let _ = std::fs::remove_file(f);
    }
    Ok(())
}

async fn exits(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty()
            || stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Every `seat.json` under `<data_dir>/microvm/<workshop>/<seat>/`.
pub(super) fn seat_records(root: &Path) -> Vec<PathBuf> {
    let dirs = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    };
    dirs(root)
        .iter()
        .flat_map(|w| dirs(w))
        .map(|s| s.join("seat.json"))
        .filter(|p| p.is_file())
        .collect()
}

pub(super) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(super) async fn wait_for_path(p: &Path, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    while !p.exists() {
        if start.elapsed() > limit {
            return Err(format!("{} did not appear", p.display()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Daemon endpoint on the host side of QEMU's port forward.
pub(super) fn tcp_endpoint(addr: std::net::SocketAddr, token: &str) -> DaemonEndpoint {
    DaemonEndpoint {
        addr: DaemonAddr::Tcp(addr),
        token: token.to_string(),
    }
}
