//! `/api/sandboxes`: standalone sandboxes (issue 14) for programs, on the control plane's own
//! host, through the same `clarateach-sandbox` library and state dir as `clarateach sandbox`.
//! Each instructor's token (or session) is their API token: an instructor sees and touches only
//! the sandboxes they made (another's is 404), and holds at most `CLARATEACH_SANDBOX_QUOTA`
//! (default 10) at once. Sandboxes made by the CLI have no owner and are not reachable here.

use clarateach_core::ErrorCode;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use clarateach_core::{ErrorBody, RunRequest};
use clarateach_sandbox::spec::LimitArgs;
use clarateach_sandbox::{
    BackendChoice, CreateRequest, RunOptions, SandboxError, SandboxInfo, Sandboxes, StateDir,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Instructor;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;

/// Sandboxes one instructor may hold at once unless `CLARATEACH_SANDBOX_QUOTA` says otherwise.
pub const DEFAULT_QUOTA: usize = 10;

fn quota() -> usize {
    std::env::var("CLARATEACH_SANDBOX_QUOTA")
        .ok()
        .and_then(|q| q.parse().ok())
        .unwrap_or(DEFAULT_QUOTA)
}

/// `POST /api/sandboxes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSandboxRequest {
    /// `python` (default), `node`, `claude`, `base` or an image name.
    #[serde(default)]
    pub language: Option<String>,
    /// Used as the id instead of `LANGUAGE-ULID`.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub cpu: Option<f64>,
    #[serde(default)]
    pub mem_mib: Option<u32>,
    #[serde(default)]
    pub disk_mib: Option<u32>,
    /// Keep `/workspace` across stop and start.
    #[serde(default)]
    pub persist: bool,
    /// `none` (default: loopback only), `open` or `allow:HOST,...`, as `sandbox create
    /// --network`: the same seat network as workshop seats, with the egress settings of the
    /// environment the control plane runs in (`CLARATEACH_EGRESS_IFACE`, `CLARATEACH_EGRESS_HOSTS`).
    #[serde(default)]
    pub network: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SandboxList {
    pub sandboxes: Vec<SandboxInfo>,
}

/// What a run did (`POST /api/sandboxes/{id}/run`).
#[derive(Debug, Serialize, ToSchema)]
pub struct SandboxRunResponse {
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    pub truncated: bool,
    pub stdout: String,
    pub stderr: String,
}

fn api_error(e: SandboxError) -> ApiError {
    use SandboxError as E;
    let status = match &e {
        E::Unknown(_) => StatusCode::NOT_FOUND,
        E::NotRunning(_) | E::NameTaken(_) => StatusCode::CONFLICT,
        E::QuotaExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
        E::BadName(_)
        | E::BadNetwork(_)
        | E::NetSetting(_)
        | E::BadLimits(_)
        | E::BadCopy
        | E::NetworkNeedsServer(_)
        | E::MissingInterpreter { .. }
        | E::UnknownImage(_)
        | E::File { .. }
        | E::FileNotText(_)
        | E::CannotStart(_)
        | E::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        E::StateDir { .. }
        | E::Db(_)
        | E::Backend(_)
        | E::Daemon(_)
        | E::Keeper(_)
        | E::Output { .. } => return ApiError::internal(&e),
    };
    ApiError::new(
        status,
        ErrorCode::parse(e.code()).unwrap_or(ErrorCode::Internal),
        e.to_string(),
    )
}

async fn sandboxes(state: &AppState) -> Result<Arc<Sandboxes>, ApiError> {
    state
        .sandboxes()
        .get_or_try_init(|| async { Sandboxes::open(StateDir::resolve()).await.map(Arc::new) })
        .await
        .cloned()
        .map_err(api_error)
}

/// The instructor's own sandbox, else 404 (whoever else owns it).
async fn owned(sbx: &Sandboxes, who: &Instructor, id: &str) -> Result<SandboxInfo, ApiError> {
    match sbx.status(id).await {
        Ok(info) if info.owner.as_deref() == Some(who.id.as_str()) => Ok(info),
        Ok(_) | Err(SandboxError::Unknown(_)) => {
            Err(api_error(SandboxError::Unknown(id.to_string())))
        }
        Err(e) => Err(api_error(e)),
    }
}

/// Create and start a sandbox (loopback-only network unless `network` says otherwise).
#[utoipa::path(post, path = "/api/sandboxes", tag = "sandboxes", request_body = CreateSandboxRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, body = SandboxInfo),
        (status = 401, body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 422, description = "Bad name, limits, network or language", body = ErrorBody),
        (status = 429, description = "The instructor's sandbox quota is used up", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    who: Instructor,
    ApiJson(req): ApiJson<CreateSandboxRequest>,
) -> Result<(StatusCode, Json<SandboxInfo>), ApiError> {
    let network = match req.network.as_deref() {
        None => clarateach_core::NetworkPolicy::None,
        Some(n) => clarateach_sandbox::spec::parse_network(n).map_err(api_error)?,
    };
    let sbx = sandboxes(&state).await?;
    let info = sbx
        .create(CreateRequest {
            name: req.name,
            language: req.language.unwrap_or_else(|| "python".into()),
            limits: LimitArgs {
                cpu: req.cpu,
                mem_mib: req.mem_mib,
                disk_mib: req.disk_mib,
                network,
            },
            persist: req.persist,
            backend: BackendChoice::Sandbox,
            owner: Some(who.id.clone()),
            quota: Some(quota()),
        })
        .await
        .map_err(api_error)?;
    tracing::info!(sandbox.id = %info.id, instructor.id = %who.id, "sandbox created");
    Ok((StatusCode::CREATED, Json(info)))
}

/// The instructor's sandboxes.
#[utoipa::path(get, path = "/api/sandboxes", tag = "sandboxes", security(("bearer" = [])),
    responses((status = 200, body = SandboxList), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    who: Instructor,
) -> Result<Json<SandboxList>, ApiError> {
    let all = sandboxes(&state).await?.list().await.map_err(api_error)?;
    Ok(Json(SandboxList {
        sandboxes: all
            .into_iter()
            .filter(|s| s.owner.as_deref() == Some(who.id.as_str()))
            .collect(),
    }))
}

/// One sandbox.
#[utoipa::path(get, path = "/api/sandboxes/{id}", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = SandboxInfo), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    who: Instructor,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SandboxInfo>, ApiError> {
    let sbx = sandboxes(&state).await?;
    owned(&sbx, &who, &id).await.map(Json)
}

/// `DELETE /api/sandboxes/{id}` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Also drop the kept `/workspace` of a `persist` sandbox.
    #[serde(default)]
    pub purge: bool,
}

/// Remove a sandbox and everything of it; a `persist` sandbox's `/workspace` is kept (for a
/// later create with `persist` and the same `name`, by the same instructor) unless `purge`.
#[utoipa::path(delete, path = "/api/sandboxes/{id}", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path),
        ("purge" = Option<bool>, Query, description = "Also drop the kept /workspace of a persist sandbox")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    who: Instructor,
    ApiPath(id): ApiPath<String>,
    crate::extract::ApiQuery(q): crate::extract::ApiQuery<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let sbx = sandboxes(&state).await?;
    owned(&sbx, &who, &id).await?;
    sbx.clean(&id, q.purge).await.map_err(api_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Run a command in a fresh directory of the sandbox with files staged there.
#[utoipa::path(post, path = "/api/sandboxes/{id}/run", tag = "sandboxes", request_body = RunRequest,
    security(("bearer" = [])), params(("id" = String, Path)),
    responses(
        (status = 200, body = SandboxRunResponse),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The sandbox is stopped", body = ErrorBody),
        (status = 422, description = "The daemon refused the command", body = ErrorBody),
    ))]
pub async fn run(
    State(state): State<AppState>,
    who: Instructor,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<RunRequest>,
) -> Result<Json<SandboxRunResponse>, ApiError> {
    let sbx = sandboxes(&state).await?;
    owned(&sbx, &who, &id).await?;
    let files: BTreeMap<String, Vec<u8>> = req
        .files
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    let out = sbx
        .run(
            &id,
            RunOptions {
                command: req.command,
                files,
                env: req.env,
                timeout_s: req.timeout_s,
            },
        )
        .await
        .map_err(api_error)?;
    Ok(Json(SandboxRunResponse {
        exit_code: out.exit_code,
        timed_out: out.timed_out,
        duration_ms: out.duration_ms,
        truncated: out.truncated,
        stdout: out.stdout,
        stderr: out.stderr,
    }))
}

/// A file of the sandbox's `/workspace`, raw bytes.
#[utoipa::path(get, path = "/api/sandboxes/{id}/files/{path}", tag = "sandboxes",
    security(("bearer" = [])), params(("id" = String, Path), ("path" = String, Path)),
    responses(
        (status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The sandbox is stopped", body = ErrorBody),
    ))]
pub async fn read_file(
    State(state): State<AppState>,
    who: Instructor,
    ApiPath((id, path)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let sbx = sandboxes(&state).await?;
    owned(&sbx, &who, &id).await?;
    let data = sbx
        .daemon(&id)
        .await
        .map_err(api_error)?
        .read_file(&path)
        .await
        .map_err(|e| api_error(SandboxError::from_daemon(&id, e)))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CONTENT_DISPOSITION, "attachment"),
        ],
        data,
    )
        .into_response())
}

/// Write a file of the sandbox's `/workspace` from the raw request body.
#[utoipa::path(put, path = "/api/sandboxes/{id}/files/{path}", tag = "sandboxes",
    security(("bearer" = [])), params(("id" = String, Path), ("path" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn write_file(
    State(state): State<AppState>,
    who: Instructor,
    ApiPath((id, path)): ApiPath<(String, String)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let sbx = sandboxes(&state).await?;
    owned(&sbx, &who, &id).await?;
    sbx.daemon(&id)
        .await
        .map_err(api_error)?
        .write_file(&path, body.to_vec())
        .await
        .map_err(|e| api_error(SandboxError::from_daemon(&id, e)))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/sandboxes/{id}/exec` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecQuery {
    /// Terminal session name (default `main`); the same name re-attaches to the same shell.
    #[serde(default)]
    pub session: Option<String>,
}

/// A terminal session name the daemon's query string can carry as it is.
fn valid_session(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An interactive terminal in the sandbox over WebSocket: a PTY session of its daemon, relayed
/// frame for frame (binary frames are output, text frames the JSON control messages
/// `TerminalClientMessage` / `TerminalServerMessage`, as a seat's terminal speaks them).
/// Closing the socket detaches; the session keeps running until its shell exits.
#[utoipa::path(get, path = "/api/sandboxes/{id}/exec", tag = "sandboxes",
    security(("bearer" = [])), params(("id" = String, Path),
        ("session" = Option<String>, Query, description = "Terminal session name (default main); the same name re-attaches to the same shell")),
    responses(
        (status = 101, description = "WebSocket relayed to the sandbox's terminal session"),
        (status = 400, description = "Not a WebSocket upgrade, or a bad session name", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The sandbox is stopped", body = ErrorBody),
    ))]
pub async fn exec(
    State(state): State<AppState>,
    who: Instructor,
    ApiPath(id): ApiPath<String>,
    crate::extract::ApiQuery(q): crate::extract::ApiQuery<ExecQuery>,
    ws: Result<
        axum::extract::ws::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Result<Response, ApiError> {
    let session = q.session.unwrap_or_else(|| "main".into());
    if !valid_session(&session) {
        return Err(ApiError::invalid_request(
            "session: letters, digits, - and _, at most 40.",
        ));
    }
    let ws =
        ws.map_err(|e| ApiError::invalid_request(format!("Expected a WebSocket upgrade: {e}")))?;
    let sbx = sandboxes(&state).await?;
    owned(&sbx, &who, &id).await?;
    let daemon = sbx.daemon(&id).await.map_err(api_error)?;
    // Connected before the upgrade, so a sandbox that does not answer is a status, not a
    // socket that closes at once.
    let upstream = exec_relay::connect(&daemon, &session)
        .await
        .map_err(|e| api_error(SandboxError::from_daemon(&id, e)))?;
    tracing::info!(sandbox.id = %id, instructor.id = %who.id, session, "sandbox terminal attached");
    Ok(ws.on_upgrade(move |socket| exec_relay::relay(socket, upstream)))
}

/// The WebSocket relay between an API client and a sandbox daemon's `/terminal`.
mod exec_relay {
    use axum::extract::ws::{Message, WebSocket};
    use clarateach_sandbox::daemon::DaemonIo;
    use clarateach_sandbox::{Daemon, DaemonError};
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message as Up;

    pub type Upstream = tokio_tungstenite::WebSocketStream<Box<dyn DaemonIo>>;

    /// Opens the daemon's terminal session `session` with its token.
    pub async fn connect(daemon: &Daemon, session: &str) -> Result<Upstream, DaemonError> {
        let url = format!("ws://workspace/terminal?session={session}");
        let mut req = url
            .into_client_request()
            .map_err(|e| DaemonError::Connect(std::io::Error::other(e)))?;
        let bearer = format!("Bearer {}", daemon.endpoint().token)
            .parse()
            .map_err(|e| DaemonError::Connect(std::io::Error::other(e)))?;
        req.headers_mut()
            .insert(http::header::AUTHORIZATION, bearer);
        let stream = daemon.stream().await?;
        let (ws, _) = tokio_tungstenite::client_async(req, stream)
            .await
            .map_err(|e| DaemonError::Connect(std::io::Error::other(e)))?;
        Ok(ws)
    }

    /// Frames both ways until either side closes.
    pub async fn relay(client: WebSocket, upstream: Upstream) {
        let (mut c_tx, mut c_rx) = client.split();
        let (mut u_tx, mut u_rx) = upstream.split();
        let down = async {
            while let Some(Ok(m)) = u_rx.next().await {
                let m = match m {
                    Up::Text(t) => Message::Text(t.as_str().into()),
                    Up::Binary(b) => Message::Binary(b),
                    Up::Close(_) => break,
                    _ => continue,
                };
                if c_tx.send(m).await.is_err() {
                    break;
                }
            }
            let _ = c_tx.send(Message::Close(None)).await;
        };
        let up = async {
            while let Some(Ok(m)) = c_rx.next().await {
                let m = match m {
                    Message::Text(t) => Up::Text(t.as_str().into()),
                    Message::Binary(b) => Up::Binary(b),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if u_tx.send(m).await.is_err() {
                    break;
                }
            }
            let _ = u_tx.send(Up::Close(None)).await;
        };
        tokio::select! {
            () = down => {}
            () = up => {}
        }
    }
}
