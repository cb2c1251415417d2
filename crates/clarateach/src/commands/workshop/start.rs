//! `clarateach workshop start ID`: asks the control plane to provision every seat, then waits
//! with a seat progress bar until the workshop is running (or returns at once with `--no-wait`).

use std::time::Duration;

use chrono::{DateTime, Local, NaiveTime, Utc};
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

    /// Start by itself at this time instead of now: `09:55` (local time today) or RFC 3339
    /// (`2026-12-01T09:55:00+01:00`). A time already past starts at once. The control plane
    /// keeps the schedule across restarts; this returns once it is recorded.
    #[arg(long, value_name = "TIME", value_parser = parse_at)]
    at: Option<DateTime<Utc>>,
}

/// `HH:MM` (local, today) or an RFC 3339 time.
fn parse_at(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let time = NaiveTime::parse_from_str(s, "%H:%M")
        .map_err(|_| format!("{s:?} is neither HH:MM (local time today) nor RFC 3339"))?;
    Local::now()
        .date_naive()
        .and_time(time)
        .and_local_timezone(Local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("{s} does not exist today in the local time zone"))
}

pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    if let Some(at) = args.at.filter(|at| *at > Utc::now()) {
        let w = ctx.client.start_workshop_at(&args.id, at).await?;
        if ctx.json {
            return print_json(&json!({ "workshop": w }));
        }
        let when = w.start_at.unwrap_or(at).with_timezone(&Local);
        println!(
            "Workshop {} starts by itself at {} (local time); learners join with code {}",
            w.id,
            when.format("%Y-%m-%d %H:%M:%S"),
            w.code
        );
        return Ok(());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_takes_local_clock_times_and_rfc3339() {
        let t = parse_at("2026-12-01T09:55:00+01:00").expect("rfc3339");
        assert_eq!(t.to_rfc3339(), "2026-12-01T08:55:00+00:00");
        let local = parse_at("09:55").expect("clock time").with_timezone(&Local);
        assert_eq!(local.format("%H:%M").to_string(), "09:55");
        assert_eq!(local.date_naive(), Local::now().date_naive());
        assert!(parse_at("25:00").is_err());
        assert!(parse_at("tomorrow").is_err());
    }
}
