//! Starting and stopping one seat's VMM process: spawn, wait for the daemon's `/health`, then
//! graceful power-down (QMP `system_powerdown` or Firecracker's Ctrl-Alt-Del) with a hard kill
//! as the last resort, so a stop never leaves a VMM process behind.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Child;

use super::accel::Accel;
use super::backend::{tcp_endpoint, MicrovmBackend};
use clarateach_core::agent_proto::SeatKey;
use clarateach_image::guest::config::GUEST_DAEMON_PORT;

use super::firecracker;
use super::qemu::{self, QemuLaunch, QemuNet, RootDisk};
use super::seat::{live_pid, SeatPaths, SeatRecord};
use super::{bridge, fc_launch, http, net, qmp as qmp_client, seat_net, Flavour};
use crate::{BackendError, DaemonEndpoint};

pub(super) fn endpoint_of(record: &SeatRecord) -> Option<DaemonEndpoint> {
    record.addr.map(|a| tcp_endpoint(a, &record.token))
}

pub(super) async fn qmp(paths: &SeatPaths, cmd: &str) -> std::io::Result<()> {
    qmp_client::command(&paths.qmp(), cmd).await.map(|_| ())
}

pub(super) async fn start_qemu(
    b: &MicrovmBackend,
    record: &SeatRecord,
    paths: &SeatPaths,
    accel: Accel,
) -> Result<DaemonEndpoint, BackendError> {
    let key = record.key();
    let fail = |e: String| BackendError::Start(key.clone(), e);
    let root = if !paths.overlay().exists() && super::find_binary(Path::new("qemu-img")).is_none() {
        tracing::warn!("qemu-img (qemu-utils) missing: the root disk is a throw-away snapshot");
        RootDisk::Snapshot(b.image.rootfs())
    } else {
        if !paths.overlay().exists() {
            qemu::create_overlay(&b.image, &paths.overlay())
                .await
                .map_err(|e| fail(e.to_string()))?;
        }
        RootDisk::Overlay(paths.overlay())
    };
    let link = seat_net::bring_up(b, record, paths, Flavour::Qemu, None).await?;
    let tap = match (link.tap(), link.guest_ip()) {
        (Some(t), Some(ip)) => Some((t.to_string(), ip)),
        _ => None,
    };
    // The config disk with the seat's environment, in memory only (see `MicrovmBackend::envs`).
    let on_disk = std::fs::read(paths.config_disk()).map_err(|e| fail(e.to_string()))?;
    let mut config = clarateach_image::GuestConfig::from_disk(&on_disk)
        .ok_or_else(|| fail("the seat's config disk is unreadable: recreate it".into()))?;
    config.env = b.env_of(&key);
    link.configure(&mut config);
    let config_fd = std::sync::Arc::new(
        qemu::config_memfd(&config.to_disk()).map_err(|e| fail(format!("config memfd: {e}")))?,
    );
    // Two tries in user mode: another process may grab the free port before QEMU binds it.
    let mut last = String::new();
    for _ in 0..2 {
        let (net, addr) = match &tap {
            Some((ifname, ip)) => (
                QemuNet::Tap {
                    ifname: ifname.clone(),
                    mac: net::seat_mac(&key),
                },
                SocketAddr::from((*ip, GUEST_DAEMON_PORT)),
            ),
            None => {
                let port = free_port().map_err(|e| fail(e.to_string()))?;
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                (QemuNet::User { host_port: port }, addr)
            }
        };
        let launch = QemuLaunch {
            qemu: b.cfg.qemu_binary.clone(),
            accel,
            limits: record.limits.clone(),
            net,
            root: root.clone(),
            config_fd: Some(config_fd.clone()),
        };
        let _ = std::fs::remove_file(paths.console());
        let child = qemu::spawn(&launch, &b.image, paths)
            .map_err(|e| fail(format!("cannot run qemu: {e}")))?;
        match wait_ready(child, addr, b.cfg.boot_timeout, paths).await {
            Ok(()) => return save_addr(record, paths, addr).map_err(fail),
            Err(e) if tap.is_none() => last = e,
            Err(e) => return Err(fail(e)),
        }
    }
    Err(fail(last))
}

pub(super) fn save_addr(
    record: &SeatRecord,
    paths: &SeatPaths,
    addr: SocketAddr,
) -> Result<DaemonEndpoint, String> {
    let mut r = record.clone();
    r.addr = Some(addr);
    r.save(&paths.record()).map_err(|e| e.to_string())?;
    Ok(tcp_endpoint(addr, &r.token))
}

/// Waits for `/health` to answer 200; on timeout or early exit kills the VMM and returns why,
/// with the tail of the serial console. On success a task keeps reaping the child.
pub(super) async fn wait_ready(
    mut child: Child,
    addr: SocketAddr,
    limit: Duration,
    paths: &SeatPaths,
) -> Result<(), String> {
    let start = Instant::now();
    let why = loop {
        if let Ok(Some(status)) = child.try_wait() {
            let err = std::fs::read_to_string(paths.dir.join("qemu.stderr")).unwrap_or_default();
            break format!(
                "the VM exited ({status}) before its daemon answered: {}",
                err.trim()
            );
        }
        if start.elapsed() > limit {
            break format!("the daemon did not answer within {}s", limit.as_secs());
        }
        if health(addr).await {
            tracing::info!(ms = start.elapsed().as_millis() as u64, %addr, "microvm seat ready");
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill().await;
    let console = std::fs::read_to_string(paths.console()).unwrap_or_default();
    let tail: Vec<&str> = console.lines().rev().take(12).collect();
    Err(format!(
        "{why}\nconsole tail:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    ))
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

/// Graceful power-down, then quit, then SIGKILL; removes the runtime files.
pub(super) async fn stop_vm(paths: &SeatPaths) -> Result<(), String> {
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
                    return Err(format!("VMM process {pid} survived SIGKILL"));
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

/// Releases what a seat holds on the host besides its files and its seat network (the backend
/// releases that): its bridge TAP and its jail (Firecracker under the jailer).
pub(super) async fn release_host(b: &MicrovmBackend, key: &SeatKey, paths: &SeatPaths) {
    if let Ok(tap) = std::fs::read_to_string(paths.dir.join("tap")) {
        if let Err(e) = bridge::del_tap(tap.trim()).await {
            tracing::warn!(error = %e, "removing the seat's TAP failed");
        }
    }
    if let Some(j) = fc_launch::jail(&b.cfg, key) {
        let _ = std::fs::remove_dir_all(j.dir());
    }
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

fn free_port() -> std::io::Result<u16> {
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
