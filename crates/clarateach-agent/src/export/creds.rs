//! Gives the export thread the seat's own credentials. Linux keeps uids, gids and capabilities
//! per thread; the raw `setres[ug]id` syscalls (rustix's `set_thread_*`, unlike libc's wrappers,
//! which change every thread of the process) change only the calling thread. Dropping root this
//! way clears the thread's capabilities, so whatever the walker does by mistake, the kernel checks
//! it against the seat's uid: a root-only host file stays unreadable even if a bug resolved a
//! path the learner controls. The thread is a dedicated one that ends with the export, never a
//! pooled one.

use rustix::process::{Gid, Uid};
use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};

/// The uid/gid that parses a microVM image when the backend names no owner (`nobody`).
pub const NOBODY: (u32, u32) = (65534, 65534);

/// Why the thread could not take the seat's credentials.
#[derive(Debug, thiserror::Error)]
pub enum CredsError {
    #[error("clearing supplementary groups failed")]
    Groups(#[source] rustix::io::Errno),
    #[error("setting gid {0} failed")]
    Gid(u32, #[source] rustix::io::Errno),
    #[error("setting uid {0} failed")]
    Uid(u32, #[source] rustix::io::Errno),
}

/// True when this process may change credentials (it runs as root).
pub fn can_switch() -> bool {
    rustix::process::geteuid().is_root()
}

/// Makes the calling thread (only) run as `uid:gid` with no supplementary groups and no
/// capabilities. Irreversible for the thread.
pub fn become_owner(uid: u32, gid: u32) -> Result<(), CredsError> {
    // u32::MAX means "leave unchanged" to the syscalls: never a seat's id.
    if uid == u32::MAX || gid == u32::MAX {
        return Err(CredsError::Uid(uid, rustix::io::Errno::INVAL));
    }
    let g = Gid::from_raw(gid);
    let u = Uid::from_raw(uid);
    set_thread_groups(&[]).map_err(CredsError::Groups)?;
    set_thread_res_gid(g, g, g).map_err(|e| CredsError::Gid(gid, e))?;
    set_thread_res_uid(u, u, u).map_err(|e| CredsError::Uid(uid, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_thread_cannot_read_root_files_and_the_process_keeps_root() {
        if !can_switch() {
            clarateach_core::skip::report(
                "a_dropped_thread_cannot_read_root_files_and_the_process_keeps_root",
                "needs root to change thread credentials",
            );
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "root only").expect("write");
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        let s = secret.clone();
        let denied = std::thread::spawn(move || {
            become_owner(61999, 61999).expect("drop");
            assert_eq!(rustix::process::geteuid().as_raw(), 61999);
            std::fs::read(&s).map_err(|e| e.kind())
        })
        .join()
        .expect("thread");
        assert_eq!(denied, Err(std::io::ErrorKind::PermissionDenied));
        assert!(can_switch(), "other threads keep root");
        assert_eq!(std::fs::read(&secret).expect("root reads"), b"root only");
    }
}
