//! One agent's WebSocket session (`GET /api/agents/connect`, api/ws-protocol.md).
//!
//! The agent registers first; it gets back `registered` with the seats it should host (from the
//! store, so this survives a control-plane restart) and then `create_seat`/`destroy_seat` as the
//! scheduler decides. Its `seat_status` reports update the store. Silence for three heartbeat
//! intervals, or a closed socket, ends the session and marks its seats `lost`.
//!
//! The session is bound to the credential the agent connected with: `register` must name the
//! agent id the token is bound to (a legacy token binds here), a live session of that id held by
//! another token is never replaced, and the token is re-checked every heartbeat interval so a
//! revoked agent is cut off within one interval. A refused `register` touches nothing: no seat
//! report is recorded, no spec is sent, no route changes.

use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes};
use clarateach_core::agent_proto::{AgentMessage, ControlMessage, DataTlsCert};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;

use super::placement::Demand;
use super::registry::AgentConn;
use crate::agent_auth::{authorize_agent_id, AgentCredential};
use crate::lifecycle;
use crate::state::AppState;

const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the session until the agent leaves, goes silent, or the server shuts down.
pub async fn run<S, E>(state: AppState, socket: S, credential: AgentCredential)
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
        data_tls_public_key,
        images,
        image_details,
        buildable,
        memory_mb,
        cpu_millis,
        ..
    })) = first
    else {
        tracing::warn!("agent connection closed: the first message was not `register`");
        return;
    };
    let credential = match authorize_agent_id(&state, &credential, &agent_id).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(agent.id = %agent_id, token.id = %credential.token_id, code = e.code.as_str(),
                "agent registration refused: the token is not this agent's");
            refuse(&mut sink, e.code.as_str()).await;
            return;
        }
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
    let data_tls = issue_data_cert(&state, &agent_id, &data_url, data_tls_public_key.as_deref());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let conn = AgentConn {
        agent_id: agent_id.clone(),
        hostname,
        capacity,
        data_url,
        data_token,
        token_id: credential.token_id.clone(),
        tx,
        images,
        image_details,
        buildable,
        memory_mb: overcommit(memory_mb, state.config().memory_overcommit),
        cpu_millis: overcommit(cpu_millis, state.config().cpu_overcommit),
    };
    // What its seats reserve, from their workshops' limits (the specs carry them).
    let keys = desired
        .iter()
        .map(|s| (s.key(), Demand::of(&s.limits)))
        .collect();
    let conn_id = match state.registry().register(conn, keys).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            tracing::warn!(agent.id = %agent_id, token.id = %credential.token_id,
                "agent registration refused: another credential holds the live session");
            refuse(&mut sink, "agent_already_connected").await;
            return;
        }
        Err(_) => return,
    };
    tracing::info!(agent.id = %agent_id, capacity, desired = desired.len(), "agent registered");

    let interval = state.config().heartbeat_interval;
    let registered = ControlMessage::Registered {
        heartbeat_interval_ms: interval.as_millis() as u64,
        desired,
        data_tls,
    };
    let mut alive = send(&mut sink, &registered).await;
    // Seats that moved off this agent while it was away (issue 13): its copies are stale, and
    // their volumes go too, so a later move back restores the seat's files afresh.
    for msg in crate::relocate::stale_copies(&state, &agent_id).await {
        alive = alive && send(&mut sink, &msg).await;
    }
    let mut shutdown = state.shutdown_signal();
    let silence = interval * 3;
    let mut deadline = tokio::time::Instant::now() + silence;
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    while alive {
        tokio::select! {
            _ = recheck.tick() => {
                if !matches!(state.store().agent_token_active(&credential.token_id).await, Ok(true)) {
                    tracing::warn!(agent.id = %agent_id, "agent token revoked: closing its session");
                    refuse(&mut sink, "agent_token_revoked").await;
                    alive = false;
                }
            },
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

/// The data-path certificate for an agent with an `https://` data URL (from the public key it
/// sent). Without one its data path cannot be reached: the gateway answers 502 and says why in
/// the log.
fn issue_data_cert(
    state: &AppState,
    agent_id: &str,
    data_url: &str,
    public_key: Option<&str>,
) -> Option<DataTlsCert> {
    let key = public_key?;
    if !clarateach_tls::is_tls_url(data_url) {
        return None;
    }
    match state.data_ca().issue(agent_id, data_url, key) {
        Ok(c) => Some(DataTlsCert {
            cert_pem: c.cert_pem,
            ca_pem: c.ca_pem,
        }),
        Err(e) => {
            tracing::warn!(agent.id = %agent_id, %data_url, error = %e,
                "cannot issue the agent's data-path certificate: its seats are unreachable");
            None
        }
    }
}

/// What seats may reserve of what an agent reported (`factor` x, at least what it reported).
fn overcommit(reported: Option<u64>, factor: f64) -> Option<u64> {
    let factor = if factor.is_finite() {
        factor.max(1.0)
    } else {
        1.0
    };
    reported.map(|r| (r as f64 * factor) as u64)
}

/// Ends the socket with a policy-violation close whose reason is the error code.
async fn refuse<S: Sink<Message> + Unpin>(sink: &mut S, code: &str) {
    let frame = CloseFrame {
        code: close_code::POLICY,
        reason: Utf8Bytes::from(code.to_string()),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
    let _ = sink.close().await;
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
