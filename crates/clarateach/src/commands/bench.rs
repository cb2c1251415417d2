//! `clarateach bench <name>`: benchmarks that print the figures recorded in BENCHMARKS.md.

mod join;
mod seats;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Agent, sandbox and gateway: seat ready time, start -> N seats running, memory per idle
    /// seat, keystroke echo and output throughput through the gateway.
    Seats(seats::Args),
    /// Control plane: join p50/p99 with concurrent learners, server RSS with many workshops.
    Join(join::Args),
}

pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Seats(args) => seats::run(args).await,
        Command::Join(args) => join::run(args).await,
    }
}
