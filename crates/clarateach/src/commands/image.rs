//! `clarateach image` (being built; see the issue that owns it).

#[derive(clap::Subcommand)]
pub enum Command {
    /// Placeholder.
    Todo,
}

pub async fn run(_cmd: Command) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
