//! `clarateach workshop pause|resume ID [SEAT]`: freezes every ready seat (or one) over a
//! break, keeping processes, memory and terminal sessions, and thaws them where they were.
//! Learners see "paused by the instructor" meanwhile.

use clarateach_core::SeatState;
use serde_json::json;

use super::output::print_json;
use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Workshop id (ws-xxxxxx).
    pub id: String,
    /// Only this seat (1-based); every seat when absent.
    pub seat: Option<u32>,
}

pub async fn run(ctx: &Ctx, args: Args, paused: bool) -> anyhow::Result<()> {
    let seats = ctx.client.pause(&args.id, args.seat, paused).await?;
    if ctx.json {
        return print_json(&json!({ "seats": seats }));
    }
    let count = |st: SeatState| seats.iter().filter(|s| s.state == st).count();
    let which = match args.seat {
        Some(s) => format!("Seat {s} of {}", args.id),
        None => format!("Workshop {}", args.id),
    };
    println!(
        "{which} {}: {} seats paused, {} ready.",
        if paused { "paused" } else { "resumed" },
        count(SeatState::Paused),
        count(SeatState::Ready)
    );
    Ok(())
}
