//! `clarateach guest-init`: PID 1 inside a microVM guest (see `clarateach_image::guest`). Runs
//! before any async runtime or logger exists; on success the VM powers off and it never returns.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    clarateach_image::guest::run()?;
    Ok(())
}
