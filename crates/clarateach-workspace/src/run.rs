//! `POST /run`: run one command in a fresh directory with staged files and capture its output.
//!
//! The command runs as `sh -c` in its own process group, so a timeout (and the end of the
//! command) kills everything it started. Output is capped per stream; the rest is drained and
//! dropped so a chatty command never blocks on a full pipe. With `Accept: application/x-ndjson`
//! the answer streams the output as the command writes it (`RunEvent` lines, the last `exit`),
//! for callers that show it live (`clarateach sandbox run`).

use axum::http::StatusCode;
use clarateach_core::ErrorCode;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use clarateach_core::{RunEvent, RunRequest, RunResponse, RUN_STREAM_MEDIA_TYPE};
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
) -> Result<Response, ApiError> {
    let stream = wants_stream(&headers);
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
    crate::activate::check_env(&req.env)?;
    if req.command.contains('\0') {
        return Err(ApiError::bad_request(
            ErrorCode::BadCommand,
            "the command must not contain NUL",
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
    let slot = state.run_slots.clone().acquire_owned().await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ShuttingDown,
            "The workspace daemon is stopping.",
        )
    })?;

    let stage = make_stage_dir().await?;
    let timeout = Duration::from_secs(timeout_s);
    let (live, events) = if stream {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let started = match start(&state, &stage, files, &req, live.clone()).await {
        Ok(s) => s,
        Err(e) => {
            remove_stage(stage).await;
            return Err(e);
        }
    };
    let (Some(tx), Some(rx)) = (live, events) else {
        let result = finish(started, timeout).await;
        remove_stage(stage).await;
        return Ok(Json(result).into_response());
    };
    // Streamed: the command runs on (its slot held) while the lines go out as it writes.
    tokio::spawn(async move {
        let r = finish(started, timeout).await;
        let _ = tx.send(RunEvent::Exit {
            exit_code: r.exit_code,
            timed_out: r.timed_out,
            duration_ms: r.duration_ms,
            truncated: r.truncated,
        });
        remove_stage(stage).await;
        drop(slot);
    });
    let lines = futures::stream::unfold(rx, |mut rx| async move {
        let ev = rx.recv().await?;
        let mut line = serde_json::to_vec(&ev).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), rx))
    });
    Ok((
        [(header::CONTENT_TYPE, RUN_STREAM_MEDIA_TYPE)],
        Body::from_stream(lines),
    )
        .into_response())
}

/// Whether the caller asked for the streamed form (`Accept: application/x-ndjson`).
fn wants_stream(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().starts_with(RUN_STREAM_MEDIA_TYPE))
        })
}

async fn remove_stage(stage: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(stage)).await;
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

/// A command started in its stage dir, its pipes being read.
struct Started {
    child: tokio::process::Child,
    pgid: Option<rustix::process::Pid>,
    started: Instant,
    out: tokio::task::JoinHandle<(Vec<u8>, bool)>,
    err: tokio::task::JoinHandle<(Vec<u8>, bool)>,
    stop_reading: CancellationToken,
}

/// Where a streamed run's output goes as it is read.
type Live = tokio::sync::mpsc::UnboundedSender<RunEvent>;

/// Stages the files and starts the command.
async fn start(
    state: &AppState,
    stage: &std::path::Path,
    files: Vec<(RelPath, Vec<u8>)>,
    req: &RunRequest,
    live: Option<Live>,
) -> Result<Started, ApiError> {
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
        .envs(state.activation.env().iter().cloned())
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
    let out_live = live.clone().map(|tx| (tx, false));
    let err_live = live.map(|tx| (tx, true));
    let out = tokio::spawn(capture(child.stdout.take(), stop_reading.clone(), out_live));
    let err = tokio::spawn(capture(child.stderr.take(), stop_reading.clone(), err_live));
    Ok(Started {
        child,
        pgid,
        started,
        out,
        err,
        stop_reading,
    })
}

/// Waits for the command (killing its group at the timeout) and its output.
async fn finish(s: Started, timeout: Duration) -> RunResponse {
    let Started {
        mut child,
        pgid,
        started,
        out,
        err,
        stop_reading,
    } = s;
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
    RunResponse {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        exit_code,
        timed_out,
        duration_ms,
        truncated: t1 || t2,
    }
}

fn kill_group(pgid: Option<rustix::process::Pid>) {
    if let Some(pgid) = pgid {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::Kill);
    }
}

/// Reads a pipe to EOF (or until told to stop), keeping the first `OUTPUT_CAP` bytes; with a
/// live sink (and whether this is stderr) each kept chunk is also sent as it is read, as text
/// that never splits a character (`Utf8Stream` holds an incomplete one for the next chunk).
async fn capture(
    pipe: Option<impl AsyncRead + Unpin>,
    stop: CancellationToken,
    live: Option<(Live, bool)>,
) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut truncated = false;
    let Some(mut pipe) = pipe else {
        return (out, truncated);
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut text = crate::terminal::Utf8Stream::default();
    loop {
        let n = tokio::select! {
            _ = stop.cancelled() => break,
            r = pipe.read(&mut buf) => match r { Ok(n) if n > 0 => n, _ => break },
        };
        let room = OUTPUT_CAP - out.len();
        if n > room {
            truncated = true;
        }
        let kept = &buf[..n.min(room)];
        out.extend_from_slice(kept);
        if let Some((tx, is_err)) = &live {
            let data = text.push(kept);
            if !data.is_empty() {
                let _ = tx.send(if *is_err {
                    RunEvent::Stderr { data }
                } else {
                    RunEvent::Stdout { data }
                });
            }
        }
    }
    (out, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_live_capture_sends_what_it_keeps_in_order() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let data: &[u8] = "héllo wörld".as_bytes();
        let (kept, truncated) =
            capture(Some(data), CancellationToken::new(), Some((tx, true))).await;
        assert_eq!(kept, data);
        assert!(!truncated);
        let mut got = String::new();
        while let Ok(ev) = rx.try_recv() {
            match ev {
                RunEvent::Stderr { data } => got.push_str(&data),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, "héllo wörld");
    }
}
