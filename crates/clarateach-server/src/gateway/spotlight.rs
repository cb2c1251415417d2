//! `GET /api/session/spotlight`: the learner's "Presenter" tab. Without an upgrade it answers
//! what is shared in the caller's workshop ([`SpotlightState`]); as a WebSocket (one-time
//! ticket) it streams the spotlighted terminal session, read-only.
//!
//! Read-only by construction rather than by a check: the gateway terminates the learner's
//! WebSocket itself and opens its own `mode=watch` connection to the spotlighted seat's daemon;
//! frames go from the daemon to the learner only, and nothing the learner sends is ever written
//! to the daemon (it is counted and dropped). The workshop is the one of the caller's token or
//! ticket, so a learner of another workshop sees nothing of this one. When the spotlight moves
//! or stops, the stream closes with 4000 `spotlight_changed` (the event stream says what next).

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use clarateach_core::presenter::{Spotlight, SpotlightState};
use clarateach_core::{ErrorBody, ErrorCode};
use futures::{Sink, SinkExt, Stream, StreamExt};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::{self, protocol::Role as WsRole};

use super::access::SeatAccess;
use crate::error::ApiError;
use crate::state::AppState;

/// Close code sent when the spotlight moved to another terminal or stopped.
pub const CLOSE_CHANGED: u16 = 4000;

/// The spotlight of the caller's workshop, or its terminal as a read-only WebSocket.
#[utoipa::path(get, path = "/api/session/spotlight", tag = "classroom",
    params(("ticket" = Option<String>, Query, description = "One-time ticket (WebSocket only) from POST /api/session/ticket")),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "WebSocket: the spotlighted terminal's frames, read-only (input is dropped)"),
        (status = 200, body = SpotlightState),
        (status = 401, body = ErrorBody),
        (status = 404, description = "WebSocket asked while nothing is shared", body = ErrorBody),
        (status = 502, body = ErrorBody),
    ))]
pub async fn spotlight(
    State(state): State<AppState>,
    access: SeatAccess,
    req: Request,
) -> Result<Response, ApiError> {
    let (mut parts, _) = req.into_parts();
    let current = state
        .presenter()
        .spotlight(state.store(), &access.workshop_id)
        .await?;
    if !clarateach_core::hop::is_upgrade(&parts.headers) {
        return Ok(Json(SpotlightState { spotlight: current }).into_response());
    }
    let Some(spot) = current else {
        return Err(ApiError::not_found("Nothing is in the spotlight."));
    };
    let ws = <WebSocketUpgrade as axum::extract::FromRequestParts<AppState>>::from_request_parts(
        &mut parts, &state,
    )
    .await
    .map_err(|_| ApiError::invalid_request("This route needs a WebSocket upgrade."))?;
    let daemon = watch_terminal(&state, &access.workshop_id, &spot).await?;
    let workshop_id = access.workshop_id;
    Ok(ws.on_upgrade(move |socket: WebSocket| async move {
        let (l_sink, l_stream) = socket.split();
        let (d_sink, d_stream) = daemon.split();
        let changes = state.presenter().subscribe();
        // Kept fresh while the tab is open, also when another replica moves the spotlight.
        let Ok(_viewer) = state.presenter().watch(state.store_arc(), &workshop_id).await else {
            return;
        };
        let still = || state.presenter().cached(&workshop_id).spotlight.as_ref() == Some(&spot);
        let dropped = relay(l_sink, l_stream, d_stream, changes, still).await;
        let mut d_sink = d_sink;
        let _ = d_sink.close().await;
        if dropped > 0 {
            tracing::info!(workshop.id = %workshop_id, dropped, "spotlight viewer's frames dropped");
        }
    }))
}

type DaemonWs = tokio_tungstenite::WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Opens a `mode=watch` terminal connection to the spotlighted session through the agent.
async fn watch_terminal(
    state: &AppState,
    workshop_id: &str,
    spot: &Spotlight,
) -> Result<DaemonWs, ApiError> {
    let route = state.seat_route(workshop_id, spot.seat).await?;
    let failed = |e: &dyn std::fmt::Display| {
        tracing::warn!(workshop.id = %workshop_id, seat = spot.seat, error = %e, "spotlight connection failed");
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::WorkspaceUnreachable,
            "The spotlighted seat's workspace did not answer.",
        )
    };
    // The session name was validated when the spotlight was set ([A-Za-z0-9_-]).
    let uri = format!(
        "{}/seats/{workshop_id}/{}/terminal?session={}&mode=watch",
        route.data_url.trim_end_matches('/'),
        spot.seat,
        spot.session
    );
    let bearer =
        HeaderValue::try_from(format!("Bearer {}", route.data_token)).map_err(|e| failed(&e))?;
    let req = axum::http::Request::get(uri)
        .header(header::AUTHORIZATION, bearer)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(
            header::SEC_WEBSOCKET_KEY,
            tungstenite::handshake::client::generate_key(),
        )
        .body(axum::body::Body::empty())
        .map_err(|e| failed(&e))?;
    let tls = state.data_ca().client_config();
    let mut resp = super::proxy::send(state.data_clients(), &tls, &route, req, true)
        .await
        .map_err(|e| failed(&e))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(failed(&format!("answered {}", resp.status())));
    }
    let upgraded = hyper::upgrade::on(&mut resp)
        .await
        .map_err(|e| failed(&e))?;
    Ok(tokio_tungstenite::WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        WsRole::Client,
        None,
    )
    .await)
}

/// Copies the daemon's frames to the learner until either side leaves or `still()` turns
/// false after a presenter change; returns how many learner frames were dropped. There is no
/// path from `learner` to the daemon: this function is not given one.
pub async fn relay<LS, LR, LE, DR>(
    mut learner: LS,
    mut from_learner: LR,
    mut from_daemon: DR,
    mut changes: tokio::sync::watch::Receiver<u64>,
    still: impl Fn() -> bool,
) -> u64
where
    LS: Sink<Message> + Unpin,
    LR: Stream<Item = Result<Message, LE>> + Unpin,
    DR: Stream<Item = Result<tungstenite::Message, tungstenite::Error>> + Unpin,
{
    let mut dropped = 0;
    loop {
        tokio::select! {
            m = from_daemon.next() => {
                let out = match m {
                    Some(Ok(tungstenite::Message::Binary(b))) => Message::Binary(b),
                    Some(Ok(tungstenite::Message::Text(t))) => Message::Text(t.as_str().into()),
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => break,
                };
                if learner.send(out).await.is_err() {
                    return dropped;
                }
            }
            m = from_learner.next() => match m {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return dropped,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(_)) => dropped += 1,
            },
            r = changes.changed() => {
                if r.is_err() || !still() {
                    let _ = learner
                        .send(Message::Close(Some(CloseFrame {
                            code: CLOSE_CHANGED,
                            reason: "spotlight_changed".into(),
                        })))
                        .await;
                    return dropped;
                }
            }
        }
    }
    let _ = learner.close().await;
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc;

    #[tokio::test]
    async fn learner_frames_never_reach_the_daemon_and_a_change_closes() {
        let (l_tx, mut l_rx) = mpsc::unbounded::<Message>();
        let (mut in_tx, in_rx) = mpsc::unbounded::<Result<Message, ()>>();
        let (mut d_tx, d_rx) = mpsc::unbounded();
        let (version, changes) = tokio::sync::watch::channel(0u64);
        let current = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let c2 = current.clone();
        let task = tokio::spawn(relay(l_tx, in_rx, d_rx, changes, move || {
            c2.load(std::sync::atomic::Ordering::SeqCst)
        }));
        d_tx.send(Ok(tungstenite::Message::Binary(
            b"$ ls\r\n".to_vec().into(),
        )))
        .await
        .unwrap();
        assert_eq!(
            l_rx.next().await.unwrap(),
            Message::Binary(b"$ ls\r\n".to_vec().into())
        );
        in_tx
            .send(Ok(Message::Text(
                r#"{"type":"input","data":"rm -rf ~\r"}"#.into(),
            )))
            .await
            .unwrap();
        in_tx
            .send(Ok(Message::Binary(b"raw".to_vec().into())))
            .await
            .unwrap();
        // Another announcement (a change that keeps this spotlight) does not close.
        version.send_modify(|v| *v += 1);
        d_tx.send(Ok(tungstenite::Message::Text(
            "{\"type\":\"notice\"}".into(),
        )))
        .await
        .unwrap();
        assert!(matches!(l_rx.next().await.unwrap(), Message::Text(_)));
        current.store(false, std::sync::atomic::Ordering::SeqCst);
        version.send_modify(|v| *v += 1);
        match l_rx.next().await.unwrap() {
            Message::Close(Some(f)) => assert_eq!(f.code, CLOSE_CHANGED),
            other => panic!("{other:?}"),
        }
        assert_eq!(task.await.unwrap(), 2, "both learner frames dropped");
    }
}
