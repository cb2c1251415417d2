//! `clarateach workshop reset-seat ID SEAT`: a new reconnect code for one seat (a leaked code,
//! or another learner taking the chair). Every earlier token of the seat and the old code are
//! refused from now on; the seat's files stay. Prints the new code for the instructor to hand
//! out.

use serde_json::json;

use super::output::print_json;
use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Workshop id (ws-xxxxxx).
    pub id: String,
    /// Seat number (1-based).
    pub seat: u32,
}

pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let reset = ctx.client.reset_seat(&args.id, args.seat).await?;
    if ctx.json {
        return print_json(&json!({ "reset": reset }));
    }
    println!(
        "Seat {} of {} reset. New reconnect code: {}",
        reset.seat, args.id, reset.odehash
    );
    println!(
        "The old code and every earlier sign-in of this seat no longer work; its files are kept."
    );
    Ok(())
}
