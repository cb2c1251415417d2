//! Integration tests of the control plane: a real server on 127.0.0.1:0 with a temp data dir,
//! real HTTP and WebSocket clients. Seats become ready through `ProtocolAgent`, which speaks the
//! real agent protocol but creates no workspaces; full-stack tests with the real agent live in
//! the agent crate.

mod authz_matrix;
mod capacity;
mod common;
mod data_tls;
mod errors;
mod help;
mod hostile_daemon;
mod images;
mod join;
mod lifecycle;
mod limits;
mod pause;
mod presenter;
mod previews;
mod replicas;
mod screens;
mod security;
mod sessions;
mod throttling;
mod toolkit;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Every log line of this test process, to check secrets never reach the logs.
pub fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,hyper=info,h2=info,tower=info,sqlx=info")
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
