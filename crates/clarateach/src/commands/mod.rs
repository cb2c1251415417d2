//! One module per subcommand; each is a thin shell over a library crate.

pub mod agent;
pub mod bench;
pub mod guest_init;
pub mod image;
pub mod instructor;
pub mod serve;
pub mod up;
pub mod workshop;
pub mod workspace_server;
