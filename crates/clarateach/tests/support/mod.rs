//! Helpers for the end-to-end tests that drive the real `clarateach` binary: start `up` (or
//! `serve` + `agent`) on a free port with a temp data dir, wait until it answers, send signals,
//! and find processes that still belong to a data dir.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const BIN: &str = env!("CARGO_BIN_EXE_clarateach");

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// Why these tests cannot run here, if they cannot (they need root and bubblewrap).
pub fn skip_reason() -> Option<String> {
    if !is_root() {
        return Some("needs root (sandboxes use namespaces and cgroups)".into());
    }
    if !Path::new("/usr/bin/bwrap").exists() {
        return Some("needs bubblewrap (/usr/bin/bwrap)".into());
    }
    None
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A running `clarateach` process whose stderr goes to a log file in the data dir.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    /// Starts `clarateach args...` and waits until a stdout line contains `ready_marker`.
    pub fn start(dir: &Path, name: &str, args: &[String], ready_marker: &str) -> Self {
        Self::start_logging(dir, name, args, ready_marker, "info")
    }

    /// Like [`Proc::start`] with `CLARATEACH_LOG=level` (e.g. `debug`).
    pub fn start_logging(
        dir: &Path,
        name: &str,
        args: &[String],
        ready_marker: &str,
        level: &str,
    ) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        Self::start_command(dir, name, cmd, ready_marker, level)
    }

    /// Like [`Proc::start_logging`] for a command built by the caller (another binary, or
    /// `clarateach` run through a wrapper such as `nsenter`).
    pub fn start_command(
        dir: &Path,
        name: &str,
        mut cmd: Command,
        ready_marker: &str,
        level: &str,
    ) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{name}.log")))
            .expect("log file");
        let mut child = cmd
            .env("CLARATEACH_LOG", level)
            // Seat images are sparse and tests write little: a fixed budget instead of `auto`,
            // which would refuse seats whose full growth does not fit this (shared) disk.
            .env("CLARATEACH_SEAT_STORE_SIZE", "1T")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn clarateach");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let marker = ready_marker.to_string();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent && line.contains(&marker) {
                    let _ = tx.send(line.clone());
                    sent = true;
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
            panic!("{name} did not become ready; log:\n{log}");
        }
        Self {
            child,
            name: name.into(),
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {}", self.name);
    }

    /// Sends `sig` and waits for the exit status.
    pub fn stop(mut self, sig: &str) -> std::process::ExitStatus {
        self.signal(sig);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit after {sig}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `clarateach up` on a free port; returns it with its base URL and instructor token.
pub fn start_up(dir: &Path, port: u16) -> (Proc, String, String) {
    let args = vec![
        "up".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--data-dir".into(),
        dir.display().to_string(),
        "--heartbeat-ms".into(),
        "300".into(),
    ];
    let p = Proc::start(dir, "up", &args, "ClaraTeach is up");
    (p, format!("http://127.0.0.1:{port}"), instructor_token(dir))
}

/// The instructor token the control plane wrote into its data dir.
pub fn instructor_token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("instructor.token"))
        .expect("instructor.token")
        .trim()
        .to_string()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Starts `clarateach serve` (the control plane alone) on `port` with data dir `dir`.
pub fn serve(dir: &Path, port: u16) -> Proc {
    serve_with(dir, port, &[])
}

/// Like [`serve`] with more arguments (e.g. `--object-store URL`).
pub fn serve_with(dir: &Path, port: u16, extra: &[&str]) -> Proc {
    let mut args = strings(&[
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        &dir.display().to_string(),
        "--heartbeat-ms",
        "300",
    ]);
    args.extend(strings(extra));
    Proc::start(dir, "serve", &args, "control plane on")
}

/// The agent id [`agent_token`] issues its token for and [`agent`] registers as.
pub const AGENT_ID: &str = "e2e-agent";

/// Starts `clarateach agent` (as [`AGENT_ID`]) against the control plane on `port`, with its own
/// data dir under `dir/agent-host`.
pub fn agent(dir: &Path, port: u16, token: &str) -> Proc {
    agent_as(dir, port, token, AGENT_ID, "agent")
}

/// Starts `clarateach agent --id ID` (log and process name `name`, data dir `dir/NAME-host`
/// for any name but `agent`).
pub fn agent_as(dir: &Path, port: u16, token: &str, id: &str, name: &str) -> Proc {
    agent_as_with(dir, port, token, id, name, &[])
}

/// Like [`agent_as`] with more arguments (e.g. `--object-store URL`).
pub fn agent_as_with(
    dir: &Path,
    port: u16,
    token: &str,
    id: &str,
    name: &str,
    extra: &[&str],
) -> Proc {
    let host = if name == "agent" {
        "agent-host".to_string()
    } else {
        format!("{name}-host")
    };
    let mut args = strings(&[
        "agent",
        "--id",
        id,
        "--control-plane",
        &format!("http://127.0.0.1:{port}"),
        "--token",
        token,
        "--data-dir",
        &dir.join(host).display().to_string(),
        "--listen",
        "127.0.0.1:0",
    ]);
    args.extend(strings(extra));
    Proc::start(dir, name, &args, "listening on")
}

/// The agent token for [`AGENT_ID`] the control plane in `dir` issues.
pub fn agent_token(dir: &Path) -> String {
    agent_token_for(dir, AGENT_ID)
}

/// `clarateach agent token --id ID` on the control plane's data dir `dir`.
pub fn agent_token_for(dir: &Path, id: &str) -> String {
    agent_token_with(dir, id, &[])
}

/// Like [`agent_token_for`] with more arguments (e.g. `--database-url URL`).
pub fn agent_token_with(dir: &Path, id: &str, extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .args([
            "agent",
            "token",
            "--id",
            id,
            "--data-dir",
            &dir.display().to_string(),
        ])
        .args(extra)
        .output()
        .expect("agent token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

/// Pids (other than `except`) whose command line mentions `dir`: seat sandboxes and daemons.
pub fn processes_using(dir: &Path, except: &[u32]) -> Vec<(u32, String)> {
    let needle = dir.display().to_string();
    let me = std::process::id();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me || except.contains(&pid) {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains(&needle) {
            out.push((pid, cmd));
        }
    }
    out
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A workshop request with `seats` seats and every option left to its default.
pub fn workshop_request(name: &str, seats: u32) -> clarateach_core::CreateWorkshopRequest {
    clarateach_core::CreateWorkshopRequest::plain(name, seats)
}

/// Writes `content` to `path` in the learner's workspace through the gateway.
pub async fn put_file(http: &reqwest::Client, base: &str, token: &str, path: &str, content: &str) {
    let put = http
        .put(format!("{base}/api/session/files/{path}"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "content": content }))
        .send()
        .await
        .expect("put");
    assert!(put.status().is_success(), "{}", put.status());
}

/// Creates and starts the workshop `req` (retrying until an agent has registered), then waits
/// until all its seats are ready.
pub async fn start_workshop(
    admin: &clarateach_client::Client,
    req: &clarateach_core::CreateWorkshopRequest,
) -> clarateach_core::Workshop {
    let ws = eventually("workshop started", Duration::from_secs(20), || async {
        let ws = admin.create_workshop(req).await.ok()?;
        admin.start_workshop(&ws.id).await.ok()?;
        Some(ws)
    })
    .await;
    eventually("running", Duration::from_secs(30), || async {
        let w = admin.get_workshop(&ws.id).await.ok()?;
        (w.status == clarateach_core::WorkshopStatus::Running && w.seats_ready == req.seats)
            .then_some(())
    })
    .await;
    ws
}

/// Joins the workshop with join code `code` anonymously.
pub async fn join(base: &str, code: &str) -> clarateach_core::JoinResponse {
    clarateach_client::Client::new(base, None)
        .expect("client")
        .join(&clarateach_core::JoinRequest {
            code: code.to_string(),
            odehash: None,
            name: None,
        })
        .await
        .expect("join")
}

/// Opens a learner's terminal through `base` (a real WebSocket), runs `echo` of a marker and
/// waits for the shell's answer; true when it came back within 5 s.
pub async fn terminal_round_trip(base: &str, token: &str, marker: &str) -> bool {
    terminal_echo(base, token, marker, Duration::from_secs(5)).await
}

/// Opens a learner's terminal with `token`, runs `echo` of a marker and waits up to `wait` for
/// the shell's answer; true when it came back.
async fn terminal_echo(base: &str, token: &str, marker: &str, wait: Duration) -> bool {
    use clarateach_client::{Client, TerminalOptions};
    let Ok(learner) = Client::new(base, Some(token.to_string())) else {
        return false;
    };
    let Ok(mut term) = learner.terminal(&TerminalOptions::default()).await else {
        return false;
    };
    if term
        .send_input(&format!("echo {marker}-$((6*7))\r"))
        .await
        .is_err()
    {
        return false;
    }
    let want = format!("{marker}-42");
    term.read_until(want.as_bytes(), wait).await.is_ok()
}

/// A temp data dir whose seat store and seat file systems (loop mounts the agent keeps across
/// restarts by design) are unmounted, lazily, when the test ends.
pub struct DataDir(tempfile::TempDir);

impl Drop for DataDir {
    fn drop(&mut self) {
        // Seats outlive a killed agent by design, so a test that kills its agent would leave
        // its seats running after it: they go first (their bwrap names their volume's path).
        kill_processes_naming(self.0.path());
        let _ = clarateach_isolation::sandbox::store::unmount_under(self.0.path());
    }
}

/// SIGKILLs every process whose command line names a path under `dir` (this test's seats and
/// any `serve`/`agent` still running on it).
pub fn kill_processes_naming(dir: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let needle = dir.as_os_str().as_bytes();
    let me = std::process::id().to_string();
    let pids: Vec<String> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.to_string();
            if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
                return None;
            }
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            cmd.windows(needle.len())
                .any(|w| w == needle)
                .then_some(pid)
        })
        .collect();
    if !pids.is_empty() {
        let _ = Command::new("kill")
            .arg("-9")
            .args(&pids)
            .stderr(Stdio::null())
            .status();
    }
}

pub fn data_dir() -> (DataDir, PathBuf) {
    let t = tempfile::Builder::new()
        .prefix("ct-e2e-")
        .tempdir()
        .expect("tempdir");
    let p = t.path().to_path_buf();
    (DataDir(t), p)
}

/// A control plane (`serve`) and a separate agent on one temp data dir and a free port, the
/// two-process set-up the restart tests kill and restart piece by piece.
pub struct SplitStack {
    pub tmp: DataDir,
    pub dir: PathBuf,
    pub port: u16,
    pub base: String,
    pub cp: Proc,
    pub ag: Proc,
    pub instructor: String,
    pub agent_token: String,
}

pub fn serve_and_agent() -> SplitStack {
    let (tmp, dir) = data_dir();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let cp = serve(&dir, port);
    let instructor = instructor_token(&dir);
    let agent_token = agent_token(&dir);
    let ag = agent(&dir, port, &agent_token);
    SplitStack {
        tmp,
        dir,
        port,
        base,
        cp,
        ag,
        instructor,
        agent_token,
    }
}

/// `out` of the command run with `args`, which must have succeeded; its stdout. A failure
/// panics with the status and both streams, for the test's log.
pub fn succeeded(args: &[&str], out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{args:?} failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Opens a terminal through `base` with the learner `token` and runs `echo` of a marker; true
/// when the answer came back within 3 s.
pub async fn terminal_live(base: &str, token: &str, marker: &str) -> bool {
    terminal_echo(base, token, marker, Duration::from_secs(3)).await
}

/// The content of `path` in the learner's workspace, read through the gateway at `base`; `None`
/// when it cannot be read (missing, or the seat not reachable).
pub async fn read_file(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
) -> Option<String> {
    let res = http
        .get(format!("{base}/api/session/files/{path}"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?;
    if !res.status().is_success() {
        return None;
    }
    let body: clarateach_core::ReadFileResponse = res.json().await.ok()?;
    Some(body.content)
}

/// Now, in seconds since the Unix epoch (the clock a seat's `date +%s.%N` reads).
pub fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
