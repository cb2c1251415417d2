//! Domain types shared by every role: ids and codes, the API request/response shapes, the
//! error body, and the control-plane <-> agent protocol. No IO lives here, so the server, the
//! agent, the CLI and the tests all agree on one definition of every wire shape.

#![forbid(unsafe_code)]

pub mod agent_proto;
pub mod api;
pub mod classroom;
pub mod error;
pub mod hop;
pub mod ids;
pub mod session_api;
pub mod templates;
pub mod text;

pub use api::*;
pub use error::ErrorBody;
pub use session_api::*;
pub use templates::*;
