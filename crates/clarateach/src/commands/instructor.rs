//! `clarateach instructor add NAME`: creates an instructor in the data dir's store and prints
//! their token once (only its hash is kept).

use std::path::PathBuf;

use anyhow::Context;
use clarateach_server::{create_instructor, default_data_dir, open_database};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create an instructor account and print its token (shown once).
    Add {
        /// Display name, 1-100 characters.
        name: String,
        /// Data dir of the control plane; defaults to the XDG data dir.
        #[arg(long, env = "CLARATEACH_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The control plane's PostgreSQL database, when it has one (`serve --database-url`).
        #[arg(long, env = "CLARATEACH_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
}

pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Add {
            name,
            data_dir,
            database_url,
        } => {
            let data_dir = data_dir.unwrap_or_else(default_data_dir);
            let store = open_database(&data_dir, database_url.as_deref())
                .await
                .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
            let token = create_instructor(store.as_ref(), &name)
                .await
                .context("cannot create the instructor")?;
            eprintln!("Instructor {name:?} created. Their token (shown once):");
            println!("{token}");
            Ok(())
        }
    }
}
