//! tracing set-up: human text by default, JSON lines with `--log-format json`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("CLARATEACH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A workspace daemon's stderr is a FIFO nobody may be reading (its agent restarting, a
        // standalone sandbox's CLI gone): the failed write is dropped, never reported with an
        // `eprintln!` that would panic on the same broken pipe and kill the request's task.
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
