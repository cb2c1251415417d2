//! The one error shape every HTTP route answers with: `{"code": "snake_case", "message": "..."}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// JSON body of every failed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `workshop_full`.
    pub code: String,
    /// Human sentence explaining what went wrong.
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}
