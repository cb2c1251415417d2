//! One exclusive file lock per state dir, held by every command that changes sandboxes.
//!
//! The isolation backend hands out seat uids and network slots from what it reads on disk when it
//! is built; two CLI processes building one each could hand out the same uid. Holding
//! `sandbox.lock` (flock, released by the kernel when the process dies, even by `kill -9`) from
//! before the backend is built until the change is recorded makes concurrent CLI calls take turns
//! instead. Runs, exec and cp only read the store and talk to a running daemon: no lock.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Held while alive; the lock goes with the file descriptor.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Waits for the lock (blocking; call off the async runtime).
    pub fn acquire(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc_o_nofollow())
            .open(path)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
        Ok(Self { _file: file })
    }
}

fn libc_o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_second_holder_waits_for_the_first() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("lock");
        let first = StateLock::acquire(&path).expect("first");
        let got = Arc::new(AtomicBool::new(false));
        let (p, g) = (path.clone(), got.clone());
        let t = std::thread::spawn(move || {
            let _second = StateLock::acquire(&p).expect("second");
            g.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(!got.load(Ordering::SeqCst), "the lock was taken twice");
        drop(first);
        t.join().expect("join");
        assert!(got.load(Ordering::SeqCst));
    }
}
