//! A QMP client: QEMU's JSON control protocol on the per-seat Unix socket. Used for graceful
//! power-down, quit, pause (`stop`) and resume (`cont`).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// One QMP session (capabilities negotiated).
pub struct Qmp {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

fn proto(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

impl Qmp {
    /// Connects, reads the greeting and enters command mode.
    pub async fn connect(socket: &Path) -> std::io::Result<Self> {
        let stream = UnixStream::connect(socket).await?;
        let (r, w) = stream.into_split();
        let mut qmp = Self {
            reader: BufReader::new(r),
            writer: w,
        };
        let greeting = qmp.read_message().await?;
        if greeting.get("QMP").is_none() {
            return Err(proto(format!("unexpected QMP greeting: {greeting}")));
        }
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    /// Runs a command and returns its `return` value; events received meanwhile are skipped.
    pub async fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> std::io::Result<Value> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes()).await?;
        loop {
            let reply = self.read_message().await?;
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                return Err(proto(format!("QMP {command} failed: {err}")));
            }
        }
    }

    async fn read_message(&mut self) -> std::io::Result<Value> {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
            .await
            .map_err(|_| proto("QMP did not answer".into()))??;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "QMP socket closed",
            ));
        }
        serde_json::from_str(&line).map_err(|e| proto(format!("bad QMP message: {e}")))
    }
}

/// Connects and runs one command; convenience for lifecycle calls.
pub async fn command(socket: &Path, cmd: &str) -> std::io::Result<Value> {
    Qmp::connect(socket).await?.execute(cmd, None).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn negotiates_and_skips_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("qmp.sock");
        let listener = tokio::net::UnixListener::bind(&sock).expect("bind");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            s.write_all(b"{\"QMP\": {\"version\": {}}}\n")
                .await
                .expect("greet");
            let mut seen = String::new();
            let mut buf = [0u8; 512];
            while !seen.contains("query-status") {
                let n = s.read(&mut buf).await.expect("read");
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                if seen.contains("qmp_capabilities") && !seen.contains("CAPS-DONE") {
                    s.write_all(b"{\"return\": {}}\n").await.expect("caps");
                    seen.push_str("CAPS-DONE");
                }
            }
            s.write_all(b"{\"event\": \"RESUME\"}\n{\"return\": {\"status\": \"running\"}}\n")
                .await
                .expect("reply");
            seen
        });
        let ret = command(&sock, "query-status").await.expect("command");
        assert_eq!(ret["status"], "running");
        let seen = server.await.expect("server");
        assert!(seen.contains("{\"execute\":\"qmp_capabilities\"}"));
    }
}
