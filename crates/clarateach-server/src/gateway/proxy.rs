//! Forwards one authorised request to the data path of the agent hosting the seat
//! (`{data_url}/seats/{workshop_id}/{seat}/{rest}`, `Authorization: Bearer <data token>`).
//! Plain HTTP goes through a pooled client with streamed bodies; a WebSocket upgrade gets its own
//! connection and, after `101`, the two upgraded sockets are spliced byte for byte, so terminal
//! frames are never parsed, buffered whole or re-framed on the way. The clients themselves
//! (pooled HTTP, per-agent verified HTTPS) are in [`super::data_path`].

use clarateach_core::ErrorCode;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{self, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use clarateach_core::hop::{forward_headers, is_upgrade};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::access::SeatAccess;
use super::answer::{self, BodyKind};
pub(super) use super::data_path::send;
pub(crate) use super::data_path::TlsClients;
use crate::error::ApiError;
use crate::state::AppState;

/// The query the daemon sees: the caller's, minus credentials and seat selectors, with the
/// mode the gateway decided for terminals. Kept as raw pairs so nothing is re-encoded.
pub(super) fn daemon_query(raw: Option<&str>, access: &SeatAccess, terminal: bool) -> String {
    let mut pairs: Vec<String> = raw
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let key = p.split('=').next().unwrap_or("");
            !matches!(key, "token" | "ticket" | "workshop_id" | "seat" | "mode")
        })
        .map(str::to_string)
        .collect();
    if terminal {
        pairs.push(format!("mode={}", access.mode.as_str()));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

pub(super) fn unreachable(e: &dyn std::fmt::Display, access: &SeatAccess) -> ApiError {
    tracing::warn!(workshop.id = %access.workshop_id, seat = access.seat, error = %e, "agent data path failed");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        ErrorCode::WorkspaceUnreachable,
        "The seat's workspace did not answer.",
    )
}

/// Sends `req` to `rest` (e.g. `terminal`, `files/a.py`) on the seat's daemon through its agent.
pub(super) async fn forward(
    state: &AppState,
    access: &SeatAccess,
    rest: &str,
    mut req: Request,
) -> Result<Response, ApiError> {
    let route = state.seat_route(&access.workshop_id, access.seat).await?;
    if access.role == super::access::Role::Learner {
        state.touch_activity(&access.workshop_id, access.seat).await;
    }
    let query = daemon_query(req.uri().query(), access, rest == "terminal");
    let uri: Uri = format!(
        "{}/seats/{}/{}/{rest}{query}",
        route.data_url.trim_end_matches('/'),
        access.workshop_id,
        access.seat
    )
    .parse()
    .map_err(|_| ApiError::invalid_request("The request path is not valid."))?;
    let upgrade = is_upgrade(req.headers());
    let kind = BodyKind::of_request(req.method(), rest, req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut out = axum::http::Request::builder().method(parts.method).uri(uri);
    if let Some(h) = out.headers_mut() {
        forward_headers(&parts.headers, h, upgrade, &[header::COOKIE]);
        let bearer = HeaderValue::try_from(format!("Bearer {}", route.data_token))
            .map_err(|e| unreachable(&e, access))?;
        h.insert(header::AUTHORIZATION, bearer);
    }
    let out = out.body(body).map_err(|e| unreachable(&e, access))?;

    let tls = state.data_ca().client_config();
    let Some(client_upgrade) = client_upgrade else {
        let resp = send(state.data_clients(), &tls, &route, out, false)
            .await
            .map_err(|e| unreachable(&e, access))?;
        return Ok(distrusted(resp.map(Body::new), kind, false));
    };
    let mut resp = send(state.data_clients(), &tls, &route, out, true)
        .await
        .map_err(|e| unreachable(&e, access))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(distrusted(resp.map(Body::new), kind, false));
    }
    let agent_upgrade = hyper::upgrade::on(&mut resp);
    let (state, access) = (state.clone(), access.clone());
    // A seat reset signs its learner out: their open WebSockets close too.
    let reset = (access.role == super::access::Role::Learner)
        .then(|| state.seat_reset(&access.workshop_id, access.seat));
    // An open learner connection keeps the idle policy away from the seat.
    let open = (access.role == super::access::Role::Learner)
        .then(|| crate::pause::connection_opened(&state, &access.workshop_id, access.seat));
    // An instructor's terminal is audited and shown to the learner while it is open.
    let present = crate::audit::instructor_terminal(&state, &access, rest).await;
    tokio::spawn(async move {
        let _open = open;
        let _present = present;
        match tokio::try_join!(client_upgrade, agent_upgrade) {
            Ok((client, agent)) => {
                let spliced = splice(&state, &access, TokioIo::new(client), TokioIo::new(agent));
                match reset {
                    Some(reset) => tokio::select! {
                        () = spliced => {}
                        () = reset => tracing::info!(workshop.id = %access.workshop_id, seat = access.seat, "learner connection closed: seat reset"),
                    },
                    None => spliced.await,
                }
            }
            Err(e) => tracing::debug!(error = %e, "gateway upgrade failed"),
        }
    });
    Ok(distrusted(resp.map(|_| Body::empty()), kind, true))
}

/// The daemon's answer as the browser gets it: its status (sanitised) and body, the gateway's
/// headers (see `answer`).
fn distrusted(resp: Response, kind: BodyKind, upgraded: bool) -> Response {
    let (mut parts, body) = resp.into_parts();
    parts.status = answer::status(parts.status, upgraded);
    parts.headers = if upgraded {
        answer::upgrade_headers(&parts.headers)
    } else {
        answer::headers(&parts.headers, kind)
    };
    parts.extensions = Default::default();
    Response::from_parts(parts, body)
}

/// Copies both directions until either side closes; browser -> workspace traffic from a
/// learner counts as seat activity.
pub(super) async fn splice<C, A>(state: &AppState, access: &SeatAccess, client: C, agent: A)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut client_rd, mut client_wr) = tokio::io::split(client);
    let (agent_rd, mut agent_wr) = tokio::io::split(agent);
    let down = async {
        // Output floods come in 256 KiB frames: move them in 64 KiB writes, not tokio::io::copy's 8 KiB.
        let mut agent_rd = tokio::io::BufReader::with_capacity(64 * 1024, agent_rd);
        let _ = tokio::io::copy_buf(&mut agent_rd, &mut client_wr).await;
        let _ = client_wr.shutdown().await;
    };
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut last_touch: Option<Instant> = None;
        loop {
            let n = match client_rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if agent_wr.write_all(&buf[..n]).await.is_err() {
                break;
            }
            if access.role == super::access::Role::Learner
                && last_touch.is_none_or(|t| t.elapsed() > Duration::from_secs(5))
            {
                last_touch = Some(Instant::now());
                let (state, ws, seat) = (state.clone(), access.workshop_id.clone(), access.seat);
                tokio::spawn(async move { state.touch_activity(&ws, seat).await });
            }
        }
        let _ = agent_wr.shutdown().await;
    };
    tokio::join!(down, up);
}
