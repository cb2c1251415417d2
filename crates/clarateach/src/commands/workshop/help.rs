//! `clarateach workshop help ID [--claim HELP_ID | --resolve HELP_ID]`: the help queue from the
//! terminal: who is waiting, for how long, in which directory and after which failing command.

use clarateach_client::HelpAction;
use clarateach_core::classroom::{HelpRequest, HelpStatus};
use serde_json::json;

use super::output::{escape, print_json};
use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Workshop id (ws-xxxxxx).
    pub id: String,
    /// Claim this request ("on my way": the learner sees someone is coming).
    #[arg(long, value_name = "HELP_ID", conflicts_with = "resolve")]
    pub claim: Option<String>,
    /// Resolve this request (it leaves the queue).
    #[arg(long, value_name = "HELP_ID")]
    pub resolve: Option<String>,
}

/// Seconds since the Unix epoch now (no chrono in this crate).
fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let action = match (&args.claim, &args.resolve) {
        (Some(h), _) => Some((h, HelpAction::Claim)),
        (None, Some(h)) => Some((h, HelpAction::Resolve)),
        (None, None) => None,
    };
    if let Some((help_id, action)) = action {
        let r = ctx.client.act_on_help(&args.id, help_id, action).await?;
        if ctx.json {
            return print_json(&json!({ "request": r }));
        }
        println!("Seat {}: {}", r.seat, r.status.as_str());
        return Ok(());
    }
    let queue = ctx.client.list_help(&args.id).await?;
    if ctx.json {
        return print_json(&json!({ "requests": queue.requests }));
    }
    if queue.requests.is_empty() {
        println!("Nobody is waiting for help.");
    }
    let now = now_s();
    for r in &queue.requests {
        println!("{}", line(r, now));
    }
    Ok(())
}

fn line(r: &HelpRequest, now: i64) -> String {
    let waited = (now - r.created_at.timestamp()).max(0);
    let mut out = format!(
        "{}  seat {:>3}  {:<16}  waiting {}m{:02}s  {}",
        r.id,
        r.seat,
        escape(r.name.as_deref().unwrap_or("-")),
        waited / 60,
        waited % 60,
        match r.status {
            HelpStatus::Claimed => format!(
                "claimed by {}",
                escape(r.claimed_by.as_deref().unwrap_or("?"))
            ),
            s => s.as_str().to_string(),
        }
    );
    if let Some(m) = &r.message {
        out.push_str(&format!("\n    \"{}\"", escape(m)));
    }
    if let Some(cwd) = &r.cwd {
        out.push_str(&format!("\n    cwd {}", escape(cwd)));
    }
    if let Some(c) = r
        .commands
        .iter()
        .rev()
        .find(|c| c.exit_code.is_some_and(|e| e != 0))
    {
        out.push_str(&format!(
            "\n    $ {}  -> exit {}",
            escape(&c.command),
            c.exit_code.unwrap_or_default()
        ));
    }
    if let Some(f) = &r.open_file {
        out.push_str(&format!("\n    open file {}", escape(f)));
    }
    out
}
