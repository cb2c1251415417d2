//! Shared helpers for the sandbox tests: a host check that skips with a printed reason, a fresh
//! backend over a temp data dir, and a stand-in workspace daemon (a Perl script serving
//! `GET /health` and `POST /run` on the listening socket it inherits as `--listen fd:N`, checking
//! the bearer token from its environment) so isolation is tested from inside a seat without the real daemon.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clarateach_core::agent_proto::SeatKey;
use clarateach_core::Limits;
use clarateach_isolation::sandbox::{SandboxBackend, SandboxConfig};
use clarateach_isolation::{Backend, DaemonAddr, DaemonEndpoint, WorkspaceSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FAKE_DAEMON: &str = r#"#!/usr/bin/perl
use strict; use warnings; use IO::Socket::UNIX; use Socket; use Fcntl;
my ($listen) = grep { /^fd:/ } @ARGV; $listen =~ s/^fd://;
# The socket the agent bound, inherited as a descriptor; close-on-exec at once, as the real daemon.
my $srv = IO::Socket::UNIX->new_from_fd($listen, "r") or die "fd $listen: $!";
fcntl($srv, F_SETFD, FD_CLOEXEC) or die "cloexec: $!";
# A client gone before the answer must not kill the daemon (the real one ignores SIGPIPE too).
$SIG{PIPE} = "IGNORE";
my $want = "Bearer " . ($ENV{CLARATEACH_DAEMON_TOKEN} // "");
while (my $c = $srv->accept) {
    my $line = <$c>; next unless defined $line;
    my ($len, $auth) = (0, "");
    while (my $h = <$c>) {
        last if $h =~ /^\r?\n$/;
        $len = $1 if $h =~ /^content-length:\s*(\d+)/i;
        $auth = $1 if $h =~ /^authorization:\s*(.*?)\r?$/i;
    }
    my $body = ""; read($c, $body, $len) if $len;
    my ($status, $out) = (200, "ok");
    if ($auth ne $want) { ($status, $out) = (401, "bad token"); }
    elsif ($line =~ m{^POST /run}) {
        $out = `$body 2>&1`;
        $out = "exit=" . ($? >> 8) . " signal=" . ($? & 127) . "\n" . $out;
    }
    print $c "HTTP/1.1 $status X\r\nContent-Length: " . length($out) . "\r\nConnection: close\r\n\r\n$out";
    close $c;
}
"#;

/// Why these tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    clarateach_isolation::sandbox::available(Path::new(clarateach_isolation::sandbox::BWRAP)).err()
}

/// Prints the reason and returns true when the test must be skipped.
pub fn skipped(test: &str) -> bool {
    match skip_reason() {
        Some(why) => {
            clarateach_core::skip::report(test, &why);
            true
        }
        None => false,
    }
}

/// A temp data dir whose seat store and seat file systems (loop mounts, kept across agent
/// restarts by design) are unmounted when the test ends: tests leave no mounts behind.
pub struct DataDir(tempfile::TempDir);

impl DataDir {
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        // Lazily: a seat still running holds its bind mounts in its own namespace. A few
        // rounds, as the backend's thread that makes spare seat file systems may still mount one.
        for _ in 0..5 {
            let _ = clarateach_isolation::sandbox::store::unmount_under(self.0.path());
            std::thread::sleep(std::time::Duration::from_millis(40));
        }
        let _ = clarateach_isolation::sandbox::store::unmount_under(self.0.path());
    }
}

pub fn data_dir() -> DataDir {
    DataDir(tempfile::tempdir().expect("tempdir"))
}

/// A backend over a temp data dir with its own cgroup parent, so parallel tests never collide.
pub struct Harness {
    pub dir: DataDir,
    pub backend: SandboxBackend,
    pub ws: String,
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Writes the stand-in daemon into `data_dir` and returns its path.
pub fn fake_daemon(data_dir: &Path) -> PathBuf {
    fake_daemon_after(data_dir, 0)
}

/// The stand-in daemon, sleeping `secs` before it serves: a daemon slow to start (a cold image).
pub fn fake_daemon_after(data_dir: &Path, secs: u32) -> PathBuf {
    let path = data_dir.join("fake-daemon");
    let script = FAKE_DAEMON.replacen("\n", &format!("\nsleep {secs};\n"), 1);
    std::fs::write(&path, script).expect("write fake daemon");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

pub fn config(data_dir: &Path, daemon: PathBuf) -> SandboxConfig {
    let mut cfg = SandboxConfig::new(data_dir, daemon);
    cfg.cgroup_parent = "clarateach-test".into();
    // Seat images are sparse and tests write little: a fixed budget instead of `auto`, which
    // refuses seats whose full growth does not fit this (shared) disk.
    cfg.seat_store = clarateach_isolation::sandbox::StoreSize::Bytes(1 << 40);
    cfg
}

impl Harness {
    /// A backend running the stand-in daemon.
    pub fn new() -> Self {
        let dir = data_dir();
        let daemon = dir.path().join("fake-daemon");
        let backend = SandboxBackend::new(config(dir.path(), daemon)).expect("backend");
        fake_daemon(dir.path());
        Self {
            dir,
            backend,
            ws: unique("ws-t"),
        }
    }

    pub fn key(&self, seat: u32) -> SeatKey {
        SeatKey {
            workshop_id: self.ws.clone(),
            seat,
        }
    }

    /// Creates and starts a seat.
    pub async fn seat(&self, seat: u32, limits: Limits, env: &[(&str, &str)]) -> DaemonEndpoint {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let spec = WorkspaceSpec {
            key: self.key(seat),
            limits,
            image: None,
            env,
            daemon_token: format!("tok-{seat}"),
        };
        self.backend.create(&spec).await.expect("create");
        self.backend.start(&spec.key).await.expect("start")
    }
}

/// Runs `cmd` inside the seat through the stand-in daemon; returns (`exit=N signal=M`, output).
pub async fn run(ep: &DaemonEndpoint, cmd: &str) -> (String, String) {
    let DaemonAddr::Unix(socket) = &ep.addr else {
        panic!("sandbox endpoints are Unix sockets")
    };
    let mut s = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    let req = format!(
        "POST /run HTTP/1.1\r\nHost: w\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n{cmd}",
        ep.token,
        cmd.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.expect("read");
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let (status, out) = body.split_once('\n').unwrap_or((body, ""));
    (status.to_string(), out.trim_end().to_string())
}

/// Runs `cmd` and returns its output, asserting it exited 0.
pub async fn ok(ep: &DaemonEndpoint, cmd: &str) -> String {
    let (status, out) = run(ep, cmd).await;
    assert_eq!(status, "exit=0 signal=0", "`{cmd}` failed: {out}");
    out
}

/// Whether a host pid is still a live process (zombies count as gone).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| !s[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The `clarateach` binary: `CLARATEACH_BIN`, else the workspace's debug build.
pub fn real_daemon() -> Option<PathBuf> {
    let path = std::env::var_os("CLARATEACH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/clarateach")
        });
    let ok = std::process::Command::new(&path)
        .args(["workspace-server", "--help"])
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("--listen")
        });
    ok.then_some(path)
}
