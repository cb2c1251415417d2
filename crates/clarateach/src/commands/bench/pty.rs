//! The physical limit every terminal figure is compared with: a program on a host PTY, drained
//! by this process with 1 MiB reads and nothing else in the way (no relay, no framing, no
//! `script(1)` copying through small buffers).

use std::time::Instant;

use anyhow::Context;

/// Runs `argv` on a fresh host PTY and reads it until it closes; returns the bytes read and the
/// seconds from spawn to the last byte.
pub async fn drain(argv: Vec<String>) -> anyhow::Result<(u64, f64)> {
    let spec = clarateach_workspace::pty::SpawnSpec {
        argv,
        cwd: std::env::temp_dir(),
        env: Vec::new(),
        env_remove: Vec::new(),
        cols: 200,
        rows: 50,
    };
    let start = Instant::now();
    let (master, mut child) =
        clarateach_workspace::pty::spawn(&spec).context("cannot open a host PTY")?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total: u64 = 0;
    loop {
        match master.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            // EIO: every slave fd is closed, the program is done.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => return Err(e).context("reading the host PTY"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = child.wait().await;
    Ok((total, secs))
}
