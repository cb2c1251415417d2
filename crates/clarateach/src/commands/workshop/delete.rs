//! `clarateach workshop delete ID`: removes a workshop that is not running, with its seat files.

use serde_json::json;

use super::output::print_json;
use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Workshop id (ws-xxxxxx).
    pub id: String,
}

pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    ctx.client.delete_workshop(&args.id).await?;
    if ctx.json {
        return print_json(&json!({ "deleted": args.id }));
    }
    println!("Deleted workshop {}.", args.id);
    Ok(())
}
