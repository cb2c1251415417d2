//! `clarateach workshop info ID`: one workshop's details and a table of its seats.

use serde_json::json;

use super::output::{print_json, seats_table, workshop_details};
use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Workshop id (ws-xxxxxx).
    pub id: String,
}

pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let workshop = ctx.client.get_workshop(&args.id).await?;
    let seats = ctx.client.list_seats(&args.id).await?;
    if ctx.json {
        return print_json(&json!({ "workshop": workshop, "seats": seats }));
    }
    println!("{}", workshop_details(&workshop));
    if !seats.is_empty() {
        println!("\n{}", seats_table(&seats));
    }
    Ok(())
}
