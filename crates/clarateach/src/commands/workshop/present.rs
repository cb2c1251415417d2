//! `clarateach workshop announce|spotlight|recordings`: the presenting tools of issue 10 from
//! the command line. `announce ID MESSAGE` shows a banner to every learner (`--list`,
//! `--dismiss AN_ID`); `spotlight ID SEAT [--session S]` shares a terminal read-only with every
//! learner (`--off` stops); `recordings ID SEAT` lists a seat's casts, `--get NAME -o FILE`
//! downloads one (asciicast v2, plays in `asciinema play`).

use anyhow::Context;
use serde_json::json;

use super::output::print_json;
use super::Ctx;

#[derive(clap::Args)]
pub struct AnnounceArgs {
    /// Workshop id (ws-xxxxxx).
    pub id: String,
    /// The banner's text (up to 500 characters).
    #[arg(required_unless_present_any = ["list", "dismiss"])]
    pub message: Vec<String>,
    /// List the live announcements instead.
    #[arg(long, conflicts_with_all = ["message", "dismiss"])]
    pub list: bool,
    /// Take one announcement down (its id, an-...).
    #[arg(long, value_name = "AN_ID", conflicts_with = "message")]
    pub dismiss: Option<String>,
}

pub async fn announce(ctx: &Ctx, args: AnnounceArgs) -> anyhow::Result<()> {
    if let Some(an) = &args.dismiss {
        ctx.client.dismiss_announcement(&args.id, an).await?;
        if ctx.json {
            return print_json(&json!({ "dismissed": an }));
        }
        println!("Announcement {an} taken down.");
        return Ok(());
    }
    if args.list {
        let list = ctx.client.announcements(&args.id).await?;
        if ctx.json {
            return print_json(&list);
        }
        if list.announcements.is_empty() {
            println!("No announcements in {}.", args.id);
        }
        for a in list.announcements {
            println!("{}  {}  {}", a.id, a.created_at, a.message);
        }
        return Ok(());
    }
    let a = ctx
        .client
        .announce(&args.id, &args.message.join(" "))
        .await?;
    if ctx.json {
        return print_json(&a);
    }
    println!("Announced to every learner of {} ({}).", args.id, a.id);
    Ok(())
}

#[derive(clap::Args)]
pub struct SpotlightArgs {
    /// Workshop id (ws-xxxxxx).
    pub id: String,
    /// Seat whose terminal to share.
    #[arg(required_unless_present = "off")]
    pub seat: Option<u32>,
    /// Terminal session of that seat.
    #[arg(long, default_value = "main")]
    pub session: String,
    /// Stop sharing.
    #[arg(long, conflicts_with = "seat")]
    pub off: bool,
}

pub async fn spotlight(ctx: &Ctx, args: SpotlightArgs) -> anyhow::Result<()> {
    let Some(seat) = args.seat.filter(|_| !args.off) else {
        ctx.client.spotlight_off(&args.id).await?;
        if ctx.json {
            return print_json(&json!({ "spotlight": null }));
        }
        println!("Spotlight of {} stopped.", args.id);
        return Ok(());
    };
    let state = ctx
        .client
        .spotlight(&args.id, seat, Some(&args.session))
        .await?;
    if ctx.json {
        return print_json(&state);
    }
    println!(
        "Every learner of {} now sees seat {seat}'s terminal \"{}\" (read-only) in a Presenter tab.",
        args.id, args.session
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct RecordingsArgs {
    /// Workshop id (ws-xxxxxx).
    pub id: String,
    /// Seat number.
    pub seat: u32,
    /// Download this recording (a name from the list).
    #[arg(long, value_name = "NAME", requires = "output")]
    pub get: Option<String>,
    /// Where to write the downloaded cast.
    #[arg(short, long)]
    pub output: Option<std::path::PathBuf>,
}

pub async fn recordings(ctx: &Ctx, args: RecordingsArgs) -> anyhow::Result<()> {
    if let (Some(name), Some(out)) = (&args.get, &args.output) {
        let bytes = ctx.client.recording(&args.id, args.seat, name).await?;
        std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
        if !ctx.json {
            println!("Wrote {} ({} bytes).", out.display(), bytes.len());
        }
        return Ok(());
    }
    let list = ctx.client.recordings(&args.id, args.seat).await?;
    if ctx.json {
        return print_json(&list);
    }
    if list.recordings.is_empty() {
        println!("No recordings of seat {}.", args.seat);
    }
    for r in list.recordings {
        let at = chrono::DateTime::from_timestamp_millis(r.started_ms as i64)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        println!("{}  {}  {}  {} bytes", r.name, r.session, at, r.bytes);
    }
    Ok(())
}
