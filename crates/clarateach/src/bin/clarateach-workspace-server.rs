//! `clarateach-workspace-server`: the seat daemon alone, for sandbox seats.
//!
//! The daemon runs once in every seat, and each copy pays for its binary's relocations: the
//! full `clarateach` binary (control plane, agent, store, web UI, benches) dirties ~740 KiB of
//! `.data.rel.ro`/`.got` pages at every start, private to that seat. This binary links only the
//! daemon, so a seat costs less memory and starts faster. It takes the same arguments as
//! `clarateach workspace-server` (the first one may be that subcommand's name, as the sandbox's
//! command line passes it), and the agent uses it when it sits next to the `clarateach` binary.

#![deny(unsafe_code)]

#[path = "../logging.rs"]
mod logging;
#[path = "../commands/workspace_server.rs"]
mod workspace_server;

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "clarateach-workspace-server",
    version,
    about = "The in-workspace daemon (terminal, files, run)"
)]
struct Cli {
    /// Log output format.
    #[arg(long, env = "CLARATEACH_LOG_FORMAT", default_value = "text")]
    log_format: logging::LogFormat,
    #[command(flatten)]
    args: workspace_server::Args,
}

fn main() -> ExitCode {
    // `clarateach-workspace-server workspace-server --listen ...` is accepted as well.
    let argv = std::env::args_os()
        .enumerate()
        .filter(|(i, a)| !(*i == 1 && a == "workspace-server"))
        .map(|(_, a)| a);
    let cli = Cli::parse_from(argv);
    logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(workspace_server::run(cli.args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
