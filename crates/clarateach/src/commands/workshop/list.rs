//! `clarateach workshop list`: every workshop of this instructor, as a table or JSON.

use serde_json::json;

use super::output::{print_json, workshops_table};
use super::Ctx;

pub async fn run(ctx: &Ctx) -> anyhow::Result<()> {
    let workshops = ctx.client.list_workshops().await?;
    if ctx.json {
        return print_json(&json!({ "workshops": workshops }));
    }
    if workshops.is_empty() {
        println!(
            "No workshops yet. Create one with: clarateach workshop create --name NAME --seats N"
        );
        return Ok(());
    }
    println!("{}", workshops_table(&workshops));
    Ok(())
}
