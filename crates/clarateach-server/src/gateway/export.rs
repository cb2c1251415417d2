//! `GET /api/workshops/{id}/export`: one tar.gz of every seat's files (`seat-01/...`), streamed
//! while it is built. Each agent hands over its seats' volumes as tar fragments (entries already
//! under `seat-NN/`, no end-of-archive blocks); the gateway concatenates them, closes the archive
//! and compresses on the fly, so neither side holds a whole archive in memory.

use clarateach_core::ErrorBody;
use std::io::Write;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::auth::Instructor;
use crate::error::ApiError;
use crate::scheduler::SeatRoute;
use crate::state::AppState;

/// Feeds compressed bytes to the response as they come out of the encoder.
struct Sink {
    gz: flate2::write::GzEncoder<Vec<u8>>,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
}

impl Sink {
    async fn write(&mut self, data: &[u8]) -> Result<(), ()> {
        self.gz.write_all(data).map_err(|_| ())?;
        let out = std::mem::take(self.gz.get_mut());
        if out.is_empty() {
            return Ok(());
        }
        self.tx.send(Ok(Bytes::from(out))).await.map_err(|_| ())
    }

    async fn finish(mut self) -> Result<(), ()> {
        self.write(&[0u8; 1024]).await?;
        let rest = self.gz.finish().map_err(|_| ())?;
        self.tx.send(Ok(Bytes::from(rest))).await.map_err(|_| ())
    }
}

/// Streams a tar.gz of every seat's files (`seat-01/...`), gathered from the agents.
#[utoipa::path(get, path = "/api/workshops/{id}/export", tag = "workshops",
    params(("id" = String, Path, description = "Workshop id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "tar.gz stream", content_type = "application/gzip"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "no seat was ever placed", body = ErrorBody),
        (status = 503, description = "a seat's agent is not connected", body = ErrorBody),
    ))]
pub async fn export_workshop(
    State(state): State<AppState>,
    instructor: Instructor,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let workshop = instructor.workshop(&state, &id).await?;
    let plan = plan(&state, &workshop.id).await?;
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(16);
    let ws = workshop.id.clone();
    tokio::spawn(async move {
        let mut sink = Sink {
            gz: flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()),
            tx: tx.clone(),
        };
        for (seat, route) in plan {
            let url = format!(
                "{}/seats/{ws}/{seat}/export?format=tar-fragment&prefix=seat-{seat:02}",
                route.data_url.trim_end_matches('/')
            );
            if let Err(e) = copy_seat(&mut sink, &url, &route.data_token).await {
                tracing::warn!(workshop.id = %ws, seat, error = %e, "export of a seat failed");
                let _ = tx.send(Err(std::io::Error::other(e))).await;
                return;
            }
        }
        let _ = sink.finish().await;
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|i| (i, rx))
    }));
    let disposition =
        HeaderValue::from_str(&format!("attachment; filename=\"{}.tar.gz\"", workshop.id))
            .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/gzip"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// Where each seat's volume is: on the agent the store says hosted the seat, reached through
/// its data path whether the workshop runs or stopped (volumes stay until delete), so the plan
/// survives a control-plane restart. Seats never placed have no volume and are left out. A seat
/// whose agent is not connected fails the whole export: an archive silently missing a learner's
/// files is worse than a retry.
async fn plan(state: &AppState, workshop_id: &str) -> Result<Vec<(u32, SeatRoute)>, ApiError> {
    let mut plan = Vec::new();
    let mut missing = Vec::new();
    for seat in state.store().list_seats(workshop_id).await? {
        let Some(agent_id) = seat.agent_id.as_deref() else {
            continue;
        };
        match state.provisioner().agent_route(agent_id).await {
            Some(route) => plan.push((seat.seat, route)),
            None => missing.push((seat.seat, agent_id.to_string())),
        }
    }
    if !missing.is_empty() {
        tracing::warn!(
            workshop.id = workshop_id,
            ?missing,
            "export refused: agents not connected"
        );
        return Err(unavailable(&missing));
    }
    if plan.is_empty() {
        return Err(ApiError::conflict(
            "export_unavailable",
            "No seat of this workshop was ever started, so there are no files to export.",
        ));
    }
    Ok(plan)
}

/// 503 `agent_unavailable`, naming the seats whose agents are away.
fn unavailable(missing: &[(u32, String)]) -> ApiError {
    let seats: Vec<String> = missing.iter().map(|(s, _)| s.to_string()).collect();
    let mut agents: Vec<&str> = missing.iter().map(|(_, a)| a.as_str()).collect();
    agents.sort_unstable();
    agents.dedup();
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "agent_unavailable",
        format!(
            "The export needs seat{} {} from agent{} {}, which {} not connected; try again once {} back.",
            if seats.len() == 1 { "" } else { "s" },
            seats.join(", "),
            if agents.len() == 1 { "" } else { "s" },
            agents.join(", "),
            if agents.len() == 1 { "is" } else { "are" },
            if agents.len() == 1 { "it is" } else { "they are" },
        ),
    )
}

async fn copy_seat(sink: &mut Sink, url: &str, token: &str) -> Result<(), String> {
    let req = axum::http::Request::get(url)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .map_err(|e| e.to_string())?;
    let resp = super::proxy::client()
        .request(req)
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("agent answered {}", resp.status()));
    }
    let mut stream = Body::new(resp.into_body()).into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        sink.write(&chunk)
            .await
            .map_err(|()| "the client went away".to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_names_seats_and_agents() {
        let e = unavailable(&[(2, "ag-b".into()), (5, "ag-b".into())]);
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, "agent_unavailable")
        );
        assert!(
            e.message
                .contains("seats 2, 5 from agent ag-b, which is not"),
            "{}",
            e.message
        );
        let e = unavailable(&[(1, "ag-a".into()), (3, "ag-c".into())]);
        assert!(
            e.message.contains("agents ag-a, ag-c, which are"),
            "{}",
            e.message
        );
    }
}
