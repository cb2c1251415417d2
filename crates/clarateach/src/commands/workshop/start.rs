//! `clarateach workshop start ID`: asks the control plane to provision every seat, then waits
//! with a seat progress bar until the workshop is running (or returns at once with `--no-wait`).

use std::time::Duration;

use clarateach_core::{Workshop, WorkshopStatus};
use serde_json::json;

use super::output::print_json;
use super::wait::{Step, Waiter};
use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Workshop id (ws-xxxxxx).
    pub id: String,

    /// Return as soon as the control plane accepted the start.
    #[arg(long)]
    no_wait: bool,

    /// Give up waiting after this many seconds (the start goes on in the background).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    timeout: u64,
}

pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let accepted = ctx.client.start_workshop(&args.id).await?;
    let workshop = if args.no_wait || accepted.status == WorkshopStatus::Running {
        accepted
    } else {
        let message = format!("starting {}", args.id);
        Waiter::seats(ctx, accepted.seats, message)
            .until(ctx, &args.id, Duration::from_secs(args.timeout), step)
            .await?
    };
    if ctx.json {
        return print_json(&json!({ "workshop": workshop }));
    }
    if workshop.status == WorkshopStatus::Running {
        println!(
            "Workshop {} is running: {} seats ready.",
            workshop.id, workshop.seats_ready
        );
        println!("Learners join with code {}", workshop.code);
    } else {
        println!(
            "Workshop {} is {} ({} of {} seats ready). Follow it with: clarateach workshop info {}",
            workshop.id,
            workshop.status.as_str(),
            workshop.seats_ready,
            workshop.seats,
            workshop.id
        );
    }
    Ok(())
}

fn step(w: &Workshop) -> Step {
    match w.status {
        WorkshopStatus::Running => Step::Done,
        WorkshopStatus::Created | WorkshopStatus::Provisioning => Step::Continue,
        WorkshopStatus::Failed => Step::Fail(format!(
            "workshop {} failed to start ({} of {} seats ready); see `clarateach workshop info {}`",
            w.id, w.seats_ready, w.seats, w.id
        )),
        WorkshopStatus::Stopping | WorkshopStatus::Stopped => {
            Step::Fail(format!("workshop {} was stopped while starting", w.id))
        }
    }
}
