//! `clarateach workshop stop ID`: destroys every seat's workspace and the workshop's API key.
//! It ends a live class, so it asks first unless `--yes`, and refuses to guess when nobody is
//! at a terminal to answer.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{anyhow, bail};
use clarateach_core::{Workshop, WorkshopStatus};
use serde_json::json;

use super::output::print_json;
use super::wait::{Step, Waiter};
use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Workshop id (ws-xxxxxx).
    pub id: String,

    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,

    /// Return as soon as the control plane accepted the stop.
    #[arg(long)]
    no_wait: bool,

    /// Give up waiting after this many seconds (the stop goes on in the background).
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    timeout: u64,
}

pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    if !args.yes {
        confirm(ctx, &args.id).await?;
    }
    let answered = ctx.client.stop_workshop(&args.id).await?;
    let workshop = match answered {
        Some(w) if args.no_wait || w.status == WorkshopStatus::Stopped => w,
        _ if args.no_wait => ctx.client.get_workshop(&args.id).await?,
        _ => {
            Waiter::spinner(ctx, format!("stopping {}", args.id))
                .until(ctx, &args.id, Duration::from_secs(args.timeout), step)
                .await?
        }
    };
    if ctx.json {
        return print_json(&json!({ "workshop": workshop }));
    }
    match workshop.status {
        WorkshopStatus::Stopped => println!(
            "Workshop {} stopped; seat files are kept until you delete it.",
            workshop.id
        ),
        other => println!("Workshop {} is {}.", workshop.id, other.as_str()),
    }
    Ok(())
}

/// Asks on the terminal; without one, refuses (a script must say `--yes`).
async fn confirm(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        bail!("refusing to stop {id} without confirmation: no terminal to ask on; pass --yes to stop it");
    }
    let w = ctx.client.get_workshop(id).await?;
    let prompt = format!(
        "Stop workshop {} \"{}\"? Its {} seats' workspaces ({} joined) are destroyed and its API key is deleted",
        w.id, w.name, w.seats, w.seats_joined
    );
    let yes = tokio::task::spawn_blocking(move || {
        dialoguer::Confirm::new()
            .with_prompt(prompt)
            .default(false)
            .interact()
    })
    .await?
    .map_err(|e| anyhow!("cannot read the answer: {e}"))?;
    if !yes {
        bail!("not stopped: {id} is unchanged");
    }
    Ok(())
}

fn step(w: &Workshop) -> Step {
    match w.status {
        WorkshopStatus::Stopped => Step::Done,
        WorkshopStatus::Stopping => Step::Continue,
        WorkshopStatus::Failed => Step::Fail(format!(
            "workshop {} failed while stopping; see `clarateach workshop info {}`",
            w.id, w.id
        )),
        other => Step::Fail(format!(
            "workshop {} is {} instead of stopping",
            w.id,
            other.as_str()
        )),
    }
}
