//! The seat's log (bubblewrap's and the daemon's stderr) without giving the seat a host file.
//!
//! bwrap's pid-1 init runs as the seat's uid and is dumpable, so a learner can `ptrace` it or
//! write its `/proc/1/mem` and make it write whatever it likes to its stdout and stderr. If those
//! were the log file in the data dir (no quota there), a seat could fill the disk that holds the
//! store and keys. So bwrap's stdout and stderr are the write end of a FIFO in the root-only state
//! dir, and the agent drains it into the log file, keeping at most `LOG_CAP` bytes per run.
//! Non-blocking on both ends: while no agent drains (an agent restart), writers get `EAGAIN`
//! once the pipe buffer is full, and lines are dropped rather than a daemon blocked. A restarted
//! agent opens the FIFO again (`attach`) and goes on draining.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

/// Bytes of log kept per run of a seat; the rest is counted and dropped.
pub const LOG_CAP: u64 = 1 << 20;

/// The FIFO beside the log file: `seat-NN.log` -> `seat-NN.logpipe`.
pub fn fifo_path(log: &Path) -> PathBuf {
    log.with_extension("logpipe")
}

fn make_fifo(fifo: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(fifo) {
        Ok(m) if m.file_type().is_fifo() => return Ok(()),
        Ok(_) => std::fs::remove_file(fifo)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
    std::fs::set_permissions(fifo, std::fs::Permissions::from_mode(0o600))
}

fn open_read(fifo: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(fifo)
}

/// For a start: a fresh log (the last run's is kept when small), the FIFO's write end for
/// bwrap's stdout and stderr, and the task draining it (it ends when every writer is gone).
pub fn for_start(log: &Path) -> std::io::Result<(File, JoinHandle<()>)> {
    if std::fs::metadata(log).is_ok_and(|m| m.len() > LOG_CAP) {
        std::fs::remove_file(log)?;
    }
    let fifo = fifo_path(log);
    make_fifo(&fifo)?;
    // The read end first: opening the write end without a reader fails with ENXIO.
    let read = open_read(&fifo)?;
    let write = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(&fifo)?;
    let drain = tokio::spawn(drain(read, log.to_path_buf()));
    Ok((write, drain))
}

/// For an adopted seat: drains its FIFO again (nothing when it is gone).
pub fn attach(log: &Path) {
    let fifo = fifo_path(log);
    match open_read(&fifo) {
        Ok(read) => {
            tokio::spawn(drain(read, log.to_path_buf()));
        }
        Err(e) => tracing::debug!(fifo = %fifo.display(), error = %e, "no seat log pipe to attach"),
    }
}

/// Copies the pipe into the log file until EOF, at most `LOG_CAP` bytes of it in all.
async fn drain(read: File, log: PathBuf) {
    let mut pipe = match tokio::net::unix::pipe::Receiver::from_file(read) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(log = %log.display(), error = %e, "cannot drain the seat log");
            return;
        }
    };
    let mut out = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log)
    {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(log = %log.display(), error = %e, "cannot open the seat log");
            return;
        }
    };
    let mut kept = out.metadata().map(|m| m.len()).unwrap_or(0);
    let mut dropped = 0u64;
    let mut buf = vec![0u8; 16 << 10];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = LOG_CAP.saturating_sub(kept) as usize;
                let take = n.min(room);
                if take > 0 && out.write_all(&buf[..take]).is_ok() {
                    kept += take as u64;
                }
                dropped += (n - take) as u64;
            }
        }
    }
    if dropped > 0 {
        let _ = writeln!(out, "[clarateach: {dropped} more bytes of log dropped]");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drains_into_the_log_and_caps_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("seat-01.log");
        let (mut write, drain) = for_start(&log).expect("start");
        write.write_all(b"bwrap: hello\n").expect("write");
        // A flood far past the cap: non-blocking, so the writer sees EAGAIN, never blocks.
        let chunk = vec![b'x'; 64 << 10];
        let mut written = 0u64;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while written < 3 * LOG_CAP && std::time::Instant::now() < deadline {
            match write.write(&chunk) {
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await
                }
                Err(e) => panic!("write: {e}"),
            }
        }
        drop(write);
        tokio::time::timeout(std::time::Duration::from_secs(5), drain)
            .await
            .expect("drain ends at EOF")
            .expect("join");
        let text = std::fs::read(&log).expect("log");
        assert!(text.starts_with(b"bwrap: hello\n"));
        assert!(
            text.len() as u64 <= LOG_CAP + 100,
            "log capped: {}",
            text.len()
        );
        assert!(String::from_utf8_lossy(&text[text.len() - 80..]).contains("dropped"));
        // The next start begins a fresh log once the last one is at the cap.
        let (_w, _d) = for_start(&log).expect("again");
        assert!(!log.exists() || std::fs::metadata(&log).expect("meta").len() == 0);
    }
}
