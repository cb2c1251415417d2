//! The daemon's HTTP error: a status and the shared `{code, message}` body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use clarateach_core::ErrorBody;
use clarateach_core::ErrorCode;

/// Every failed request answers with one of these.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// Logs `cause` (never sent to the client) and answers 500 `internal` with `message`, a
    /// generic sentence saying which step failed.
    pub fn internal(message: &'static str, cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %clarateach_core::error::error_chain(cause), "{message}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            message,
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody::new(self.code, self.message))).into_response()
    }
}

/// A raw request body, or our error shape (400 `invalid_request`, or 413 `payload_too_large`
/// when the body limit was hit): the same codes the control plane answers.
pub fn parse_raw(
    body: Result<bytes::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<bytes::Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                "The request body is too large.",
            )
        } else {
            ApiError::bad_request(ErrorCode::InvalidRequest, "Cannot read the request body.")
        }
    })
}

/// Whether `headers` declare a JSON body (`application/json` or `application/*+json`), the rule
/// axum's `Json` extractor applies on the control plane.
pub fn is_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", sub)) => sub == "json" || sub.ends_with("+json"),
        _ => false,
    }
}

/// Parses a JSON body with the control plane's codes: no JSON content type or not JSON at all
/// is 400 `invalid_request`, JSON of the wrong shape is 422 `validation_failed`, a body over the
/// limit 413 `payload_too_large`.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    body: Result<bytes::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, ApiError> {
    let body = parse_raw(body)?;
    if !is_json_content_type(headers) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidRequest,
            "Expected a JSON body with `Content-Type: application/json`.",
        ));
    }
    serde_json::from_slice(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ValidationFailed,
            format!("Invalid request body: {e}"),
        ),
        _ => ApiError::bad_request(
            ErrorCode::InvalidRequest,
            "The request body is not valid JSON.",
        ),
    })
}

/// A query string that does not parse, with the control plane's codes (422 `validation_failed`
/// for a value of the wrong type, 400 `invalid_request` otherwise).
pub fn query_rejection(e: axum::extract::rejection::QueryRejection) -> ApiError {
    match e {
        axum::extract::rejection::QueryRejection::FailedToDeserializeQueryString(e) => {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::ValidationFailed,
                format!("Invalid query: {}", e.body_text()),
            )
        }
        e => ApiError::bad_request(ErrorCode::InvalidRequest, e.body_text()),
    }
}
