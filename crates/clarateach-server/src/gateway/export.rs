//! `GET /api/workshops/{id}/export`: one tar.gz of every seat's files (`seat-01/...`), streamed
//! while it is built. Each agent hands over its seats' volumes as tar fragments (entries already
//! under `seat-NN/`, no end-of-archive blocks); the gateway concatenates them, closes the archive
//! and compresses on the fly, so neither side holds a whole archive in memory. A seat whose
//! fragment fails (its agent answers an error or the connection breaks part-way) costs only
//! that seat: [`FragmentCursor`] knows where the seat's last entry ends, so the gateway pads it
//! out, adds `seat-NN/EXPORT-ERROR.txt` saying what happened, and goes on with the next seat.

use clarateach_core::ErrorBody;
use clarateach_core::ErrorCode;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::export_sink::Sink;
use crate::auth::Instructor;
use crate::error::ApiError;
use crate::state::AppState;

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
    crate::audit::record(
        &state,
        &workshop.id,
        &instructor.id,
        clarateach_core::toolkit::AuditAction::Export,
        None,
        None,
    )
    .await;
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(16);
    let ws = workshop.id.clone();
    let tls = state.data_ca().client_config();
    let state_for_pool = state.clone();
    tokio::spawn(async move {
        let mut sink = Sink::new(tx.clone());
        for (seat, route) in plan {
            let route = match route {
                super::export_bucket::SeatSource::Agent(route) => route,
                super::export_bucket::SeatSource::Bucket(store) => {
                    match super::export_bucket::copy_seat(&mut sink, &store, &ws, seat).await {
                        Ok(()) => continue,
                        Err(super::export_bucket::BucketCopy::ClientGone) => return,
                        Err(super::export_bucket::BucketCopy::Failed(e)) => {
                            tracing::warn!(workshop.id = %ws, seat, error = %clarateach_core::error::error_chain(&e), "export of a seat from object storage failed");
                            let note = format!(
                                "The export of this seat from object storage stopped early: {e}.\n\
                                 Export again to retry.\n"
                            );
                            let tail =
                                note_entry(&format!("seat-{seat:02}/EXPORT-ERROR.txt"), &note);
                            if sink.write(&tail).await.is_err() {
                                return;
                            }
                            continue;
                        }
                    }
                }
            };
            let url = format!(
                "{}/seats/{ws}/{seat}/export?format=tar-fragment&prefix=seat-{seat:02}",
                route.data_url.trim_end_matches('/')
            );
            let mut cursor = FragmentCursor::default();
            match copy_seat(
                &mut sink,
                &mut cursor,
                &url,
                &route,
                &tls,
                state_for_pool.data_clients(),
            )
            .await
            {
                Ok(()) => {}
                Err(SeatCopy::ClientGone) => return,
                Err(SeatCopy::Failed(e)) => {
                    tracing::warn!(workshop.id = %ws, seat, error = %clarateach_core::error::error_chain(&e), "export of a seat failed");
                    // Only the step that failed (`CopyError`'s own sentence), never its cause's
                    // words: those stay in the log.
                    let note = format!(
                        "The export of this seat stopped early: {e}.\nFiles listed before this \
                         point are in the archive; export again to retry.\n"
                    );
                    let mut tail = cursor.close();
                    tail.extend_from_slice(&note_entry(
                        &format!("seat-{seat:02}/EXPORT-ERROR.txt"),
                        &note,
                    ));
                    if sink.write(&tail).await.is_err() {
                        return;
                    }
                }
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
async fn plan(
    state: &AppState,
    workshop_id: &str,
) -> Result<Vec<(u32, super::export_bucket::SeatSource)>, ApiError> {
    use super::export_bucket::SeatSource;
    let mut plan = Vec::new();
    let mut missing = Vec::new();
    for seat in state.store().list_seats(workshop_id).await? {
        let Some(agent_id) = seat.agent_id.as_deref() else {
            continue;
        };
        match (
            state.provisioner().agent_route(agent_id).await,
            &state.config().object_store,
        ) {
            (Some(route), _) => plan.push((seat.seat, SeatSource::Agent(route))),
            // The seat's host is gone: its last synced files are in the bucket.
            (None, Some(store)) => plan.push((seat.seat, SeatSource::Bucket(store.clone()))),
            (None, None) => missing.push((seat.seat, agent_id.to_string())),
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
            ErrorCode::ExportUnavailable,
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
        ErrorCode::AgentUnavailable,
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

/// Why copying one seat's fragment stopped.
enum SeatCopy {
    /// The browser went away: the whole export ends.
    ClientGone,
    /// This seat's fragment failed; the others can still be exported.
    Failed(CopyError),
}

/// Why one seat's fragment could not be copied from its agent.
#[derive(Debug, thiserror::Error)]
enum CopyError {
    #[error("the request to the agent could not be made")]
    Request(#[source] axum::http::Error),
    #[error("the agent could not be reached")]
    Send(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the agent answered {0}")]
    Status(StatusCode),
    #[error("the transfer from the agent broke off")]
    Body(#[source] axum::Error),
    #[error("the agent's archive ended in the middle of a file")]
    Truncated,
}

async fn copy_seat(
    sink: &mut Sink,
    cursor: &mut FragmentCursor,
    url: &str,
    route: &crate::scheduler::SeatRoute,
    tls: &std::sync::Arc<clarateach_tls::ClientConfig>,
    pool: &super::proxy::TlsClients,
) -> Result<(), SeatCopy> {
    let token = &route.data_token;
    let req = axum::http::Request::get(url)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .map_err(|e| SeatCopy::Failed(CopyError::Request(e)))?;
    let resp = super::proxy::send(pool, tls, route, req, false)
        .await
        .map_err(|e| SeatCopy::Failed(CopyError::Send(e)))?;
    if !resp.status().is_success() {
        return Err(SeatCopy::Failed(CopyError::Status(resp.status())));
    }
    let mut stream = Body::new(resp.into_body()).into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| SeatCopy::Failed(CopyError::Body(e)))?;
        let whole = cursor.feed(&chunk);
        sink.write(&whole)
            .await
            .map_err(|()| SeatCopy::ClientGone)?;
    }
    if cursor.mid_entry() {
        return Err(SeatCopy::Failed(CopyError::Truncated));
    }
    Ok(())
}

/// Follows the 512-byte blocks of a tar fragment as it streams: passes on only whole header
/// blocks, drops zero blocks (an end-of-archive marker mid-stream would end the archive for
/// every seat after it), and knows how many data bytes the current entry still owes.
#[derive(Default)]
struct FragmentCursor {
    header: Vec<u8>,
    data_left: u64,
}

impl FragmentCursor {
    /// The bytes of `chunk` that may go into the archive now.
    fn feed(&mut self, mut chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + 512);
        while !chunk.is_empty() {
            if self.data_left > 0 {
                let n = chunk
                    .len()
                    .min(usize::try_from(self.data_left).unwrap_or(usize::MAX));
                out.extend_from_slice(&chunk[..n]);
                self.data_left -= n as u64;
                chunk = &chunk[n..];
                continue;
            }
            let n = chunk.len().min(512 - self.header.len());
            self.header.extend_from_slice(&chunk[..n]);
            chunk = &chunk[n..];
            if self.header.len() == 512 {
                if self.header.iter().any(|b| *b != 0) {
                    self.data_left = entry_size(&self.header).div_ceil(512) * 512;
                    out.extend_from_slice(&self.header);
                }
                self.header.clear();
            }
        }
        out
    }

    fn mid_entry(&self) -> bool {
        self.data_left > 0 || !self.header.is_empty()
    }

    /// Zeros completing the current entry (a half header is dropped, never passed on).
    fn close(&mut self) -> Vec<u8> {
        let pad = vec![0u8; usize::try_from(self.data_left).unwrap_or(0)];
        self.data_left = 0;
        self.header.clear();
        pad
    }
}

/// The size field of a tar header: octal, or base-256 when the high bit is set (GNU).
fn entry_size(header: &[u8]) -> u64 {
    let field = &header[124..136];
    if field[0] & 0x80 != 0 {
        return field[1..].iter().fold(0u64, |acc, b| {
            acc.saturating_mul(256).saturating_add(u64::from(*b))
        });
    }
    let text = String::from_utf8_lossy(field);
    u64::from_str_radix(text.trim_matches(|c: char| c == '\0' || c == ' '), 8).unwrap_or(0)
}

/// A small regular file entry (header and padded data) written by the gateway itself.
pub(super) fn note_entry(path: &str, text: &str) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(text.len() as u64);
    let mut out = Vec::new();
    let mut b = tar::Builder::new(&mut out);
    let _ = b.append_data(&mut h, path, text.as_bytes());
    let _ = b.into_inner();
    // `into_inner` added the two end-of-archive blocks: the archive is not over yet.
    out.truncate(out.len().saturating_sub(1024));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fragment cut anywhere (mid header, mid data) still leaves a readable archive holding
    /// the other seats' files and the note.
    #[test]
    fn a_fragment_cut_anywhere_closes_cleanly() {
        let mut frag = Vec::new();
        let mut b = tar::Builder::new(&mut frag);
        let mut h = tar::Header::new_gnu();
        h.set_size(1000);
        h.set_mode(0o644);
        b.append_data(&mut h, "seat-01/a.bin", &[7u8; 1000][..])
            .expect("append");
        b.append_data(&mut h, "seat-01/b.bin", &[8u8; 1000][..])
            .expect("append");
        b.into_inner().expect("inner");
        let whole = frag.clone();
        for cut in [0, 100, 512, 700, 1536, 1600, frag.len() - 1024] {
            let mut cursor = FragmentCursor::default();
            let mut out = Vec::new();
            for piece in frag[..cut].chunks(333) {
                out.extend(cursor.feed(piece));
            }
            out.extend(cursor.close());
            out.extend(note_entry("seat-01/EXPORT-ERROR.txt", "cut"));
            let mut other = FragmentCursor::default();
            out.extend(other.feed(&whole[..whole.len() - 1024]));
            out.extend([0u8; 1024]);
            let mut names = Vec::new();
            for e in tar::Archive::new(&out[..]).entries().expect("entries") {
                let e = e.expect("entry");
                names.push(e.path().expect("path").to_string_lossy().to_string());
            }
            assert!(
                names.contains(&"seat-01/EXPORT-ERROR.txt".to_string()),
                "cut {cut}: {names:?}"
            );
            assert_eq!(
                names.iter().filter(|n| n.ends_with("b.bin")).count(),
                if cut >= 1536 + 512 { 2 } else { 1 },
                "cut {cut}: {names:?}"
            );
        }
    }

    #[test]
    fn unavailable_names_seats_and_agents() {
        let e = unavailable(&[(2, "ag-b".into()), (5, "ag-b".into())]);
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::AgentUnavailable)
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
