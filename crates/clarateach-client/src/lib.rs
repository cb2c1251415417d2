//! Typed client of the ClaraTeach control plane, shared by the CLI, the agent and the tests:
//! one async method per HTTP route returning the API types of clarateach-core, errors that tell
//! an unreachable server from an API refusal, a streaming export download, and a terminal
//! WebSocket helper speaking api/ws-protocol.md.

#![forbid(unsafe_code)]

mod client;
mod error;
mod export;
mod terminal;
mod toolkit;

pub use client::{Client, HelpAction};
pub use error::ClientError;
pub use export::Export;
pub use terminal::{Terminal, TerminalEvent, TerminalOptions};
