//! One agent's WebSocket session (`GET /api/agents/connect`, api/ws-protocol.md).
//!
//! The agent registers first; it gets back `registered` with the seats it should host (from the
//! store, so this survives a control-plane restart) and then `create_seat`/`destroy_seat` as the
//! scheduler decides. Its `seat_status` reports update the store. Silence for three heartbeat
//! intervals, or a closed socket, ends the session and marks its seats `lost`.

use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes};
use clarateach_core::agent_proto::{AgentMessage, ControlMessage, SeatKey};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;

use super::registry::AgentConn;
use crate::lifecycle;
use crate::state::AppState;

const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the session until the agent leaves, goes silent, or the server shuts down.
pub async fn run<S, E>(state: AppState, socket: S)
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    let (mut sink, mut stream) = socket.split();
    let first = tokio::time::timeout(REGISTER_TIMEOUT, next_message(&mut stream)).await;
    let Ok(Some(AgentMessage::Register {
        agent_id,
        hostname,
        capacity,
        data_url,
        data_token,
        seats,
        ..
    })) = first
    else {
        tracing::warn!("agent connection closed: the first message was not `register`");
        return;
    };
    for report in seats {
        if let Err(e) = lifecycle::on_seat_report(&state, &agent_id, &report).await {
            tracing::error!(agent.id = %agent_id, error = %e, "cannot record a seat report");
        }
    }
    let hosted = match state.store().seats_for_agent(&agent_id).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(agent.id = %agent_id, error = %e, "cannot read the agent's seats");
            return;
        }
    };
    let desired = match lifecycle::desired_specs(&state, &hosted).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(agent.id = %agent_id, error = %e, "cannot build the agent's desired state");
            return;
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let conn = AgentConn {
        agent_id: agent_id.clone(),
        hostname,
        capacity,
        data_url,
        data_token,
        tx,
    };
    let keys = hosted
        .into_iter()
        .map(|(workshop_id, seat)| SeatKey { workshop_id, seat })
        .collect();
    let Ok(conn_id) = state.registry().register(conn, keys).await else {
        return;
    };
    tracing::info!(agent.id = %agent_id, capacity, desired = desired.len(), "agent registered");

    let interval = state.config().heartbeat_interval;
    let registered = ControlMessage::Registered {
        heartbeat_interval_ms: interval.as_millis() as u64,
        desired,
    };
    let mut alive = send(&mut sink, &registered).await;
    let mut shutdown = state.shutdown_signal();
    let silence = interval * 3;
    let mut deadline = tokio::time::Instant::now() + silence;
    while alive {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(msg) => alive = send(&mut sink, &msg).await,
                None => alive = false, // replaced by a newer session of the same agent
            },
            frame = next_message(&mut stream) => {
                deadline = tokio::time::Instant::now() + silence;
                match frame {
                    Some(AgentMessage::Heartbeat { used }) => state.registry().heartbeat(&agent_id, conn_id, used).await,
                    Some(AgentMessage::SeatStatus(report)) => {
                        if let Err(e) = lifecycle::on_seat_report(&state, &agent_id, &report).await {
                            tracing::error!(agent.id = %agent_id, error = %e, "cannot record a seat report");
                        }
                    }
                    Some(AgentMessage::Register { .. }) => tracing::warn!(agent.id = %agent_id, "duplicate register ignored"),
                    None => alive = false,
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!(agent.id = %agent_id, "agent missed 3 heartbeats");
                alive = false;
            },
            _ = shutdown.changed() => alive = false,
        }
    }
    let _ = sink.close().await;
    if matches!(
        state.registry().unregister(&agent_id, conn_id).await,
        Ok(true)
    ) {
        match state.store().mark_agent_seats_lost(&agent_id).await {
            Ok(n) => tracing::warn!(agent.id = %agent_id, seats_lost = n, "agent disconnected"),
            Err(e) => {
                tracing::error!(agent.id = %agent_id, error = %e, "cannot mark the agent's seats lost")
            }
        }
    }
}

/// The next protocol message; `None` when the socket ends. Unparsable frames are logged and skipped.
async fn next_message<S, E>(stream: &mut S) -> Option<AgentMessage>
where
    S: Stream<Item = Result<Message, E>> + Unpin,
{
    loop {
        match stream.next().await? {
            Ok(Message::Text(text)) => match serde_json::from_str::<AgentMessage>(text.as_str()) {
                Ok(msg) => return Some(msg),
                Err(e) => tracing::warn!(error = %e, "ignoring an unparsable agent message"),
            },
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {} // ping/pong/binary
        }
    }
}

async fn send<S: Sink<Message> + Unpin>(sink: &mut S, msg: &ControlMessage) -> bool {
    match serde_json::to_string(msg) {
        Ok(text) => sink
            .send(Message::Text(Utf8Bytes::from(text)))
            .await
            .is_ok(),
        Err(_) => false,
    }
}
