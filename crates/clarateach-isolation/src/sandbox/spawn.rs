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
//! The child runs, in this order: stdio and `/`, join the cgroup, move the descriptors,
//! `setsid`, then drop to the seat's uid. A step that needs root in the child (entering a network
//! namespace with `setns`) belongs after `setsid` and before `setgroups`. Entering the launch
//! mount namespace (`launchns`, with the seat's file system attached) is one: it comes right
//! after the network namespace.
//!
//! The child is made with `clone(CLONE_VM | CLONE_VFORK)`, as `posix_spawn` does, not with
//! `fork` (issue 12's class start): a fork of the agent (a large multi-threaded process) copies
//! its page tables for every seat and leaves every page it shares with the child copy-on-write,
//! so each seat cost the agent CPU in page-table copies and faults after the fork. The vfork
//! child shares the agent's memory until it execs (the calling thread waits meanwhile), so it
//! may only make system calls on values prepared beforehand: no allocation, no lock, no glibc
//! wrapper that thinks it is the multi-threaded agent (the uid/gid changes are raw
//! `setuid`-family syscalls: glibc's wrappers would broadcast them to the agent's threads).
//! Signals are blocked across the clone; the child resets every handled signal (and SIGPIPE,
//! which the Rust runtime ignores) to its default before it unblocks them and execs, so no agent
//! handler ever runs in it. A failed step's errno comes back over a close-on-exec pipe.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

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

/// The stack the vfork child runs on until it execs (a few syscalls; generous for debug builds).
const CHILD_STACK: usize = 256 * 1024;

/// A started bwrap: our child, waited for through its pidfd (no SIGCHLD handler, no polling).
#[derive(Debug)]
pub struct SeatChild {
    pid: libc::pid_t,
    /// None only when the kernel has no `pidfd_open` (before 5.3): `wait` then polls.
    pidfd: Option<OwnedFd>,
    status: Option<ExitStatus>,
    /// False for the background reaper's own copy: dropping it (its task cancelled when the
    /// runtime shuts down) must not spawn another reaper.
    reap_on_drop: bool,
}

/// A pidfd's number for `AsyncFd` (the `OwnedFd` stays in the `SeatChild`).
struct PidFd(RawFd);

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl SeatChild {
    /// The process id until it has been waited for (as `tokio::process::Child::id`).
    pub fn id(&self) -> Option<u32> {
        match self.status {
            Some(_) => None,
            None => u32::try_from(self.pid).ok(),
        }
    }

    /// Its exit status if it has exited (reaping it), without blocking.
    #[allow(unsafe_code)]
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let mut raw = 0;
        // SAFETY: waitpid on our own unreaped child, writing into a local.
        let got = unsafe { libc::waitpid(self.pid, &mut raw, libc::WNOHANG) };
        match got {
            0 => Ok(None),
            p if p == self.pid => {
                let status = ExitStatus::from_raw(raw);
                self.status = Some(status);
                Ok(Some(status))
            }
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// Waits until it exits: the pidfd turns readable when it does.
    #[allow(unsafe_code)]
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let watch = match &self.pidfd {
            // SAFETY: the pidfd stays open (in `self.pidfd`, borrowed by nobody else) for as
            // long as `watch` lives: this call's duration.
            Some(fd) => Some(
                unsafe {
                    AsyncFd::register_with_interest(
                        PidFd(fd.as_raw_fd()),
                        tokio::io::Interest::READABLE,
                    )
                }
                .map_err(|e| e.into_parts().1)?,
            ),
            None => None,
        };
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            match &watch {
                Some(w) => w.readable().await?.clear_ready(),
                None => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }
}

impl Drop for SeatChild {
    /// A seat outlives its `SeatChild` by design (it is not killed); one that has exited is
    /// reaped here, one still running is reaped in the background when it exits.
    fn drop(&mut self) {
        if !self.reap_on_drop || matches!(self.try_wait(), Ok(Some(_)) | Err(_)) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let orphan = SeatChild {
            pid: self.pid,
            pidfd: self.pidfd.take(),
            status: None,
            reap_on_drop: false,
        };
        self.status = Some(ExitStatus::from_raw(0));
        rt.spawn(async move {
            let mut orphan = orphan;
            let _ = orphan.wait().await;
        });
    }
}

/// A close-on-exec pipe (read end, write end).
#[allow(unsafe_code)]
fn report_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`, which we then own.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte"))
}

/// Everything the vfork child needs, made before the clone (the child allocates nothing).
struct ChildPlan<'a> {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    null: RawFd,
    log: RawFd,
    netns: Option<RawFd>,
    enter: Option<&'a super::launchns::Enter>,
    cgroup_procs: &'a [RawFd],
    /// (source, target) pairs.
    moves: [(RawFd, RawFd); 3],
    uid: libc::uid_t,
    gid: libc::gid_t,
    /// The spawning thread's signal mask, restored right before exec.
    mask: libc::sigset_t,
    /// Write end of a close-on-exec pipe: the child writes the errno of the step that failed
    /// (nothing, and the end closes at exec, when it exec'd).
    report: RawFd,
}

/// Whether the child shares the agent's memory (`clone(CLONE_VM | CLONE_VFORK)`, the default)
/// or gets a copy of it as a fork's child does (`CLARATEACH_SPAWN=fork`: the old cost, kept for
/// the A/B of `bench seats`).
fn shares_memory() -> bool {
    static SHARE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SHARE.get_or_init(|| std::env::var("CLARATEACH_SPAWN").as_deref() != Ok("fork"))
}

/// Spawns bwrap. The environment (which may hold the api key) is passed as the process's
/// environment, never as arguments.
#[allow(unsafe_code)]
pub fn spawn(launch: Launch) -> io::Result<SeatChild> {
    let path = cstring(launch.bwrap.as_os_str().as_bytes())?;
    let args: Vec<CString> = std::iter::once(launch.bwrap.as_os_str().to_owned())
        .chain(launch.args.iter().cloned())
        .map(|a: OsString| cstring(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let env: Vec<CString> = launch
        .env
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
        .collect::<io::Result<_>>()?;
    let argv: Vec<*const libc::c_char> = args
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = env
        .iter()
        .map(|e| e.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let null = File::options().read(true).write(true).open("/dev/null")?;
    let cgroup_procs: Vec<RawFd> = launch.cgroup_procs.iter().map(|f| f.as_raw_fd()).collect();
    let enter = launch
        .launch_ns
        .as_deref()
        .map(|ns| super::launchns::Enter::new(ns, launch.seat_tree.as_ref()));
    let (report_read, report_write) = report_pipe()?;
    let mut stack = vec![0u8; CHILD_STACK];
    let mut plan = ChildPlan {
        path: path.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        null: null.as_raw_fd(),
        log: launch.log.as_raw_fd(),
        netns: launch.netns.as_ref().map(|f| f.as_raw_fd()),
        enter: enter.as_ref(),
        cgroup_procs: &cgroup_procs,
        moves: [
            (launch.listener.as_raw_fd(), super::args::LISTEN_FD),
            (launch.seccomp[0].as_raw_fd(), super::args::SECCOMP_FDS[0]),
            (launch.seccomp[1].as_raw_fd(), super::args::SECCOMP_FDS[1]),
        ],
        uid: launch.uid,
        gid: launch.gid,
        // SAFETY: an all-zero sigset_t is a valid (empty) set; it is overwritten below.
        mask: unsafe { std::mem::zeroed() },
        report: report_write.as_raw_fd(),
    };
    let flags = if shares_memory() {
        libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD
    } else {
        libc::CLONE_VFORK | libc::SIGCHLD
    };
    // SAFETY: the child runs `child_main` on its own stack (`stack`, alive until clone returns:
    // CLONE_VFORK suspends this thread until the child execs or exits) and reads only `plan`
    // and what it points to, all owned by this frame; it makes raw syscalls only (see the
    // module header). Signals are blocked across the clone so no handler runs in the child
    // before it resets them.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let rc = libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut plan.mask);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // The stack grows down: its top, aligned to 16 bytes.
        let top = stack.as_mut_ptr().add(CHILD_STACK);
        let top = top.sub(top as usize % 16);
        let pid = libc::clone(
            child_main,
            top.cast(),
            flags,
            std::ptr::addr_of_mut!(plan).cast(),
        );
        let clone_err = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &plan.mask, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_err);
        }
        pid
    };
    drop(stack);
    // The child exec'd (its end closed) or wrote why not and exited: nothing left to wait for.
    drop(report_write);
    let mut errno_bytes = [0u8; 4];
    let got = File::from(report_read).read(&mut errno_bytes).unwrap_or(0);
    let errno = if got == 4 {
        i32::from_ne_bytes(errno_bytes)
    } else {
        0
    };
    let mut child = SeatChild {
        pid,
        pidfd: None,
        status: None,
        reap_on_drop: true,
    };
    if errno != 0 {
        // It exited with 127 after the failed step: reap it, report the step's error.
        let _ = child.try_wait();
        if child.status.is_none() {
            // SAFETY: blocking waitpid on our own child, which has exited or is about to.
            unsafe {
                let mut raw = 0;
                libc::waitpid(pid, &mut raw, 0);
            }
            child.status = Some(ExitStatus::from_raw(127 << 8));
        }
        return Err(io::Error::from_raw_os_error(errno));
    }
    // SAFETY: pidfd_open on our own unreaped child (its pid cannot be reused meanwhile).
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if let Ok(fd) = RawFd::try_from(fd) {
        if fd >= 0 {
            // SAFETY: a new descriptor we own (pidfds are close-on-exec).
            child.pidfd = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    drop(launch.cgroup_procs);
    drop(launch.listener);
    drop(launch.seccomp);
    drop(launch.netns);
    drop(launch.seat_tree);
    drop(launch.launch_ns);
    Ok(child)
}

/// The vfork child: the steps of the module header, then exec. Never returns on success.
#[allow(unsafe_code)]
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `ChildPlan`, alive and untouched while the parent waits
    // (or this child's copy of it, under `CLARATEACH_SPAWN=fork`).
    let plan = unsafe { &*arg.cast::<ChildPlan>() };
    // SAFETY: raw syscalls on values of `plan` (see `child_steps`).
    let errno = unsafe { child_steps(plan) };
    let errno = if errno == 0 { libc::EIO } else { errno };
    // SAFETY: a write of a local to the report pipe, then the end of this child.
    unsafe {
        libc::write(plan.report, errno.to_ne_bytes().as_ptr().cast(), 4);
        libc::syscall(libc::SYS_exit, 127);
    }
    127
}

/// The child's steps; returns the errno of the failed one (exec returns only on failure).
#[allow(unsafe_code)]
unsafe fn child_steps(plan: &ChildPlan) -> i32 {
    let errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    };
    // Every handled signal (and SIGPIPE: the Rust runtime ignores it) back to its default in
    // this child's own copy of the handler table (no CLONE_SIGHAND): no agent handler runs here.
    for sig in 1..=64 {
        let mut old: libc::sigaction = std::mem::zeroed();
        // glibc's wrapper (a plain rt_sigaction with its own struct layout; it refuses only
        // glibc's internal signals, which are left alone).
        if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
            continue;
        }
        if old.sa_sigaction != libc::SIG_DFL
            && (old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
        {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
    }
    if libc::dup2(plan.null, 0) < 0 || libc::dup2(plan.log, 1) < 0 || libc::dup2(plan.log, 2) < 0 {
        return errno();
    }
    if libc::chdir(c"/".as_ptr()) != 0 {
        return errno();
    }
    // Still root here: joining the seat's namespace needs CAP_SYS_ADMIN.
    if let Some(fd) = plan.netns {
        if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
            return errno();
        }
    }
    // Also root-only: the launch namespace, with the seat's file system attached.
    if let Some(enter) = plan.enter {
        if let Err(e) = enter.run() {
            return e.raw_os_error().unwrap_or(libc::EIO);
        }
    }
    for &fd in plan.cgroup_procs {
        if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
            return errno();
        }
    }
    // First copy every source above the targets (close-on-exec, so the copies vanish at exec),
    // so that no dup2 below overwrites a source not moved yet; dup2 then clears close-on-exec
    // on the target.
    let mut high = [0i32; 3];
    for (slot, &(src, _)) in high.iter_mut().zip(plan.moves.iter()) {
        *slot = libc::fcntl(src, libc::F_DUPFD_CLOEXEC, 10);
        if *slot < 0 {
            return errno();
        }
    }
    for (&tmp, &(_, target)) in high.iter().zip(plan.moves.iter()) {
        if libc::dup2(tmp, target) < 0 {
            return errno();
        }
    }
    // Raw syscalls: glibc's setuid family would apply the change to every thread of the agent.
    if libc::setsid() < 0
        || libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) != 0
        || libc::syscall(libc::SYS_setgid, plan.gid) != 0
        || libc::syscall(libc::SYS_setuid, plan.uid) != 0
    {
        return errno();
    }
    if libc::syscall(
        libc::SYS_rt_sigprocmask,
        libc::SIG_SETMASK,
        &plan.mask as *const libc::sigset_t,
        std::ptr::null_mut::<libc::sigset_t>(),
        8usize,
    ) != 0
    {
        return errno();
    }
    libc::execve(plan.path, plan.argv, plan.envp);
    errno()
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
    child: &mut SeatChild,
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
    let probe = request(socket, "GET", "/health", token, b"");
    matches!(tokio::time::timeout(timeout, probe).await, Ok(Ok(200)))
}

/// Activates a daemon started ahead of its seat's Start (`--await-activation`): the token the
/// agent uses from now on and the workshop's environment, sent with the start-up token.
pub async fn activate(
    socket: &Path,
    startup_token: &str,
    body: &clarateach_core::ActivateRequest,
    timeout: Duration,
) -> io::Result<()> {
    let body = serde_json::to_vec(body).map_err(io::Error::other)?;
    let sent = request(socket, "POST", "/activate", startup_token, &body);
    match tokio::time::timeout(timeout, sent).await {
        Ok(Ok(200)) => Ok(()),
        Ok(Ok(status)) => Err(io::Error::other(format!(
            "the daemon answered the activation with HTTP {status}"
        ))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the daemon did not answer the activation",
        )),
    }
}

/// One HTTP/1.1 request over the daemon's socket; the answer's status code.
async fn request(
    socket: &Path,
    method: &str,
    path: &str,
    token: &str,
    body: &[u8],
) -> io::Result<u16> {
    let mut stream = UnixStream::connect(socket).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: workspace\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n"
    );
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await?;
    if !head.starts_with(b"HTTP/1.") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an HTTP answer",
        ));
    }
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status"))
}
