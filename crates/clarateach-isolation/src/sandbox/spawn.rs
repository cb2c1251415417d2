//! Starting bubblewrap inside the seat's cgroup as the learner's host uid, and waiting for the
//! daemon to answer `/health` on its Unix socket.
//!
//! The child joins the cgroup between fork and exec (writing `0` to `cgroup.procs` files the
//! parent opened), so not one instruction of the sandbox runs outside its limits. It also starts
//! a new session, so a Ctrl-C or hangup aimed at the agent never reaches a seat, and seats
//! outlive an agent that is killed.
//!
//! bwrap inherits exactly three descriptors besides stdio, at fixed numbers: the daemon's
//! listening socket (`args::LISTEN_FD`, bound by the agent in a root-only directory) and the two
//! seccomp programs (`args::SECCOMP_FDS`, read and closed by bwrap). Everything else the agent
//! holds is close-on-exec. The agent drops its own copy of the socket once bwrap runs, so only the
//! seat's daemon holds it: a learner who kills the daemon leaves a socket nobody answers.
//!
//! `pre_exec` runs in the forked child, in this order: join the cgroup, move the descriptors,
//! `setsid`, then drop to the seat's uid. A step that needs root in the child (entering a network
//! namespace with `setns`) belongs after `setsid` and before `setgroups`. Entering the launch
//! mount namespace (`launchns`, with the seat's file system attached) is one: it comes right
//! after the network namespace.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

/// How bwrap is started.
pub struct Launch {
    pub bwrap: std::path::PathBuf,
    pub args: Vec<std::ffi::OsString>,
    pub env: BTreeMap<String, String>,
    pub cgroup_procs: Vec<File>,
    /// The daemon's listening socket, handed down as `args::LISTEN_FD`.
    pub listener: OwnedFd,
    /// Seccomp programs, handed down as `args::SECCOMP_FDS`.
    pub seccomp: [OwnedFd; 2],
    pub uid: u32,
    pub gid: u32,
    pub log: File,
    /// The seat's network namespace, entered before dropping privileges (None: bwrap unshares).
    pub netns: Option<File>,
    /// The small mount namespace bwrap starts from (see `launchns`), and the seat's file system
    /// to attach in the seat's copy of it; None: bwrap starts from the agent's namespace.
    pub launch_ns: Option<std::sync::Arc<super::launchns::LaunchNs>>,
    pub seat_tree: Option<super::launchns::SeatTree>,
}

/// Spawns bwrap. The environment (which may hold the api key) is passed as the process's
/// environment, never as arguments.
#[allow(unsafe_code)]
pub fn spawn(launch: Launch) -> io::Result<Child> {
    let fds: Vec<i32> = launch.cgroup_procs.iter().map(|f| f.as_raw_fd()).collect();
    // (source, target) pairs; sources stay open in the parent until spawn returns.
    let moves: [(i32, i32); 3] = [
        (launch.listener.as_raw_fd(), super::args::LISTEN_FD),
        (launch.seccomp[0].as_raw_fd(), super::args::SECCOMP_FDS[0]),
        (launch.seccomp[1].as_raw_fd(), super::args::SECCOMP_FDS[1]),
    ];
    let (uid, gid) = (launch.uid, launch.gid);
    let netns = launch.netns.as_ref().map(|f| f.as_raw_fd());
    let enter = launch
        .launch_ns
        .as_deref()
        .map(|ns| super::launchns::Enter::new(ns, launch.seat_tree.as_ref()));
    let mut cmd = Command::new(&launch.bwrap);
    cmd.args(&launch.args)
        .env_clear()
        .envs(&launch.env)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(launch.log.try_clone()?)
        .stderr(launch.log)
        .kill_on_drop(false);
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (setns, write, fcntl, dup2, setsid, setgroups, setgid, setuid) on values copied
    // in beforehand; it allocates nothing. The fds stay open in the parent
    // (`launch.cgroup_procs`, `launch.listener`, `launch.seccomp`, `launch.netns`) until spawn
    // returns.
    unsafe {
        cmd.pre_exec(move || {
            // Still root here: joining the seat's namespace needs CAP_SYS_ADMIN.
            if let Some(fd) = netns {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // Also root-only: the launch namespace, with the seat's file system attached.
            if let Some(enter) = &enter {
                enter.run()?;
            }
            for &fd in &fds {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            // First copy every source above the targets (close-on-exec, so the copies vanish at
            // exec), so that no dup2 below overwrites a source not moved yet; dup2 then clears
            // close-on-exec on the target.
            let mut high = [0i32; 3];
            for (slot, &(src, _)) in high.iter_mut().zip(moves.iter()) {
                *slot = libc::fcntl(src, libc::F_DUPFD_CLOEXEC, 10);
                if *slot < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (&tmp, &(_, target)) in high.iter().zip(moves.iter()) {
                if libc::dup2(tmp, target) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::setsid() < 0
                || libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(launch.cgroup_procs);
    drop(launch.listener);
    drop(launch.seccomp);
    drop(launch.netns);
    drop(launch.seat_tree);
    drop(launch.launch_ns);
    child
}

/// Why a sandbox never became ready.
#[derive(Debug)]
pub enum NotReady {
    /// bwrap exited; its status.
    Exited(std::process::ExitStatus),
    Timeout,
}

/// Waits until the daemon answers `GET /health` with 200, polling every millisecond (a seat is
/// usually ready in a few), and fails fast if bwrap exits.
pub async fn wait_ready(
    socket: &Path,
    token: &str,
    child: &mut Child,
    timeout: Duration,
) -> Result<(), NotReady> {
    let deadline = Instant::now() + timeout;
    loop {
        // The listening socket is bound before the daemon runs, so a probe may wait for the
        // daemon's start: it may take all the time left, not a probe's usual two seconds (a
        // dropped probe would make a slow starter answer a closed connection).
        let left = deadline.saturating_duration_since(Instant::now());
        if socket.exists() && probe(socket, token, left.max(Duration::from_millis(1))).await {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(NotReady::Exited(status));
        }
        if Instant::now() >= deadline {
            return Err(NotReady::Timeout);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One health probe: true when the daemon answers 200 within two seconds.
pub async fn health(socket: &Path, token: &str) -> bool {
    probe(socket, token, Duration::from_secs(2)).await
}

async fn probe(socket: &Path, token: &str, timeout: Duration) -> bool {
    let probe = async {
        let mut stream = UnixStream::connect(socket).await?;
        let req = format!(
            "GET /health HTTP/1.1\r\nHost: workspace\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        io::Result::Ok(head.starts_with(b"HTTP/1.") && &head[8..12] == b" 200")
    };
    matches!(tokio::time::timeout(timeout, probe).await, Ok(Ok(true)))
}
