//! Session gateway: learners' (and instructors') seat traffic on the control plane's origin,
//! `/api/session/terminal` (WebSocket), `/api/session/files...` (+ `files/watch` WebSocket,
//! `files-rename`, `files-mkdir`) and `/api/session/run`, each authorised by [`SeatAccess`] and
//! streamed to the seat's workspace daemon through the agent's data path; plus the workshop
//! export, which gathers every seat's volume from the agents.

pub mod access;
mod answer;
pub(crate) mod data_path;
pub(crate) mod docs;
pub(crate) mod export;
mod export_bucket;
mod export_sink;
pub mod preview;
pub(crate) mod preview_grants;
pub(crate) mod proxy;
pub mod seat;
pub(crate) mod seat_call;
pub(crate) mod spotlight;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{any, get};
use axum::Router;
use clarateach_core::ErrorCode;

pub use access::{Role, SeatAccess, TerminalMode};

use crate::error::ApiError;
use crate::state::AppState;

/// Routes of the session gateway, merged into the control plane's router. Must not set a
/// fallback (the main router owns it).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/session/{*rest}", any(session))
        .route("/api/workshops/{id}/export", get(export::export_workshop))
}

/// Daemon paths the gateway exposes; anything else is 404 before it reaches an agent.
fn allowed(rest: &str) -> bool {
    let known = matches!(
        rest,
        "terminal" | "files" | "files-rename" | "files-mkdir" | "run"
    ) || rest.strip_prefix("files/").is_some_and(|p| !p.is_empty());
    known && !rest.split('/').any(|seg| seg == ".." || seg == ".")
}

/// Reads never change a workspace; everything else needs write access.
fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

async fn session(
    State(state): State<AppState>,
    access: SeatAccess,
    req: Request,
) -> Result<Response, ApiError> {
    // The raw path, still percent-encoded, so the daemon sees what the browser sent.
    let rest = req
        .uri()
        .path()
        .strip_prefix("/api/session/")
        .unwrap_or("")
        .to_string();
    if !allowed(&rest) {
        return Err(ApiError::not_found("No such route."));
    }
    if !is_read(req.method()) && !access.may_write() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::ReadOnly,
            "Watching a seat is read-only; open it with mode=takeover to change it.",
        ));
    }
    crate::pause::admit(&state, &access).await?;
    proxy::forward(&state, &access, &rest, req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::access::{Role, SeatAccess, TerminalMode};

    #[test]
    fn paths_and_queries() {
        for ok in [
            "terminal",
            "files",
            "files/a/b.py",
            "files/watch",
            "files-rename",
            "files-mkdir",
            "run",
        ] {
            assert!(allowed(ok), "{ok}");
        }
        // `files-sync` (a `syncfs` of the seat's disk) is the broadcast's, not the learner's.
        for bad in [
            "",
            "health",
            "files/",
            "files/../x",
            "vms",
            "terminal/x",
            "files-sync",
            "screen",
            // A learner never reaches their daemon's activation (a seat run ahead of the Start).
            "activate",
        ] {
            assert!(!allowed(bad), "{bad}");
        }
        let learner = SeatAccess {
            workshop_id: "ws-a".into(),
            seat: 1,
            role: Role::Learner,
            mode: TerminalMode::Interactive,
        };
        assert_eq!(
            proxy::daemon_query(Some("token=abc&session=main&mode=takeover"), &learner, true),
            "?session=main&mode=interactive"
        );
        assert_eq!(
            proxy::daemon_query(Some("path=%2Fsrc&token=x"), &learner, false),
            "?path=%2Fsrc"
        );
        assert_eq!(proxy::daemon_query(None, &learner, false), "");
        assert_eq!(
            proxy::daemon_query(Some("ticket=ctk_x&session=s1"), &learner, true),
            "?session=s1&mode=interactive",
            "a ticket never reaches the agent or the daemon"
        );
        let watcher = SeatAccess {
            role: Role::Instructor,
            mode: TerminalMode::Watch,
            ..learner
        };
        assert!(!watcher.may_write());
        assert_eq!(
            proxy::daemon_query(Some("workshop_id=ws-a&seat=1"), &watcher, true),
            "?mode=watch"
        );
    }
}
