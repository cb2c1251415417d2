//! Calls a seat's workspace daemon from the control plane itself (not on behalf of a browser):
//! the live screens of the grid, the help queue's shell facts, checks. Goes through the agent's
//! data path like the gateway, with a deadline and a cap on the answer, because what a daemon
//! answers is data from inside a hostile seat: it may be slow, huge or malformed.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;

use crate::state::AppState;

/// Why a call to a seat's daemon did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum SeatCallError {
    #[error("the seat is not routed to a connected agent")]
    NoRoute,
    #[error("cannot build the request")]
    Request(#[source] axum::http::Error),
    #[error("the agent's data path failed")]
    Send(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the seat did not answer in time")]
    Timeout,
    #[error("the seat's answer is larger than {0} bytes or broke off")]
    Body(usize),
}

/// An answer from a seat's daemon: status and (bounded) body.
#[derive(Debug)]
pub struct SeatAnswer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// One request to a seat's daemon.
#[derive(Debug, Clone)]
pub struct SeatRequest {
    pub method: Method,
    /// Daemon path and query, e.g. `screen?since=3`.
    pub path: String,
    /// Body and its content type.
    pub body: Option<(Bytes, &'static str)>,
    /// Deadline for the whole exchange, body included.
    pub timeout: Duration,
    /// Largest answer body read.
    pub max_body: usize,
}

impl SeatRequest {
    pub fn get(path: impl Into<String>, timeout: Duration, max_body: usize) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            body: None,
            timeout,
            max_body,
        }
    }
}

/// Sends `req` to the seat's daemon and reads at most `req.max_body` bytes of the answer, all
/// within `req.timeout`.
pub async fn call(
    state: &AppState,
    workshop_id: &str,
    seat: u32,
    req: SeatRequest,
) -> Result<SeatAnswer, SeatCallError> {
    call_with_headers(state, workshop_id, seat, req, axum::http::HeaderMap::new()).await
}

/// [`call`] with extra request headers (e.g. a conditional write's `If-Match`).
pub async fn call_with_headers(
    state: &AppState,
    workshop_id: &str,
    seat: u32,
    req: SeatRequest,
    extra: axum::http::HeaderMap,
) -> Result<SeatAnswer, SeatCallError> {
    let SeatRequest {
        method,
        path: path_and_query,
        body,
        timeout,
        max_body,
    } = req;
    let route = state
        .provisioner()
        .seat_route(workshop_id, seat)
        .await
        .ok_or(SeatCallError::NoRoute)?;
    let url = format!(
        "{}/seats/{workshop_id}/{seat}/{path_and_query}",
        route.data_url.trim_end_matches('/')
    );
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(url)
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", route.data_token),
        );
    if let Some(h) = req.headers_mut() {
        h.extend(extra);
    }
    let body = match body {
        Some((bytes, content_type)) => {
            req = req.header(header::CONTENT_TYPE, content_type);
            Body::from(bytes)
        }
        None => Body::empty(),
    };
    let req = req.body(body).map_err(SeatCallError::Request)?;
    let tls = state.data_ca().client_config();
    let exchange = async {
        let resp = super::proxy::send(state.data_clients(), &tls, &route, req, false)
            .await
            .map_err(SeatCallError::Send)?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), max_body)
            .collect()
            .await
            .map_err(|_| SeatCallError::Body(max_body))?
            .to_bytes();
        Ok(SeatAnswer { status, body })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| SeatCallError::Timeout)?
}
