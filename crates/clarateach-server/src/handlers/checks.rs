//! `POST /api/workshops/{id}/checks`: run one command in every running seat at once, through
//! each seat's own `run` (as the seat user, inside the seat), and keep the results as the
//! workshop's latest; `GET` gives them and the stored check command. Output is cut per seat at
//! [`CHECK_OUTPUT_BYTES`] per stream, and each seat's answer is read with a cap and a deadline:
//! a check runs the learner's code, so its output is the learner's to choose.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::Json;
use bytes::Bytes;
use chrono::Utc;
use clarateach_core::toolkit::{
    AuditAction, CheckRequest, CheckResult, CheckRun, ChecksResponse, SavedCheck,
    CHECK_COMMAND_CHARS, CHECK_DEFAULT_TIMEOUT_S, CHECK_MAX_TIMEOUT_S, CHECK_OUTPUT_BYTES,
};
use clarateach_core::{ErrorBody, ErrorCode, RunRequest, RunResponse, WorkshopStatus};
use clarateach_store::LatestKind;
use futures::StreamExt;

use crate::auth::Instructor;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::gateway::seat_call::{self, SeatRequest};
use crate::handlers::broadcast::running_seats;
use crate::state::AppState;

/// Seats run at once (each is mostly waiting on its command).
const SEATS_AT_ONCE: usize = 64;
/// Where a seat's files are, inside the seat (sandbox and microVM alike).
const SEAT_WORKSPACE: &str = "/workspace";
/// Largest `run` answer read from a seat (the daemon keeps up to 1 MiB per stream).
const MAX_ANSWER: usize = 3 << 20;

/// The command a run without one uses: stored for the workshop, else its template's check.
async fn saved(state: &AppState, workshop_id: &str) -> Result<Option<SavedCheck>, ApiError> {
    if let Some(json) = state
        .store()
        .latest(workshop_id, LatestKind::CheckCommand)
        .await?
    {
        if let Ok(s) = serde_json::from_str(&json) {
            return Ok(Some(s));
        }
    }
    Ok(state
        .store()
        .workshop_starter(workshop_id)
        .await?
        .and_then(|s| s.check_cmd)
        .map(|command| SavedCheck {
            command,
            timeout_s: CHECK_DEFAULT_TIMEOUT_S,
        }))
}

/// `s` cut to at most `max` bytes at a character boundary; true when cut.
fn cut(mut s: String, max: usize) -> (String, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    (s, true)
}

fn no_result(seat: u32, started: Instant, error: String) -> CheckResult {
    CheckResult {
        seat,
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        duration_ms: elapsed_ms(started),
        timed_out: false,
        truncated: false,
        passed: false,
        error: Some(error),
    }
}

fn elapsed_ms(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

async fn run_in_seat(
    state: &AppState,
    ws: &str,
    seat: u32,
    body: Bytes,
    timeout_s: u64,
) -> CheckResult {
    let started = Instant::now();
    let req = SeatRequest {
        method: Method::POST,
        path: "run".into(),
        body: Some((body, "application/json")),
        timeout: Duration::from_secs(timeout_s + 5),
        max_body: MAX_ANSWER,
    };
    let answer = match seat_call::call(state, ws, seat, req).await {
        Ok(a) if a.status == StatusCode::OK => a.body,
        Ok(a) => {
            return no_result(
                seat,
                started,
                format!("the seat refused the command ({})", a.status),
            )
        }
        Err(e) => return no_result(seat, started, e.to_string()),
    };
    let Ok(run) = serde_json::from_slice::<RunResponse>(&answer) else {
        return no_result(seat, started, "the seat's answer is unreadable".into());
    };
    let (stdout, cut_out) = cut(run.stdout, CHECK_OUTPUT_BYTES);
    let (stderr, cut_err) = cut(run.stderr, CHECK_OUTPUT_BYTES);
    CheckResult {
        seat,
        exit_code: run.exit_code,
        stdout,
        stderr,
        duration_ms: run.duration_ms,
        timed_out: run.timed_out,
        truncated: run.truncated || cut_out || cut_err,
        passed: run.exit_code == Some(0) && !run.timed_out,
        error: None,
    }
}

/// Run a check command in every running seat in parallel.
#[utoipa::path(post, path = "/api/workshops/{id}/checks", tag = "classroom",
    params(("id" = String, Path, description = "Workshop id")),
    request_body = CheckRequest, security(("bearer" = [])),
    responses(
        (status = 200, description = "One result per running seat", body = CheckRun),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`workshop_not_running`", body = ErrorBody),
        (status = 422, description = "A bad command or timeout, or `no_check_command`", body = ErrorBody),
    ))]
pub async fn run(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<CheckRequest>,
) -> Result<Json<CheckRun>, ApiError> {
    let w = instructor.workshop(&state, &id).await?;
    if w.status != WorkshopStatus::Running {
        return Err(ApiError::conflict(
            ErrorCode::WorkshopNotRunning,
            "The workshop is not running: start it first.",
        ));
    }
    let stored = saved(&state, &w.id).await?;
    let (command, timeout_s) = match (req.command, &stored) {
        (Some(c), _) => (c, req.timeout_s),
        (None, Some(s)) => (s.command.clone(), req.timeout_s.or(Some(s.timeout_s))),
        (None, None) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::NoCheckCommand,
                "Give a command: this workshop has no stored check command.",
            ))
        }
    };
    let timeout_s = timeout_s.unwrap_or(CHECK_DEFAULT_TIMEOUT_S);
    if command.trim().is_empty()
        || command.chars().count() > CHECK_COMMAND_CHARS
        || command.contains('\0')
    {
        return Err(ApiError::validation(format!(
            "command must be 1 to {CHECK_COMMAND_CHARS} characters, without NUL"
        )));
    }
    if !(1..=CHECK_MAX_TIMEOUT_S).contains(&timeout_s) {
        return Err(ApiError::validation(format!(
            "timeout_s must be between 1 and {CHECK_MAX_TIMEOUT_S}"
        )));
    }
    if req.save {
        let s = SavedCheck {
            command: command.clone(),
            timeout_s,
        };
        let json = serde_json::to_string(&s).map_err(|e| ApiError::internal(&e))?;
        state
            .store()
            .put_latest(&w.id, LatestKind::CheckCommand, &json)
            .await?;
    }
    // `run` starts in a fresh directory; a check looks at the learner's work.
    let body = serde_json::to_vec(&RunRequest {
        command: format!("cd {SEAT_WORKSPACE} 2>/dev/null\n{command}"),
        files: Default::default(),
        env: Default::default(),
        timeout_s: Some(timeout_s),
    })
    .map_err(|e| ApiError::internal(&e))?;
    let body = Bytes::from(body);
    let started = Instant::now();
    let seats = running_seats(&state, &w.id).await?;
    let (st, ws) = (&state, w.id.as_str());
    let mut results: Vec<CheckResult> = futures::stream::iter(seats)
        .map(|seat| run_in_seat(st, ws, seat, body.clone(), timeout_s))
        .buffer_unordered(SEATS_AT_ONCE)
        .collect()
        .await;
    results.sort_by_key(|r| r.seat);
    let run = CheckRun {
        command,
        timeout_s,
        ran_at: Utc::now(),
        duration_ms: elapsed_ms(started),
        results,
    };
    let json = serde_json::to_string(&run).map_err(|e| ApiError::internal(&e))?;
    state
        .store()
        .put_latest(&w.id, LatestKind::CheckRun, &json)
        .await?;
    let passed = run.results.iter().filter(|r| r.passed).count();
    crate::audit::record(
        &state,
        &w.id,
        &instructor.id,
        AuditAction::Check,
        None,
        Some(format!(
            "{} ({passed}/{} passed)",
            run.command,
            run.results.len()
        )),
    )
    .await;
    tracing::info!(workshop.id = %w.id, seats = run.results.len(), passed, ms = run.duration_ms, "check run");
    Ok(Json(run))
}

/// The latest check run and the stored check command.
#[utoipa::path(get, path = "/api/workshops/{id}/checks", tag = "classroom",
    params(("id" = String, Path, description = "Workshop id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ChecksResponse),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn latest(
    State(state): State<AppState>,
    instructor: Instructor,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ChecksResponse>, ApiError> {
    let w = instructor.workshop(&state, &id).await?;
    let latest = state
        .store()
        .latest(&w.id, LatestKind::CheckRun)
        .await?
        .and_then(|j| serde_json::from_str(&j).ok());
    Ok(Json(ChecksResponse {
        saved: saved(&state, &w.id).await?,
        latest,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_at_a_character_boundary() {
        assert_eq!(cut("abc".into(), 5), ("abc".into(), false));
        assert_eq!(cut("aé".into(), 2), ("a".into(), true));
        assert_eq!(cut("aéb".into(), 3), ("aé".into(), true));
    }
}
