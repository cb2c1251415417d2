//! One module per subcommand; each is a thin shell over a library crate.

pub mod agent;
pub mod bench;
pub mod config_file;
pub mod guest_init;
pub mod image;
pub mod instructor;
pub mod sandbox;
pub mod serve;
pub mod template;
pub mod up;
pub mod workshop;
pub mod workspace_server;

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
