//! `clarateach workshop ...`: the instructor CLI. Each verb is a thin shell over
//! clarateach-client in its own file; this module resolves where the control plane is and which
//! token to use, and turns every client error into one readable line.

mod audit;
mod broadcast;
mod check;
pub(crate) mod conn;
mod create;
mod delete;
mod export;
mod help;
mod info;
mod list;
mod output;
mod pause;
mod present;
mod reset_seat;
mod start;
mod stop;
mod wait;

use clarateach_client::{Client, ClientError};

/// Options every verb shares; `global` so they may follow the verb (`workshop list --json`).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    conn: conn::ConnArgs,

    /// Print JSON on stdout for scripts instead of tables and sentences.
    #[arg(long, global = true, display_order = 99)]
    json: bool,

    #[command(subcommand)]
    verb: Verb,
}

// `help` is a verb here (the help queue): clap's own `help` subcommand would clash with it;
// `workshop --help` and `workshop VERB --help` still print help.
#[derive(clap::Subcommand)]
#[command(disable_help_subcommand = true)]
enum Verb {
    /// List your workshops.
    List,
    /// Create a workshop (it does not start until `start`).
    Create(create::Args),
    /// Show a workshop and its seats.
    Info(info::Args),
    /// Provision every seat and wait until the workshop is running.
    Start(start::Args),
    /// Stop a workshop: destroys every seat's workspace and the workshop's API key.
    Stop(stop::Args),
    /// Delete a stopped or never-started workshop and its seat files.
    Delete(delete::Args),
    /// Download a tar.gz of every seat's files.
    Export(export::Args),
    /// Give a seat a new reconnect code: the learner signed in there (and anyone holding the
    /// old code) is signed out; the seat's files stay.
    ResetSeat(reset_seat::Args),
    /// Pause every ready seat (or one) over a break: processes, memory and terminals are kept.
    Pause(pause::Args),
    /// Resume paused seats where they were.
    Resume(pause::Args),
    /// The help queue: list it, or claim / resolve one request.
    Help(help::Args),
    /// Show a banner to every learner (or --list, --dismiss).
    Announce(present::AnnounceArgs),
    /// Share a seat's terminal read-only with every learner (or --off).
    Spotlight(present::SpotlightArgs),
    /// List a seat's terminal recordings, or download one (--get NAME -o FILE).
    Recordings(present::RecordingsArgs),
    /// Hand files out to every running seat; learners' edits are merged, never overwritten.
    Broadcast(broadcast::Args),
    /// Run a check command in every running seat at once and show pass/fail per seat.
    Check(check::Args),
    /// What instructors did to seats: watch, take-over, broadcast, check, reset, export.
    Audit(audit::Args),
}

/// What every verb gets: the client and how to print.
pub(crate) struct Ctx {
    pub client: Client,
    pub json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let session = args.conn.resolve()?;
    let ctx = Ctx {
        client: session.client()?,
        json: args.json,
    };
    let id = args.verb.id().map(str::to_string);
    let result = match args.verb {
        Verb::List => list::run(&ctx).await,
        Verb::Create(a) => create::run(&ctx, a).await,
        Verb::Info(a) => info::run(&ctx, a).await,
        Verb::Start(a) => start::run(&ctx, a).await,
        Verb::Stop(a) => stop::run(&ctx, a).await,
        Verb::Delete(a) => delete::run(&ctx, a).await,
        Verb::Export(a) => export::run(&ctx, a).await,
        Verb::ResetSeat(a) => reset_seat::run(&ctx, a).await,
        Verb::Pause(a) => pause::run(&ctx, a, true).await,
        Verb::Resume(a) => pause::run(&ctx, a, false).await,
        Verb::Help(a) => help::run(&ctx, a).await,
        Verb::Announce(a) => present::announce(&ctx, a).await,
        Verb::Spotlight(a) => present::spotlight(&ctx, a).await,
        Verb::Recordings(a) => present::recordings(&ctx, a).await,
        Verb::Broadcast(a) => broadcast::run(&ctx, a).await,
        Verb::Check(a) => check::run(&ctx, a).await,
        Verb::Audit(a) => audit::run(&ctx, a).await,
    };
    result.map_err(|e| one_line(e, &session, id.as_deref()))
}

impl Verb {
    /// The workshop id the verb acts on, for error messages.
    fn id(&self) -> Option<&str> {
        match self {
            Verb::List | Verb::Create(_) => None,
            Verb::Info(a) => Some(&a.id),
            Verb::Start(a) => Some(&a.id),
            Verb::Stop(a) => Some(&a.id),
            Verb::Delete(a) => Some(&a.id),
            Verb::Export(a) => Some(&a.id),
            Verb::ResetSeat(a) => Some(&a.id),
            Verb::Pause(a) | Verb::Resume(a) => Some(&a.id),
            Verb::Help(a) => Some(&a.id),
            Verb::Announce(a) => Some(&a.id),
            Verb::Spotlight(a) => Some(&a.id),
            Verb::Recordings(a) => Some(&a.id),
            Verb::Broadcast(a) => Some(&a.id),
            Verb::Check(a) => Some(&a.id),
            Verb::Audit(a) => Some(&a.id),
        }
    }
}

/// Client errors become one line (main prints a cause chain, which would split them): an
/// unknown workshop is named, and a refused token gets a hint saying where it came from.
fn one_line(e: anyhow::Error, session: &conn::Session, id: Option<&str>) -> anyhow::Error {
    let Some(client_error) = e.downcast_ref::<ClientError>() else {
        return e;
    };
    let line = match (client_error, id) {
        (ClientError::Api { code, .. }, Some(id)) if code == "workshop_not_found" => {
            format!("workshop {id} not found ({code})")
        }
        (ClientError::Api { code, message, .. }, _) => {
            format!("{} ({code})", message.trim_end_matches('.'))
        }
        (other, _) => other.summary(),
    };
    match client_error.status() {
        Some(401) => anyhow::anyhow!("{line}; check {}", session.token_source),
        _ => anyhow::anyhow!(line),
    }
}
