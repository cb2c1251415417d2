//! The data path's recording routes, for the control plane only (data-path token):
//! `GET /seats/{workshop_id}/{seat}/recordings` lists a seat's casts and
//! `GET /seats/{workshop_id}/{seat}/recordings/{name}` returns one. They read the agent's own
//! files (see [`crate::recording`]), so they answer whether or not the seat is running.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use clarateach_core::presenter::RecordingList;

use crate::http::{
    bad_request_text, internal, not_found, parse_seat, ApiError, ApiState, DataCaller,
};

pub(crate) async fn list(
    _: DataCaller,
    State(s): State<ApiState>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Json<RecordingList>, ApiError> {
    let key = parse_seat(path)?;
    let recordings = s.recorder.list(&key).map_err(|e| {
        tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, error = %crate::reconcile::error_chain(&e), "listing recordings failed");
        internal("cannot list the seat's recordings")
    })?;
    Ok(Json(RecordingList { recordings }))
}

pub(crate) async fn get(
    _: DataCaller,
    State(s): State<ApiState>,
    path: Result<Path<(String, String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Path((ws, seat, name)) = path.map_err(|e| bad_request_text(e.body_text()))?;
    let key = parse_seat(Ok(Path((ws, seat))))?;
    match s.recorder.read(&key, &name) {
        Ok(Some(bytes)) => {
            Ok(([(header::CONTENT_TYPE, "application/x-asciicast")], bytes).into_response())
        }
        Ok(None) => Err(not_found("no such recording")),
        Err(e) => {
            tracing::warn!(workshop.id = %key.workshop_id, seat = key.seat, error = %crate::reconcile::error_chain(&e), "reading a recording failed");
            Err(internal("cannot read the recording"))
        }
    }
}
