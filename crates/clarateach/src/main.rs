//! The one `clarateach` binary: parses the command line and hands off to a library crate.
//! Each subcommand lives in `commands/<verb>.rs`.

#![deny(unsafe_code)]

mod commands;
mod logging;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "clarateach",
    version,
    about = "Run live coding workshops: one isolated workspace per seat"
)]
struct Cli {
    /// Log output format.
    #[arg(
        long,
        global = true,
        env = "CLARATEACH_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: logging::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Control plane + one local agent + web UI, with the embedded store.
    Up(commands::up::Args),
    /// Run the control plane (HTTP API, gateway, web UI).
    Serve(commands::serve::Args),
    /// Manage instructor accounts.
    #[command(subcommand)]
    Instructor(commands::instructor::Command),
    /// Manage workshops against a running control plane.
    Workshop(commands::workshop::Args),
    /// Run a host agent, or issue agent tokens.
    Agent(commands::agent::Args),
    /// Run the in-workspace daemon (terminal, files, run).
    WorkspaceServer(commands::workspace_server::Args),
    /// Seat images from recipes (build, list, inspect, rm) and the microVM guest image.
    #[command(subcommand)]
    Image(commands::image::Command),
    /// Workshop templates: image, starter files, limits, check command, README.
    Template(commands::template::Args),
    /// PID 1 inside a microVM guest.
    #[command(hide = true)]
    GuestInit(commands::guest_init::Args),
    /// Standalone sandboxes: create, run code in, stop and clean isolated seats without a server.
    Sandbox(commands::sandbox::Args),
    /// Benchmarks that print the figures recorded in BENCHMARKS.md.
    #[command(subcommand)]
    Bench(commands::bench::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // guest-init runs as PID 1 in a tiny VM: keep it off the multi-threaded runtime and logging.
    if let Command::GuestInit(args) = cli.command {
        return report(commands::guest_init::run(args));
    }
    if matches!(cli.command, Command::Workshop(_) | Command::Instructor(_)) {
        // Printing commands end quietly when their reader goes away (`... | head`), like any
        // Unix tool, instead of panicking on EPIPE. Servers keep Rust's SIGPIPE-ignored default.
        restore_default_sigpipe();
    }
    if matches!(cli.command, Command::Sandbox(_)) && std::env::var_os("CLARATEACH_LOG").is_none() {
        // A sandbox command's output is its result and its errors are one line of its own:
        // the backends' logs stay quiet unless asked for (`CLARATEACH_LOG=debug`).
        std::env::set_var("CLARATEACH_LOG", "off");
    }
    logging::init(cli.log_format);
    // The workspace daemon runs in every seat: one thread keeps its idle memory small.
    let mut builder = match cli.command {
        Command::WorkspaceServer(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    report(runtime.block_on(async move {
        match cli.command {
            Command::Up(a) => commands::up::run(a).await,
            Command::Serve(a) => commands::serve::run(a).await,
            Command::Instructor(c) => commands::instructor::run(c).await,
            Command::Workshop(a) => commands::workshop::run(a).await,
            Command::Agent(a) => commands::agent::run(a).await,
            Command::WorkspaceServer(a) => commands::workspace_server::run(a).await,
            Command::Image(c) => commands::image::run(c).await,
            Command::Template(a) => commands::template::run(a).await,
            Command::Bench(c) => commands::bench::run(c).await,
            Command::Sandbox(a) => commands::sandbox::run(a).await,
            Command::GuestInit(_) => unreachable!("handled before the runtime starts"),
        }
    }))
}

#[allow(unsafe_code)]
fn restore_default_sigpipe() {
    // SAFETY: called first thing on the main thread before any other thread exists; setting a
    // signal disposition to SIG_DFL installs no handler code, so nothing can run unsoundly.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Prints an error chain as one readable block (never a backtrace) and picks the exit code.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `sandbox` said what there was to say; only its exit status is left.
            if let Some(commands::sandbox::Exit(code)) = e.downcast_ref() {
                return ExitCode::from(*code);
            }
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap checks the command tree only when it is built: a verb clashing with one of clap's
    /// own (a `help` verb next to the auto `help` subcommand) would make every command panic.
    #[test]
    fn the_command_tree_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
