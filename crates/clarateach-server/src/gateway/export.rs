//! `GET /api/workshops/{id}/export`: one tar.gz of every seat's files (`seat-01/...`), streamed
//! while it is built. Each agent hands over its seats' volumes as tar fragments (entries already
//! under `seat-NN/`, no end-of-archive blocks); the gateway concatenates them, closes the archive
//! and compresses on the fly, so neither side holds a whole archive in memory.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

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

/// Data-path routes of agents seen by this process, by agent id: after a workshop stops its
/// seats are no longer placed, but their volumes stay on the agent that hosted them.
fn agents() -> &'static Mutex<HashMap<String, SeatRoute>> {
    static AGENTS: OnceLock<Mutex<HashMap<String, SeatRoute>>> = OnceLock::new();
    AGENTS.get_or_init(Mutex::default)
}

pub(super) fn remember(route: &SeatRoute) {
    let mut map = agents().lock().unwrap_or_else(|p| p.into_inner());
    map.insert(route.agent_id.clone(), route.clone());
}

fn remembered(agent_id: &str) -> Option<SeatRoute> {
    agents()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(agent_id)
        .cloned()
}

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

pub async fn export_workshop(
    State(state): State<AppState>,
    instructor: Instructor,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let workshop = instructor.workshop(&state, &id).await?;
    let mut plan = Vec::new();
    for seat in state.store().list_seats(&workshop.id).await? {
        let route = match state
            .provisioner()
            .seat_route(&workshop.id, seat.seat)
            .await
        {
            Some(r) => Some(r),
            None => seat.agent_id.as_deref().and_then(remembered),
        };
        match route {
            Some(r) => {
                remember(&r);
                plan.push((seat.seat, r));
            }
            None => {
                tracing::warn!(workshop.id = %workshop.id, seat = seat.seat, "seat not reachable for export, skipped")
            }
        }
    }
    if plan.is_empty() {
        return Err(ApiError::conflict(
            "export_unavailable",
            "No seat of this workshop is reachable on a connected agent.",
        ));
    }
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
