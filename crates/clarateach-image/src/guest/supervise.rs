//! The steady state of PID 1: run the workspace daemon as the learner (restarting it if it
//! dies), reap every orphan, and on SIGTERM/SIGINT/SIGPWR or the ACPI power button stop
//! everything, flush the disks and power the VM off.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::config::GuestConfig;
use super::{say, GuestError};
use crate::layout::READY_MARKER;
use crate::rootfs::LEARNER_UID;

const HANDLED: [Signal; 5] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGPWR,
    Signal::SIGHUP,
];

pub(super) fn supervise(cfg: &GuestConfig) -> Result<(), GuestError> {
    let mut set = SigSet::empty();
    for s in HANDLED {
        set.add(s);
    }
    // Blocked signals are delivered to PID 1 even without a handler, through the signalfd.
    set.thread_block()
        .map_err(GuestError::sys("blocking signals"))?;
    let sfd = SignalFd::new(&set).map_err(GuestError::sys("creating a signalfd"))?;
    // Ctrl-Alt-Del (Firecracker's SendCtrlAltDel) becomes SIGINT for us instead of a reboot.
    let _ = nix::sys::reboot::set_cad_enabled(false);
    watch_power_button();
    // PID 1 (root) owns the listening socket on a privileged port: the learner can neither bind
    // that port nor take the socket over, and a daemon they kill is restarted on the same socket.
    let listener = std::net::TcpListener::bind(("0.0.0.0", cfg.port))
        .map_err(GuestError::io("binding the workspace daemon's port"))?;
    let mut daemon = Some(spawn_daemon(cfg, &listener)?);
    say(READY_MARKER);
    loop {
        let Some(info) = sfd
            .read_signal()
            .map_err(GuestError::sys("reading the signalfd"))?
        else {
            continue;
        };
        match Signal::try_from(info.ssi_signo as i32) {
            Ok(Signal::SIGCHLD) => {
                if reap_all(daemon.as_ref().map(Child::id)) {
                    say("the workspace daemon exited; restarting it");
                    std::thread::sleep(Duration::from_millis(500));
                    daemon = Some(spawn_daemon(cfg, &listener)?);
                }
            }
            Ok(sig) => {
                say(format!("{sig} received: shutting down"));
                break;
            }
            Err(_) => {}
        }
    }
    shutdown();
    Ok(())
}

/// Reaps every exited child; true when `daemon` was among them.
fn reap_all(daemon: Option<u32>) -> bool {
    let mut daemon_died = false;
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        match status {
            WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _) => {
                daemon_died |= daemon == Some(pid.as_raw() as u32);
            }
            WaitStatus::StillAlive => break,
            _ => {}
        }
    }
    daemon_died
}

/// The fd number the daemon finds its listening socket on (`--listen fd:3`).
const LISTEN_FD: i32 = 3;

#[allow(unsafe_code)]
fn spawn_daemon(cfg: &GuestConfig, listener: &std::net::TcpListener) -> Result<Child, GuestError> {
    use std::os::fd::AsRawFd;
    let listen_fd = listener.as_raw_fd();
    let mut cmd = Command::new("/usr/local/bin/clarateach");
    cmd.args([
        "workspace-server",
        "--listen",
        &format!("fd:{LISTEN_FD}"),
        "--root",
        "/workspace",
    ])
    .env_clear()
    .env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    )
    .env("HOME", "/workspace")
    .env("USER", "learner")
    .env("SHELL", "/bin/bash")
    .env("TERM", "xterm-256color")
    .env("LANG", "C.UTF-8")
    .envs(&cfg.env)
    .env("CLARATEACH_DAEMON_TOKEN", &cfg.token)
    .current_dir("/workspace")
    .uid(LEARNER_UID)
    .gid(LEARNER_UID);
    // SAFETY: the closure runs in the forked child before exec and only calls sigprocmask, dup2
    // and fcntl, which are async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(move || {
            SigSet::empty()
                .thread_set_mask()
                .map_err(std::io::Error::from)?;
            // dup2 onto another number clears FD_CLOEXEC; onto itself it does not.
            if listen_fd == LISTEN_FD {
                if libc::fcntl(LISTEN_FD, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(listen_fd, LISTEN_FD) != LISTEN_FD {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(GuestError::io("starting the workspace daemon"))
}

/// QMP `system_powerdown` presses the ACPI power button; the `button` module turns that into a
/// KEY_POWER input event. Each event device gets a reader thread that signals PID 1.
fn watch_power_button() {
    const EV_KEY: u16 = 1;
    const KEY_POWER: u16 = 116;
    let Ok(entries) = std::fs::read_dir("/dev/input") else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        if !e.file_name().to_string_lossy().starts_with("event") {
            continue;
        }
        let Ok(mut dev) = std::fs::File::open(e.path()) else {
            continue;
        };
        std::thread::spawn(move || {
            // struct input_event on x86_64: timeval (16 bytes), type u16, code u16, value i32.
            let mut ev = [0u8; 24];
            while dev.read_exact(&mut ev).is_ok() {
                let kind = u16::from_ne_bytes([ev[16], ev[17]]);
                let code = u16::from_ne_bytes([ev[18], ev[19]]);
                if kind == EV_KEY && code == KEY_POWER {
                    let _ = kill(Pid::from_raw(1), Signal::SIGPWR);
                }
            }
        });
    }
}

/// Stops every process, flushes and unmounts the volume, remounts / read-only, powers off.
fn shutdown() {
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Err(nix::Error::ECHILD) => break,
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(20)),
            _ => {}
        }
    }
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    while waitpid(Pid::from_raw(-1), None).is_ok() {}
    nix::unistd::sync();
    if let Err(e) = nix::mount::umount("/workspace") {
        say(format!("unmounting /workspace: {e}"));
    }
    let flags = nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY;
    let _ = nix::mount::mount(None::<&str>, "/", None::<&str>, flags, None::<&str>);
    power_off();
}

/// Syncs and powers the VM off (QEMU exits). Never returns unless reboot(2) fails.
pub(super) fn power_off() {
    nix::unistd::sync();
    say("powering off");
    match nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF) {
        Err(e) => say(format!("power off failed: {e}")),
        Ok(never) => match never {},
    }
}
