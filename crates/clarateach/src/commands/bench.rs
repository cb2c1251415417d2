//! `clarateach bench <name>`: benchmarks that print the figures recorded in BENCHMARKS.md.

mod join;
mod microvm;
mod pty;
mod seats;
mod terminal;
mod util;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Agent, sandbox and gateway: seat ready time, start -> N seats running, memory per idle
    /// seat, keystroke echo and output throughput through the gateway.
    Seats(seats::Args),
    /// Control plane: join p50/p99 with concurrent learners, server RSS with many workshops.
    Join(join::Args),
    /// MicroVM backend: image build (cold/cached), seat ready time, VMM RSS per idle seat.
    Microvm(microvm::Args),
    /// Workspace daemon terminal vs terminado vs a raw PTY reader: echo p50/p99, output
    /// throughput to 1 and N viewers, daemon idle RSS.
    Terminal(terminal::Args),
}

pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Seats(args) => seats::run(args).await,
        Command::Join(args) => join::run(args).await,
        Command::Microvm(args) => microvm::run(args).await,
        Command::Terminal(args) => terminal::run(args).await,
    }
}
