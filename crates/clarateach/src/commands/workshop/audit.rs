//! `clarateach workshop audit ID`: who watched, typed in, broadcast to, checked, reset or
//! exported which seat, and when (newest first).

use super::output::{escape, print_json};
use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Workshop id (ws-xxxxxx).
    pub id: String,
}

pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let audit = ctx.client.audit(&args.id).await?;
    if ctx.json {
        return print_json(&audit);
    }
    if audit.events.is_empty() {
        println!("Nothing recorded yet.");
    }
    for e in &audit.events {
        let seat = e
            .seat
            .map_or_else(|| "all seats".to_string(), |s| format!("seat {s}"));
        let who = e.actor_name.as_deref().unwrap_or(&e.actor);
        let mut line = format!(
            "{}  {:<10}  {:<9}  {}",
            e.at.format("%Y-%m-%d %H:%M:%S"),
            e.action.as_str(),
            seat,
            escape(who)
        );
        if let Some(d) = &e.detail {
            line.push_str(&format!("  {}", escape(d)));
        }
        println!("{line}");
    }
    Ok(())
}
