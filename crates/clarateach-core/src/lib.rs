//! Domain types shared by every role: ids and codes, the API request/response shapes, the
//! error body, and the control-plane <-> agent protocol, plus the few helpers every role shares
//! (`secret`, `private_file`). No IO lives here but the one 0600 file write, so the server, the
//! agent, the CLI and the tests all agree on one definition of every wire shape.

#![forbid(unsafe_code)]

pub mod agent_proto;
pub mod api;
pub mod classroom;
pub mod error;
pub mod hop;
pub mod ids;
pub mod presenter;
pub mod preview;
pub mod private_file;
pub mod secret;
pub mod session_api;
pub mod skip;
pub mod templates;
pub mod text;
pub mod toolkit;

pub use api::*;
pub use error::{ErrorBody, ErrorCode};
pub use session_api::*;
pub use templates::*;
