//! `POST /run`: run one command in a fresh directory with staged files and capture its output.
//!
//! The command runs as `sh -c` in its own process group, so a timeout (and the end of the
//! command) kills everything it started. Output is capped per stream; the rest is drained and
//! dropped so a chatty command never blocks on a full pipe.

use axum::http::StatusCode;
use clarateach_core::ErrorCode;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use bytes::Bytes;
use clarateach_core::{RunRequest, RunResponse};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

use crate::error::{parse_json, ApiError};
use crate::fsroot::{RelPath, Root};
use crate::AppState;

/// Bytes kept of each of stdout and stderr.
pub const OUTPUT_CAP: usize = 1 << 20;
const DEFAULT_TIMEOUT_S: u64 = 30;
const MAX_TIMEOUT_S: u64 = 600;

static STAGE_COUNTER: AtomicU64 = AtomicU64::new(0);

pub async fn handler(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RunResponse>, ApiError> {
    let req: RunRequest = parse_json(&headers, body)?;
    if req.command.trim().is_empty() {
        return Err(ApiError::bad_request(
            ErrorCode::BadCommand,
            "command must not be empty",
        ));
    }
    let timeout_s = req.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S);
    if !(1..=MAX_TIMEOUT_S).contains(&timeout_s) {
        return Err(ApiError::bad_request(
            ErrorCode::BadTimeout,
            "timeout_s must be between 1 and 600",
        ));
    }
    if let Some(k) = req
        .env
        .keys()
        .find(|k| k.is_empty() || k.contains(['=', '\0']))
    {
        return Err(ApiError::bad_request(
            ErrorCode::BadEnv,
            format!("invalid environment variable name {k:?}"),
        ));
    }
    if req.env.values().any(|v| v.contains('\0')) || req.command.contains('\0') {
        return Err(ApiError::bad_request(
            ErrorCode::BadCommand,
            "command and env values must not contain NUL",
        ));
    }
    let mut files = Vec::new();
    for (path, content) in &req.files {
        let rel = RelPath::parse(path).map_err(ApiError::from)?;
        if rel.is_root() {
            return Err(ApiError::bad_request(
                ErrorCode::BadPath,
                "a staged file needs a name",
            ));
        }
        files.push((rel, content.clone().into_bytes()));
    }
    let _slot = state.run_slots.acquire().await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ShuttingDown,
            "The workspace daemon is stopping.",
        )
    })?;

    let stage = make_stage_dir().await?;
    let result = run_in(&state, &stage, files, &req, Duration::from_secs(timeout_s)).await;
    let cleanup = stage.clone();
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(cleanup)).await;
    result.map(Json)
}

async fn make_stage_dir() -> Result<PathBuf, ApiError> {
    tokio::task::spawn_blocking(|| {
        use std::os::unix::fs::DirBuilderExt;
        let n = STAGE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("clarateach-run-{}-{n}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map(|()| dir)
    })
    .await
    .map_err(|e| ApiError::internal("Staging the run was aborted.", &e))?
    .map_err(|e| ApiError::internal("Cannot create the run directory.", &e))
}

async fn run_in(
    state: &AppState,
    stage: &std::path::Path,
    files: Vec<(RelPath, Vec<u8>)>,
    req: &RunRequest,
    timeout: Duration,
) -> Result<RunResponse, ApiError> {
    let dir = stage.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let root = Root::open(&dir)?;
        files.iter().try_for_each(|(p, data)| root.write(p, data))
    })
    .await
    .map_err(|e| ApiError::internal("Staging the run was aborted.", &e))?
    .map_err(ApiError::from)?;

    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(&req.command)
        .current_dir(stage)
        .envs(&req.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for key in state.env_remove.iter() {
        cmd.env_remove(key);
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| ApiError::internal("Cannot start the command.", &e))?;
    let pgid = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32));
    let stop_reading = CancellationToken::new();
    let out = tokio::spawn(capture(child.stdout.take(), stop_reading.clone()));
    let err = tokio::spawn(capture(child.stderr.take(), stop_reading.clone()));

    let (status, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => (status.ok(), false),
        Err(_) => {
            kill_group(pgid);
            (child.wait().await.ok(), true)
        }
    };
    // Whatever the command left running in its group goes too, so the pipes reach EOF.
    kill_group(pgid);
    let duration_ms = started.elapsed().as_millis() as u64;
    // A grandchild that escaped the group may hold the pipes open: don't wait for it forever.
    let stopper = stop_reading.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        stopper.cancel();
    });
    let (stdout, t1) = out.await.unwrap_or_default();
    let (stderr, t2) = err.await.unwrap_or_default();
    stop_reading.cancel();
    let exit_code = match (timed_out, status) {
        (true, _) | (_, None) => None,
        (false, Some(s)) => Some(s.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + s.signal().unwrap_or(0)
        })),
    };
    Ok(RunResponse {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        exit_code,
        timed_out,
        duration_ms,
        truncated: t1 || t2,
    })
}

fn kill_group(pgid: Option<rustix::process::Pid>) {
    if let Some(pgid) = pgid {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::Kill);
    }
}

/// Reads a pipe to EOF (or until told to stop), keeping the first `OUTPUT_CAP` bytes.
async fn capture(pipe: Option<impl AsyncRead + Unpin>, stop: CancellationToken) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut truncated = false;
    let Some(mut pipe) = pipe else {
        return (out, truncated);
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            _ = stop.cancelled() => break,
            r = pipe.read(&mut buf) => match r { Ok(n) if n > 0 => n, _ => break },
        };
        let room = OUTPUT_CAP - out.len();
        if n > room {
            truncated = true;
        }
        out.extend_from_slice(&buf[..n.min(room)]);
    }
    (out, truncated)
}
