//! `clarateach workshop check ID [--command CMD] [--timeout S] [--save] [--latest]`: run a check
//! in every running seat at once (or show the latest results) and print pass/fail per seat;
//! `--verbose` adds each seat's output.

use clarateach_core::toolkit::{CheckRequest, CheckRun};

use super::output::{escape, print_json};
use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Workshop id (ws-xxxxxx).
    pub id: String,
    /// The command (`sh -c`); default: the workshop's stored check command.
    #[arg(long, short = 'c')]
    pub command: Option<String>,
    /// Seconds each seat may take (default 30, at most 300).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Store this command as the workshop's check command.
    #[arg(long, requires = "command")]
    pub save: bool,
    /// Show the latest results instead of running.
    #[arg(long, conflicts_with_all = ["command", "save", "timeout"])]
    pub latest: bool,
    /// Print each seat's stdout and stderr too.
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let run = if args.latest {
        let c = ctx.client.checks(&args.id).await?;
        match c.latest {
            Some(r) => r,
            None => {
                if ctx.json {
                    return print_json(&c);
                }
                println!("No check has run in this workshop yet.");
                return Ok(());
            }
        }
    } else {
        let req = CheckRequest {
            command: args.command.clone(),
            timeout_s: args.timeout,
            save: args.save,
        };
        ctx.client.run_check(&args.id, &req).await?
    };
    if ctx.json {
        return print_json(&run);
    }
    print!("{}", summary(&run, args.verbose));
    Ok(())
}

fn summary(run: &CheckRun, verbose: bool) -> String {
    let passed = run.results.iter().filter(|r| r.passed).count();
    let mut out = format!(
        "$ {}\n{passed}/{} seats passed in {} ms\n",
        escape(&run.command),
        run.results.len(),
        run.duration_ms
    );
    for r in &run.results {
        let status = match (&r.error, r.exit_code, r.timed_out) {
            (Some(e), _, _) => format!("ERROR  {}", escape(e)),
            (None, _, true) => "TIMEOUT".to_string(),
            (None, Some(0), _) => "pass".to_string(),
            (None, Some(c), _) => format!("FAIL   exit {c}"),
            (None, None, _) => "FAIL   no exit status".to_string(),
        };
        out.push_str(&format!(
            "seat {:>3}  {status}  ({} ms)\n",
            r.seat, r.duration_ms
        ));
        if verbose {
            for (name, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
                if !text.is_empty() {
                    out.push_str(&format!("  {name}:\n"));
                    for line in text.lines() {
                        out.push_str(&format!("    {}\n", escape(line)));
                    }
                }
            }
        }
    }
    out
}
