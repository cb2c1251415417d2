//! Cgroup limits for workspaces behind one `CgroupManager` trait, with a v1 implementation
//! (separate memory/pids/cpu hierarchies, as on the development machine) and a v2 one (the
//! unified hierarchy of production hosts). `detect` reads `/proc/self/mountinfo` to choose.
//!
//! Every group is named by a relative path such as `clarateach/ws-abc123/seat-01`; the
//! implementations map it under each controller's mount point. Processes join a group through
//! file descriptors opened beforehand (`procs_files`), so a freshly forked child can join before
//! it execs anything, with no race and no allocation after fork.

mod mountinfo;
mod v1;
mod v2;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clarateach_core::Limits;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use mountinfo::{detect, detect_host, freezer_state_of, Layout};
pub use v1::CgroupV1;
pub use v2::CgroupV2;

/// How long a freeze or thaw may take before it counts as failed.
pub const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

/// Period of the CPU bandwidth controller, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// Errors from cgroup operations; each names the action that failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no usable cgroup hierarchy with memory, pids and cpu controllers")]
    NotFound,
    #[error("creating cgroup {0}")]
    Create(PathBuf, #[source] std::io::Error),
    #[error("writing {0}")]
    Write(PathBuf, #[source] std::io::Error),
    #[error("reading {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("removing cgroup {0}")]
    Remove(PathBuf, #[source] std::io::Error),
    #[error("cgroup {0} still has processes after {1:?}")]
    NotEmpty(String, Duration),
    #[error("cgroup {0} did not reach the asked freezer state in {1:?}")]
    FreezeTimeout(String, Duration),
}

/// Which cgroup version a manager drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// Creates, limits, empties and removes the cgroup of a workspace.
pub trait CgroupManager: Send + Sync + std::fmt::Debug {
    fn version(&self) -> CgroupVersion;

    /// Creates the group (idempotent) and applies the limits.
    fn create(&self, name: &str, limits: &Limits) -> Result<(), CgroupError>;

    /// Opens the `cgroup.procs` files a process writes `0` to in order to join the group.
    fn procs_files(&self, name: &str) -> Result<Vec<File>, CgroupError>;

    /// Pids of every process in the group (empty when the group does not exist).
    fn pids(&self, name: &str) -> Result<Vec<i32>, CgroupError>;

    /// Freezes or thaws the group; returns false when the host cannot freeze.
    fn freeze(&self, name: &str, frozen: bool) -> Result<bool, CgroupError>;

    /// Removes the group, then its parent when that is left empty.
    fn remove(&self, name: &str) -> Result<(), CgroupError>;

    /// Whether the group exists.
    fn exists(&self, name: &str) -> bool;

    /// How many times a process of the group was killed for exceeding the memory limit.
    fn oom_kills(&self, name: &str) -> Result<u64, CgroupError>;
}

/// Builds the manager for this host.
pub fn host_manager() -> Result<Box<dyn CgroupManager>, CgroupError> {
    Ok(match detect_host()? {
        Layout::V1(m) => Box::new(m),
        Layout::V2(m) => Box::new(m),
    })
}

/// Kills every process of the group and waits until it is empty. Freezing first stops a fork
/// bomb from outrunning the kill loop.
pub fn kill_all(cg: &dyn CgroupManager, name: &str, timeout: Duration) -> Result<(), CgroupError> {
    let deadline = Instant::now() + timeout;
    loop {
        let pids = cg.pids(name)?;
        if pids.is_empty() {
            return Ok(());
        }
        let frozen = cg.freeze(name, true).unwrap_or(false);
        for pid in cg.pids(name)? {
            // ESRCH only means the process is already gone.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if frozen {
            // A frozen task only acts on SIGKILL once thawed.
            cg.freeze(name, false)?;
        }
        if Instant::now() >= deadline {
            return Err(CgroupError::NotEmpty(name.to_string(), timeout));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|e| CgroupError::Write(path.to_path_buf(), e))
}

pub(crate) fn read_pids(path: &Path) -> Result<Vec<i32>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(CgroupError::Read(path.to_path_buf(), e)),
    }
}

pub(crate) fn open_procs(path: &Path) -> Result<File, CgroupError> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| CgroupError::Write(path.to_path_buf(), e))
}

/// Removes `dir` (retrying briefly while the kernel still counts dying tasks), then its parent
/// if empty. Neither existing is fine.
/// `create_dir_all` that survives a concurrent `remove_dirs` of another seat deleting the shared
/// workshop-level parent between our mkdir of the parent and of the child (ENOENT): retry.
pub(crate) fn mkdir_all(dir: &Path) -> Result<(), CgroupError> {
    let mut tries = 0;
    loop {
        match std::fs::create_dir_all(dir) {
            Ok(()) => return Ok(()),
            // Each retry recreates the parent; the sibling's rmdir can only win while it is
            // empty, so this ends quickly in practice; the bound only guards against a bug.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 10_000 => {
                tries += 1;
                std::thread::yield_now();
            }
            Err(e) => return Err(CgroupError::Create(dir.to_path_buf(), e)),
        }
    }
}

pub(crate) fn remove_dirs(dir: &Path) -> Result<(), CgroupError> {
    let mut tries = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(CgroupError::Remove(dir.to_path_buf(), e)),
        }
    }
    if let Some(parent) = dir.parent() {
        // The workshop-level group goes once its last seat is gone; busy or missing is fine.
        let _ = std::fs::remove_dir(parent);
    }
    Ok(())
}

/// Reads `key value` lines (memory.events, memory.oom_control) and returns `key`'s value.
pub(crate) fn read_keyed(path: &Path, key: &str) -> Result<u64, CgroupError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(CgroupError::Read(path.to_path_buf(), e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: seats of one workshop starting while another is destroyed raced on the
    /// workshop-level group (seen as "creating cgroup .../seat-01" failures in the e2e run).
    #[test]
    fn mkdir_all_survives_a_concurrent_parent_removal() {
        let root = tempfile::tempdir().expect("tempdir");
        let workshop = root.path().join("ws-race01");
        let remover = {
            let seat = workshop.join("seat-02");
            std::thread::spawn(move || {
                for _ in 0..500 {
                    let _ = std::fs::create_dir_all(&seat);
                    remove_dirs(&seat).expect("remove");
                }
            })
        };
        let seat = workshop.join("seat-01");
        for _ in 0..500 {
            mkdir_all(&seat).expect("mkdir must not fail on a vanished parent");
            std::fs::remove_dir(&seat).expect("rmdir");
        }
        remover.join().expect("remover thread");
    }
}
