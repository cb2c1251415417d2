//! A child process on a pseudo-terminal, with async I/O on the master side.
//!
//! This is the only module with `unsafe`: `pre_exec` (making the child a session leader with the
//! PTY as its controlling terminal) and registering the master fd with tokio's reactor. Everything else uses rustix's safe wrappers, and the master
//! fd is read and written through tokio's `AsyncFd` (epoll), never polled in a loop.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;
use tokio::io::unix::AsyncFd;
use tokio::process::{Child, Command};

/// What to run on the PTY.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    /// Program and arguments; `argv[0]` is looked up in `PATH`.
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// Set on top of the inherited environment.
    pub env: Vec<(OsString, OsString)>,
    /// Removed from the inherited environment (e.g. the daemon's own token).
    pub env_remove: Vec<OsString>,
    pub cols: u16,
    pub rows: u16,
}

/// The master side of a PTY. Shared between the reader, the writer and resize requests.
#[derive(Debug)]
pub struct PtyMaster {
    fd: AsyncFd<OwnedFd>,
}

/// Spawns `spec` on a fresh PTY; returns the master and the child process.
pub fn spawn(spec: &SpawnSpec) -> io::Result<(PtyMaster, Child)> {
    let Some(program) = spec.argv.first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    set_winsize(&master, spec.cols, spec.rows)?;

    let mut cmd = Command::new(program);
    cmd.args(&spec.argv[1..])
        .current_dir(&spec.cwd)
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    for key in &spec.env_remove {
        cmd.env_remove(key);
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    become_session_leader(&mut cmd);
    let child = cmd.spawn()?;
    // The parent's copies of the slave fd were moved into `cmd` and are closed with it, so the
    // master sees EIO once the child side is gone.
    drop(cmd);

    rustix::io::ioctl_fionbio(&master, true)?;
    Ok((
        PtyMaster {
            fd: register(master)?,
        },
        child,
    ))
}

#[allow(unsafe_code)]
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: `fd` is an open descriptor we own; the `AsyncFd` takes ownership of the `OwnedFd`,
    // which keeps it open and returns the same raw fd until the `AsyncFd` is dropped.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

#[allow(unsafe_code)]
fn become_session_leader(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // operations are allowed. It makes two raw syscalls through rustix (setsid, ioctl TIOCSCTTY
    // on fd 0, which std has already pointed at the PTY slave), allocates nothing, takes no
    // locks and touches no shared state.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            rustix::process::ioctl_tiocsctty(std::io::stdin())?;
            Ok(())
        });
    }
}

fn set_winsize(fd: impl AsFd, cols: u16, rows: u16) -> io::Result<()> {
    let ws = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(fd, ws)?;
    Ok(())
}

impl PtyMaster {
    /// Reads what the child wrote. `Ok(0)` means the slave side is closed (EIO on Linux).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard
                .try_io(|fd| rustix::io::read(fd.get_ref(), &mut *buf).map_err(io::Error::from))
            {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Reads without waiting: `Ok(None)` when nothing is buffered right now.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match rustix::io::read(self.fd.get_ref(), buf) {
            Ok(n) => Ok(Some(n)),
            Err(rustix::io::Errno::AGAIN) => Ok(None),
            Err(rustix::io::Errno::IO) => Ok(Some(0)),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes all of `data` to the child's input, waiting while the PTY buffer is full.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| rustix::io::write(fd.get_ref(), data).map_err(io::Error::from))
            {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Sets the terminal size; the kernel sends SIGWINCH to the foreground process group.
    pub fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        set_winsize(self.fd.get_ref(), cols, rows)
    }
}
